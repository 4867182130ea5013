"""WinRMTransport against real protocol peers on loopback.

The peers are tiny threaded HTTP/1.1 servers built on h11: a Windows-like host
(NTLM through pyspnego's acceptor, Basic, WinRM message encryption through
pypsrp.encryption on the server side, authentication bound to the TCP
connection as Windows binds it) and a proxy (CONNECT with 407 legs for Basic,
Digest and NTLM, forward proxying with or without affinity, TLS). Each peer
records the bytes it received so the tests can prove R2.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import pathlib
import socket
import ssl
import sys
import tempfile
import threading
import time
import typing as t

import h11
import pytest
import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pypsrp.encryption import WinRMEncryption
from pypsrp.exceptions import WinRMTransportError
from requests.utils import parse_dict_header

try:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _transport
except ImportError:  # running from a checkout: expose it as ansible_collections.pinned.winrm
    _root = pathlib.Path(__file__).resolve().parents[3]
    _tree = pathlib.Path(tempfile.mkdtemp(prefix="pinned-coll-"))
    (_tree / "ansible_collections" / "pinned").mkdir(parents=True)
    (_tree / "ansible_collections" / "pinned" / "winrm").symlink_to(_root)
    sys.path.insert(0, str(_tree))
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _transport

from ansible_collections.pinned.winrm.plugins.plugin_utils import _errors
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import ProxySpec, SessionSpec

pytestmark = pytest.mark.timeout(20)

HOST_USER, HOST_PASS = "hostuser", "H0st-Secret-pw"
PROXY_USER, PROXY_PASS = "proxyuser", "Pr0xy-Secret-pw"
SPNEGO_PROTO = WinRMEncryption.SPNEGO


# -- certificates -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1 (trusted through ca_cert by the client)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "pinned-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {"cert": str(d / "cert.pem"), "key": str(d / "key.pem"), "der_hash": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()}  # type: ignore[dict-item]


@pytest.fixture(autouse=True)
def ntlm_users(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspnego's NTLM acceptor reads its accounts from NTLM_USER_FILE (this process only)."""
    path = tmp_path / "ntlm-users"
    path.write_text(f":{HOST_USER}:{HOST_PASS}\n:{PROXY_USER}:{PROXY_PASS}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(path))


# -- peers --------------------------------------------------------------------


class Peer:
    """A threaded TCP server on 127.0.0.1 that records what it received."""

    def __init__(self, handler: t.Callable[[socket.socket, int], None], tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self.lock = threading.Lock()
        self._clients: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                conn_id = self.connections
                self._clients.append(client)
            threading.Thread(target=self._run, args=(client, conn_id), daemon=True).start()

    def _run(self, client: socket.socket, conn_id: int) -> None:
        client.settimeout(10)
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            self.handler(client, conn_id)
        except (OSError, ssl.SSLError, h11.ProtocolError):
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def record(self, data: bytes) -> None:
        with self.lock:
            self.received += data

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()
        for c in self._clients:
            with contextlib.suppress(OSError):
                c.close()


def read_request(sock: socket.socket, conn: h11.Connection, peer: Peer) -> tuple[h11.Request, bytes] | None:
    req: h11.Request | None = None
    body = b""
    for _ in range(100000):
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except OSError:
                return None
            peer.record(data)
            conn.receive_data(data)
            continue
        if isinstance(ev, h11.Request):
            req = ev
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage) or ev is h11.PAUSED:
            return (req, body) if req is not None else None
        elif isinstance(ev, h11.ConnectionClosed):
            return None
    return None


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
            got = read_request(sock, conn, self.peer)
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
            got = read_request(sock, conn, self.peer)
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


# -- fixtures and factories ------------------------------------------------------


@pytest.fixture
def server_tls(tls_files: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files["cert"], tls_files["key"])
    return ctx


@pytest.fixture
def peers() -> t.Iterator[list[t.Any]]:
    made: list[t.Any] = []
    yield made
    for p in made:
        if isinstance(p, Host):
            p.release.set()
        p.peer.close()


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
    kw.setdefault("read_timeout", 5.0)
    kw.setdefault("connection_timeout", 5.0)
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


# -- direct -------------------------------------------------------------------


def test_ntlm_handshake_and_every_message_share_one_connection_with_encryption_round_trip(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host), events=events)
    assert tr.send(b"<first/>") == b"ECHO:<first/>"
    assert tr.send(b"<second/>") == b"ECHO:<second/>"
    tr.close()
    assert host.peer.connections == 1
    assert host.handshakes == [(1, 2)]  # NTLM negotiate (sent unasked), NTLM authenticate
    assert [m for _, m in host.messages] == [b"<first/>", b"<second/>"]
    assert host.encrypted_seen == [True, True]
    assert b"<first/>" not in host.peer.received  # only ciphertext crossed the wire
    assert tr.stats["tcp_connects"] == 1 and tr.stats["host_handshakes"] == 1 and tr.stats["reauths"] == {}
    assert tr.stats["bytes_out"] == len(host.peer.received)
    assert events.kinds() == ["connect", "host_auth", "close"]


