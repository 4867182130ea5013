"""A Lab built in this process cleans up after itself, and answers the LabClient calls directly."""

from __future__ import annotations

import os
import pathlib
import socket

import pytest

from tests.lab._control import LabClient
from tests.lab._lab import Lab, LabError, LabOptions, UnknownComponent

pytestmark = pytest.mark.timeout(60)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _FailingProxiesLab(Lab):
    """A lab whose proxy step fails after the realm is up, as a proxy that does not start would."""

    def _start_proxies(self) -> None:
        assert self.kdc is not None and _port_open(self.kdc.port)
        self.seen_kdc_port = self.kdc.port
        raise LabError("proxy did not start")


def test_a_failure_half_way_through_start_stops_what_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KRB5_CONFIG", raising=False)
    lab = _FailingProxiesLab(LabOptions(hosts=0, squid_auth=(), tinyproxy=False, kdc=True))
    with pytest.raises(LabError, match="proxy did not start"):
        lab.start()
    assert not _port_open(lab.seen_kdc_port)
    assert "KRB5_CONFIG" not in os.environ  # the realm's settings do not outlive it
    assert lab.workdir is not None and not lab.workdir.exists()


def test_the_lab_object_and_its_control_api_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRB5_CONFIG", "/nonexistent/krb5.conf")
    with Lab(LabOptions(hosts=0, squid_auth=(), tinyproxy=False, kdc=True)) as lab:
        desc = lab.describe()
        assert os.environ["KRB5_CONFIG"] == desc["kdc"]["krb5_config"]
        assert oct(pathlib.Path(desc["workdir"]).stat().st_mode & 0o777) == "0o700"
        client = LabClient(desc["control_url"])
        assert client.describe() == desc
        with pytest.raises(UnknownComponent):
            lab.host_counters("WIN-LAB1")
        with pytest.raises(LabError, match="no latency relays"):
            lab.set_rtt(10)
    assert os.environ["KRB5_CONFIG"] == "/nonexistent/krb5.conf"
    assert not _port_open(desc["kdc"]["port"])
    assert not _port_open(int(desc["control_url"].rsplit(":", 1)[1]))


def test_the_control_api_is_only_reachable_on_loopback_over_http() -> None:
    with pytest.raises(ValueError):
        LabClient("http://192.0.2.1:8080")
    with pytest.raises(ValueError):
        LabClient("https://127.0.0.1:8080")


def test_unknown_squid_schemes_are_refused_before_anything_starts() -> None:
    with pytest.raises(LabError, match="unknown Squid auth"):
        LabOptions(squid_auth=("kerberos5",))
    assert LabOptions(squid_auth=("negotiate",), hosts=0).kdc is True
