"""The reliability report: every check of the suite with what was expected and what was observed.

A test declares its rows with ``@report.row(area, name, expected, kind)`` (one decorator per row); the rows
exist from collection on, so a test that errors in set-up, or is skipped, still has its row, shown as such.
The test fills ``check().see(observed)`` from what it measured; the row's result comes from the test's
outcome (report_plugin.py), where a failed assertion is a failure of the row and any other exception, in
set-up, body or teardown, an error of the row. A leak-check row is a leak only when its own criterion
found one (``row.leak_verdict(found)``); failing for another reason it is an error.

The rendered Markdown is written to tests/output/reliability.md after every run, and to docs/reliability.md
only by ``make reliability-report`` (a complete, unfiltered run of the suite, see report_plugin.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import platform
import re
import threading
import typing as t

import pytest

# What a row counts towards in the summary line (each figure with its denominator).
FAULT = "fault"  # a fault the collection must survive (recover, or fail cleanly and recover after)
BAD_INPUT = "bad_input"  # bad inventory or a hostile/broken answer that must be rejected cleanly
LEAK = "leak"  # a check that a secret, a byte or a session does not leak
LOAD = "load"  # volume, concurrency and scale: many tasks, sessions, descriptors or bytes at once
ROUND_TRIP = "round_trip"  # data through the whole path comes back exactly (hashes, Unicode, ledgers)
MUTATION = "mutation"  # not the product's: a deliberately broken build must make a row's criterion fail

KINDS: dict[str, str] = {
    FAULT: "faults survived",
    BAD_INPUT: "bad inputs rejected cleanly",
    LEAK: "leak checks clean",
    LOAD: "load checks passed",
    ROUND_TRIP: "round trips exact",
    MUTATION: "mutations caught",
}

AREAS = ("Faults", "Nothing lost", "Bad input", "Hostile proxy", "No session theft", "Load",
         "Criteria that can fail")

# A row's result. "fail": its criterion was not met; "leak": a leak check found one; "error": the test broke
# elsewhere (set-up, teardown, an unexpected exception, or a leak row that failed for another reason).
PASS, FAIL, LEAKED, ERROR, SKIPPED, NOT_RUN = "pass", "fail", "leak", "error", "skipped", "not run"
RESULTS = (PASS, FAIL, LEAKED, ERROR, SKIPPED, NOT_RUN)
_SHOWN = {PASS: "pass", FAIL: "**FAIL**", LEAKED: "**LEAK**", ERROR: "**ERROR**", SKIPPED: "skipped",
          NOT_RUN: "not run"}

MARK = "reliability_row"
_order = itertools.count()


def row(area: str, name: str, expected: str, kind: str, *, key: str | None = None) -> pytest.MarkDecorator:
    """Declare one report row of the decorated test.

    ``name`` and ``expected`` may name the test's parameters as ``{param}``; they are filled per parametrized
    test at collection. ``key`` tells a test's rows apart (``check(key)``) when it has more than one.
    """
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}; one of {AREAS}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {tuple(KINDS)}")
    return getattr(pytest.mark, MARK)(area=area, name=name, expected=expected, kind=kind, key=key,
                                      order=next(_order))


def rows(marks: t.Iterable[pytest.MarkDecorator]) -> t.Callable[[t.Callable[..., t.Any]], t.Callable[..., t.Any]]:
    """Apply several row() marks at once (a table of cases, one row each)."""
    marks = list(marks)

    def apply(func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        for mark in marks:
            func = mark(func)
        return func

    return apply


@dataclasses.dataclass
class Check:
    """One row: a fault, bad input or attack tried, what should happen and what did."""

    area: str
    name: str
    expected: str
    kind: str
    test: str = ""
    key: str | None = None
    observed: str = ""
    verdict: str | None = None  # set by the test for this row alone: FAIL, LEAKED, or PASS (its criterion held)
    result: str = NOT_RUN
    seconds: float | None = None

    def see(self, text: str) -> Check:
        """Set the observed outcome (what the run measured, in one line)."""
        self.observed = " ".join(str(text).split())
        return self

    def fail(self, text: str | None = None) -> None:
        """Mark this row failed (its own criterion was not met), whatever the test's outcome; the test still asserts."""
        if text is not None:
            self.see(text)
        self.verdict = FAIL

    def leak_verdict(self, found: t.Any) -> t.Any:
        """Record this leak-check row's own criterion: `found` (truthy) is a leak. Returns `found` for the assert.

        A leak row whose test fails without a leak recorded here is an error of the row, not a leak.
        """
        if self.kind != LEAK:
            raise ValueError(f"leak_verdict() on a {self.kind} row: {self.name}")
        if found:
            self.verdict = LEAKED
        elif self.verdict is None:
            self.verdict = PASS
        return found

    def settle(self, outcome: str, *, assertion: bool, message: str = "") -> None:
        """The row's result from its test's outcome ("passed", "failed", "error", "skipped"); `assertion` tells a
        failed assertion of the body from any other exception."""
        if self.verdict in (FAIL, LEAKED):
            self.result = self.verdict
        elif outcome == "passed":
            self.result = PASS
        elif outcome == "skipped":
            self.result = SKIPPED
        elif outcome == "failed" and assertion and self.kind != LEAK:
            self.result = FAIL
        else:  # set-up or teardown broke, an unexpected exception, or a leak row that failed elsewhere
            self.result = ERROR
        if message and (self.result != PASS) and (not self.observed or self.result in (ERROR, SKIPPED)):
            prefix = f"{self.observed}; " if self.observed and self.result == ERROR else ""
            self.see(f"{prefix}{message}")


