"""The transport tests' protocol peers on loopback: a Windows-like WinRM host and an HTTP proxy.

They are tiny threaded HTTP/1.1 servers built on h11 (tests/_loopback.py): a Windows-like host (NTLM
through pyspnego's acceptor, Basic, WinRM message encryption through pypsrp.encryption on the server side,
authentication bound to the TCP connection as Windows binds it) and a proxy (CONNECT with 407 legs for
Basic, Digest and NTLM, forward proxying with or without affinity, TLS). Each peer records the bytes it
received so the tests can prove R2. Plus what the tests build around them: certificates, specs, events.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pathlib
import socket
import ssl
import threading
import typing as t

import h11
import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pypsrp.encryption import WinRMEncryption
from requests.utils import parse_dict_header

from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import ProxySpec, SessionSpec
from tests._loopback import LoopbackServer, read_request
from tests.lab._certs import LabCA

HOST_USER, HOST_PASS = "hostuser", "H0st-Secret-pw"
PROXY_USER, PROXY_PASS = "proxyuser", "Pr0xy-Secret-pw"
SPNEGO_PROTO = WinRMEncryption.SPNEGO


# -- certificates -------------------------------------------------------------


def make_tls_files(d: pathlib.Path) -> dict[str, t.Any]:
    """A lab CA in `d` and its server certificate for 127.0.0.1: the CA file the client trusts (`ca`), the
    server's `cert` and `key` files, and the SHA-256 of the server certificate's DER form (`der_hash`, the
    tls-server-end-point channel binding)."""
    ca = LabCA.create(d)
    cert, key = ca.issue_server("pinned-test", [], ["127.0.0.1"])
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    return {"ca": str(ca.cert_path), "cert": str(cert), "key": str(key), "der_hash": hashlib.sha256(der).digest()}


# -- peers --------------------------------------------------------------------


class Peer(LoopbackServer):
    """A loopback server that records every byte it receives (the tests prove R2 from them)."""

    def __init__(self, handler: t.Callable[[socket.socket, int], None], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(handler, tls=tls, client_timeout=10, name="transport-peer")
        self.received = bytearray()
        self.start()

    def record(self, data: bytes) -> None:
        with self.lock:
            self.received += data


def send_response(
    sock: socket.socket, conn: h11.Connection, status: int, headers: list[tuple[str, str]], body: bytes = b"", *, close: bool = False
) -> bool:
    hs = list(headers) + [("Content-Length", str(len(body)))]
    if close:
        hs.append(("Connection", "close"))
    data = conn.send(h11.Response(status_code=status, headers=hs)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    sock.sendall(data)
    if close or conn.our_state is h11.MUST_CLOSE:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return False
    conn.start_next_cycle()
    return True


def header(req: h11.Request, name: bytes) -> str | None:
    for k, v in req.headers:
        if k.lower() == name:
            return v.decode()
    return None


class Host:
    """A Windows-like WinRM endpoint: NTLM (Negotiate header) or Basic, contexts bound to the connection."""

    def __init__(self, *, auth: str = "ntlm", tls: ssl.SSLContext | None = None, cbt: bytes | None = None) -> None:
        self.auth = auth
        self.cbt = cbt
        self.close_after_handshake = 0  # close right after the handshake's 200, this many times
        self.fresh_401 = 0  # answer this many authenticated messages with a fresh 401 and forget the context
        self.delay_messages = 0.0  # hold each answer this long (or until release is set, at the test's end)
        self.release = threading.Event()
        self.fault_500 = False
        self.drop_before_answer = False
        self.messages: list[tuple[int, bytes]] = []  # (connection id, decrypted message)
        self.handshakes: list[tuple[int, int]] = []  # (connection id, legs)
        self.encrypted_seen: list[bool] = []
        self.peer = Peer(self._handle, tls)

    def _handle(self, sock: socket.socket, conn_id: int) -> None:
        conn = h11.Connection(h11.SERVER)
        ctx: t.Any = None
        enc: WinRMEncryption | None = None
        legs = 0
        for _ in range(1000):
            got = read_request(sock, conn, self.peer.record)
            if got is None:
                return
            req, body = got
            authz = header(req, b"authorization")
            if self.auth == "basic":
                good = "Basic " + base64.b64encode(f"{HOST_USER}:{HOST_PASS}".encode()).decode()
                if authz != good:
                    send_response(sock, conn, 401, [("WWW-Authenticate", 'Basic realm="WSMAN"')])
                    continue
            elif enc is None:
                legs += 1
                if not authz or not authz.startswith("Negotiate "):
                    ctx = None
                    send_response(sock, conn, 401, [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "Kerberos")])
                    continue
                if ctx is None:
                    bindings = spnego.channel_bindings.GssChannelBindings(application_data=self.cbt) if self.cbt else None
                    ctx = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.wrapping_winrm, channel_bindings=bindings)
                try:
                    out = ctx.step(base64.b64decode(authz.split(" ", 1)[1]))
                except (spnego.exceptions.SpnegoError, ValueError):
                    ctx = None
                    send_response(sock, conn, 401, [("WWW-Authenticate", "Negotiate")])
                    continue
                if not ctx.complete:
                    send_response(sock, conn, 401, [("WWW-Authenticate", f"Negotiate {base64.b64encode(out).decode()}")])
                    continue
                enc = WinRMEncryption(ctx, SPNEGO_PROTO)
                self.handshakes.append((conn_id, legs))
                if self.close_after_handshake:
                    self.close_after_handshake -= 1
                    send_response(sock, conn, 200, [], close=True)
                    return
                if not send_response(sock, conn, 200, []):
                    return
                continue
            # an authenticated message
            if self.fresh_401 and enc is not None:
                self.fresh_401 -= 1
                ctx, enc, legs = None, None, 0
                send_response(sock, conn, 401, [("WWW-Authenticate", "Negotiate")])
                continue
            ctype = header(req, b"content-type") or ""
            encrypted = ctype.startswith("multipart/encrypted")
            self.encrypted_seen.append(encrypted)
            plain = enc.unwrap_message(body, "Encrypted Boundary") if encrypted and enc else body
            self.messages.append((conn_id, plain))
            if self.drop_before_answer:
                sock.shutdown(socket.SHUT_RDWR)
                return
            if self.delay_messages:
                self.release.wait(self.delay_messages)
            status = 500 if self.fault_500 else 200
            answer = b"<fault/>" if self.fault_500 else b"ECHO:" + plain
            if encrypted and enc:
                ct, payload = enc.wrap_message(answer)
                headers = [("Content-Type", f'{ct};protocol="{SPNEGO_PROTO}";boundary="Encrypted Boundary"')]
            else:
                payload, headers = answer, [("Content-Type", "application/soap+xml;charset=UTF-8")]
            if not send_response(sock, conn, status, headers, payload):
                return


class Proxy:
    """A CONNECT and forward proxy with Basic, Digest or NTLM proxy authentication."""

    def __init__(self, *, auth: str | None = None, tls: ssl.SSLContext | None = None, close_after_407: bool = False) -> None:
        self.auth = auth
        self.close_after_407 = close_after_407
        self.close_on_offers = False  # close only after a 407 that answered a request without credentials
        self.fresh_upstream_after = 0  # forward mode: a new upstream connection after this many requests (no affinity)
        self.close_client_after = 0  # forward mode: close the client connection after this many responses
        self.tunnel_bytes = bytearray()  # bytes relayed from the client inside tunnels
        self.http_bytes = bytearray()  # bytes the proxy itself parsed (CONNECT and forward requests)
        self.connects: list[tuple[int, str, int]] = []  # (connection id, target, legs)
        self.upstream_connections = 0
        self.nonce = "n" + os.urandom(8).hex()
        self.peer = Peer(self._handle, tls)

    def _challenge(self) -> list[tuple[str, str]]:
        if self.auth == "basic":
            return [("Proxy-Authenticate", 'Basic realm="proxy"')]
        if self.auth == "digest":
            return [("Proxy-Authenticate", f'Digest realm="proxy", nonce="{self.nonce}", qop="auth", algorithm=MD5')]
        return [("Proxy-Authenticate", "NTLM"), ("Proxy-Authenticate", 'Basic realm="proxy"')]

    def _check(self, value: str | None, method: str, target: str, state: dict[str, t.Any]) -> tuple[bool, list[tuple[str, str]]]:
        if self.auth is None:
            return True, []
        if not value:
            return False, self._challenge()
        scheme, _, data = value.partition(" ")
        if self.auth == "basic":
            return data == base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode()).decode(), self._challenge()
        if self.auth == "digest":
            p = parse_dict_header(data)
            ha1 = hashlib.md5(f"{PROXY_USER}:proxy:{PROXY_PASS}".encode()).hexdigest()
            ha2 = hashlib.md5(f"{method}:{target}".encode()).hexdigest()
            want = hashlib.md5(f"{ha1}:{self.nonce}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}".encode()).hexdigest()
            ok = scheme == "Digest" and p.get("uri") == target and p.get("response") == want and p.get("username") == PROXY_USER
            return ok, self._challenge()
        # NTLM: one acceptor per client connection, several legs on it
        if scheme != "NTLM":
            return False, self._challenge()
        if state.get("ctx") is None:
            state["ctx"] = spnego.server(protocol="ntlm")
        try:
            out = state["ctx"].step(base64.b64decode(data))
        except spnego.exceptions.SpnegoError:
            state["ctx"] = None
            return False, self._challenge()
        if state["ctx"].complete:
            state["ctx"] = None
            return True, []
        return False, [("Proxy-Authenticate", f"NTLM {base64.b64encode(out).decode()}")]

    def _handle(self, sock: socket.socket, conn_id: int) -> None:
        conn = h11.Connection(h11.SERVER)
        state: dict[str, t.Any] = {}
        legs = 0
        upstream: tuple[socket.socket, h11.Connection] | None = None
        served = 0
        for _ in range(1000):
            before = len(self.peer.received)
            got = read_request(sock, conn, self.peer.record)
            self.http_bytes += self.peer.received[before:]
            if got is None:
                return
            req, body = got
            target = req.target.decode()
            if req.method == b"CONNECT":
                legs += 1
                ok, challenge = self._check(header(req, b"proxy-authorization"), "CONNECT", target, state)
                if not ok:
                    close = self.close_after_407 or (self.close_on_offers and not header(req, b"proxy-authorization"))
                    if not send_response(sock, conn, 407, challenge, b"auth needed", close=close):
                        return
                    continue
                host, _, port = target.rpartition(":")
                try:
                    up = socket.create_connection((host, int(port)), timeout=5)
                except OSError:
                    send_response(sock, conn, 502, [("X-Squid-Error", "ERR_CONNECT_FAIL 111")], b"", close=True)
                    return
                self.connects.append((conn_id, target, legs))
                sock.sendall(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection established")))
                self._relay(sock, up)
                return
            # forward proxying: absolute-form target, a per-client upstream connection (affinity) unless told otherwise
            rest = target.split("://", 1)[1]
            authority, _, path = rest.partition("/")
            host, _, port = authority.rpartition(":")
            if upstream is None or (self.fresh_upstream_after and served >= self.fresh_upstream_after):
                if upstream is not None:
                    upstream[0].close()
                try:
                    up = socket.create_connection((host, int(port)), timeout=5)
                except OSError:
                    send_response(sock, conn, 502, [("X-Squid-Error", "ERR_CONNECT_FAIL 111")], b"", close=True)
                    return
                self.upstream_connections += 1
                upstream = (up, h11.Connection(h11.CLIENT))
            up, uconn = upstream
            headers = [(k, v) for k, v in req.headers if k.lower() not in (b"content-length", b"proxy-connection")]
            headers.append((b"Content-Length", str(len(body)).encode()))
            out = uconn.send(h11.Request(method=req.method, target=b"/" + path.encode(), headers=headers))
            out += (uconn.send(h11.Data(data=body)) if body else b"") + uconn.send(h11.EndOfMessage())
            up.sendall(out)
            resp, rbody = self._read_upstream(up, uconn)
            served += 1
            close = bool(self.close_client_after and served >= self.close_client_after) or resp is None
            if resp is None:
                send_response(sock, conn, 502, [("X-Squid-Error", "ERR_READ_ERROR 0")], b"", close=True)
                return
            rheaders = [(k.decode(), v.decode()) for k, v in resp.headers if k.lower() not in (b"content-length", b"connection")]
            if uconn.our_state is h11.DONE and uconn.their_state is h11.DONE:
                uconn.start_next_cycle()
            else:
                upstream[0].close()
                upstream = None
            if not send_response(sock, conn, resp.status_code, rheaders, rbody, close=close):
                return

    @staticmethod
    def _read_upstream(up: socket.socket, uconn: h11.Connection) -> tuple[h11.Response | None, bytes]:
        resp, body = None, b""
        for _ in range(100000):
            ev = uconn.next_event()
            if ev is h11.NEED_DATA:
                try:
                    uconn.receive_data(up.recv(65536))
                except OSError:
                    return None, b""
                continue
            if isinstance(ev, h11.Response):
                resp = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                return resp, body
        return None, b""

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        def pump(src: socket.socket, dst: socket.socket, record: bool) -> None:
            try:
                for _ in range(100000):
                    data = src.recv(65536)
                    if not data:
                        break
                    if record:
                        self.tunnel_bytes.extend(data)
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client, False), daemon=True)
        back.start()
        pump(client, upstream, True)
        back.join(5)
        upstream.close()


# -- what the tests build around the peers ------------------------------------


def make_spec(host: Host, *, scheme: str = "http", auth: str = "ntlm", proxy: Proxy | None = None, proxy_scheme: str = "http",
              proxy_auth: str | None = None, tunnel: bool = False, ca: str | None = None, password: str = HOST_PASS,
              proxy_password: str = PROXY_PASS, **kw: t.Any) -> SessionSpec:
    proxy_spec = None
    if proxy is not None:
        proxy_spec = ProxySpec(
            url=f"{proxy_scheme}://127.0.0.1:{proxy.peer.port}", scheme=proxy_scheme, host="127.0.0.1", port=proxy.peer.port,
            auth=proxy_auth, username=PROXY_USER if proxy_auth else None, password=proxy_password if proxy_auth else None,
            ca_cert=ca, tunnel=tunnel,
        )
    # Generous: these peers are threads in the test's process, and a loaded machine (make test-loaded) can stall a
    # nested TLS handshake for seconds; a test about a timeout sets its own.
    kw.setdefault("read_timeout", 30.0)
    kw.setdefault("connection_timeout", 30.0)
    kw.setdefault("reconnection_backoff", 0.0)
    return SessionSpec(
        scheme=scheme, host="127.0.0.1", port=host.peer.port, path="wsman", auth=auth, username=HOST_USER,
        password=password, ca_cert=ca, proxy=proxy_spec, **kw,
    )


class Events(list):
    def __call__(self, kind: str, detail: str) -> None:
        self.append((kind, detail))

    def kinds(self) -> list[str]:
        return [k for k, _ in self]


def assert_no_proxy_secrets(data: bytes) -> None:
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode())
    for needle in (PROXY_PASS.encode(), PROXY_USER.encode(), PROXY_USER.encode("utf-16-le"), basic, b"Proxy-Authorization"):
        assert needle.lower() not in data.lower()


def assert_no_host_secrets(data: bytes) -> None:
    basic = base64.b64encode(f"{HOST_USER}:{HOST_PASS}".encode())
    for needle in (HOST_PASS.encode(), HOST_USER.encode(), HOST_USER.encode("utf-16-le"), basic, b"\r\nAuthorization:"):
        assert needle.lower() not in data.lower()
