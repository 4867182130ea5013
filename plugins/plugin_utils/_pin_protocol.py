"""Framing between the pin client and the pin daemon (one UNIX stream socket per request).

Hand-written on purpose: a frame is a 5-byte header (kind, length) and a
payload, smaller than any dependency; multiprocessing.connection frames the
same way but couples it to pickle and its own authentication handshake.

Frames:
  b"J" + u32 length + UTF-8 JSON object   (requests, replies, end markers)
  b"D" + u32 length + raw bytes           (file chunks and input lines: never base64, never whole files)

A request is one JSON frame. Session requests (exec/put/fetch) then go:
  daemon -> {"ready": true, "session": ..., "chunk_size": N}  or  {"error": {...}}
  client -> D frames ..., {"end": true}                       (exec input, put data)
  daemon -> D frames ...                                      (fetch data; exec stdout as it arrives)
  daemon -> {"stream": "stderr"}, D frames ...                (exec stderr, once the pipeline ended)
  daemon -> {"ok": true, ...}                                 or  {"error": {...}}
An exec's output never travels inside JSON: UTF-8 in data frames, so neither end holds it twice or escapes it.
Nothing of the task has run on the host before "ready", so a client that
loses the daemon before it may safely retry with a new daemon; after it, never.
"""

from __future__ import annotations

import json
import socket
import struct
import typing as t

from . import _errors

# -- the messages (JSON frames), typed ------------------------------------------------------------------------
# For the type checker only: every task's worker loads this module, and a TypedDict built at run time would
# compile its (postponed) annotations there each time. The daemon reads what a client sent as untrusted: each
# field is converted and checked where it is used, so these say what a well-formed message holds.
if t.TYPE_CHECKING:
    from ._runner import TaskReport

    # error_to_wire(): enough to re-raise the daemon's error as the same class on the client
    ErrorWire = t.TypedDict("ErrorWire", {"class": str, "classes": list[str], "message": str, "status": int},
                            total=False)

    class Request(t.TypedDict, total=False):
        """Every request: the protocol version and the operation (op_<op> in the daemon)."""

        v: int
        op: str  # hello, list, close, reset, shutdown, exec, put, fetch

    class CloseRequest(Request, total=False):
        host: str | None  # None: every host

    class SessionRequest(Request, total=False):
        """reset, and the envelope of exec/put/fetch: the session, the task's bounds on the pool and its time."""

        # what names the session: the plugin's options and environment to validate, or a built spec
        options: dict[str, t.Any]
        environ: dict[str, str]
        spec: dict[str, t.Any]  # SessionSpec.to_wire()
        idle_timeout: float
        max_age: float
        pool_max: int
        pool_wait: float | None
        max_tasks: int
        deadline_s: float | None  # ansible_psrp_persist_command_timeout

    class ExecRequest(SessionRequest, total=False):
        script: str
        arguments: list[t.Any] | None
        verbose_errors: bool
        input: bool  # input lines follow as {"in": line} frames, then {"end": true}
        max_output: int | None

    class PutRequest(SessionRequest, total=False):
        out_path: str  # data frames follow, then {"end": true}

    class FetchRequest(SessionRequest, total=False):
        in_path: str

    class ReadyReply(t.TypedDict, total=False):
        """A session request's first answer: the session is the task's; nothing ran on the host before it."""

        ready: bool
        session: str
        session_id: str
        notes: list[list[str]]
        chunk_size: int  # put: bytes per chunk the host takes

    class ErrorReply(t.TypedDict):
        error: ErrorWire

    class HelloReply(t.TypedDict, total=False):
        ok: bool
        version: int
        pid: int
        uid: int
        started: float
        sessions: int
        clients: int
        serving: int
        dir: str

    class ListReply(t.TypedDict, total=False):
        ok: bool
        sessions: list[dict[str, t.Any]]  # SessionTable.listing(): secret-free rows
        daemon: HelloReply

    class ClosedReply(t.TypedDict, total=False):
        ok: bool
        closed: int
        pid: int  # shutdown

    # frames inside a session request
    InputFrame = t.TypedDict("InputFrame", {"in": str})  # exec: one input line

    class EndFrame(t.TypedDict):
        end: bool

    class StreamFrame(t.TypedDict):
        stream: str  # exec: the data frames that follow are this stream's (stdout, stderr)

    Reply = t.Union[ReadyReply, ErrorReply, HelloReply, ListReply, ClosedReply, TaskReport]

_HEADER = struct.Struct("!cI")
KIND_JSON = b"J"
KIND_DATA = b"D"

# Bounds: a module payload (exec script) can be a few MiB; file data and output travel in small frames.
MAX_JSON_FRAME = 64 * 1024 * 1024
MAX_DATA_FRAME = 4 * 1024 * 1024
# Raw bytes per data frame the client and the daemon send (bounded buffers both ways).
DATA_CHUNK = 256 * 1024
# A frame's buffer grows with what arrives, at most this much per read: a header alone allocates nothing.
_RECV_STEP = 256 * 1024


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket (SO_PEERCRED: pid, uid, gid)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid


