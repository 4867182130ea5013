"""The positive marker (tests/integration/positive_marker.py) proves absence only because it sees presence:
a request that reached the proxy before the marker is always in what the marker's wait returns."""

from __future__ import annotations

import typing as t

import pytest

from tests.integration.positive_marker import (
    access_line_count,
    access_lines_before_marker,
    recorded_before_marker,
    send_marker,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("proxy", ["squid_noauth", "squid_ntlm"])
def test_a_request_squid_handled_before_the_marker_is_in_the_lines_it_returns(lab: t.Any, proxy: str) -> None:
    before = access_line_count(lab, proxy)
    seen = send_marker(lab.describe()["proxies"][proxy]["url"])  # a request of ours, ended before the marker's
    lines = access_lines_before_marker(lab, proxy, before)
    assert [line for line in lines if seen in line], lines


def test_bytes_the_inspecting_proxy_relayed_before_the_marker_are_in_what_it_returns(lab: t.Any) -> None:
    before = len(lab.proxy_recorded("mitm"))
    seen = send_marker(lab.describe()["proxies"]["mitm"]["url"])
    assert seen.encode() in recorded_before_marker(lab, "mitm", before)