def test_https_ntlm_sends_channel_binding_the_host_checks(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(tls=server_tls, cbt=b"tls-server-end-point:" + tls_files["der_hash"])
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, scheme="https", ca=tls_files["cert"]))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert host.handshakes == [(1, 2)] and host.encrypted_seen == [False]
    tr.close()


def test_https_host_certificate_not_trusted_names_the_host_and_ca_setting(peers: list[t.Any], server_tls: ssl.SSLContext) -> None:
    host = Host(tls=server_tls)
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, scheme="https"))
    with pytest.raises(_errors.TransportError, match=r"Windows host.*ansible_psrp_ca_cert"):
        tr.send(b"<m/>")


def test_wrong_host_password_is_host_auth_error_naming_the_settings_and_offers(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, password="wrong"))
    with pytest.raises(_errors.HostAuthError) as err:
        tr.send(b"<m/>")
    text = str(err.value)
    assert "ansible_user" in text and "ansible_password" in text and "Negotiate" in text
    assert "wrong" not in text
    assert host.messages == []


def test_basic_rejected_by_host_is_host_auth_error(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(auth="basic", tls=server_tls)
    peers.append(host)
    ok = _transport.WinRMTransport(make_spec(host, scheme="https", auth="basic", ca=tls_files["cert"]))
    assert ok.send(b"<m/>") == b"ECHO:<m/>"
    bad = _transport.WinRMTransport(make_spec(host, scheme="https", auth="basic", ca=tls_files["cert"], password="nope"))
    with pytest.raises(_errors.HostAuthError, match="Basic"):
        bad.send(b"<m/>")


def test_host_500_with_body_is_pypsrp_winrm_transport_error(peers: list[t.Any]) -> None:
    host = Host()
    host.fault_500 = True
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host))
    with pytest.raises(WinRMTransportError) as err:
        tr.send(b"<m/>")
    assert err.value.code == 500 and err.value.response_text == "<fault/>"  # decrypted before handing to pypsrp


def test_read_timeout_names_the_setting_and_host(peers: list[t.Any]) -> None:
    host = Host()
    host.delay_messages = 60.0  # held until the test ends: only the client's read timeout can end the wait
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, read_timeout=0.5))
    with pytest.raises(_errors.ReadTimeoutError, match="read_timeout"):
        tr.send(b"<m/>")


def test_read_timeout_retried_on_a_new_connection_when_caller_allows(peers: list[t.Any]) -> None:
    host = Host()
    host.delay_messages = 60.0  # held until the test ends: both attempts can only end on the read timeout
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, read_timeout=0.4))
    with pytest.raises(_errors.ReadTimeoutError):
        tr.send(b"<m/>", retries_on_read_timeout=1)
    assert host.peer.connections == 2 and tr.stats["reauths"] == {"read timeout": 1}


def test_connect_refused_names_the_host(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    spec = make_spec(host)
    host.peer.close()
    with pytest.raises(_errors.TransportError, match=r"Windows host 127\.0\.0\.1"):
        _transport.WinRMTransport(spec).send(b"<m/>")


def test_connect_timeout_names_connection_timeout() -> None:
    # a listening socket whose backlog is full never completes the handshake
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(srv.getsockname())
            fillers.append(s)
        spec = SessionSpec(scheme="http", host="127.0.0.1", port=srv.getsockname()[1], auth="ntlm", username="u",
                           password="p", connection_timeout=0.5)
        with pytest.raises((_errors.ConnectTimeoutError, _errors.ReadTimeoutError), match="timeout"):
            _transport.WinRMTransport(spec).send(b"<m/>")
    finally:
        for s in fillers:
            s.close()
        srv.close()


def test_fresh_401_on_authenticated_connection_reauthenticates_and_resends_once(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host), events=events)
    assert tr.send(b"<a/>") == b"ECHO:<a/>"
    host.fresh_401 = 1
    assert tr.send(b"<b/>") == b"ECHO:<b/>"
    assert [m for _, m in host.messages] == [b"<a/>", b"<b/>"]  # <b/> processed exactly once
    assert tr.stats["reauths"] == {"fresh 401 on an authenticated connection": 1}
    assert "affinity_lost" in events.kinds()


