"""Fault injection switches for one lab host, set by tests through the control API.

Every switch is plain data so it can be set over JSON. Counted switches
(`*_next`) are consumed one request at a time with `take()`.

`hold_on_action_nth` is the test hook that holds a moment instead of guessing it: the host
keeps the chosen request unanswered (read, not handled) until the test calls `release()`,
so a test can act (kill a process, restart a proxy) while it knows exactly where the client is.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import typing as t


@dataclasses.dataclass
class FaultSettings:
    # Close the TCP connection after this many requests were answered on it (None: never).
    close_after_requests: int | None = None
    # Close the TCP connection after every response (a proxy or host without keep-alive).
    close_after_each_response: bool = False
    # Sleep this long before sending each response.
    delay_response_s: float = 0.0
    # HTTP status codes (500, 503, ...) returned for the next requests, one per request.
    http_status_next: list[int] = dataclasses.field(default_factory=list)
    # WS-Management fault names returned for the next requests ("access_denied",
    # "shell_not_found", "operation_timeout", "quota", ...), one per request.
    wsman_fault_next: list[str] = dataclasses.field(default_factory=list)
    # WS-Management fault names returned for the next requests of one action, one per request:
    # {"Command": ["access_denied"]} faults the next Command and lets every other request through.
    wsman_fault_on_action_next: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # Refuse every authentication attempt (401 as Windows sends it).
    refuse_auth: bool = False
    # Drop the TCP connection without answering the next N requests of this WS-Man action
    # ("Receive", "Command", ...): {"Receive": 1}.
    drop_on_action_next: dict[str, int] = dataclasses.field(default_factory=dict)
    # Drop the TCP connection without answering the N-th next request of this WS-Man action, once
    # ({"Send": 2}: the second Send from now, mid-transfer; the first is handled as usual).
    drop_on_action_nth: dict[str, int] = dataclasses.field(default_factory=dict)
    # Hold every PSRP pipeline whose script contains this text as a command that runs until stopped would:
    # state Running, no output, until the client stops it (Signal) or the shell closes. Tests wait for the
    # pipelines_held counter instead of sleeping; the engine's Start-Sleep (a real sleep) is not needed.
    hold_pipelines_containing: str | None = None
    # Stall (send nothing) for this many seconds after reading the next request, then answer.
    stall_next_s: list[float] = dataclasses.field(default_factory=list)
    # Hold the N-th next request with this WS-Man action ({"Send": 3}: the third Send from now): it is read
    # and decrypted, then neither handled nor answered until release() (POST .../held/release), clear(), or
    # the host stops. Then it is handled and answered as usual (to whoever still listens).
    hold_on_action_nth: dict[str, int] = dataclasses.field(default_factory=dict)
    # Handle the N-th next request with this WS-Man action as usual, then hold its answer (not sent) until
    # release(), clear() or the host stops; then send it to whoever still listens. An answer that leaves the
    # host late or never reaches the client (a stalled host, a lost response): what the request did on the host
    # (a Receive took the output it answers with) is done either way.
    hold_answer_on_action_nth: dict[str, int] = dataclasses.field(default_factory=dict)


# A held request never outlives this, so a test that forgot to release cannot wedge a lab thread for ever.
MAX_HOLD_S = 600.0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()
        # Held requests (hold_on_action_nth): what they are, and a generation bumped by every release.
        self._held_cond = threading.Condition(self._lock)
        self._held: list[dict[str, t.Any]] = []
        self._release_generation = 0

    def update(self, **changes: t.Any) -> None:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self.settings, key):
                    raise KeyError(f"unknown fault setting {key!r}")
                setattr(self.settings, key, value)

    def clear(self) -> None:
        """Every switch off; requests still held are released."""
        with self._lock:
            self.settings = FaultSettings()
            self._release_locked()

    def get(self, name: str) -> t.Any:
        with self._lock:
            return getattr(self.settings, name)

    def take(self, name: str) -> t.Any:
        """Pop the next value of a list switch (None when empty)."""
        with self._lock:
            queue = getattr(self.settings, name)
            return queue.pop(0) if queue else None

    def take_action_fault(self, action: str) -> str | None:
        """Pop the next injected fault name for this WS-Man action (None when none is queued)."""
        with self._lock:
            queue = self.settings.wsman_fault_on_action_next.get(action) or []
            return queue.pop(0) if queue else None

    def holds(self, script: str) -> bool:
        """Whether a pipeline running `script` is to be held (hold_pipelines_containing)."""
        with self._lock:
            marker = self.settings.hold_pipelines_containing
        return bool(marker) and marker in script

    def take_action_drop(self, action: str) -> bool:
        """Count one request with this action; True when it is to be dropped (drop_on_action_next/_nth)."""
        with self._lock:
            left = self.settings.drop_on_action_next.get(action, 0)
            if left > 0:
                self.settings.drop_on_action_next[action] = left - 1
                return True
            nth = self.settings.drop_on_action_nth.get(action, 0)
            if nth <= 0:
                return False
            self.settings.drop_on_action_nth[action] = nth - 1
            return nth == 1

    def take_action_hold(self, action: str) -> bool:
        """Count one request with this action; True when it is the one hold_on_action_nth names."""
        with self._lock:
            left = self.settings.hold_on_action_nth.get(action, 0)
            if left <= 0:
                return False
            self.settings.hold_on_action_nth[action] = left - 1
            return left == 1

    def take_answer_hold(self, action: str) -> bool:
        """Count one handled request with this action; True when its answer is the one hold_answer_on_action_nth
        names."""
        with self._lock:
            left = self.settings.hold_answer_on_action_nth.get(action, 0)
            if left <= 0:
                return False
            self.settings.hold_answer_on_action_nth[action] = left - 1
            return left == 1

    def hold(self, info: dict[str, t.Any], stopping: threading.Event) -> bool:
        """Block the calling request until release() (True) or until the host stops (False)."""
        entry = dict(info)
        deadline = time.monotonic() + MAX_HOLD_S
        with self._held_cond:
            generation = self._release_generation
            self._held.append(entry)
            self._held_cond.notify_all()
            try:
                while self._release_generation == generation:
                    left = deadline - time.monotonic()
                    if stopping.is_set() or left <= 0:
                        return False
                    # Wakes up now and then only to notice that the host is stopping.
                    self._held_cond.wait(min(left, 0.5))
                return True
            finally:
                self._held[:] = [e for e in self._held if e is not entry]

    def wait_held(self, timeout_s: float) -> list[dict[str, t.Any]]:
        """Wait until at least one request is held; return what is held ([] when none came in time)."""
        deadline = time.monotonic() + timeout_s
        with self._held_cond:
            while not self._held:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._held_cond.wait(left)
            return [dict(e) for e in self._held]

    def held(self) -> list[dict[str, t.Any]]:
        """The requests held right now."""
        with self._lock:
            return [dict(e) for e in self._held]

    def release(self) -> int:
        """Let every held request go on; return how many were held."""
        with self._lock:
            return self._release_locked()

    def _release_locked(self) -> int:
        count = len(self._held)
        self._release_generation += 1
        self._held_cond.notify_all()
        return count

    def as_dict(self) -> dict[str, t.Any]:
        with self._lock:
            return dataclasses.asdict(self.settings)