class Report:
    """Rows of one test session, in declaration order (collection order of the tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checks: list[Check] = []

    def add(self, area: str, name: str, expected: str, kind: str, test: str = "", key: str | None = None) -> Check:
        if area not in AREAS:
            raise ValueError(f"unknown area {area!r}; one of {AREAS}")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        check = Check(area, " ".join(name.split()), " ".join(expected.split()), kind, test, key)
        with self._lock:
            self.checks.append(check)
        return check

    def drop(self, test: str) -> None:
        """Forget the rows of a deselected test."""
        with self._lock:
            self.checks = [c for c in self.checks if c.test != test]

    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {result: rows, ..., "total": rows}} for every kind, zeros included."""
        out: dict[str, dict[str, int]] = {}
        for kind in KINDS:
            rows_ = [c for c in self.checks if c.kind == kind]
            out[kind] = {result: sum(1 for c in rows_ if c.result == result) for result in RESULTS}
            out[kind]["total"] = len(rows_)
        return out

    def summary(self) -> str:
        """The one-line summary: every figure with its denominator."""
        return summary_line(self.counts())

    def render(self, *, environment: dict[str, str] | None = None) -> str:
        """The whole Markdown document; its last line is the summary."""
        lines = [
            "# Reliability report",
            "",
            "Generated by the reliability suite (`tests/integration/reliability`, `tests/unit/fuzz`) from one",
            "complete run: each row is one fault, bad input, leak check, load or round trip tried against",
            "`pinned.winrm.psrp`, what the suite expected and what it observed (figures measured in that run).",
            "A row fails when its criterion is not met; it is an error when its test broke elsewhere (set-up,",
            "teardown, an unexpected exception); a leak check is a leak only when its own criterion found one.",
            "The last area, *Criteria that can fail*, is about the suite itself: each row is a deliberately broken",
            "build (a mutation, kept as a test) on which the criterion of the row it names must fail.",
            "Regenerate with `make reliability-report` (only a complete, unfiltered run writes this file;",
            "`make test` checks that it lists exactly the rows the suite declares). Do not edit by hand.",
            "",
        ]
        env = dict(environment or {})
        env.setdefault("generated", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
        env.setdefault("python", platform.python_version())
        lines.append("Run: " + "; ".join(f"{k} {v}" for k, v in env.items()))
        lines.append("")
        for area in AREAS:
            rows_ = [c for c in self.checks if c.area == area]
            if not rows_:
                continue
            lines += [f"## {area}", "", "| check | kind | expected | observed | result |", "|---|---|---|---|---|"]
            for check in rows_:
                lines.append(f"| {_cell(check.name)} | {check.kind} | {_cell(check.expected)} | "
                             f"{_cell(check.observed or '-')} | {_SHOWN[check.result]} |")
            lines.append("")
        counts = self.counts()
        lines += [
            "## Counts",
            "",
            "| kind | " + " | ".join(RESULTS) + " | total |",
            "|---|" + "---|" * (len(RESULTS) + 1),
            *(f"| {kind} | " + " | ".join(str(c[r]) for r in RESULTS) + f" | {c['total']} |" for kind, c in counts.items()),
            "",
            summary_line(counts),
        ]
        return "\n".join(lines) + "\n"


def summary_line(counts: dict[str, dict[str, int]]) -> str:
    """`faults survived: 30 of 31; ...; leaks found: 0 of 31 checks; rows that errored: 0 of 133; ...`."""
    parts = []
    for kind, label in KINDS.items():
        c = counts[kind]
        if kind == LEAK:
            parts.append(f"leaks found: {c[LEAKED]} of {c['total']} checks")
        parts.append(f"{label}: {c[PASS]} of {c['total']}")
    total = sum(c["total"] for c in counts.values())
    for result, label in ((FAIL, "rows failed"), (ERROR, "rows that errored"), (SKIPPED, "rows skipped"),
                          (NOT_RUN, "rows not run")):
        parts.append(f"{label}: {sum(c[result] for c in counts.values())} of {total}")
    return "; ".join(parts)


_ROW = re.compile(r"^\| (?P<name>.*?) \| (?P<kind>[a-z_]+) \| (?P<expected>.*?) \| (?P<observed>.*) \| "
                  r"(?P<result>pass|\*\*FAIL\*\*|\*\*LEAK\*\*|\*\*ERROR\*\*|skipped|not run) \|$")


def parse(text: str) -> tuple[list[Check], str]:
    """The rows and the summary line of a rendered report (what `make test` compares with the declared rows)."""
    shown = {v: k for k, v in _SHOWN.items()}
    area = ""
    found: list[Check] = []
    for line in text.splitlines():
        if line.startswith("## "):
            area = line[3:].strip()
            continue
        match = _ROW.match(line)
        if match and area in AREAS:
            check = Check(area, _uncell(match["name"]), _uncell(match["expected"]), match["kind"])
            check.observed = _uncell(match["observed"])
            check.result = shown[match["result"]]
            found.append(check)
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    return found, last


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _uncell(text: str) -> str:
    return text.replace("\\|", "|")


# One report per test session, filled by report_plugin.py.
REPORT = Report()