def test_drop_after_request_written_is_not_resent(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, reconnection_retries=3))
    assert tr.send(b"<a/>") == b"ECHO:<a/>"
    host.drop_before_answer = True
    with pytest.raises(_errors.TransportError, match="outcome on the host is unknown"):
        tr.send(b"<cmd/>")
    assert [m for _, m in host.messages].count(b"<cmd/>") == 1


# -- through a CONNECT tunnel ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["basic", "digest", "ntlm"])
def test_connect_407_answered_on_the_same_connection(peers: list[t.Any], scheme: str) -> None:
    host, proxy = Host(), Proxy(auth=scheme)
    peers += [host, proxy]
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth=scheme, tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert tr.send(b"<n/>") == b"ECHO:<n/>"
    expected_legs = 3 if scheme == "ntlm" else 2
    assert proxy.connects == [(1, f"127.0.0.1:{host.peer.port}", expected_legs)]
    assert proxy.peer.connections == 1 and host.peer.connections == 1
    assert tr.stats["proxy_handshakes"] == 1 and "proxy_auth" in events.kinds()
    # R2: the proxy's credentials stay with the proxy, the host's inside the tunnel
    assert_no_proxy_secrets(bytes(host.peer.received))
    assert_no_host_secrets(bytes(proxy.http_bytes))
    for _, detail in events:
        assert PROXY_PASS not in detail and HOST_PASS not in detail


def test_basic_proxy_that_closes_after_407_is_answered_on_a_new_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic", close_after_407=True)
    peers += [host, proxy]
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="basic", tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert proxy.peer.connections == 2
    assert any(k == "reconnect" and "407" in d for k, d in events)


def test_ntlm_proxy_closing_after_its_offers_only_407_is_answered_on_a_new_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    proxy.close_on_offers = True  # no NTLM context exists yet, so a new connection loses nothing
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert proxy.peer.connections == 2 and proxy.connects == [(2, f"127.0.0.1:{host.peer.port}", 2)]


def test_ntlm_proxy_that_closes_after_407_fails_naming_the_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm", close_after_407=True)
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    with pytest.raises(_errors.ProxyAuthError, match="closed the connection after its 407"):
        tr.send(b"<m/>")


def test_wrong_proxy_password_is_proxy_auth_error_with_offers_and_settings(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True, proxy_password="bad-pw"))
    with pytest.raises(_errors.ProxyAuthError) as err:
        tr.send(b"<m/>")
    assert err.value.status == 407 and "NTLM" in err.value.schemes and "Basic" in err.value.schemes
    assert "ansible_psrp_proxy_password" in str(err.value) and "bad-pw" not in str(err.value)
    assert host.peer.connections == 0


def test_proxy_asking_for_auth_without_proxy_credentials_names_proxy_settings(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, tunnel=True))
    with pytest.raises(_errors.ProxyAuthError, match="ansible_psrp_proxy_auth"):
        tr.send(b"<m/>")


def test_proxy_failing_to_reach_host_is_proxy_error(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    spec = make_spec(host, proxy=proxy, tunnel=True)
    host.peer.close()
    with pytest.raises(_errors.ProxyError, match=r"proxy http://127\.0\.0\.1:\d+ could not reach") as err:
        _transport.WinRMTransport(spec).send(b"<m/>")
    assert err.value.status == 502


def test_https_proxy_and_https_host_nest_tls_in_the_tunnel(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(tls=server_tls, cbt=b"tls-server-end-point:" + tls_files["der_hash"])
    proxy = Proxy(auth="basic", tls=server_tls)
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, scheme="https", proxy=proxy, proxy_scheme="https", proxy_auth="basic", ca=tls_files["cert"]))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert tr.stats["tls_handshakes"] == 2
    assert HOST_USER.encode("utf-16-le") not in bytes(proxy.tunnel_bytes)  # the proxy relayed only TLS


