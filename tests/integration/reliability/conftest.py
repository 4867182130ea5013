"""Fixtures of the reliability suite: the end-to-end lab runner and the report rows.

``check(area, name, expected, kind)`` adds one row to the report (tests/integration/reliability/report.py);
the test fills ``row.see(observed)`` from what it measured and the row's result is the test's outcome.
At the end of the session the report is written to tests/output/reliability.md, and to
docs/reliability.md when the whole suite (this directory and tests/unit/fuzz) ran without deselection
(PINNED_RELIABILITY_DOC=1 forces it, =0 prevents it).
"""

from __future__ import annotations

import os
import pathlib
import typing as t

import pytest

from tests.integration.e2e.conftest import e2e  # noqa: F401  (the fixture, reused as is)

from . import report as _report

ROOT = pathlib.Path(__file__).resolve().parents[3]
_SUITE_DIRS = ("tests/integration/reliability", "tests/unit/fuzz")
_collected: set[str] = set()
_deselected: set[str] = set()


def _suite_dir(nodeid: str) -> str | None:
    return next((d for d in _SUITE_DIRS if nodeid.startswith(d + "/")), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (d := _suite_dir(item.nodeid)) is not None:
            _collected.add(d)


def pytest_deselected(items: t.Sequence[pytest.Item]) -> None:
    for item in items:
        if (d := _suite_dir(item.nodeid)) is not None:
            _deselected.add(d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> t.Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_reliability_{rep.when}", rep)


def finish_rows(request: pytest.FixtureRequest, rows: list[_report.Check]) -> None:
    """Give each row of a test the test's outcome (a row marked failed stays failed)."""
    setup = getattr(request.node, "_reliability_setup", None)
    call = getattr(request.node, "_reliability_call", None)
    for row in rows:
        if call is None or (setup is not None and not setup.passed) or call.skipped:
            if row.passed is None and not row.observed:
                row.see("not run (set-up failed or skipped)")
            continue
        if call.failed and not row.observed:
            crash = getattr(call.longrepr, "reprcrash", None)
            row.see(f"test failed: {crash.message if crash else str(call.longrepr)[:300]}")
        if row.passed is None:
            row.passed = call.passed
        row.seconds = call.duration


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    rep = _report.REPORT
    if not rep.checks:
        return
    env = {"lab hosts": os.environ.get("LAB_HOSTS", "2"),
           "soak tasks": os.environ.get("PINNED_SOAK_TASKS", "default"),
           "big stdout MiB": os.environ.get("PINNED_BIG_STDOUT_MIB", "default")}
    rep.write(ROOT / "tests" / "output" / "reliability.md", environment=env)
    force = os.environ.get("PINNED_RELIABILITY_DOC")
    whole = _collected == set(_SUITE_DIRS) and not _deselected
    if force == "1" or (force != "0" and whole):
        rep.write(ROOT / "docs" / "reliability.md", environment=env)
