"""The simulated Windows host's HTTP layer: WS-Management over HTTP and HTTPS on /wsman.

What it reproduces of Windows (HTTP.sys + the WinRM service):
- HTTP/1.1 keep-alive, `Server: Microsoft-HTTPAPI/2.0`, empty reason phrases,
  Content-Length framing (chunked request bodies accepted), 404 for other paths;
- authentication bound to the TCP connection (see _hostauth.py), the 401 offers
  Windows sends, `Connection: close` on a 401 that ends an exchange;
- MS-WSMV message encryption (see _msgenc.py); plain SOAP over http:// refused
  with 401 while AllowUnencrypted=false;
- bodies above MaxEnvelopeSize (plus the encryption framing) refused with 413.

HTTP/1.1 parsing is h11's; one thread per TCP connection, every read and write
bounded by a timeout so a slow or broken client cannot hold the host.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import inspect
import itertools
import logging
import pathlib
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import typing as t
import uuid

import h11

from tests.lab import _internal, _msgenc
from tests.lab._certs import LabCA
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._faults import Faults
from tests.lab._hostauth import AuthFailed, ConnectionAuth, HostAuthenticator

log = logging.getLogger(__name__)

SERVER = b"Microsoft-HTTPAPI/2.0"
SOAP_TYPE = "application/soap+xml;charset=UTF-8"
_RECV = 65536
_ACTION_RE = re.compile(rb"<(?:[\w.-]+:)?Action\b[^>]*>\s*([^<\s]+)\s*</", re.S)
_MESSAGE_ID_RE = re.compile(rb"<(?:[\w.-]+:)?MessageID\b[^>]*>\s*([^<\s]+)\s*</", re.S)

# HTTP.sys error pages (what it sends when the request never reaches WinRM).
_HTTPSYS_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
    "<HTML><HEAD><TITLE>{title}</TITLE>\r\n"
    '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    "<BODY><h2>{title}</h2>\r\n"
    "<hr><p>HTTP Error {code}. {text}</p>\r\n"
    "</BODY></HTML>\r\n"
)
_HTTPSYS_TEXT = {
    400: ("Bad Request", "The request is badly formed."),
    404: ("Not Found", "The requested resource is not found."),
    405: ("Method Not Allowed", "The method is not allowed."),
    503: ("Service Unavailable", "The service is unavailable."),
}


_CERT_CACHE: dict[tuple[t.Any, ...], tuple[pathlib.Path, pathlib.Path]] = {}
_CERT_CACHE_LOCK = threading.Lock()


class WSManServiceLike(t.Protocol):
    def handle(self, user: str, body: bytes) -> tuple[int, bytes]: ...

    def expire_shells(self) -> int: ...


class _Drop(Exception):
    """Close the TCP connection now without answering."""


@dataclasses.dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    www_authenticate: list[str] = dataclasses.field(default_factory=list)
    close: bool = False          # announce Connection: close and close after sending
    linger: bool = False         # the request was not read to its end: drain briefly before closing
    extra: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Conn:
    id: int
    sock: socket.socket
    peer: tuple[t.Any, ...]
    tls: bool
    auth: ConnectionAuth = dataclasses.field(default_factory=ConnectionAuth)
    peer_cert: bytes | None = None
    answered: int = 0


def _httpsys_page(code: int) -> bytes:
    title, text = _HTTPSYS_TEXT[code]
    return _HTTPSYS_PAGE.format(title=title, code=code, text=text).encode("ascii")


def _internal_error_fault(machine: str, relates_to: str) -> bytes:
    """A WS-Management InternalError fault, shaped as WinRM sends them (HTTP 500)."""
    return (
        '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"><s:Header>'
        "<a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body><s:Fault>"
        "<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code>"
        '<s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot process the request because '
        "of an internal error. </s:Text></s:Reason><s:Detail>"
        f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="1359" Machine="{machine}">'
        "<f:Message>An internal error occurred. </f:Message></f:WSManFault>"
        "</s:Detail></s:Fault></s:Body></s:Envelope>"
    ).encode("utf-8")


class WinRMHost:
    """One simulated Windows host: listeners on config.http_port and config.https_port."""

    idle_timeout_s = 120.0          # HTTP.sys IdleConnectionTimeout default
    read_timeout_s = 30.0           # a started request must arrive completely within this
    tls_handshake_timeout_s = 10.0
    max_header_bytes = 65536        # HTTP.sys MaxRequestBytes default is 16 KiB of headers; lab is lenient

    def __init__(
        self,
        config: HostConfig,
        *,
        ca: LabCA,
        service: WSManServiceLike,
        counters: Counters | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.config = config
        self.ca = ca
        self.service = service
        self.counters = counters if counters is not None else Counters()
        self.faults = faults if faults is not None else Faults()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._conns: dict[int, _Conn] = {}
        self._conn_threads: dict[int, threading.Thread] = {}
        self._ids = itertools.count(1)
        self._private_dir: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self.auth: HostAuthenticator | None = None
        self.cert_path: pathlib.Path | None = None
        self.key_path: pathlib.Path | None = None
        try:
            self._pass_address = "client_address" in inspect.signature(service.handle).parameters
        except (TypeError, ValueError):
            self._pass_address = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the listeners (port 0: a free port, written back into config) and serve."""
        if self._listeners:
            return
        self._stopping.clear()
        self._private_dir = tempfile.mkdtemp(prefix=f"lab-{self.config.name.lower()}-")
        name = self.config.name.lower()
        dns = [name, f"{name}.lab.test", "localhost"]
        if self.config.realm:
            dns.append(f"{name}.{self.config.realm.lower()}")
        ips = sorted({self.config.address, "127.0.0.1"})
        cert_path, key_path = self._server_certificate(dns, ips)
        self.cert_path, self.key_path = cert_path, key_path
        cert_der = ssl.PEM_cert_to_DER_cert(pathlib.Path(cert_path).read_text())
        self._ssl = self._server_ssl_context(cert_path, key_path)
        self.auth = HostAuthenticator(
            self.config, private_dir=pathlib.Path(self._private_dir), server_cert_der=cert_der,
            server_cert_path=pathlib.Path(cert_path), server_key_path=pathlib.Path(key_path),
        )
        try:
            http = self._listen(self.config.http_port)
            https = self._listen(self.config.https_port)
        except BaseException:
            self.stop()
            raise
        self.config.http_port = http.getsockname()[1]
        self.config.https_port = https.getsockname()[1]
        for sock, tls in ((http, False), (https, True)):
            thread = threading.Thread(
                target=self._accept_loop, args=(sock, tls), daemon=True,
                name=f"{self.config.name}-{'https' if tls else 'http'}-accept",
            )
            thread.start()
            self._threads.append(thread)
        log.info("host %s listening on %s http=%d https=%d", self.config.name, self.config.address,
                 self.config.http_port, self.config.https_port)

    def stop(self) -> None:
        """Close the listeners and every open client connection; wait for their threads."""
        self._stopping.set()
        for sock in self._listeners:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept() at once (Linux)
            except OSError:
                pass
            _close_quietly(sock)
        self._listeners = []
        with self._lock:
            conns = list(self._conns.values())
            threads = list(self._conn_threads.values())
        for conn in conns:
            _reset(conn.sock)
            _close_quietly(conn.sock)
        deadline = time.monotonic() + 5.0
        for thread in self._threads + threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self.auth is not None:
            self.auth.close()
        if self._private_dir:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def describe(self) -> dict[str, t.Any]:
        """Where the host listens and who may log on (lab test data)."""
        return {
            "name": self.config.name,
            "address": self.config.address,
            "http_port": self.config.http_port,
            "https_port": self.config.https_port,
            "users": [{"username": u, "password": p} for u, p in self.config.users.items()],
        }

    def drop_connections(self) -> int:
        """Fault: reset every open client connection now, as a host reboot or an idle-closing middlebox does."""
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            _reset(conn.sock)
        self.counters.incr("faults.dropped_connections", len(conns))
        return len(conns)

    def power_off(self) -> int:
        """The machine goes down: listeners closed (connecting is refused) and every connection reset."""
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for sock in listeners:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            _close_quietly(sock)
        dropped = self.drop_connections()
        self.counters.incr("power_off")
        return dropped

    def power_on(self) -> None:
        """The machine booted: listen again on the same ports."""
        if self._stopping.is_set() or self._listeners:
            return
        for port, tls in ((self.config.http_port, False), (self.config.https_port, True)):
            sock = self._listen(port)
            thread = threading.Thread(target=self._accept_loop, args=(sock, tls), daemon=True,
                                      name=f"{self.config.name}-{'https' if tls else 'http'}-accept")
            thread.start()
            self._threads.append(thread)
        self.counters.incr("power_on")

    def open_connections(self) -> int:
        """How many client TCP connections are open right now."""
        with self._lock:
            return len(self._conns)

    # -- sockets --------------------------------------------------------------------------------
    def _server_certificate(self, dns: list[str], ips: list[str]) -> tuple[pathlib.Path, pathlib.Path]:
        """The CA's certificate for this host name; a restarted or re-created host reuses it (RSA keys are slow)."""
        key = (str(self.ca.cert_path), self.config.name, tuple(dns), tuple(ips))
        with _CERT_CACHE_LOCK:
            cached = _CERT_CACHE.get(key)
            if cached and all(pathlib.Path(p).exists() for p in cached):
                return cached
            issued = self.ca.issue_server(self.config.name, dns, ips)
            _CERT_CACHE[key] = (pathlib.Path(issued[0]), pathlib.Path(issued[1]))
            return _CERT_CACHE[key]

    def _server_ssl_context(self, cert_path: t.Any, key_path: t.Any) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert_path), str(key_path))
        if "certificate" in self.config.auth:
            # Ask for a client certificate without requiring one, as an HTTPS listener with certificate auth does.
            ctx.load_verify_locations(cafile=str(self.ca.cert_path))
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.address, port))
        sock.listen(1024)
        sock.settimeout(0.5)  # the accept loop wakes up to notice stop()
        self._listeners.append(sock)
        return sock

    def _accept_loop(self, listener: socket.socket, tls: bool) -> None:
        while not self._stopping.is_set() and listener in self._listeners:
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set() or listener not in self._listeners:
                    return  # stopped, or closed by power_off()
                time.sleep(0.05)  # e.g. EMFILE: back off instead of spinning
                continue
            if self._stopping.is_set():
                _close_quietly(sock)
                return
            self.counters.incr("tcp_connections")
            conn = _Conn(id=next(self._ids), sock=sock, peer=peer, tls=tls)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name=f"{self.config.name}-conn-{conn.id}")
            with self._lock:
                self._conns[conn.id] = conn
                self._conn_threads[conn.id] = thread
            thread.start()

    # -- one connection -------------------------------------------------------------------------
    def _serve(self, conn: _Conn) -> None:
        assert self.auth is not None
        self.auth.bind_thread()
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if conn.tls:
                self._tls_handshake(conn)
            self._http_loop(conn)
        except (_Drop, OSError, ssl.SSLError, h11.RemoteProtocolError, TimeoutError):
            pass  # the client went away or sent what HTTP refuses; an injected drop
        except Exception as e:  # the lab's own bug (h11's LocalProtocolError too: the lab broke HTTP)
            _internal.lab_bug(f"connection {conn.id}", e, host=self.config.name, counters=self.counters)
        finally:
            _close_quietly(conn.sock)
            with self._lock:
                self._conns.pop(conn.id, None)
                self._conn_threads.pop(conn.id, None)

    def _tls_handshake(self, conn: _Conn) -> None:
        assert self._ssl is not None
        conn.sock.settimeout(self.tls_handshake_timeout_s)
        wrapped = self._ssl.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
        conn.sock = wrapped
        with self._lock:
            if conn.id in self._conns:
                self._conns[conn.id] = conn  # stop() must close the TLS socket
        wrapped.do_handshake()
        self.counters.incr("tls_handshakes")
        conn.peer_cert = wrapped.getpeercert(binary_form=True)

    def _recv(self, conn: _Conn, timeout: float) -> bytes:
        conn.sock.settimeout(timeout)
        data = conn.sock.recv(_RECV)
        if data:
            self.counters.incr("bytes_in", len(data))
        return data

    def _send(self, conn: _Conn, data: bytes | None) -> None:
        if not data:
            return
        conn.sock.settimeout(self.read_timeout_s)
        self.counters.incr("bytes_out", len(data))
        conn.sock.sendall(data)

    def _http_loop(self, conn: _Conn) -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        while not self._stopping.is_set():
            try:
                request, body, too_large = self._read_request(conn, h)
            except h11.RemoteProtocolError as e:
                self._bad_request(conn, h, e)
                return
            if request is None:
                return
            self.counters.incr("http_requests")
            started = time.monotonic()
            log_event: dict[str, t.Any] = {
                "kind": "http", "conn": conn.id, "tls": conn.tls, "method": request.method.decode("ascii", "replace"),
                "path": request.target.decode("ascii", "replace")[:200], "request_type": _header(request, b"content-type"),
                "request_bytes": len(body),
            }
            try:
                if too_large:
                    self.counters.incr("rejected.envelope_size")
                    log_event["reason"] = "envelope_size"
                    reply = _Reply(413, close=True, linger=True)
                else:
                    reply = self._dispatch(conn, request, body, log_event)
            except _Drop:
                log_event.update(status=None, reason=log_event.get("reason") or "dropped")
                self._record(conn, log_event, started)
                raise
            action = log_event.get("action")
            if action and self.faults.take_answer_hold(action):
                log_event["answer_held"] = True
                self.counters.incr(f"faults.answer_held.{action}")
                if not self.faults.hold({"action": action, "conn": conn.id, "answer": True}, self._stopping):
                    return
            delay = float(self.faults.get("delay_response_s") or 0.0)
            if delay > 0:
                log_event["delay_s"] = delay  # the log says which answers the switch delayed
                if self._stopping.wait(delay):
                    return
            if self.faults.get("close_after_each_response"):
                reply.close = True
            # Counted and logged before the bytes leave, so a client that got its answer sees the counters.
            conn.answered += 1
            log_event.update(status=reply.status, response_type=reply.content_type, response_bytes=len(reply.body))
            self._record(conn, log_event, started)
            self._write_reply(conn, h, reply)
            limit = self.faults.get("close_after_requests")
            if reply.linger:
                self._linger(conn)
            if reply.close or h.our_state is h11.MUST_CLOSE:
                return
            if limit is not None and conn.answered >= int(limit):
                return  # an abrupt close, as a host or middlebox dropping the connection does
            h.start_next_cycle()

    def _bad_request(self, conn: _Conn, h: h11.Connection, error: h11.RemoteProtocolError) -> None:
        """Answer a malformed request as HTTP.sys does (its error page), then close."""
        self.counters.incr("rejected.bad_request")
        status = error.error_status_hint if error.error_status_hint in _HTTPSYS_TEXT else 400
        self.counters.record(kind="http", conn=conn.id, tls=conn.tls, status=status, reason="bad_request",
                             detail=str(error)[:200], user=conn.auth.user)
        try:  # h11 lets a server answer a request it could not parse; if it cannot, just close
            self._write_reply(conn, h, _Reply(status, _httpsys_page(status), "text/html; charset=us-ascii", close=True))
        except (OSError, h11.LocalProtocolError):
            pass

    def _linger(self, conn: _Conn, seconds: float = 1.0, limit: int = 4 << 20) -> None:
        """Half-close and discard what the client still sends, so a reset does not eat the answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            drained = 0
            while drained < limit and (left := deadline - time.monotonic()) > 0:
                conn.sock.settimeout(left)
                data = conn.sock.recv(_RECV)
                if not data:
                    break
                drained += len(data)
                self.counters.incr("bytes_in", len(data))
        except (OSError, ssl.SSLError):
            pass

    def _record(self, conn: _Conn, event: dict[str, t.Any], started: float) -> None:
        event.update(user=conn.auth.user, scheme=conn.auth.scheme, mech=conn.auth.mech,
                     duration_s=round(time.monotonic() - started, 4))
        self.counters.record(**event)

    def _read_request(self, conn: _Conn, h: h11.Connection) -> tuple[h11.Request | None, bytes, bool]:
        """Read one request; returns (None, ...) when the client closed or went idle."""
        request: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        limit = 0
        deadline: float | None = None
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                if deadline is None and request is None and not h.trailing_data[0]:
                    timeout = self.idle_timeout_s
                else:
                    deadline = deadline or time.monotonic() + self.read_timeout_s
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        raise TimeoutError("request not received in time")
                data = self._recv(conn, timeout)
                if deadline is None:
                    deadline = time.monotonic() + self.read_timeout_s
                h.receive_data(data)
                if not data and request is None:
                    return None, b"", False
                continue
            if isinstance(event, h11.Request):
                request = event
                limit = self._body_limit(_header(request, b"content-type"))
                length = _header(request, b"content-length")
                if length and length.isdigit() and int(length) > limit:
                    return request, b"", True  # refuse before reading the body; the reply closes
                if h.client_is_waiting_for_100_continue:
                    self._send(conn, h.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
                continue
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return request, b"", True
                chunks.append(bytes(event.data))
                continue
            if isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks), False
            if isinstance(event, h11.ConnectionClosed):
                return None, b"", False
            if event is h11.PAUSED:
                return None, b"", False

    def _body_limit(self, content_type: str | None) -> int:
        base = self.config.max_envelope_size
        # Encryption adds per-part MIME headers, a signature and (CredSSP) one part per 16 KiB.
        return base + 4096 + (base // _msgenc.CREDSSP_CHUNK + 1) * 512

    def _write_reply(self, conn: _Conn, h: h11.Connection, reply: _Reply) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if reply.content_type:
            headers.append((b"Content-Type", reply.content_type.encode("ascii")))
        headers.append((b"Server", SERVER))
        for value in reply.www_authenticate:
            headers.append((b"WWW-Authenticate", value.encode("ascii")))
        for name, value in reply.extra:
            headers.append((name.encode("ascii"), value.encode("ascii")))
        headers.append((b"Date", email.utils.formatdate(usegmt=True).encode("ascii")))
        if reply.close:
            headers.append((b"Connection", b"close"))
        headers.append((b"Content-Length", str(len(reply.body)).encode("ascii")))
        out = h.send(h11.Response(status_code=reply.status, headers=headers, reason=b""))
        if reply.body:
            out = (out or b"") + (h.send(h11.Data(data=reply.body)) or b"")
        out = (out or b"") + (h.send(h11.EndOfMessage()) or b"")
        self.counters.incr(f"http_status.{reply.status}")
        self._send(conn, out)

    # -- one request ----------------------------------------------------------------------------
    def _unauthorized(self, *, close: bool = True) -> _Reply:
        assert self.auth is not None
        return _Reply(401, www_authenticate=self.auth.offers(), close=close)

    def _dispatch(self, conn: _Conn, request: h11.Request, body: bytes, event: dict[str, t.Any]) -> _Reply:
        assert self.auth is not None
        path = request.target.split(b"?", 1)[0]
        if path.lower() != b"/wsman":
            event["reason"] = "path"
            return _Reply(404, _httpsys_page(404), "text/html; charset=us-ascii")
        if request.method != b"POST":
            event["reason"] = "method"
            return _Reply(405, _httpsys_page(405), "text/html; charset=us-ascii", extra=[("Allow", "POST")])

        stall = self.faults.take("stall_next_s")
        if stall:
            event["stall_s"] = float(stall)  # the log says which request a stall hit
            if self._stopping.wait(float(stall)):
                raise _Drop()

        content_type = _header(request, b"content-type") or ""
        try:
            encrypted = _msgenc.parse_content_type(content_type)
        except _msgenc.FramingError:
            self.counters.incr("rejected.bad_encryption")
            event["reason"] = "bad_encryption"
            return _Reply(400, close=True)
        event["encrypted"] = encrypted is not None

        final_header: list[str] = []
        authorization = _header(request, b"authorization")
        state = conn.auth
        if authorization:
            try:
                step = self.auth.authenticate(
                    state, authorization, tls=conn.tls, peer_cert_der=conn.peer_cert,
                    refuse=bool(self.faults.get("refuse_auth")),
                )
            except AuthFailed as failure:
                self.counters.incr("auth_failures")
                self.counters.incr(f"auth_failures.{failure.scheme}")
                if failure.scheme == "basic" and "AllowUnencrypted" in failure.reason:
                    self.counters.incr("rejected.basic_over_http")
                event.update(reason="auth_failed", auth_scheme=failure.scheme, detail=failure.reason)
                log.info("host %s conn %d: %s authentication refused: %s", self.config.name, conn.id,
                         failure.scheme, failure.reason)
                return self._unauthorized()
            event["auth_scheme"] = step.scheme
            if not step.done:
                # A handshake leg: the connection must stay open for the next one (NTLM, SPNEGO, CredSSP).
                return _Reply(401, www_authenticate=[step.header] if step.header else [])
            if step.counted:
                self.counters.incr("auth_handshakes")
                self.counters.incr(f"auth_handshakes.{step.scheme}")
                if step.reauth:
                    self.counters.incr("reauth_on_connection")
            if step.header:
                final_header.append(step.header)  # Kerberos mutual authentication / SPNEGO accept-complete
        elif not state.authenticated:
            if encrypted is not None:
                # Sealed with a context this connection never established: the proxy moved the session.
                self.counters.incr("rejected.unauthenticated_encrypted")
                event["reason"] = "unauthenticated_encrypted"
            return self._unauthorized()

        user = t.cast(str, state.user)
        if encrypted is not None:
            if state.context is None or encrypted.protocol not in state.encryption_protocols:
                self.counters.incr("rejected.bad_encryption")
                event["reason"] = "encryption_protocol"
                return _Reply(400, close=True)
            try:
                plain = _msgenc.decrypt(state.context, encrypted, body)
            except Exception as e:
                self.counters.incr("rejected.bad_encryption")
                event.update(reason="bad_encryption", detail=type(e).__name__)
                log.info("host %s conn %d: cannot decrypt: %s", self.config.name, conn.id, e)
                return _Reply(400, close=True)
        else:
            plain = body
            if not plain:
                # The empty POST clients send to finish authentication before sealing anything.
                return _Reply(200, www_authenticate=final_header)
            if not conn.tls and not self.config.allow_unencrypted:
                self.counters.incr("rejected.unencrypted")
                event["reason"] = "unencrypted"
                return self._unauthorized()

        action = _action_name(plain)
        event["action"] = action
        if action and self.faults.take_action_drop(action):
            event["reason"] = f"drop_on_action:{action}"
            raise _Drop()
        if action and self.faults.take_action_hold(action):
            event["held"] = True
            self.counters.incr(f"faults.held.{action}")
            if not self.faults.hold({"action": action, "conn": conn.id, "user": state.user}, self._stopping):
                raise _Drop()
        injected = self.faults.take("http_status_next")
        if injected:
            event["reason"] = f"http_status_next:{injected}"
            if int(injected) == 503 or int(injected) in _HTTPSYS_TEXT:
                return _Reply(int(injected), _httpsys_page(int(injected)), "text/html; charset=us-ascii",
                              www_authenticate=final_header)
            status, answer = int(injected), _internal_error_fault(self.config.name, _message_id(plain))
        elif self._pass_address:
            status, answer = self.service.handle(user, plain, client_address=str(conn.peer[0]))  # type: ignore[call-arg]
        else:
            status, answer = self.service.handle(user, plain)

        if not answer:
            return _Reply(status, www_authenticate=final_header)
        if encrypted is not None:
            content, sealed = _msgenc.encrypt(state.context, encrypted.protocol, answer)
            return _Reply(status, sealed, content, www_authenticate=final_header)
        return _Reply(status, answer, SOAP_TYPE, www_authenticate=final_header)


def _header(request: h11.Request, name: bytes) -> str | None:
    values = [v for k, v in request.headers if k == name]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


def _action_name(envelope: bytes) -> str | None:
    """The short WS-Addressing action name (Create, Receive, ...) from the SOAP header."""
    match = _ACTION_RE.search(envelope, 0, 8192)
    if not match:
        return None
    return match.group(1).decode("ascii", "replace").rstrip("/").rsplit("/", 1)[-1]


def _message_id(envelope: bytes) -> str:
    match = _MESSAGE_ID_RE.search(envelope, 0, 8192)
    return match.group(1).decode("ascii", "replace") if match else f"uuid:{uuid.uuid4()}"


def _reset(sock: socket.socket) -> None:
    """End a connection under the thread serving it, as a reset does: shut down the TCP socket itself.

    ssl.SSLSocket.shutdown() would also drop its TLS object, and the serving thread, in the middle of a handshake
    or a read, would then fail with AttributeError ('NoneType' has no getpeercert) instead of seeing a reset.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def body_digest(body: bytes) -> str:
    """sha256 hex of a body (helper for tests and logs that must not carry the body)."""
    return hashlib.sha256(body).hexdigest()
