"""What one task did to its session, and the task-level rules both runners apply (the pin daemon and LocalRunner).

The task report (reauths, rebuilds, timing), the task's command deadline and whether an error leaves the session
unusable live here so that the in-process runner shares them without loading the pin daemon.
"""

from __future__ import annotations

import contextlib
import typing as t

from ._errors import HostAuthError, HostError, PinnedError, TransportError

if t.TYPE_CHECKING:
    from ._runner import TaskReport


def transport_reauths(session: t.Any) -> int:
    """How many times the transport re-authenticated (its stats["reauths"]: {reason: count}); 0 before it exists."""
    return sum(reauth_reasons(session).values())


def reauth_reasons(session: t.Any) -> dict[str, int]:
    """The transport's re-authentications by reason."""
    stats = getattr(getattr(session, "transport", None), "stats", None) or {}
    value = stats.get("reauths", 0) if isinstance(stats, dict) else 0
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    return {"unspecified": int(value)} if isinstance(value, int) and value else {}


def reauths_since(session: t.Any, before: dict[str, int]) -> dict[str, int]:
    """Re-authentications by reason since `before` (a reauth_reasons() snapshot)."""
    return {k: v - before.get(k, 0) for k, v in reauth_reasons(session).items() if v > before.get(k, 0)}


def pool_rebuilds(session: t.Any) -> int:
    """How many times the session rebuilt its Runspace Pool (a snapshot for task_report)."""
    return int((getattr(session, "stats", None) or {}).get("pool_rebuilds", 0))


def task_report(session: t.Any, status: str, reauths_before: dict[str, int], rebuilds_before: int) -> TaskReport:
    """What one task did to its session (the reply the plugin shows at -vvv), daemon and in-process alike."""
    stats = getattr(session, "stats", None) or {}
    this_task = reauths_since(session, reauths_before)
    reasons = list(stats.get("rebuild_reasons", []))
    if status == "reused" and int(stats.get("pool_rebuilds", 0)) > rebuilds_before and reasons:
        status = f"reopened: {reasons[-1]}"  # the pool was rebuilt during the task (shell gone), not before it
    report: TaskReport = {
        "ok": True,
        "session": status,
        "reauths": sum(this_task.values()),
        "reauths_total": transport_reauths(session),
        "reauth_reasons": this_task,
        "pool_rebuilds": stats.get("pool_rebuilds", 0),
    }
    report.update(_task_timing(session))
    return report


def _task_timing(session: t.Any) -> TaskReport:
    """The task's phases and counts, and the -vvv line the plugin prints as is (_timing.py); {} without a clock."""
    clock = getattr(session, "clock", None)
    if clock is None:
        return {}
    from ._timing import timing_line

    timing = clock.task_timing()
    return {"timing": timing, "timing_line": timing_line(timing)}


@contextlib.contextmanager
def command_deadline(session: t.Any, seconds: t.Any) -> t.Iterator[None]:
    """Bound one task by the plugin's ansible_psrp_persist_command_timeout (seconds; None or 0: no bound).

    The session's transport refuses to wait past it (CommandTimeoutError), daemon and in-process alike.
    """
    setter = getattr(getattr(session, "transport", None), "set_command_deadline", None)
    bound = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0 else None
    if setter is None or bound is None:
        yield
        return
    setter(bound)
    try:
        yield
    finally:
        setter(None)


def session_unusable(exc: BaseException) -> bool:
    """Whether an error leaves the session unfit for the next task (then it is closed and dropped).

    Transport failures and HTTP-level host errors (status set) may have left the connection or the
    pool in an unknown state; a WS-Management fault or a failed transfer script leaves both intact.
    """
    if isinstance(exc, (TransportError, HostAuthError)):
        return True
    if isinstance(exc, HostError):
        return exc.status is not None
    return not isinstance(exc, PinnedError)
