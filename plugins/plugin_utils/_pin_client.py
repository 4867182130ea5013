"""What the connection plugin calls with persistence on: PinClient, which runs tasks on the pin daemon.

PinClient talks to the per-user pin daemon over its UNIX socket, starting
the daemon on first use (_pin_start: race-free across forks: flock, re-check,
spawn, wait bounded). Every task's worker, a fresh fork, loads this module:
it imports nothing a task on a running daemon does not use (no spec module,
no pypsrp, no daemon start). _local_runner.LocalRunner (persistence off)
offers the same interface on an in-process Session.

Both satisfy ``_runner.Runner`` (exec, put_file, fetch_file, reset, list_sessions, close, release), returning
``_runner.ExecResult`` and ``_runner.TaskReport``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import socket
import tempfile
import time
import typing as t

from . import _pin_protocol as proto
from ._errors import LocalFileError, TransportError
from ._option_definitions import default
from ._pin_paths import PROTOCOL_VERSION, DirLock, PinPaths
from ._runner import ExecResult

if t.TYPE_CHECKING:  # a task's worker imports this module: the spec module only where a spec is built
    from ._runner import TaskReport
    from ._spec import SessionSpec

log = logging.getLogger(__name__)

# the documented defaults of ansible_psrp_persist_* (for callers that name none: the CLI, tests)
DEFAULT_IDLE_TIMEOUT = float(default("persist_idle_timeout"))
DEFAULT_MAX_AGE = float(default("persist_max_age"))
DEFAULT_POOL_MAX = int(default("persist_pool_size"))
DEFAULT_MAX_TASKS = int(default("persist_max_tasks"))  # docs/pinning.md, "Recycling"

DAEMON_DIED = "the pin daemon died during the task; the task's outcome on the host is unknown"

# The environment variables build_spec reads (R7's proxies, the CA bundles ansible.builtin.psrp honours, the run's
# Kerberos cache and client keytab): a task sends these, and only these, with its options to the daemon, whose own
# environment has none of them.
_SPEC_ENV = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                       "KRB5CCNAME", "KRB5_CLIENT_KTNAME"})  # matched in any case, as requests reads the proxies
# Those naming a file, resolved here: the daemon runs in another directory.
_PATH_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "KRB5CCNAME", "KRB5_CLIENT_KTNAME")


def _absolute_env(name: str, value: str) -> str:
    """A file-naming variable's value with a relative path made absolute (FILE: residuals of Kerberos too)."""
    if name.upper() not in _PATH_ENV or not value:
        return value
    kind, sep, residual = value.partition(":")
    if sep and kind.upper() != "FILE":
        return value  # another credential cache or keytab type (DIR:, KEYRING:, KCM:, MEMORY:...)
    path = residual if sep else value
    if os.path.isabs(path):
        return value
    return f"{kind}:{os.path.abspath(path)}" if sep else os.path.abspath(path)


class SessionOptions:
    """A session named by the plugin's option values and the environment variables build_spec reads.

    With persistence on, a task sends these and the pin daemon builds and validates the SessionSpec (the same
    build_spec, the same errors naming the setting) before anything reaches a host: the task's worker, a fresh
    fork per task, then never loads the spec module. (A plain class: a typing.NamedTuple costs each worker
    more to define than it saves.)
    """

    __slots__ = ("options", "environ")

    def __init__(self, options: dict[str, t.Any], environ: dict[str, str]) -> None:
        self.options = options
        self.environ = environ

    @classmethod
    def from_plugin(cls, options: t.Mapping[str, t.Any], environ: t.Mapping[str, str]) -> SessionOptions:
        # the names alone are scanned: os.environ decodes each value it hands out, and a worker needs a few
        return cls(dict(options), {k: _absolute_env(k, environ[k]) for k in environ if k.upper() in _SPEC_ENV})

    @property
    def host(self) -> str:
        """The host as configured (a label for messages; the daemon's spec normalises it)."""
        return str(self.options.get("remote_addr") or "")


def address_session(request: proto.SessionRequest, spec: SessionSpec | SessionOptions) -> None:
    """Add the fields that name the session: the options to validate, or a spec built by the caller."""
    if isinstance(spec, SessionOptions):
        request["options"], request["environ"] = spec.options, spec.environ
    else:
        request["spec"] = spec.to_wire()


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


