"""What the connection plugin calls: PinClient (persistence on) and LocalRunner (off), one interface.

PinClient talks to the per-user pin daemon over its UNIX socket, starting
the daemon on first use (race-free across forks: flock, re-check, spawn, wait
bounded). LocalRunner runs the same operations on an in-process Session that
lives for one task (the plugin calls ``release()`` at the end of each task).

Both offer:
    exec(spec, script, *, arguments=None, input_lines=None, verbose_errors=False, idle_timeout, max_age,
         max_output=None) -> (ExecResult, info)
    put_file(spec, in_path, out_path, *, idle_timeout, max_age) -> info
    fetch_file(spec, in_path, out_path, *, idle_timeout, max_age) -> info
    reset(spec) -> int;  list_sessions() -> list[dict];  close(host) -> int;  release() -> None
where ``info["session"]`` is 'opened', 'reused' or 'reopened: <why>' and
``info["reauths"]`` counts the transport's re-authentications during the call.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import typing as t

from . import _pin_protocol as proto
from ._errors import LocalFileError, TransportError
from ._pin_paths import PROTOCOL_VERSION, TRUST_ENV, DirLock, PinPaths
from ._spec import SessionSpec

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_AGE = 3600.0
DEFAULT_POOL_MAX = 2
DEFAULT_MAX_TASKS = 100  # ansible_psrp_persist_max_tasks (docs/pinning.md, "Recycling")

DAEMON_DIED = "the pin daemon died during the task; the task's outcome on the host is unknown"

# The daemon's environment is built from this allow-list, never from what the starting run happens to have:
# the process basics, the trust and identity variables (which also pick the daemon, _pin_paths.TRUST_ENV) and the
# test suite's own hooks (honoured by the daemon only under pytest). Secrets (SSHPASS, ANSIBLE_BECOME_PASS, ...),
# proxies (R7: the spec says which proxy), KRB5CCNAME (the spec carries the run's cache) and debugging sinks
# (SSLKEYLOGFILE, KRB5_TRACE) stay out.
_PLAIN_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "XDG_RUNTIME_DIR"})
_PLAIN_ENV_PREFIXES = ("LC_",)
_TEST_ENV = re.compile(r"^(PYTEST_CURRENT_TEST|PINNED_WINRM_TEST_[A-Z0-9_]+)$")


class ExecResult(t.NamedTuple):
    """Same shape as _session.ExecResult (kept here so the client never imports pypsrp)."""

    rc: int
    stdout: bytes
    stderr: bytes


def daemon_env(base: t.Mapping[str, str], pythonpath: str) -> dict[str, str]:
    """The daemon's environment from an allow-list of ours, with the collection on PYTHONPATH."""
    env = {
        k: v for k, v in base.items()
        if k in _PLAIN_ENV or k.startswith(_PLAIN_ENV_PREFIXES) or k in TRUST_ENV or _TEST_ENV.match(k)
    }
    existing = base.get("PYTHONPATH")
    env["PYTHONPATH"] = pythonpath + (os.pathsep + existing if existing else "")
    return env


def collection_sys_path_root() -> str:
    """The directory holding ``ansible_collections`` for this very package (what the daemon needs on sys.path)."""
    parts = __name__.split(".")
    root = os.path.abspath(__file__)
    for _part in parts:
        root = os.path.dirname(root)
    return root


def daemon_module() -> str:
    return f"{__package__}._pin_daemon"


class _BeforeReady(Exception):
    """The daemon went away before it said "ready": nothing of the task ran; retrying is safe."""


