"""Fault injection switches for one lab host, set by tests through the control API.

Every switch is plain data so it can be set over JSON. Counted switches
(`*_next`) are consumed one request at a time with `take()`.
"""

from __future__ import annotations

import dataclasses
import threading
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
    # Hold every PSRP pipeline whose script contains this text as a command that runs until stopped would:
    # state Running, no output, until the client stops it (Signal) or the shell closes. Tests wait for the
    # pipelines_held counter instead of sleeping; the engine's Start-Sleep (a real sleep) is not needed.
    hold_pipelines_containing: str | None = None
    # Stall (send nothing) for this many seconds after reading the next request, then answer.
    stall_next_s: list[float] = dataclasses.field(default_factory=list)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = FaultSettings()

    def update(self, **changes: t.Any) -> None:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self.settings, key):
                    raise KeyError(f"unknown fault setting {key!r}")
                setattr(self.settings, key, value)

    def clear(self) -> None:
        with self._lock:
            self.settings = FaultSettings()

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
        with self._lock:
            left = self.settings.drop_on_action_next.get(action, 0)
            if left <= 0:
                return False
            self.settings.drop_on_action_next[action] = left - 1
            return True

    def as_dict(self) -> dict[str, t.Any]:
        with self._lock:
            return dataclasses.asdict(self.settings)