def write_verified(out_path: str, receive: t.Callable[[t.Callable[[bytes], None]], TaskReport]) -> TaskReport:
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
        from ._pin_start import start_daemon  # the cold path: only the task that finds no daemon loads it

        with DirLock(self.paths.lock, self.connect_timeout):
            sock = self._try_connect()  # another fork may have started it while we waited for the lock
            if sock is None:
                self.daemon_pid = start_daemon(self.paths, self.connect_timeout, self.log_level)
                sock = self._try_connect()
        if sock is None:
            raise TransportError(f"the pin daemon started but does not answer on {self.paths.socket}")
        return sock

    # -- requests ----------------------------------------------------------------------

    def _simple(self, request: proto.Request, *, start: bool = False) -> dict[str, t.Any] | None:
        """One request, one reply; None when no daemon runs (and start is False)."""
        request = {**request, "v": PROTOCOL_VERSION}
        for attempt in range(2):
            sock = self._connect(start)
            if sock is None:
                return None
            try:
                reply = proto.send_request(sock, request) or proto.recv_json(sock)
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
        request: proto.SessionRequest,
        stream: t.Callable[[socket.socket, dict[str, t.Any]], None] | None = None,
        on_data: t.Callable[[bytes], None] | None = None,
        on_stream: t.Callable[[str], None] | None = None,
    ) -> TaskReport:
        """exec/put/fetch: connect (starting the daemon), wait for "ready", stream, read the final reply.

        Data frames go to `on_data`; a {"stream": name} frame (exec output) to `on_stream`.
        """
        envelope: proto.SessionRequest = {
            "v": PROTOCOL_VERSION,
            "pool_max": self.pool_max,
            "pool_wait": self.command_timeout,
            "max_tasks": self.max_tasks,
            "deadline_s": self.command_timeout,  # the daemon stops the task at it and answers why
        }
        request = {**envelope, **request}
        for attempt in range(3):
            sock = self._connect(self.autostart)
            if sock is None:
                raise TransportError(f"no pin daemon runs at {self.paths.socket}")
            try:
                try:
                    refused = proto.send_request(sock, request)
                    if refused is not None:
                        raise proto.error_from_wire(refused["error"])
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
                        if ready.get("notes"):
                            value.setdefault("notes", ready["notes"])
                        reply: TaskReport = value  # recv_frame: a JSON frame is a dict, here the task's report
                        return reply
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
    def _address(request: proto.SessionRequest, spec: SessionSpec | SessionOptions, idle_timeout: float,
                 max_age: float) -> None:
        """The session `request` runs on, and how long it may live idle and in all."""
        address_session(request, spec)
        request["idle_timeout"], request["max_age"] = float(idle_timeout), float(max_age)

    # -- the plugin's operations --------------------------------------------------------

    def exec(
        self,
        spec: SessionSpec | SessionOptions,
        script: str,
        *,
        arguments: t.Sequence[t.Any] | None = None,
        input_lines: t.Iterable[str] | None = None,
        verbose_errors: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
        max_output: int | None = None,
    ) -> tuple[ExecResult, TaskReport]:
        """Run a PowerShell script on the pinned session for `spec`; input lines and output are streamed."""
        request: proto.ExecRequest = {
            "op": "exec",
            "script": script,
            "arguments": list(arguments) if arguments is not None else None,
            "verbose_errors": verbose_errors,
            "input": input_lines is not None,
            "max_output": max_output,
        }
        self._address(request, spec, idle_timeout, max_age)
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
        spec: SessionSpec | SessionOptions,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> TaskReport:
        """Stream the local file `in_path` to `out_path` on the host; verified by SHA-1 end to end."""
        digest = hashlib.sha1()
        try:
            source = open(in_path, "rb")
        except OSError as exc:
            raise LocalFileError(f"put_file: cannot read {in_path} on the controller: {exc}") from exc
        request: proto.PutRequest = {"op": "put", "out_path": out_path}
        self._address(request, spec, idle_timeout, max_age)

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
        spec: SessionSpec | SessionOptions,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> TaskReport:
        """Stream `in_path` from the host into `out_path`, via a temp file renamed once verified."""
        request: proto.FetchRequest = {"op": "fetch", "in_path": in_path}
        self._address(request, spec, idle_timeout, max_age)
        return write_verified(out_path, lambda write: self._session_request(request, on_data=write))

    def reset(self, spec: SessionSpec | SessionOptions) -> int:
        """Close the pinned sessions of this spec's pin key (meta: reset_connection); returns how many."""
        request: proto.SessionRequest = {"op": "reset"}
        address_session(request, spec)
        reply = self._simple(request)
        return int(reply["closed"]) if reply else 0

    def list_sessions(self) -> list[dict[str, t.Any]]:
        """The daemon's pinned sessions (secret-free rows); [] when no daemon runs."""
        reply = self._simple({"op": "list"})
        return list(reply["sessions"]) if reply else []

    def close(self, host: str | None) -> int:
        """Close the pinned sessions to `host` (all when None); returns how many."""
        request: proto.CloseRequest = {"op": "close", "host": host}
        reply = self._simple(request)
        return int(reply["closed"]) if reply else 0

    def hello(self) -> proto.HelloReply | None:
        """The running daemon's identity (pid, version, sessions), or None when none runs."""
        return t.cast("proto.HelloReply | None", self._simple({"op": "hello"}))  # the daemon's op_hello answer

    def shutdown(self) -> proto.ClosedReply | None:
        """Close every session and stop the daemon."""
        return t.cast("proto.ClosedReply | None", self._simple({"op": "shutdown"}))  # op_shutdown's answer

    def release(self) -> None:
        """End of a task: the pinned session stays with the daemon, nothing to do."""


def running_daemons(persist_dir: str | None, *, connect_timeout: float = 10.0) -> list[PinClient]:
    """A client for every daemon with a socket in the persist directory, whatever its trust profile (CLI, tests)."""
    profiles = PinPaths(persist_dir).profiles()
    return [PinClient(persist_dir, autostart=False, connect_timeout=connect_timeout, profile=p) for p in profiles]
