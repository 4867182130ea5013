"""The pin daemon: one process per controller user holding pinned WinRM sessions.

Run as ``python -m ansible_collections.pinned.winrm.plugins.plugin_utils._pin_daemon --dir ROOT``;
the pin client starts it on first use. It listens on a UNIX socket in a
directory only the user can enter, checks the peer uid of every connection
(SO_PEERCRED), and serves exec/put/fetch requests on sessions keyed by
``SessionSpec.pin_key(daemon_key)``, where the key is 32 random bytes that
never leave this process.

Concurrency: per pin key a small pool of Sessions (default at most 2). A
request takes an idle one (the most recently used, the warmest), opens another
while fewer than ``pool_max`` exist, else waits for one to come free, bounded
by the request's ``pool_wait`` seconds. Two playbooks against one host thus run
side by side; a third queues.

Lifetime: a session closes after ``idle_timeout`` seconds unused or when older
than ``max_age`` (checked by the reaper and before reuse); the daemon exits
once it has held no session and served no connection for ``--exit-grace``
seconds. Secrets arrive only inside requests on the socket; the log is 0600
and every known secret is redacted from it at any verbosity.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import importlib
import logging
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import typing as t
import uuid

from . import _pin_protocol as proto
from ._errors import ConfigError, PinnedError, PoolBusyError, TaskInterrupted, TransportError
from ._option_definitions import default
from ._pin_paths import PROTOCOL_VERSION, DirLock, PinPaths
from ._pin_process import PrivateLogHandler, in_dir, no_core_dumps, raise_open_files_limit
from ._redaction import SecretRedactor, option_secrets, spec_secrets, wire_secrets
from ._session_report import (command_deadline, pool_rebuilds, reauth_reasons, session_unusable, task_report,
                              transport_reauths)
from ._spec import SessionSpec, build_spec

if t.TYPE_CHECKING:
    from ._runner import TaskReport

log = logging.getLogger("pinned.winrm.pin_daemon" if __name__ == "__main__" else __name__)

DEFAULT_POOL_WAIT = 300.0
DEFAULT_EXIT_GRACE = 2.0
# How long the daemon waits for a stalled client (mid-stream) before giving the session back.
CLIENT_IO_TIMEOUT = 300.0
_REAP_TICK = 0.2
# How long close/reset waits for a session that is only finishing its previous task.
FINISHING_WAIT = 10.0
# Sessions closed at once (expired, broken, or on request); each close is network I/O to its host.
CLOSE_WORKERS = 8
# Requests served at once (one thread each); more are refused with an error naming the bound. Far above any
# number of forks, it bounds the threads (and memory) a runaway client can make the daemon spend.
MAX_CLIENTS = 1024

# Test hook, honoured only when the daemon runs under pytest (PYTEST_CURRENT_TEST is inherited from the test).
TEST_FACTORY_ENV = "PINNED_WINRM_TEST_SESSION_FACTORY"

SessionFactory = t.Callable[..., t.Any]


# -- the session table -------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Slot:
    """One Session of a pin key's pool, with its bookkeeping."""

    pin: str
    session: t.Any
    describe: dict[str, t.Any]
    host: str
    idle_timeout: float
    max_age: float
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: float = dataclasses.field(default_factory=time.monotonic)
    created_wall: float = dataclasses.field(default_factory=time.time)
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    busy: bool = False
    finishing: bool = False  # the task's reply is sent; only finish_pending() remains
    doomed: bool = False
    tasks: int = 0
    events: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def shorten_life(self, idle_timeout: float, max_age: float) -> None:
        """Apply a request's lifetime settings: the shorter wins, so no later run extends an older session."""
        self.idle_timeout = min(self.idle_timeout, idle_timeout)
        self.max_age = min(self.max_age, max_age)

    def expired(self, now: float) -> str | None:
        if now - self.created >= self.max_age:
            return f"older than the maximum session age ({self.max_age:g}s)"
        if now - self.last_used >= self.idle_timeout:
            return f"idle for {self.idle_timeout:g}s"
        return None


