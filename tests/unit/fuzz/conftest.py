"""The fuzzers add their rows to the reliability report (tests/integration/reliability/report.py)."""

from __future__ import annotations

import typing as t

import pytest

from tests.integration.reliability import report as _report
from tests.integration.reliability.conftest import finish_rows


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> t.Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_reliability_{rep.when}", rep)


@pytest.fixture
def check(request: pytest.FixtureRequest) -> t.Iterator[t.Callable[..., _report.Check]]:
    """check(area, name, expected, kind) -> a report row for this test."""
    rows: list[_report.Check] = []

    def add(area: str, name: str, expected: str, kind: str) -> _report.Check:
        row = _report.REPORT.add(area, name, expected, kind, test=request.node.nodeid)
        rows.append(row)
        return row

    yield add
    finish_rows(request, rows)