def _umask() -> int:
    """The process umask, read without changing it where /proc tells (os.umask can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # read by setting; a task's worker runs one thread here
    os.umask(mask)
    return mask


def _fetched_mode(out_path: str) -> int:
    """The mode ansible.builtin.psrp's open(out_path, 'wb') gives: an existing file's own, else 0666 minus umask."""
    try:
        return os.stat(out_path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _write_verified(out_path: str, receive: t.Callable[[t.Callable[[bytes], None]], dict[str, t.Any]]) -> dict[str, t.Any]:
    """Stream into a temp file beside out_path; rename only when `receive` returns (host hash verified).

    `receive(write)` calls write(chunk) per chunk and returns an info dict with "kind" and, when the bytes
    crossed a process boundary after the host's hash was verified, the "sha1" they must match. The file gets
    the mode ansible.builtin.psrp's would, set on the private temp file before it is moved into place.
    """
    directory = os.path.dirname(os.path.abspath(out_path)) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(out_path)}.", suffix=".pinned-tmp")
    except OSError as exc:
        raise LocalFileError(f"fetch_file: cannot write beside {out_path} on the controller: {exc}") from exc
    digest = hashlib.sha1()
    try:
        with os.fdopen(fd, "wb") as out:

            def write(chunk: bytes) -> None:
                digest.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise LocalFileError(f"fetch_file: writing {out_path} on the controller failed: {exc}") from exc

            info = receive(write)
        if info.get("kind") == "dir":
            os.unlink(tmp)  # like ansible.builtin.psrp: the caller creates directories
            return info
        if info.get("sha1") and info["sha1"] != digest.hexdigest():
            raise TransportError(
                f"fetch_file: the data written to {out_path} hashes to {digest.hexdigest()} but the host's file "
                f"hashes to {info['sha1']}; the file was not written"
            )
        try:
            os.chmod(tmp, _fetched_mode(out_path))  # still private to us until the rename
            os.replace(tmp, out_path)
        except OSError as exc:
            raise LocalFileError(f"fetch_file: cannot move the fetched file into {out_path}: {exc}") from exc
        return info
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class PinClient:
    """Runs tasks on pinned sessions held by the per-user pin daemon."""

    def __init__(
        self,
        persist_dir: str | None,
        *,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
        pool_max: int = DEFAULT_POOL_MAX,
        max_tasks: int = DEFAULT_MAX_TASKS,
        autostart: bool = True,
        log_level: str = "INFO",
        profile: str | None = None,
    ) -> None:
        # profile: the trust profile of the daemon to talk to (default: this process's environment's)
        self.paths = PinPaths(persist_dir, profile)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.pool_max = pool_max
        self.max_tasks = max_tasks  # a pinned pool is recycled after this many tasks (0: never for their count)
        self.autostart = autostart
        self.log_level = log_level
        self.daemon_pid: int | None = None

    # -- connecting and starting the daemon ---------------------------------------

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.paths.socket)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET):
                return None
            raise TransportError(f"cannot reach the pin daemon at {self.paths.socket}: {exc}") from exc
        uid = proto.peer_uid(sock)
        if uid != os.geteuid():
            sock.close()
            raise TransportError(
                f"the process listening on {self.paths.socket} runs as uid {uid}, not as you; refusing to send it "
                "credentials. Remove the socket."
            )
        return sock

    def _connect(self, start: bool) -> socket.socket | None:
        """A connected socket, starting the daemon if allowed and needed; None if none runs and start is False."""
        if start:
            self.paths.ensure_dir()
        elif os.path.isdir(self.paths.dir):
            self.paths.check_dir()
        else:
            return None
        sock = self._try_connect()
        if sock is not None or not start:
            return sock
        with DirLock(self.paths.lock, self.connect_timeout):
            sock = self._try_connect()  # another fork may have started it while we waited for the lock
            if sock is None:
                self._spawn()
                sock = self._try_connect()
        if sock is None:
            raise TransportError(f"the pin daemon started but does not answer on {self.paths.socket}")
        return sock

    def _spawn(self) -> None:
        """Start the daemon (we hold the lock); it returns once the socket listens, then forks away."""
        cmd = [
            sys.executable, "-m", daemon_module(),
            "--dir", self.paths.root,
            "--log-level", self.log_level,
        ]
        env = daemon_env(os.environ, collection_sys_path_root())
        log.debug("starting the pin daemon: %s", " ".join(cmd))
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                start_new_session=True,
                env=env,
                cwd=self.paths.dir,
            )
        except OSError as exc:
            raise TransportError(f"cannot start the pin daemon ({sys.executable}): {exc}") from exc
        try:
            out, err = proc.communicate(timeout=self.connect_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise TransportError(
                f"the pin daemon did not start within {self.connect_timeout:g}s; see {self.paths.log}"
            ) from None
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip()[-2000:]
            raise TransportError(f"the pin daemon failed to start (exit {proc.returncode}): {detail}")
        text = out.decode("ascii", "replace").strip()
        self.daemon_pid = int(text) if text.isdigit() else None

    # -- requests ----------------------------------------------------------------------

    def _simple(self, request: dict[str, t.Any], *, start: bool = False) -> dict[str, t.Any] | None:
        """One request, one reply; None when no daemon runs (and start is False)."""
        request = {"v": PROTOCOL_VERSION, **request}
        for attempt in range(2):
            sock = self._connect(start)
            if sock is None:
                return None
            try:
                proto.send_json(sock, request)
                reply = proto.recv_json(sock)
            except (proto.PeerClosed, ConnectionError) as exc:
                if attempt == 0:
                    continue  # the daemon was exiting; these requests have no effect on hosts
                raise TransportError(f"the pin daemon closed the connection: {exc}") from exc
            except (TimeoutError, proto.ProtocolError) as exc:
                raise TransportError(f"the pin daemon did not answer properly: {exc}") from exc
            finally:
                sock.close()
            if "error" in reply:
                raise proto.error_from_wire(reply["error"])
            return reply
        return None  # pragma: no cover - the loop returns or raises

    def _session_request(
        self,
        request: dict[str, t.Any],
        stream: t.Callable[[socket.socket, dict[str, t.Any]], None] | None = None,
        on_data: t.Callable[[bytes], None] | None = None,
        on_stream: t.Callable[[str], None] | None = None,
    ) -> dict[str, t.Any]:
        """exec/put/fetch: connect (starting the daemon), wait for "ready", stream, read the final reply.

        Data frames go to `on_data`; a {"stream": name} frame (exec output) to `on_stream`.
        """
        request = {
            "v": PROTOCOL_VERSION,
            "pool_max": self.pool_max,
            "pool_wait": self.command_timeout,
            "max_tasks": self.max_tasks,
            "deadline_s": self.command_timeout,  # the daemon stops the task at it and answers why
            **request,
        }
        for attempt in range(3):
            sock = self._connect(self.autostart)
            if sock is None:
                raise TransportError(f"no pin daemon runs at {self.paths.socket}")
            try:
                try:
                    proto.send_json(sock, request)
                    # The daemon bounds its wait for a free session by command_timeout; give its answer time to come.
                    sock.settimeout(None if self.command_timeout is None else self.command_timeout + self.connect_timeout)
                    ready = proto.recv_json(sock)
                    # the daemon's own answer at its deadline comes first; this only covers a daemon that cannot answer
                    sock.settimeout(None if self.command_timeout is None else self.command_timeout + self.connect_timeout)
                except (proto.PeerClosed, ConnectionError) as exc:
                    raise _BeforeReady(str(exc)) from exc
                if "error" in ready:
                    raise proto.error_from_wire(ready["error"])
                try:
                    if stream is not None:
                        stream(sock, ready)
                    while True:
                        kind, value = proto.recv_frame(sock)
                        if kind == proto.KIND_DATA:
                            if on_data is None:
                                raise proto.ProtocolError("unexpected data from the pin daemon")
                            on_data(value)
                            continue
                        if "error" in value:
                            raise proto.error_from_wire(value["error"])
                        if "stream" in value and on_stream is not None:
                            on_stream(str(value["stream"]))
                            continue
                        value.setdefault("session", ready.get("session"))
                        return value
                except (proto.PeerClosed, ConnectionError, proto.ProtocolError) as exc:
                    raise TransportError(f"{DAEMON_DIED} ({exc})") from exc
                except TimeoutError as exc:
                    raise TransportError(
                        f"the task did not finish within the command timeout ({self.command_timeout}s); "
                        "its outcome on the host is unknown"
                    ) from exc
            except _BeforeReady as exc:
                log.debug("the pin daemon went away before the task started (%s); retrying", exc)
                if attempt == 2:
                    raise TransportError(f"the pin daemon keeps closing the connection: {exc}") from None
                time.sleep(0.05 * (attempt + 1))
            except TimeoutError as exc:
                raise TransportError(
                    f"the pin daemon did not start the task within the command timeout ({self.command_timeout}s)"
                ) from exc
            finally:
                sock.close()
        raise TransportError("unreachable")  # pragma: no cover

    @staticmethod
    def _lifetime(idle_timeout: float, max_age: float) -> dict[str, float]:
        return {"idle_timeout": float(idle_timeout), "max_age": float(max_age)}

    # -- the plugin's operations --------------------------------------------------------

    def exec(
        self,
        spec: SessionSpec,
        script: str,
        *,
        arguments: t.Sequence[t.Any] | None = None,
        input_lines: t.Iterable[str] | None = None,
        verbose_errors: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
        max_output: int | None = None,
    ) -> tuple[ExecResult, dict[str, t.Any]]:
        """Run a PowerShell script on the pinned session for `spec`; input lines and output are streamed."""
        request = {
            "op": "exec",
            "spec": spec.to_wire(),
            "script": script,
            "arguments": list(arguments) if arguments is not None else None,
            "verbose_errors": verbose_errors,
            "input": input_lines is not None,
            "max_output": max_output,
            **self._lifetime(idle_timeout, max_age),
        }
        output = {"stdout": bytearray(), "stderr": bytearray()}
        current = {"stream": "stdout"}

        def stream(sock: socket.socket, ready: dict[str, t.Any]) -> None:
            for line in input_lines or ():
                proto.send_json(sock, {"in": line})
            proto.send_json(sock, {"end": True})

        def on_stream(name: str) -> None:
            if name not in output:
                raise proto.ProtocolError(f"unknown output stream {name!r} from the pin daemon")
            current["stream"] = name

        def on_data(data: bytes) -> None:
            buffer = output[current["stream"]]
            if max_output and len(output["stdout"]) + len(output["stderr"]) + len(data) > max_output:
                # the daemon bounds the output before sending; more than that is not a daemon of ours
                raise proto.ProtocolError("the pin daemon sent more output than the task's bound")
            buffer.extend(data)

        reply = self._session_request(request, stream if input_lines is not None else None, on_data, on_stream)
        return ExecResult(int(reply.pop("rc")), bytes(output["stdout"]), bytes(output["stderr"])), reply

    def put_file(
        self,
        spec: SessionSpec,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> dict[str, t.Any]:
        """Stream the local file `in_path` to `out_path` on the host; verified by SHA-1 end to end."""
        digest = hashlib.sha1()
        try:
            source = open(in_path, "rb")
        except OSError as exc:
            raise LocalFileError(f"put_file: cannot read {in_path} on the controller: {exc}") from exc
        request = {"op": "put", "spec": spec.to_wire(), "out_path": out_path, **self._lifetime(idle_timeout, max_age)}

        def stream(sock: socket.socket, ready: dict[str, t.Any]) -> None:
            while chunk := source.read(proto.DATA_CHUNK):
                digest.update(chunk)
                proto.send_data(sock, chunk)
            proto.send_json(sock, {"end": True})

        with source:
            reply = self._session_request(request, stream)
        if reply.get("sha1") != digest.hexdigest():
            raise TransportError(
                f"put_file: the host stored data hashing to {reply.get('sha1')} but {in_path} hashes to "
                f"{digest.hexdigest()}"
            )
        return reply

    def fetch_file(
        self,
        spec: SessionSpec,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> dict[str, t.Any]:
        """Stream `in_path` from the host into `out_path`, via a temp file renamed once verified."""
        request = {"op": "fetch", "spec": spec.to_wire(), "in_path": in_path, **self._lifetime(idle_timeout, max_age)}
        return _write_verified(out_path, lambda write: self._session_request(request, on_data=write))

    def reset(self, spec: SessionSpec) -> int:
        """Close the pinned sessions of this spec's pin key (meta: reset_connection); returns how many."""
        reply = self._simple({"op": "reset", "spec": spec.to_wire()})
        return int(reply["closed"]) if reply else 0

    def list_sessions(self) -> list[dict[str, t.Any]]:
        """The daemon's pinned sessions (secret-free rows); [] when no daemon runs."""
        reply = self._simple({"op": "list"})
        return list(reply["sessions"]) if reply else []

    def close(self, host: str | None) -> int:
        """Close the pinned sessions to `host` (all when None); returns how many."""
        reply = self._simple({"op": "close", "host": host})
        return int(reply["closed"]) if reply else 0

    def hello(self) -> dict[str, t.Any] | None:
        """The running daemon's identity (pid, version, sessions), or None when none runs."""
        return self._simple({"op": "hello"})

    def shutdown(self) -> dict[str, t.Any] | None:
        """Close every session and stop the daemon."""
        return self._simple({"op": "shutdown"})

    def release(self) -> None:
        """End of a task: the pinned session stays with the daemon, nothing to do."""


