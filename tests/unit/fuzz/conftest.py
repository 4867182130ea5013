"""The fuzzers add their rows to the reliability report (tests/integration/reliability/report.py)."""

from __future__ import annotations

import typing as t

import pytest

# the same `check` fixture as the reliability suite: one report, one way to add rows to it
from tests.integration.reliability.conftest import check  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> t.Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_reliability_{rep.when}", rep)
