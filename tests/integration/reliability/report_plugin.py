"""pytest plugin of the reliability report (loaded by tests/conftest.py for every run).

- At collection, every ``@report.row(...)`` of a selected test becomes a row (report.py), named with the
  test's parameters: a test that errors in set-up or is skipped keeps its row, shown as such.
- ``check(key=None)`` (fixture) hands a test its declared row(s).
- After each test's teardown its rows settle from the outcome of set-up, body and teardown.
- At the end of the session the report is written to tests/output/reliability.md; to docs/reliability.md only
  when PINNED_RELIABILITY_REPORT=write (``make reliability-report``) and the run was complete: every test file
  of both suite directories collected, nothing deselected or filtered (-k, -m, --lf, --deselect, node ids),
  no -x, every test run to its end, no sizes changed from their defaults. A run asked to write that is not
  complete writes nothing there and fails.
- PINNED_RELIABILITY_ROWS=<path> dumps the declared rows as JSON after collection (``make test`` compares them
  with the committed report, tests/unit/test_reliability_report.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import string
import typing as t

import pytest

from tests.integration.reliability import report as _report

ROOT = pathlib.Path(__file__).resolve().parents[3]
SUITE_DIRS = ("tests/integration/reliability", "tests/unit/fuzz")
DOC = ROOT / "docs" / "reliability.md"
WRITE_ENV = "PINNED_RELIABILITY_REPORT"
ROWS_ENV = "PINNED_RELIABILITY_ROWS"
OUT_ENV = "PINNED_RELIABILITY_OUT"  # where every run writes its report (default tests/output/reliability.md)
# Sizes a run may change (smaller for a quick look, bigger for a real soak): the committed report uses the defaults.
SIZE_ENV = ("PINNED_SOAK_TASKS", "PINNED_SOAK_HOSTS", "PINNED_SOAK_SESSIONS", "PINNED_SOAK_LAB_HOSTS",
            "PINNED_SOAK_THREADS", "PINNED_BIG_STDOUT_MIB", "PINNED_FUZZ_EXAMPLES", "PINNED_FUZZ_RANDOM_EXAMPLES",
            "LAB_HOSTS")

_state: dict[str, t.Any] = {"suite_items": set(), "settled": set(), "deselected": 0, "files": set()}


def _in_suite(nodeid: str) -> bool:
    return any(nodeid.startswith(d + "/") for d in SUITE_DIRS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{_report.MARK}(area, name, expected, kind, key): a reliability report row "
                                       "of this test (declare with tests/integration/reliability/report.py row())")


class _Params(string.Formatter):
    def get_value(self, key: int | str, args: t.Sequence[t.Any], kwargs: t.Mapping[str, t.Any]) -> t.Any:
        if key not in kwargs:
            raise KeyError(f"a reliability row names {{{key}}}, which is not a parameter of the test")
        return kwargs[key]


def _declared(item: pytest.Item) -> list[_report.Check]:
    marks = sorted((m.kwargs for m in item.iter_markers(_report.MARK)), key=lambda kw: kw["order"])
    params = dict(getattr(getattr(item, "callspec", None), "params", {}) or {})
    fmt = _Params()
    rows = []
    for kw in marks:
        name, expected = kw["name"], kw["expected"]
        if params:
            name, expected = fmt.format(name, **params), fmt.format(expected, **params)
        rows.append(_report.REPORT.add(kw["area"], name, expected, kw["kind"], test=item.nodeid, key=kw["key"]))
    keys = [r.key for r in rows]
    if len(rows) > 1 and (None in keys or len(set(keys)) != len(keys)):
        raise pytest.UsageError(f"{item.nodeid}: a test with several reliability rows gives each its own key")
    return rows


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rows = _declared(item)
        item.stash[_ROWS] = rows
        if _in_suite(item.nodeid):
            _state["suite_items"].add(item.nodeid)
            _state["files"].add(item.nodeid.split("::", 1)[0])
            if not rows:
                raise pytest.UsageError(f"{item.nodeid}: every test of the reliability suite declares its rows "
                                        "with @report.row(...)")


def pytest_deselected(items: t.Sequence[pytest.Item]) -> None:
    _state["deselected"] += sum(1 for item in items if _in_suite(item.nodeid))


def pytest_collection_finish(session: pytest.Session) -> None:
    path = os.environ.get(ROWS_ENV)
    if path:
        pathlib.Path(path).write_text(json.dumps(
            [{"area": c.area, "name": c.name, "expected": c.expected, "kind": c.kind, "test": c.test}
             for c in _report.REPORT.checks], indent=1), encoding="utf-8")


_ROWS = pytest.StashKey[list]()
_PHASES = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> t.Iterator[None]:
    outcome = yield
    rows = item.stash.get(_ROWS, [])
    if not rows:
        return
    rep = outcome.get_result()
    phases = item.stash.setdefault(_PHASES, {})
    assertion = call.excinfo is not None and call.excinfo.errisinstance((AssertionError, pytest.fail.Exception))
    phases[rep.when] = (rep, assertion)
    if rep.when == "call":
        for check in rows:
            check.seconds = rep.duration
    if rep.when == "teardown":
        settle(rows, phases)
        _state["settled"].add(item.nodeid)


def _crash(rep: pytest.TestReport) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:  # a skip: (path, line, reason)
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    return str(rep.longrepr)[:300]


def settle(rows: list[_report.Check], phases: dict[str, tuple[pytest.TestReport, bool]]) -> None:
    """Each row's result from the reports of its test's phases."""
    setup, _ = phases.get("setup", (None, False))
    call, assertion = phases.get("call", (None, False))
    teardown, _ = phases.get("teardown", (None, False))
    if setup is not None and setup.failed:
        outcome, message, assertion = "error", f"error in set-up: {_crash(setup)}", False
    elif setup is not None and setup.skipped:
        outcome, message = "skipped", f"skipped: {_crash(setup)}"
    elif call is None:
        outcome, message, assertion = "error", "the test did not run", False
    elif call.skipped:
        outcome, message = "skipped", f"skipped: {_crash(call)}"
    elif call.failed:
        outcome, message = "failed", f"test failed: {_crash(call)}"
    elif teardown is not None and teardown.failed:
        outcome, message, assertion = "error", f"error in teardown: {_crash(teardown)}", False
    else:
        outcome, message = "passed", ""
    for check in rows:
        check.settle(outcome, assertion=assertion, message=message[:400])


def incomplete_reasons(option: t.Any, args: t.Sequence[str], state: dict[str, t.Any], checks: list[_report.Check],
                       environ: t.Mapping[str, str], *, stopped: bool = False) -> list[str]:
    """Why this run may not write docs/reliability.md (empty: it may): `option` is pytest's parsed options,
    `args` the paths it was given, `state` what this plugin saw of the suite's collection and runs."""
    reasons = []
    expected = {str(p.relative_to(ROOT)) for d in SUITE_DIRS for p in (ROOT / d).glob("test_*.py")}
    missing = sorted(expected - state["files"])
    if missing:
        reasons.append(f"test files not collected: {', '.join(missing)}")
    if state["deselected"]:
        reasons.append(f"{state['deselected']} test(s) of the suite deselected")
    for name, flag in (("keyword", "-k"), ("markexpr", "-m")):
        if getattr(option, name, ""):
            reasons.append(f"filtered with {flag}")
    if getattr(option, "maxfail", 0):
        reasons.append("run with -x/--maxfail (stops early)")
    if getattr(option, "lf", False) or getattr(option, "failedfirst", False):
        reasons.append("run with --lf/--ff")
    if getattr(option, "deselect", None):
        reasons.append("run with --deselect")
    if any("::" in str(arg) for arg in args):
        reasons.append("run on node ids, not the suite's directories")
    unsettled = len(state["suite_items"] - state["settled"])
    if unsettled or stopped:
        reasons.append(f"{unsettled} test(s) did not run to their end (stopped early)")
    changed = [name for name in SIZE_ENV if environ.get(name)]
    if changed:
        reasons.append(f"sizes changed from their defaults: {', '.join(changed)}")
    if any(c.result == _report.NOT_RUN for c in checks):
        reasons.append("rows without a result")
    return reasons


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    rep = _report.REPORT
    if not rep.checks or session.config.option.collectonly:
        return
    env = {"lab hosts": os.environ.get("LAB_HOSTS", "2"),
           "fuzz seed": os.environ.get("PINNED_FUZZ_SEED", "random (each row shows its own)")}
    out = pathlib.Path(os.environ.get(OUT_ENV) or ROOT / "tests" / "output" / "reliability.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(rep.render(environment=env), encoding="utf-8")
    if os.environ.get(WRITE_ENV) != "write":
        return
    reasons = incomplete_reasons(session.config.option, session.config.args, _state, rep.checks, os.environ,
                                 stopped=bool(session.shouldstop or session.shouldfail))
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if reasons:
        if terminal is not None:
            terminal.write_line(f"docs/reliability.md NOT written (not a complete run of the suite): {'; '.join(reasons)}",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    DOC.write_text(rep.render(environment=env), encoding="utf-8")
    if terminal is not None:
        terminal.write_line(f"docs/reliability.md written: {rep.summary()}")


@pytest.fixture
def check(request: pytest.FixtureRequest) -> t.Callable[..., _report.Check]:
    """check(key=None) -> the report row this test declared with @report.row(...) (by key when it has several)."""
    rows: list[_report.Check] = request.node.stash.get(_ROWS, [])
    if not rows:
        raise pytest.UsageError(f"{request.node.nodeid} asks for `check` but declares no @report.row(...)")

    def get(key: str | None = None) -> _report.Check:
        if key is None:
            if len(rows) != 1:
                raise ValueError(f"{request.node.nodeid} has {len(rows)} rows: ask for one by its key")
            return rows[0]
        for row in rows:
            if row.key == key:
                return row
        raise KeyError(f"{request.node.nodeid} declares no row with key {key!r}")

    return get