def running_daemons(persist_dir: str | None, *, connect_timeout: float = 10.0) -> list[PinClient]:
    """A client for every daemon with a socket in the persist directory, whatever its trust profile (CLI, tests)."""
    profiles = PinPaths(persist_dir).profiles()
    return [PinClient(persist_dir, autostart=False, connect_timeout=connect_timeout, profile=p) for p in profiles]


class LocalRunner:
    """The same operations on an in-process Session (persistence off): opened for one task, closed by release()."""

    def __init__(self, *, session_factory: t.Callable[..., t.Any] | None = None,
                 command_timeout: float | None = None) -> None:
        self._factory = session_factory
        self.command_timeout = command_timeout
        self._session: t.Any = None
        self._pin: str | None = None
        self._events: list[tuple[str, str]] = []
        self._rebuilds_before = 0
        self._key = os.urandom(32)

    def _take(self, spec: SessionSpec) -> tuple[t.Any, str, dict[str, int]]:
        pin = spec.pin_key(self._key)
        if self._session is not None and pin != self._pin:
            self.release()  # a different spec never rides this session
        if self._session is None:
            factory = self._factory
            if factory is None:
                from ._session import Session

                # one pool per task, as ansible.builtin.psrp: nothing to isolate from the next task
                factory = functools.partial(Session, isolate=False)
            self._session = factory(spec, events=lambda kind, detail: self._events.append((kind, detail)))
            self._pin = pin
        self._events = []
        session = self._session
        from ._pin_daemon import pool_rebuilds, reauth_reasons

        self._rebuilds_before = pool_rebuilds(session)
        try:
            status = str(session.ensure_ready())
        except BaseException:
            self.release()
            raise

        return session, status, reauth_reasons(session)

    def _info(self, status: str, before: dict[str, int]) -> dict[str, t.Any]:
        from ._pin_daemon import task_report

        return {
            **task_report(self._session, status, before, self._rebuilds_before),
            "tasks": (getattr(self._session, "stats", None) or {}).get("tasks", 0),
            "events": [list(e) for e in self._events],
            "daemon_pid": None,
        }

    def _call(self, work: t.Callable[[], t.Any]) -> t.Any:
        from ._pin_daemon import command_deadline

        try:
            with command_deadline(self._session, self.command_timeout):
                return work()
        except BaseException as exc:
            from ._pin_daemon import session_unusable

            if session_unusable(exc):
                self.release()
            raise

    def exec(
        self,
        spec: SessionSpec,
        script: str,
        *,
        arguments: t.Sequence[t.Any] | None = None,
        input_lines: t.Iterable[str] | None = None,
        verbose_errors: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
        max_output: int | None = None,
    ) -> tuple[ExecResult, dict[str, t.Any]]:
        """Run a PowerShell script on this task's session."""
        session, status, before = self._take(spec)
        result = self._call(
            lambda: session.run(script, arguments=arguments, input_data=input_lines, verbose_errors=verbose_errors,
                                max_output=max_output),
        )
        return ExecResult(int(result.rc), bytes(result.stdout), bytes(result.stderr)), self._info(status, before)

    def put_file(
        self,
        spec: SessionSpec,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> dict[str, t.Any]:
        """Stream the local file to the host in envelope-sized chunks."""
        session, status, before = self._take(spec)
        size = max(1024, int(session.put_chunk_size()))
        digest = hashlib.sha1()

        def chunks(source: t.BinaryIO) -> t.Iterator[bytes]:
            while chunk := source.read(size):
                digest.update(chunk)
                yield chunk

        try:
            source = open(in_path, "rb")
        except OSError as exc:
            raise LocalFileError(f"put_file: cannot read {in_path} on the controller: {exc}") from exc
        with source:
            sha1 = self._call(lambda: session.put_file(chunks(source), out_path))
        if sha1 != digest.hexdigest():
            raise TransportError(f"put_file: the host stored data hashing to {sha1} but {in_path} hashes to {digest.hexdigest()}")
        return {**self._info(status, before), "sha1": sha1, "size": os.path.getsize(in_path)}

    def fetch_file(
        self,
        spec: SessionSpec,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> dict[str, t.Any]:
        """Stream the host's file into out_path via a temp file renamed once the host hash verified."""
        session, status, before = self._take(spec)

        def receive(write: t.Callable[[bytes], None]) -> dict[str, t.Any]:
            # Session.fetch_file verified the host's SHA-1 over these very bytes; hashing them again here
            # would only compare the stream with itself
            kind = self._call(lambda: session.fetch_file(in_path, write))
            return {**self._info(status, before), "kind": kind}

        return _write_verified(out_path, receive)

    def reset(self, spec: SessionSpec) -> int:
        """Close this task's session if it belongs to `spec`."""
        if self._session is None or spec.pin_key(self._key) != self._pin:
            return 0
        self.release()
        return 1

    def list_sessions(self) -> list[dict[str, t.Any]]:
        """Nothing is pinned without persistence."""
        return []

    def close(self, host: str | None) -> int:
        """Close this task's session if it goes to `host` (or any host when None)."""
        if self._session is None or (host is not None and self._session.spec.host.lower() != host.lower()):
            return 0
        self.release()
        return 1

    def release(self) -> None:
        """End of the task: close the session (connection, authentication and pool go with it)."""
        session, self._session, self._pin = self._session, None, None
        if session is not None:
            try:
                session.finish_pending()
            except Exception as exc:
                log.debug("finishing the last pipeline failed: %s", exc)
            try:
                session.close()
            except Exception as exc:
                log.debug("closing the session failed: %s", exc)
