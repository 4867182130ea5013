"""The reliability report counts what it claims: rows exist from collection, results say how a row ended,
every figure has its denominator, and the committed docs/reliability.md lists exactly the declared rows.

The report's plugin (tests/integration/reliability/report_plugin.py) is run in a pytest of its own, in a
subprocess, on small test files written here, so the session running these tests keeps its own report.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import types

import pytest

from tests.integration.reliability import report, report_plugin

ROOT = pathlib.Path(__file__).resolve().parents[2]

INNER = '''
import pytest
from tests.integration.reliability import report

@pytest.fixture
def broken():
    raise RuntimeError("the lab did not start")

@pytest.fixture
def breaks_after():
    yield
    raise RuntimeError("teardown broke")

@report.row("Faults", "passes", "it passes", report.FAULT)
def test_passes(check):
    check().see("fine")

@report.row("Faults", "criterion not met", "x is 1", report.FAULT)
def test_assertion(check):
    check().see("x was 2")
    assert 2 == 1

@report.row("Faults", "unexpected exception", "no exception", report.FAULT)
def test_exception(check):
    raise IndexError("list index out of range")

@report.row("Faults", "set-up error", "never reached", report.FAULT)
def test_setup_error(broken, check):
    check().see("unreachable")

@report.row("Faults", "teardown error", "passes, then its fixture breaks", report.FAULT)
def test_teardown_error(breaks_after, check):
    check().see("body passed")

@report.row("Load", "skipped", "skips", report.LOAD)
def test_skipped(check):
    pytest.skip("no room for it here")

@report.row("No session theft", "leak found", "nothing found", report.LEAK)
def test_leak(check):
    assert not check().leak_verdict(["host password"])

@report.row("No session theft", "leak row failing elsewhere", "nothing found", report.LEAK)
def test_leak_row_failing_elsewhere(check):
    check().leak_verdict([])
    assert False, "the run itself failed"

@report.row("No session theft", "leak row passing", "nothing found", report.LEAK)
def test_leak_row_passing(check):
    assert not check().leak_verdict([])

@report.row("Bad input", "case {case}", "{case} is refused", report.BAD_INPUT)
@pytest.mark.parametrize("case", ["a", "b"])
def test_parametrized(check, case):
    check().see(case)

@report.rows(report.row("Bad input", f"table {label}", "refused", report.BAD_INPUT, key=label) for label in "xy")
def test_table(check):
    check("x").see("x refused")
    check("y").fail("y accepted")
'''


def _inner_run(tmp_path: pathlib.Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], pathlib.Path]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    out = tmp_path / "report.md"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PINNED_", "PYTEST_"))}
    run_env.update({"PYTHONPATH": str(ROOT), report_plugin.OUT_ENV: str(out), **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "tests.integration.reliability.report_plugin", "--rootdir", str(tmp_path),
                           "-c", os.devnull, *args, str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.fixture(scope="module")
def inner(tmp_path_factory: pytest.TempPathFactory) -> dict[str, report.Check]:
    proc, out = _inner_run(tmp_path_factory.mktemp("inner"))
    assert out.exists(), proc.stdout + proc.stderr
    rows, summary = report.parse(out.read_text())
    by_name = {r.name: r for r in rows}
    by_name["<summary>"] = types.SimpleNamespace(summary=summary)  # type: ignore[assignment]
    return by_name


@pytest.mark.parametrize("name, result", [
    ("passes", report.PASS),
    ("criterion not met", report.FAIL),
    ("unexpected exception", report.ERROR),
    ("set-up error", report.ERROR),
    ("teardown error", report.ERROR),
    ("skipped", report.SKIPPED),
    ("leak found", report.LEAKED),
    ("leak row failing elsewhere", report.ERROR),
    ("leak row passing", report.PASS),
    ("case a", report.PASS),
    ("case b", report.PASS),
    ("table x", report.PASS),
    ("table y", report.FAIL),
])
def test_each_row_ends_with_the_result_of_how_its_test_ended(inner: dict[str, report.Check], name: str,
                                                             result: str) -> None:
    assert inner[name].result == result, inner[name]


def test_a_row_whose_test_broke_says_where(inner: dict[str, report.Check]) -> None:
    assert "error in set-up: RuntimeError: the lab did not start" in inner["set-up error"].observed
    assert "error in teardown" in inner["teardown error"].observed
    assert "IndexError" in inner["unexpected exception"].observed
    assert "skipped: no room for it here" in inner["skipped"].observed
    assert inner["case b"].expected == "b is refused"


def test_every_figure_of_the_summary_has_its_denominator(inner: dict[str, report.Check]) -> None:
    summary = inner["<summary>"].summary  # type: ignore[attr-defined]
    assert summary == (
        "faults survived: 1 of 5; bad inputs rejected cleanly: 3 of 4; leaks found: 1 of 3 checks; "
        "leak checks clean: 1 of 3; load checks passed: 0 of 1; round trips exact: 0 of 0; mutations caught: 0 of 0; rows failed: 2 of 13; "
        "rows that errored: 4 of 13; rows skipped: 1 of 13; rows not run: 0 of 13"), summary


def test_rows_are_declared_at_collection_even_when_no_test_runs(tmp_path: pathlib.Path) -> None:
    rows_path = tmp_path / "rows.json"
    proc, _ = _inner_run(tmp_path, "--collect-only", env={report_plugin.ROWS_ENV: str(rows_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [r["name"] for r in json.loads(rows_path.read_text())]
    assert "set-up error" in names and "case a" in names and "case b" in names and "table y" in names
    assert len(names) == 13


def _option(**values: object) -> types.SimpleNamespace:
    base = {"keyword": "", "markexpr": "", "maxfail": 0, "lf": False, "failedfirst": False, "deselect": None}
    return types.SimpleNamespace(**{**base, **values})


def _complete_state() -> dict[str, object]:
    files = {str(p.relative_to(ROOT)) for d in report_plugin.SUITE_DIRS for p in (ROOT / d).glob("test_*.py")}
    return {"files": files, "deselected": 0, "suite_items": {"a", "b"}, "settled": {"a", "b"}}


def _ran() -> list[report.Check]:
    check = report.Check("Faults", "n", "e", report.FAULT)
    check.result = report.PASS
    return [check]


def test_only_a_complete_unfiltered_run_may_write_the_committed_report() -> None:
    args = ["tests/integration/reliability", "tests/unit/fuzz"]
    assert report_plugin.incomplete_reasons(_option(), args, _complete_state(), _ran(), {}) == []
    partial = [
        ({"option": _option(maxfail=1)}, "-x"),
        ({"option": _option(keyword="soak")}, "-k"),
        ({"option": _option(markexpr="not slow")}, "-m"),
        ({"option": _option(lf=True)}, "--lf"),
        ({"args": ["tests/integration/reliability/test_faults.py::test_x", "tests/unit/fuzz"]}, "node ids"),
        ({"state": {**_complete_state(), "deselected": 3}}, "deselected"),
        ({"state": {**_complete_state(), "files": set()}}, "not collected"),
        ({"state": {**_complete_state(), "settled": {"a"}}}, "did not run to their end"),
        ({"stopped": True}, "stopped early"),
        ({"environ": {"PINNED_SOAK_TASKS": "20"}}, "sizes changed"),
        ({"checks": [report.Check("Faults", "n", "e", report.FAULT)]}, "rows without a result"),
    ]
    for change, reason in partial:
        kwargs = {"option": _option(), "args": args, "state": _complete_state(), "checks": _ran(), "environ": {},
                  **change}
        stopped = bool(kwargs.pop("stopped", False))
        reasons = report_plugin.incomplete_reasons(kwargs["option"], kwargs["args"], kwargs["state"],
                                                   kwargs["checks"], kwargs["environ"], stopped=stopped)
        assert any(reason in r for r in reasons), (change, reasons)


def test_the_committed_report_lists_exactly_the_rows_the_suite_declares(tmp_path: pathlib.Path) -> None:
    """`make test` checks docs/reliability.md against the suite (only `make reliability-report` writes it)."""
    rows_path = tmp_path / "rows.json"
    env = {k: v for k, v in os.environ.items()
           if k not in report_plugin.SIZE_ENV and not k.startswith(("PINNED_RELIABILITY", "PYTEST_"))}
    env[report_plugin.ROWS_ENV] = str(rows_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *report_plugin.SUITE_DIRS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    declared = sorted((r["area"], r["name"], r["kind"], r["expected"]) for r in json.loads(rows_path.read_text()))
    committed, summary = report.parse(report_plugin.DOC.read_text(encoding="utf-8"))
    listed = sorted((r.area, r.name, r.kind, r.expected) for r in committed)
    missing = sorted(set(declared) - set(listed))
    extra = sorted(set(listed) - set(declared))
    assert not missing and not extra, (f"docs/reliability.md is out of date (run `make reliability-report`): "
                                       f"{len(missing)} row(s) declared but not in it, e.g. {missing[:3]}; "
                                       f"{len(extra)} in it but not declared, e.g. {extra[:3]}")
    assert declared == listed, "a row is declared or listed twice"
    assert all(r.result != report.NOT_RUN for r in committed), "the committed report has rows without a result"
    rebuilt = report.Report()
    rebuilt.checks = committed
    assert summary == rebuilt.summary(), "the summary line does not match the rows above it"
