"""The lab's own failures, counted: a bug in the lab must never pass for a fault it injected.

Where the lab turns one of its own exceptions into what a client of Windows would see (a dropped connection,
a WS-Management InternalError fault, a failed pipeline, a cmd error), it first calls ``lab_bug()``: the
exception is logged with its traceback, counted on the host (counter ``lab_internal_errors`` and an entry in
its request log) and kept in this process's list. tests/lab/pytest_plugin.py reads that list around every
test (and a lab in another process serves it at GET /internal_errors): a test during which the lab failed
fails, unless it is marked ``lab_internal_error`` because it provokes one on purpose.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
import typing as t

log = logging.getLogger(__name__)

_lock = threading.Lock()
_errors: collections.deque[dict[str, t.Any]] = collections.deque(maxlen=1000)
_total = 0


def lab_bug(where: str, exc: BaseException, *, host: str | None = None, counters: t.Any = None) -> None:
    """Record an exception of the lab's own (not something the client did or a fault it was asked to inject)."""
    global _total
    log.error("lab internal error on %s (%s): %s: %s", host or "the lab", where, type(exc).__name__, exc,
              exc_info=exc)
    text = f"{type(exc).__name__}: {exc}"[:500]
    with _lock:
        _total += 1
        _errors.append({"seq": _total, "host": host, "where": where, "error": text, "time": time.time(),
                        "traceback": "".join(traceback.format_exception(exc))[-4000:]})
    if counters is not None:
        counters.incr("lab_internal_errors")
        counters.record(kind="lab_internal_error", where=where, error=text)


def total() -> int:
    """How many internal errors this process's labs have had so far (the `since` of internal_errors())."""
    with _lock:
        return _total


def internal_errors(since: int = 0) -> list[dict[str, t.Any]]:
    """The internal errors after the first `since` (each: seq, host, where, error, time, traceback)."""
    with _lock:
        return [dict(e) for e in _errors if e["seq"] > since]