class SessionTable:
    """Pinned sessions by pin key; a bounded pool per key; idle and age expiry."""

    def __init__(self, factory: SessionFactory, redactor: SecretRedactor) -> None:
        self._key = os.urandom(32)
        self._factory = factory
        self._redactor = redactor
        self._cond = threading.Condition()
        self._pins: dict[str, list[Slot]] = {}
        self._closer = concurrent.futures.ThreadPoolExecutor(max_workers=CLOSE_WORKERS, thread_name_prefix="close")

    @property
    def redactor(self) -> SecretRedactor:
        return self._redactor

    def pin_of(self, spec: SessionSpec) -> str:
        return spec.pin_key(self._key)

    def count(self) -> int:
        with self._cond:
            return sum(len(slots) for slots in self._pins.values())

    def _remove(self, slot: Slot) -> None:
        slots = self._pins.get(slot.pin, [])
        if slot in slots:
            slots.remove(slot)
        if not slots:
            self._pins.pop(slot.pin, None)
            self._redactor.forget(slot.pin)
        self._cond.notify_all()

    def acquire(
        self,
        spec: SessionSpec,
        *,
        idle_timeout: float,
        max_age: float,
        pool_max: int,
        wait: float,
        abandoned: t.Callable[[], bool] = lambda: False,
    ) -> tuple[Slot, str]:
        """Take a session for one task; returns (slot, 'opened' | 'reused' | 'reopened: why').

        A task whose client went away while it waited for a busy pool stops waiting (`abandoned`).
        """
        pin = self.pin_of(spec)
        deadline = time.monotonic() + wait
        stale: list[tuple[Slot, str]] = []
        waiting = False
        try:
            with self._cond:
                self._redactor.register(pin, spec_secrets(spec))
                while True:
                    now = time.monotonic()
                    slots = self._pins.setdefault(pin, [])
                    for slot in [s for s in slots if not s.busy]:
                        slot.shorten_life(idle_timeout, max_age)  # a later run never extends a session's life
                        why = slot.expired(now)
                        if why or slot.doomed:
                            stale.append((slot, why or "closed on request"))
                            slots.remove(slot)
                    idle = [s for s in slots if not s.busy]
                    if idle:
                        slot = max(idle, key=lambda s: s.last_used)
                        break
                    # Back-to-back tasks: the previous one is only finishing; wait for its warm session, open none.
                    finishing = any(s.finishing and not s.doomed for s in slots)
                    if not finishing and len(slots) < max(1, pool_max):
                        slot = Slot(
                            pin=pin, session=None, describe=spec.describe(), host=spec.host,
                            idle_timeout=idle_timeout, max_age=max_age,
                        )
                        try:
                            slot.session = self._factory(spec, events=self._event_sink(slot))
                        except BaseException:
                            if not slots:  # no session holds this pin: forget its secrets as _remove would
                                self._pins.pop(pin, None)
                                self._redactor.forget(pin)
                            raise
                        slots.append(slot)
                        break
                    remaining = deadline - now
                    if abandoned():
                        raise ClientGone("the client went away while waiting for a free session")
                    if remaining <= 0:
                        raise PoolBusyError(
                            f"all {len(slots)} pinned sessions to {spec.host} stayed busy for {wait:g}s "
                            f"(pool size {pool_max}); nothing of this task ran. Raise ansible_psrp_persist_pool_size, "
                            "or run fewer tasks against this host at once"
                        )
                    if not waiting:
                        # Says why a task is slow to start; tests wait for this line to know a task is queued.
                        waiting = True
                        log.info("all %d pinned sessions to %s are busy (pool size %d): the task waits up to %gs "
                                 "for one to come free", len(slots), spec.host, pool_max, wait)
                    self._cond.wait(min(remaining, 0.5))
                slot.busy = True
                slot.shorten_life(idle_timeout, max_age)
                slot.events = []
        finally:
            # expired sessions already left the table: close them even when no session could be had
            for old, why in stale:
                self._close(old, why)
        try:
            status = str(slot.session.ensure_ready())
        except BaseException:
            self.release(slot, broken=True)
            raise
        return slot, status

    def _event_sink(self, slot: Slot) -> t.Callable[[str, str], None]:
        def sink(kind: str, detail: str) -> None:
            if len(slot.events) < 50:
                slot.events.append((kind, self._redactor.redact(str(detail))))

        return sink

    def release(self, slot: Slot, *, broken: bool = False, reason: str = "") -> None:
        """Give the session back after a task; a broken or doomed one is closed and dropped."""
        with self._cond:
            slot.busy = slot.finishing = False
            slot.last_used = time.monotonic()
            drop = broken or slot.doomed
            if drop:
                self._remove(slot)
            self._cond.notify_all()
        if drop:  # on the task's own thread, before its answer: the host's shell is gone when the task learns why
            self._close(slot, reason or ("unusable after an error" if broken else "closed on request"))

    def mark_finishing(self, slot: Slot) -> None:
        with self._cond:
            slot.finishing = True

    def _close_later(self, slot: Slot, why: str) -> concurrent.futures.Future[None]:
        """Close a session (network I/O: the host's pool and shell) on a closing worker, never the caller's thread.

        The reaper runs on the daemon's main thread, which also handles signals and expires every other host's
        sessions; a slow or dead host must not stall it.
        """
        return self._closer.submit(self._close, slot, why)

    def shutdown(self) -> None:
        """Finish the closes under way (each bounded by its transport's timeouts)."""
        self._closer.shutdown(wait=True)

    def _close(self, slot: Slot, why: str) -> None:
        log.info("closing session %s to %s (%s)", slot.id, slot.describe.get("endpoint"), why)
        try:
            if slot.session is not None:
                slot.session.close()
        except Exception as exc:  # closing a dead session may fail in many ways; it is gone either way
            log.info("closing session %s failed: %s: %s", slot.id, type(exc).__name__, exc)

    def close_where(self, match: t.Callable[[Slot], bool], why: str) -> int:
        """Close matching sessions now (idle) or when their task ends (busy); returns how many."""
        to_close: list[Slot] = []
        count = 0
        with self._cond:
            # A session whose task has answered and is only releasing its pipeline is closed now, not later.
            end = time.monotonic() + FINISHING_WAIT
            while any(match(s) and s.finishing for slots in self._pins.values() for s in slots):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
            for slots in list(self._pins.values()):
                for slot in list(slots):
                    if not match(slot):
                        continue
                    count += 1
                    if slot.busy:
                        slot.doomed = True
                    else:
                        self._remove(slot)
                        to_close.append(slot)
        # in parallel on the closing workers; the caller (close/reset/shutdown/exit) waits for them
        concurrent.futures.wait([self._close_later(slot, why) for slot in to_close])
        return count

    def reap(self) -> None:
        """Close idle sessions past their idle timeout or maximum age."""
        now = time.monotonic()
        expired: list[tuple[Slot, str]] = []
        with self._cond:
            for slots in list(self._pins.values()):
                for slot in list(slots):
                    why = None if slot.busy else slot.expired(now)
                    if why:
                        self._remove(slot)
                        expired.append((slot, why))
        for slot, why in expired:
            self._close_later(slot, why)

    def listing(self) -> list[dict[str, t.Any]]:
        now, wall = time.monotonic(), time.time()
        rows = []
        with self._cond:
            for slots in self._pins.values():
                for slot in slots:
                    stats = getattr(slot.session, "stats", None) or {}
                    d = slot.describe
                    rows.append(
                        {
                            "id": slot.id,
                            "pin": slot.pin[:12],
                            "host": slot.host,
                            "endpoint": d.get("endpoint"),
                            "user": d.get("user"),
                            "auth": d.get("auth"),
                            "proxy": d.get("proxy"),
                            "proxy_user": d.get("proxy_user"),
                            "state": "busy" if slot.busy else "idle",
                            "opened_at": slot.created_wall,
                            "age": round(now - slot.created, 3),
                            "idle": 0.0 if slot.busy else round(now - slot.last_used, 3),
                            "idle_timeout": slot.idle_timeout,
                            "max_age": slot.max_age,
                            "tasks": slot.tasks,
                            "reauths": transport_reauths(slot.session),
                            "reauth_reasons": reauth_reasons(slot.session),
                            "pool_opens": stats.get("pool_opens", 0),
                            "pool_rebuilds": stats.get("pool_rebuilds", 0),
                            "rebuild_reasons": list(stats.get("rebuild_reasons", []))[-5:],
                            "pool_recycles": stats.get("pool_recycles", 0),
                            "recycle_reasons": list(stats.get("recycle_reasons", []))[-5:],
                            "restores": stats.get("restores", 0),
                            "memory_used_mb": stats.get("memory_used_mb"),
                            "last_used_at": wall - (now - slot.last_used),
                        }
                    )
        return rows