class PeerClosed(Exception):
    """The other end closed the socket (EOF) or reset it."""


class ProtocolError(Exception):
    """A frame that does not follow the format (wrong kind, too large, bad JSON)."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes; memory follows the bytes that arrived, not the length a header claims."""
    buf = bytearray()
    while len(buf) < size:
        try:
            data = sock.recv(min(size - len(buf), _RECV_STEP))
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise PeerClosed(str(exc)) from exc
        if not data:
            raise PeerClosed("end of stream" if not buf else "end of stream inside a frame")
        buf += data
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[bytes, t.Any]:
    """Read one frame: (KIND_JSON, dict) or (KIND_DATA, bytes)."""
    kind, length = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if kind == KIND_JSON:
        if length > MAX_JSON_FRAME:
            raise ProtocolError(f"JSON frame of {length} bytes exceeds {MAX_JSON_FRAME}")
        try:
            value = json.loads(_recv_exact(sock, length).decode("utf-8"))
        except ValueError as exc:
            raise ProtocolError(f"bad JSON frame: {exc}") from None
        except RecursionError:  # deeply nested arrays/objects: not a request of ours
            raise ProtocolError("bad JSON frame: nested too deeply") from None
        if not isinstance(value, dict):
            raise ProtocolError("a JSON frame must hold an object")
        return kind, value
    if kind == KIND_DATA:
        if length > MAX_DATA_FRAME:
            raise ProtocolError(f"data frame of {length} bytes exceeds {MAX_DATA_FRAME}")
        return kind, _recv_exact(sock, length)
    raise ProtocolError(f"unknown frame kind {kind!r}")


def recv_json(sock: socket.socket) -> dict[str, t.Any]:
    """Read one frame that must be JSON."""
    kind, value = recv_frame(sock)
    if kind != KIND_JSON:
        raise ProtocolError("expected a JSON frame, got data")
    return t.cast("dict[str, t.Any]", value)


def _send(sock: socket.socket, data: bytes | memoryview) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise PeerClosed(str(exc)) from exc


def send_json(sock: socket.socket, value: t.Mapping[str, t.Any]) -> None:
    payload = json.dumps(value, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_JSON_FRAME:
        raise ProtocolError(f"request of {len(payload)} bytes exceeds {MAX_JSON_FRAME}")
    _send(sock, _HEADER.pack(KIND_JSON, len(payload)) + payload)


def send_request(sock: socket.socket, request: t.Mapping[str, t.Any]) -> dict[str, t.Any] | None:
    """Send a request; None once sent, or the daemon's answer when it answered and closed before reading it.

    A daemon at its bound of clients writes its refusal from the accepting thread and closes without reading
    (it must not wait on a client there). A client that sends after that close gets EPIPE, but the refusal is
    already in its receive queue: read it, so the user sees why, not "the daemon closed the connection".
    """
    try:
        send_json(sock, request)
    except PeerClosed as exc:
        try:
            answer = recv_json(sock)
        except (PeerClosed, ProtocolError, OSError):
            raise exc from None
        if "error" not in answer:
            raise exc from None  # only a refusal can come before a request is read
        return answer
    return None


def send_data(sock: socket.socket, data: bytes) -> None:
    """Send raw bytes, split into frames of at most DATA_CHUNK."""
    view = memoryview(data)
    for start in range(0, len(view), DATA_CHUNK):
        part = view[start : start + DATA_CHUNK]
        _send(sock, _HEADER.pack(KIND_DATA, len(part)))
        _send(sock, part)


# -- errors over the socket ----------------------------------------------------


def error_to_wire(exc: BaseException) -> ErrorWire:
    """{class, classes, message, status}: the class names let the client re-raise the same class."""
    classes = [c.__name__ for c in type(exc).__mro__ if isinstance(c, type) and issubclass(c, _errors.PinnedError)]
    if classes:
        wire: ErrorWire = {"class": type(exc).__name__, "classes": classes, "message": str(exc)}
    elif isinstance(exc, OSError):  # a socket error nobody wrapped is still the network's (as in psrp.py)
        wire = {"class": "TransportError", "classes": ["TransportError", "PinnedError"],
                "message": f"{type(exc).__name__}: {exc}"}
    else:  # an exception of no engine class is a bug: the task fails, it is not unreachable
        wire = {"class": "UnexpectedError", "classes": ["UnexpectedError", "PinnedError"],
                "message": f"the pin daemon failed: unexpected {type(exc).__name__}: {exc}"}
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        wire["status"] = status
    return wire


def error_from_wire(wire: t.Mapping[str, t.Any]) -> _errors.PinnedError:
    """Rebuild the daemon's error as the nearest class known here (same module, same names)."""
    message = str(wire.get("message", "the pin daemon reported an error"))
    for name in list(wire.get("classes") or []) + [str(wire.get("class", ""))]:
        cls = getattr(_errors, str(name), None)
        if isinstance(cls, type) and issubclass(cls, _errors.PinnedError):
            if issubclass(cls, (_errors.HostError, _errors.ProxyError)):
                return cls(message, status=wire.get("status"))
            return cls(message)
    return _errors.PinnedError(message)
