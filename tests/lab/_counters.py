"""Thread-safe counters and a bounded request log that tests read from a lab host.

Counter names used across the lab (documented in docs/lab.md):
  tcp_connections, tls_handshakes, bytes_in, bytes_out,
  http_requests, http_status.<code>,
  auth_handshakes, auth_handshakes.<scheme>   (completed handshakes, scheme lower-case:
                                               basic, ntlm, negotiate, kerberos, credssp, certificate)
  auth_failures, auth_failures.<scheme>,
  reauth_on_connection                        (a completed handshake on a TCP connection
                                               that had already authenticated once)
  wsman.<Action>                              (Create, Command, Send, Receive, Signal, Delete,
                                               Get, Put, Enumerate, Disconnect, Reconnect, Connect)
  shells_created, shells_deleted, shells_expired, shells_lost_to_reboot,
  runspace_pools_created, runspace_pools_deleted, runspace_pools_lost_to_reboot,
  pipelines_started                           (PSRP pipelines the host began to run)
  pipelines_held, pipelines_stopped           (held by the hold_pipelines_containing switch; stopped by a Signal)
  reboots, power_off, power_on                (a restart of the host, tests/lab/_machine.py)
  rejected.<reason>                           (unencrypted, basic_over_http, unauthenticated_encrypted,
                                               quota_shells, quota_operations, envelope_size, ...)
"""

from __future__ import annotations

import collections
import threading
import time
import typing as t


class Counters:
    def __init__(self, log_size: int = 5000) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._log: collections.deque[dict[str, t.Any]] = collections.deque(maxlen=log_size)

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def record(self, **event: t.Any) -> None:
        """Append one entry to the request log (time is added)."""
        event.setdefault("time", time.time())
        with self._lock:
            self._log.append(event)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def log(self) -> list[dict[str, t.Any]]:
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._log.clear()