def test_tunnel_closed_after_handshake_is_reopened_with_proxy_auth_again(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="digest")
    peers += [host, proxy]
    host.close_after_handshake = 1
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="digest", tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert len(proxy.connects) == 2 and len(host.handshakes) == 2
    assert [m for _, m in host.messages] == [b"<m/>"]
    assert tr.stats["reauths"] == {"closed after the handshake": 1} and tr.stats["proxy_handshakes"] == 2
    assert "affinity_lost" in events.kinds()


def test_tunnel_reopens_are_bounded_by_reconnection_retries(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    host.close_after_handshake = 10
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, tunnel=True, reconnection_retries=1))
    with pytest.raises(_errors.TransportError, match="gave up after 2 re-open"):
        tr.send(b"<m/>")
    assert len(host.handshakes) == 3 and host.messages == []


# -- through a forward proxy ---------------------------------------------------------


def test_forward_proxy_uses_absolute_form_and_keeps_one_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    assert tr.send(b"<m/>") == b"ECHO:<m/>" and tr.send(b"<n/>") == b"ECHO:<n/>"
    assert f"POST http://127.0.0.1:{host.peer.port}/wsman HTTP/1.1".encode() in proxy.peer.received
    assert proxy.peer.connections == 1 and host.peer.connections == 1
    assert b"Proxy-Authorization" not in proxy.peer.received
    assert b"<m/>" not in proxy.peer.received  # R3: encrypted through the proxy


def test_forward_proxy_closing_after_handshake_is_affinity_lost_naming_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.close_client_after = 2  # the NTLM challenge and the handshake's 200
    events = Events()
    spec = make_spec(host, proxy=proxy, reconnection_retries=3)
    tr = _transport.WinRMTransport(spec, events=events)
    with pytest.raises(_errors.AffinityLostError) as err:
        tr.send(b"<m/>")
    text = str(err.value)
    assert spec.proxy is not None and spec.proxy.url in text
    assert "ansible_psrp_protocol: https" in text and "ansible_psrp_proxy_tunnel: true" in text
    assert host.messages == [] and "affinity_lost" in events.kinds()


def test_forward_proxy_switching_upstream_shows_as_fresh_401_and_affinity_lost(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.fresh_upstream_after = 2  # the whole handshake on one upstream connection, the message on another
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    with pytest.raises(_errors.AffinityLostError, match="fresh 401"):
        tr.send(b"<m/>")
    assert host.messages == [] and proxy.upstream_connections == 2


def test_forward_proxy_without_affinity_during_handshake_hints_at_the_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.fresh_upstream_after = 1  # every request on a new upstream connection (tinyproxy-like)
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    with pytest.raises(_errors.HostAuthError) as err:
        tr.send(b"<m/>")
    assert "without connection affinity" in str(err.value) and "ansible_psrp_proxy_tunnel: true" in str(err.value)
    assert host.peer.connections == 2 and host.handshakes == []


def test_forward_proxy_own_502_is_proxy_error(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    spec = make_spec(host, proxy=proxy)
    host.peer.close()
    with pytest.raises(_errors.ProxyError, match="proxy"):
        _transport.WinRMTransport(spec).send(b"<m/>")


def test_tunnel_mode_for_http_endpoint_keeps_proxy_auth_out_of_host_bytes(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="basic", tunnel=True))
    tr.send(b"<m/>")
    assert b"CONNECT 127.0.0.1:" in proxy.http_bytes and b"POST http://" not in proxy.peer.received
    assert_no_proxy_secrets(bytes(host.peer.received))


def test_debug_logs_carry_no_secrets_or_tokens(peers: list[t.Any], caplog: pytest.LogCaptureFixture) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    peers += [host, proxy]
    caplog.set_level("DEBUG", logger="ansible_collections.pinned.winrm")
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    assert tr.send(b"<body-text/>") == b"ECHO:<body-text/>"
    tr.close()
    # our own loggers only: pyspnego logs raw tokens at DEBUG, which the plugin keeps quiet
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ansible_collections.pinned.winrm"))
    assert "CONNECT" in text  # the transport did log its steps
    for secret in (HOST_PASS, PROXY_PASS, "TlRMTVNT", "<body-text/>"):  # passwords, NTLM tokens, bodies
        assert secret not in text