# -- the server ----------------------------------------------------------------------


def request_spec(request: t.Mapping[str, t.Any]) -> tuple[SessionSpec, list[tuple[str, str]]]:
    """The session a request names, and what validating it noted: the plugin's option values (a task's worker
    sends them unvalidated, sparing every fork the spec module) are built here, before any host is contacted;
    a spec the caller built arrives whole. A ConfigError goes back to the task as the first reply."""
    if "options" in request:
        notes: list[tuple[str, str]] = []
        spec = build_spec(dict(request["options"]), dict(request.get("environ") or {}), notes)
        return spec, notes
    return SessionSpec.from_wire(request["spec"]), []


class ClientGone(TaskInterrupted):
    """The client closed its socket (task timeout, Ctrl-C, a killed worker) while the daemon served its task."""


def peer_gone(sock: socket.socket) -> bool:
    """Whether the client closed its end (EOF or reset), without waiting and without consuming what it sent."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    if not poller.poll(0):
        return False  # nothing to read: the client is still there, waiting for its answer
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class PinServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, listener: socket.socket, table: SessionTable, paths: PinPaths, *,
                 max_clients: int = MAX_CLIENTS) -> None:
        super().__init__(paths.socket, PinHandler, bind_and_activate=False)
        self.max_clients = max_clients
        self._client_slots = threading.BoundedSemaphore(max_clients)
        self.socket.close()
        self.socket = listener
        self.table = table
        self.paths = paths
        self.uid = os.geteuid()
        self.started = time.time()
        self.active = 0
        self.last_activity = time.monotonic()
        self.stop_requested = threading.Event()
        self._active_lock = threading.Lock()

    def verify_request(self, request: t.Any, client_address: t.Any) -> bool:
        try:
            uid = proto.peer_uid(request)
        except OSError as exc:
            log.warning("refused a connection: cannot read its peer credentials (%s)", exc)
            return False
        if uid != self.uid:
            log.warning("refused a connection from uid %d (this daemon serves uid %d only)", uid, self.uid)
            return False
        return True

    def track(self, delta: int) -> None:
        with self._active_lock:
            self.active += delta
            self.last_activity = time.monotonic()

    def handle_error(self, request: t.Any, client_address: t.Any) -> None:
        log.exception("unexpected error while serving a request")

    def process_request(self, request: t.Any, client_address: t.Any) -> None:
        """A thread per request, at most max_clients at once; beyond that the client gets an error, not a thread."""
        if not self._client_slots.acquire(blocking=False):
            log.warning("refused a request: %d requests are being served already", self.max_clients)
            try:
                request.settimeout(1.0)  # the accept thread writes this answer: never wait on the client long
                busy = TransportError(
                    f"the pin daemon already serves {self.max_clients} requests at once; the task was not started. "
                    "Lower forks, or let the running tasks finish."
                )
                proto.send_json(request, {"error": proto.error_to_wire(busy)})
            except (proto.PeerClosed, OSError):
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._client_slots.release()
            raise

    def process_request_thread(self, request: t.Any, client_address: t.Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._client_slots.release()


class PinHandler(socketserver.BaseRequestHandler):
    server: PinServer

    def setup(self) -> None:
        self.server.track(+1)
        self.client_gone = False

    def finish(self) -> None:
        self.server.track(-1)

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(CLIENT_IO_TIMEOUT)
        try:
            # a client's message, read as untrusted: each field is converted and checked where it is used
            request = t.cast("proto.Request", proto.recv_json(sock))
        except (proto.PeerClosed, proto.ProtocolError, OSError) as exc:
            log.info("dropped a connection before its request: %s", exc)
            return
        op = str(request.get("op", ""))
        # the request's own secrets stay redacted until its answer is sent, even when a failed first open has
        # already made the table forget its pin's secrets
        owner = f"request:{id(self)}"
        redactor = self.server.table.redactor
        redactor.register(owner, wire_secrets(request.get("spec")) | option_secrets(request.get("options")))
        try:
            self._serve(sock, request, op, redactor)
        finally:
            redactor.forget(owner)

    def _serve(self, sock: socket.socket, request: proto.Request, op: str, redactor: SecretRedactor) -> None:
        try:
            if request.get("v") != PROTOCOL_VERSION:
                raise ConfigError(
                    f"pin protocol version mismatch: client {request.get('v')}, daemon {PROTOCOL_VERSION}"
                )
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise ConfigError(f"unknown pin daemon request {op!r}")
            handler(sock, request)
        except (proto.PeerClosed, ClientGone) as exc:
            log.info("%s: the client went away: %s", op, exc)
        except Exception as exc:
            if not isinstance(exc, PinnedError):
                log.exception("%s failed unexpectedly", op)
            else:
                log.info("%s failed: %s: %s", op, type(exc).__name__, exc)
            try:
                wire = proto.error_to_wire(exc)
                wire["message"] = redactor.redact(str(wire["message"]))  # the task's output must not show them either
                proto.send_json(sock, {"error": wire})
            except (proto.PeerClosed, OSError):
                pass

    # -- simple requests -----------------------------------------------------

    def op_hello(self, sock: socket.socket, request: proto.Request) -> None:
        proto.send_json(sock, self._hello())

    def _hello(self) -> proto.HelloReply:
        return {
            "ok": True,
            "version": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uid": os.geteuid(),
            "started": self.server.started,
            "sessions": self.server.table.count(),
            "clients": self.server.active,  # connections being served, this one included
            "serving": self.server.active - 1,  # requests in flight besides this one
            "dir": self.server.paths.dir,
        }

    def op_list(self, sock: socket.socket, request: proto.Request) -> None:
        proto.send_json(sock, {"ok": True, "sessions": self.server.table.listing(), "daemon": self._hello()})

    def op_close(self, sock: socket.socket, request: proto.CloseRequest) -> None:
        host = request.get("host")
        if host is None:
            count = self.server.table.close_where(lambda s: True, "closed on request (all)")
        else:
            wanted = str(host).strip("[]").lower()
            count = self.server.table.close_where(lambda s: s.host.lower() == wanted, f"closed on request ({host})")
        proto.send_json(sock, {"ok": True, "closed": count})

    def op_reset(self, sock: socket.socket, request: proto.SessionRequest) -> None:
        pin = self.server.table.pin_of(request_spec(request)[0])
        count = self.server.table.close_where(lambda s: s.pin == pin, "reset_connection")
        proto.send_json(sock, {"ok": True, "closed": count})

    def op_shutdown(self, sock: socket.socket, request: proto.Request) -> None:
        count = self.server.table.close_where(lambda s: True, "daemon shutdown")
        proto.send_json(sock, {"ok": True, "closed": count, "pid": os.getpid()})
        self.server.stop_requested.set()

    # -- session requests ----------------------------------------------------

    def _session_op(self, sock: socket.socket, request: proto.SessionRequest, work: t.Callable[[Slot], TaskReport]) -> None:
        """Acquire a session, say ready, run `work`, reply, then finish the pipeline and release."""
        spec, notes = request_spec(request)
        table = self.server.table
        slot, status = table.acquire(
            spec,
            # a request names these; the documented defaults stand in for one that does not
            idle_timeout=float(request.get("idle_timeout", default("persist_idle_timeout"))),
            max_age=float(request.get("max_age", default("persist_max_age"))),
            pool_max=int(request.get("pool_max", default("persist_pool_size"))),
            wait=float(request.get("pool_wait") or DEFAULT_POOL_WAIT),
            abandoned=self.client_went_away,
        )
        if hasattr(slot.session, "max_pool_tasks"):
            max_tasks = int(request.get("max_tasks") or 0)
            slot.session.max_pool_tasks = max_tasks if max_tasks > 0 else None  # read when the task ends
        reauths_before = reauth_reasons(slot.session)
        rebuilds_before = pool_rebuilds(slot.session)
        broken, reason = False, ""
        try:
            log.info("%s on %s: session %s %s", request.get("op"), spec.endpoint, slot.id, status)
            ready: proto.ReadyReply = {"ready": True, "session": status, "session_id": slot.id}
            if notes:
                ready["notes"] = [list(n) for n in notes]
            if request.get("op") == "put":
                ready["chunk_size"] = int(slot.session.put_chunk_size())
            proto.send_json(sock, ready)
            slot.tasks += 1
            try:
                with command_deadline(slot.session, request.get("deadline_s")):
                    reply = work(slot)
            except TaskInterrupted as exc:
                # T2: the client went away and the session stopped the task's pipeline; it serves the next task
                log.info("%s on %s: session %s: %s; its pipeline was stopped", request.get("op"), spec.endpoint,
                         slot.id, exc)
                raise ClientGone(str(exc)) from exc
            except Exception as exc:
                if self.client_gone or isinstance(exc, (proto.PeerClosed, ClientGone)):
                    broken, reason = True, "the client went away mid-task"
                    raise ClientGone(str(exc)) from exc
                broken = session_unusable(exc)
                reason = f"{type(exc).__name__} left it unusable" if broken else ""
                raise
            reply.update(self._session_info(slot, status, reauths_before, rebuilds_before))
            table.mark_finishing(slot)
            proto.send_json(sock, reply)
            self._finish_pending(slot)
        except proto.PeerClosed:
            # The reply could not be sent; the host side finished normally, the session is fine.
            self._finish_pending(slot)
            raise
        finally:
            table.release(slot, broken=broken, reason=reason)

    def _finish_pending(self, slot: Slot) -> None:
        finish = getattr(slot.session, "finish_pending", None)
        if finish is None:
            return
        try:
            finish()
        except Exception as exc:  # the task already succeeded; a failure here only costs a host operation slot
            log.info("finishing the pipeline of session %s failed: %s", slot.id, exc)

    def _session_info(
        self, slot: Slot, status: str, reauths_before: dict[str, int], rebuilds_before: int
    ) -> TaskReport:
        info = task_report(slot.session, status, reauths_before, rebuilds_before)
        info["session_id"], info["tasks"], info["daemon_pid"] = slot.id, slot.tasks, os.getpid()
        info["events"] = [list(e) for e in slot.events]
        return info

    def client_went_away(self) -> bool:
        """The session's stop check (T2): has the client closed its socket? Asked between Receives."""
        if not self.client_gone and peer_gone(self.request):
            self.client_gone = True
        return self.client_gone

    def _client_frames(self, sock: socket.socket) -> t.Iterator[tuple[bytes, t.Any]]:
        """Frames the client streams after "ready", up to its end marker."""
        while True:
            try:
                kind, value = proto.recv_frame(sock)
            except (proto.PeerClosed, OSError) as exc:
                self.client_gone = True
                raise ClientGone(f"the client stopped sending: {exc}") from exc
            if kind == proto.KIND_JSON and value.get("end"):
                return
            yield kind, value

    def op_exec(self, sock: socket.socket, request: proto.ExecRequest) -> None:
        def work(slot: Slot) -> TaskReport:
            frames = self._client_frames(sock) if request.get("input") else None

            def lines() -> t.Iterator[str]:
                for kind, value in frames or ():
                    if kind != proto.KIND_JSON or "in" not in value:
                        raise proto.ProtocolError("exec input must be JSON frames {'in': line}")
                    yield str(value["in"])

            current = {"stream": "stdout"}

            def send_output(stream: str, data: bytes) -> None:
                # stdout and stderr as raw data frames while the pipeline runs: no whole copy, no JSON escaping
                try:
                    if stream != current["stream"]:
                        proto.send_json(sock, {"stream": stream})
                        current["stream"] = stream
                    proto.send_data(sock, data)
                except (proto.PeerClosed, OSError) as exc:
                    self.client_gone = True
                    raise ClientGone(f"the client went away while receiving the output: {exc}") from exc

            max_output = request.get("max_output")
            try:
                result = slot.session.run(
                    str(request["script"]),
                    arguments=request.get("arguments"),
                    input_data=lines() if frames is not None else None,
                    verbose_errors=bool(request.get("verbose_errors", False)),
                    should_stop=self.client_went_away,
                    output=send_output,
                    max_output=int(max_output) if max_output else None,
                )
            finally:
                if frames is not None and not self.client_gone:
                    for _unread in frames:  # drain what the session did not read so the client is not left blocked
                        pass
            return {"rc": int(result.rc)}

        self._session_op(sock, request, work)

    def op_put(self, sock: socket.socket, request: proto.PutRequest) -> None:
        def work(slot: Slot) -> TaskReport:
            size = max(1024, int(slot.session.put_chunk_size()))
            frames = self._client_frames(sock)
            received = {"bytes": 0}

            def chunks() -> t.Iterator[bytes]:
                buf = bytearray()
                for kind, value in frames:
                    if kind != proto.KIND_DATA:
                        raise proto.ProtocolError("put data must be data frames")
                    received["bytes"] += len(value)
                    buf += value
                    while len(buf) >= size:
                        yield bytes(buf[:size])
                        del buf[:size]
                if buf:
                    yield bytes(buf)

            try:
                sha1 = slot.session.put_file(chunks(), str(request["out_path"]), should_stop=self.client_went_away)
            finally:
                if not self.client_gone:
                    for _unread in frames:
                        pass
            return {"sha1": sha1, "size": received["bytes"]}

        self._session_op(sock, request, work)

    def op_fetch(self, sock: socket.socket, request: proto.FetchRequest) -> None:
        def work(slot: Slot) -> TaskReport:
            digest = hashlib.sha1()
            sent = {"bytes": 0}

            def sink(data: bytes) -> None:
                if self.client_gone:
                    raise ClientGone("the client went away during fetch")
                digest.update(data)
                sent["bytes"] += len(data)
                try:
                    proto.send_data(sock, data)
                except (proto.PeerClosed, OSError) as exc:
                    self.client_gone = True
                    raise ClientGone(str(exc)) from exc

            kind = slot.session.fetch_file(str(request["in_path"]), sink, should_stop=self.client_went_away)
            return {"kind": kind, "sha1": digest.hexdigest(), "size": sent["bytes"]}

        self._session_op(sock, request, work)


