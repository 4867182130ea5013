"""Where one task's time went: connect, proxy, TLS, authentication, pool open, the command, transfers.

The session and its transport time their phases on one ``PhaseClock``; ``Session.ensure_ready()`` marks
the start of a task and the task report (``_session_report.task_report``) carries ``clock.task_timing()``, the
phases and counts since that mark, to the plugin, which prints ``timing_line()`` at ``-vvv``. Everything
is measured where the work happens (the daemon, or the task's own process without persistence), so the
worker only prints.

Phases are exclusive: a phase started inside another pauses the outer one (a reconnection during a
command counts as ``connect``/``auth``, not as ``command``), so the phases add up to the time the session
worked for the task. ``command`` is the time from sending the pipeline's Command until the host said it
ended, its Receive round trips included: WinRM reports no execution time of its own.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

# Phases in the order of a task's life, as the -vvv line names them.
PHASES = ("connect", "proxy", "tls", "auth", "pool_open", "command", "transfer")
COUNTS = ("requests", "bytes_out", "bytes_in", "transfer_bytes", "tcp_connects", "auth_legs")
_LABELS = {"pool_open": "pool open"}


class PhaseClock:
    """Exclusive phase timers and counters of one session, with a per-task mark."""

    def __init__(self, clock: t.Callable[[], float] = time.perf_counter) -> None:
        self._now = clock
        self._totals: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self._stack: list[list[t.Any]] = []  # [phase, started] of the phases under way, innermost last
        self._mark: tuple[dict[str, float], dict[str, int], float] | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> t.Iterator[None]:
        """Time `name` while the block runs, pausing the phase it runs inside."""
        now = self._now()
        if self._stack:
            outer = self._stack[-1]
            self._totals[outer[0]] += now - outer[1]
        self._stack.append([name, now])
        try:
            yield
        finally:
            now = self._now()
            inner = self._stack.pop()
            self._totals[inner[0]] = self._totals.get(inner[0], 0.0) + now - inner[1]
            if self._stack:
                self._stack[-1][1] = now

    def count(self, **amounts: int) -> None:
        """Add to the counters (requests, bytes_out, bytes_in, transfer_bytes, tcp_connects, auth_legs)."""
        for name, amount in amounts.items():
            self._counts[name] = self._counts.get(name, 0) + int(amount)

    def start_task(self) -> None:
        """Mark the start of a task: task_timing() reports what happened from here."""
        self._mark = (dict(self._totals), dict(self._counts), self._now())

    def task_timing(self) -> dict[str, t.Any]:
        """Milliseconds per phase and the counts since start_task(), and the task's wall time on the session."""
        totals, counts, started = self._mark if self._mark is not None else ({}, {}, self._now())
        report: dict[str, t.Any] = {
            f"{name}_ms": round((self._totals.get(name, 0.0) - totals.get(name, 0.0)) * 1000, 3) for name in PHASES
        }
        report.update({name: self._counts.get(name, 0) - counts.get(name, 0) for name in COUNTS})
        report["total_ms"] = round((self._now() - started) * 1000, 3)
        return report


def _ms(value: float) -> str:
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def _size(value: int) -> str:
    if value >= 1024 * 1024:
        return f"{value / 1024 / 1024:.1f} MiB"
    if value >= 1024:
        return f"{value / 1024:.1f} KiB"
    return f"{value} B"


def timing_line(timing: t.Mapping[str, t.Any]) -> str:
    """The -vvv line: every phase that took time, then the counts (what the plugin prints, as is)."""
    phases = [f"{_LABELS.get(name, name)} {_ms(float(timing.get(f'{name}_ms', 0)))}" for name in PHASES
              if float(timing.get(f"{name}_ms", 0)) > 0]
    counts = [f"{int(timing.get('requests', 0))} request(s)", f"{_size(int(timing.get('bytes_out', 0)))} out",
              f"{_size(int(timing.get('bytes_in', 0)))} in"]
    if int(timing.get("tcp_connects", 0)):
        counts.append(f"{int(timing['tcp_connects'])} TCP connect(s)")
    if int(timing.get("auth_legs", 0)):
        counts.append(f"{int(timing['auth_legs'])} auth leg(s)")
    if int(timing.get("transfer_bytes", 0)):
        counts.append(f"{_size(int(timing['transfer_bytes']))} transferred")
    return (f"{', '.join(phases) or 'no session work'}; {', '.join(counts)}; "
            f"total {_ms(float(timing.get('total_ms', 0)))}")