# -- process life --------------------------------------------------------------------


def load_factory() -> SessionFactory:
    """The Session class, or a test stand-in named by an env var when (and only when) running under pytest."""
    target = os.environ.get(TEST_FACTORY_ENV)
    if target and os.environ.get("PYTEST_CURRENT_TEST"):
        module, _colon, name = target.partition(":")
        log.warning("using the test session factory %s", target)
        return t.cast(SessionFactory, getattr(importlib.import_module(module), name))
    from ._session import Session

    return Session


def _setup_logging(paths: PinPaths, dir_fd: int, level: str) -> SecretRedactor:
    redactor = SecretRedactor()
    handler = PrivateLogHandler(dir_fd, paths.log_name)
    handler.addFilter(redactor)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Library wire logs could carry auth tokens; they stay quiet even at DEBUG.
    for name in ("pypsrp", "psrpcore", "spnego", "urllib3", "requests", "requests_credssp", "h11", "gssapi"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor


def _bind(paths: PinPaths, dir_fd: int) -> socket.socket:
    """Bind the listening socket (mode 0600 via umask), replacing a stale socket file nobody answers on."""
    try:
        os.lstat(paths.socket_name, dir_fd=dir_fd)
        stale = True
    except FileNotFoundError:
        stale = False
    if stale:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(in_dir(dir_fd, paths.socket_name))
        except OSError:
            os.unlink(paths.socket_name, dir_fd=dir_fd)
        else:
            raise SystemExit(f"a pin daemon already listens on {paths.socket}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(in_dir(dir_fd, paths.socket_name))
    os.chmod(paths.socket_name, 0o600, dir_fd=dir_fd)
    listener.listen(128)
    return listener


def _daemonize() -> None:
    """Fork once more so the daemon is nobody's child; the parent prints the daemon's pid and exits."""
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _exit_when_idle(server: PinServer, listener_ino: int, grace: float, dir_fd: int) -> None:
    """Block until asked to stop, or until no session was held and no client served for `grace` seconds.

    The listener is removed under the directory lock: a client that finds no socket waits for the lock,
    then starts a new daemon, so an exiting daemon never strands a request.
    """
    empty_since: float | None = None
    while True:
        stop = server.stop_requested.wait(_REAP_TICK)
        if not stop:
            server.table.reap()
            now = time.monotonic()
            empty = server.active == 0 and server.table.count() == 0
            empty_since = (empty_since or now) if empty else None
            if empty_since is None or now - empty_since < grace:
                continue
        with DirLock(server.paths.lock, timeout=10.0, dir_fd=dir_fd):
            if not stop and (server.active or server.table.count()):
                empty_since = None
                continue
            try:
                name = server.paths.socket_name
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino == listener_ino:
                    os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            server.shutdown()
            server.server_close()
            return


def main(argv: t.Sequence[str] | None = None) -> int:
    """Entry point of the daemon process."""
    parser = argparse.ArgumentParser(prog="pin-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="persist root; the daemon uses <dir>/pinned-winrm-<uid>")
    parser.add_argument("--exit-grace", type=float, default=DEFAULT_EXIT_GRACE)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--foreground", action="store_true", help="do not fork into the background")
    args = parser.parse_args(argv)

    os.umask(0o077)
    try:
        paths = PinPaths(args.dir)
        paths.ensure_dir()
        dir_fd = paths.open_dir()
        # before the fork: a refused log is reported to the client that starts us, not to /dev/null
        redactor = _setup_logging(paths, dir_fd, args.log_level)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    no_core_dumps()  # before the socket listens, so before the first secret arrives
    raise_open_files_limit()
    listener = _bind(paths, dir_fd)
    listener_ino = os.stat(paths.socket_name, dir_fd=dir_fd, follow_symlinks=False).st_ino
    if not args.foreground:
        _daemonize()

    table = SessionTable(load_factory(), redactor)
    server = PinServer(listener, table, paths)
    signal.signal(signal.SIGTERM, lambda *_signal: server.stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_signal: server.stop_requested.set())
    log.info("pin daemon %d serving %s (protocol %d)", os.getpid(), paths.socket, PROTOCOL_VERSION)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="accept", daemon=True)
    serving.start()
    _exit_when_idle(server, listener_ino, args.exit_grace, dir_fd)
    # Requests accepted just before the listener closed still get their answer (bounded wait).
    deadline = time.monotonic() + CLIENT_IO_TIMEOUT
    while server.active and time.monotonic() < deadline:
        time.sleep(0.05)
    closed = table.close_where(lambda s: True, "daemon exit")
    table.shutdown()
    log.info("pin daemon %d exits (%d sessions closed)", os.getpid(), closed)
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
