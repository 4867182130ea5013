"""Fixtures for the lab-proxy tests: loopback upstream servers that record what reaches them, and proxy clients."""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import http.server
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import h11
import pytest
import requests
import requests.auth
import spnego

from tests.lab._certs import LabCA
from tests.lab._squid import SquidProxy


# ---------------------------------------------------------------------------------- upstream servers
class RecordingHTTPServer(http.server.ThreadingHTTPServer):
    """HTTP/1.1 keep-alive server on loopback that records, per request, which TCP connection carried it."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.requests: list[tuple[tuple[str, int], str, str, dict[str, str]]] = []  # (peer, method, path, headers)
        self.connections: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def peers_of_requests(self) -> list[tuple[str, int]]:
        with self.lock:
            return [r[0] for r in self.requests]


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so only the proxy decides whether a connection is reused

    def setup(self) -> None:
        super().setup()
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.connections.append(self.client_address)  # type: ignore[attr-defined]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.requests.append(  # type: ignore[attr-defined]
                (self.client_address, self.command, self.path, dict(self.headers.items())))
        body = f"{self.command} {self.path} on connection {self.client_address[1]} ({len(body_in)} bytes in)".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:  # quiet: pytest shows failures, not every request
        pass


@dataclasses.dataclass
class EchoServer:
    """A TCP (optionally TLS) echo server on loopback: answers b'echo:' + each chunk, counts connections."""

    port: int
    connections: list[tuple[str, int]]
    received: list[bytes]


def _serve_echo(listener: socket.socket, tls: ssl.SSLContext | None, server: EchoServer, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, peer = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        server.connections.append(peer)

        def handle(conn: socket.socket = conn) -> None:
            conn.settimeout(10)
            try:
                sock = tls.wrap_socket(conn, server_side=True) if tls else conn
                while data := sock.recv(65536):
                    server.received.append(data)
                    sock.sendall(b"echo:" + data)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

        threading.Thread(target=handle, daemon=True).start()


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.create(tmp_path_factory.mktemp("ca"))


def _echo(tls: ssl.SSLContext | None) -> Iterator[EchoServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = EchoServer(listener.getsockname()[1], [], [])
    stop = threading.Event()
    thread = threading.Thread(target=_serve_echo, args=(listener, tls, server, stop), daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(timeout=2)
    listener.close()


@pytest.fixture(scope="session")
def echo_server() -> Iterator[EchoServer]:
    """A plain TCP echo server (a CONNECT target)."""
    yield from _echo(None)


@pytest.fixture(scope="session")
def tls_echo_server(lab_ca: LabCA) -> Iterator[EchoServer]:
    """A TLS echo server with a lab-CA certificate for 127.0.0.1 (a CONNECT target)."""
    cert, key = lab_ca.issue_server("echo", ["localhost"], ["127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    yield from _echo(ctx)


def _serve_http(tls: ssl.SSLContext | None) -> Iterator[RecordingHTTPServer]:
    server = RecordingHTTPServer(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


@pytest.fixture()
def http_upstream() -> Iterator[RecordingHTTPServer]:
    """A keep-alive HTTP server that records which connection carried each request."""
    yield from _serve_http(None)


@pytest.fixture()
def https_upstream(lab_ca: LabCA) -> Iterator[RecordingHTTPServer]:
    """The same over TLS with a lab-CA certificate for 127.0.0.1."""
    cert, key = lab_ca.issue_server("https-upstream", ["localhost"], ["127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    yield from _serve_http(ctx)


# ---------------------------------------------------------------------------------- proxy clients
class HTTPProxyDigestAuth(requests.auth.HTTPDigestAuth):
    """requests' Digest auth answering a proxy's 407 (requests only answers a host's 401)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        self.init_per_thread_state()
        self._thread_local.num_407_calls = 0
        r.register_hook("response", self._handle_407)
        return r

    def _handle_407(self, r: requests.Response, **kwargs: object) -> requests.Response:
        challenge = r.headers.get("Proxy-Authenticate", "")
        if r.status_code != 407 or not challenge.lower().startswith("digest") or self._thread_local.num_407_calls:
            return r
        self._thread_local.num_407_calls += 1
        self._thread_local.chal = requests.utils.parse_dict_header(re.sub(r"(?i)^digest\s+", "", challenge))
        r.content  # noqa: B018 - drain the body so the connection can carry the retry
        prep = r.request.copy()
        prep.headers["Proxy-Authorization"] = self.build_digest_header(prep.method, prep.url)
        retried = r.connection.send(prep, **kwargs)
        retried.history.append(r)
        retried.request = prep
        return retried


@dataclasses.dataclass
class ConnectResult:
    """What a CONNECT through a proxy produced, leg by leg, on one TCP connection."""

    statuses: list[int]
    challenges: list[str]
    sock: socket.socket | None     # the tunnel when the last status is 200
    local_port: int

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _read_response(conn: h11.Connection, sock: socket.socket) -> tuple[h11.Response, bytes]:
    response = None
    body = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
            continue
        if isinstance(event, h11.Response):
            response = event
            if conn.their_state is h11.SWITCHED_PROTOCOL:  # a 2xx to CONNECT: the tunnel starts here
                return response, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
            break
    assert response is not None, "the proxy sent no response"
    return response, body


def connect_with_auth(proxy_port: int, target_port: int, *, scheme: str | None = None,
                      context: spnego.ContextProxy | None = None, max_legs: int = 4,
                      proxy_host: str = "127.0.0.1", wrap: ssl.SSLContext | None = None) -> ConnectResult:
    """CONNECT 127.0.0.1:target_port through the proxy, answering 407 challenges with context on ONE connection.

    scheme is the Proxy-Authorization scheme word ("NTLM" or "Negotiate"). Written with h11 rather than
    requests because requests cannot answer a 407 to CONNECT on the connection that got it (docs/transport.md).
    """
    raw = socket.create_connection((proxy_host, proxy_port), timeout=10)
    local_port = raw.getsockname()[1]  # wrap_socket detaches raw
    sock = wrap.wrap_socket(raw, server_hostname="localhost") if wrap else raw
    conn = h11.Connection(h11.CLIENT)
    target = f"127.0.0.1:{target_port}"
    statuses: list[int] = []
    challenges: list[str] = []
    token = context.step() if context is not None else None
    for _ in range(max_legs):
        headers = [("Host", target)]
        if token is not None and scheme:
            headers.append(("Proxy-Authorization", f"{scheme} {base64.b64encode(token).decode()}"))
        sock.sendall(conn.send(h11.Request(method="CONNECT", target=target, headers=headers)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        response, _ = _read_response(conn, sock)
        statuses.append(response.status_code)
        offered = [v.decode() for k, v in response.headers if k == b"proxy-authenticate"]
        challenges.extend(offered)
        if response.status_code != 407 or context is None or conn.our_state is h11.MUST_CLOSE \
                or conn.their_state is h11.MUST_CLOSE:
            break
        answer = next((c for c in offered if scheme and c.lower().startswith(scheme.lower() + " ")), None)
        if answer is None or context.complete:
            break  # a fresh challenge without a token: the proxy refused the credentials
        token = context.step(base64.b64decode(answer.split(" ", 1)[1]))
        conn.start_next_cycle()
    ok = statuses[-1] == 200
    if not ok:
        sock.close()
    return ConnectResult(statuses, challenges, sock if ok else None, local_port)


def logged(read: Callable[[], list[Any]], count: int, timeout: float = 30.0) -> list[Any]:
    """What read() returns once it holds at least count entries.

    Squid writes an access-log line when a transaction ends, a moment after the client saw its answer, so a
    test waits for the lines it expects instead of sleeping; the bound only stops a broken Squid from hanging it.
    """
    deadline = time.monotonic() + timeout
    while True:
        entries = read()
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def echo_through(result: ConnectResult, payload: bytes) -> bytes:
    """Send payload through an open tunnel to the echo server and return what came back."""
    assert result.sock is not None
    result.sock.sendall(payload)
    want = len(payload) + len(b"echo:")
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < want and time.monotonic() < deadline:
        chunk = result.sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def stop_together(proxies: Iterable[Any]) -> None:
    """Stop several proxies at once: each Squid needs ~2 s of its own shutdown sequence."""
    with concurrent.futures.ThreadPoolExecutor() as pool:
        for future in [pool.submit(p.stop) for p in proxies]:
            future.result(timeout=30)


def start_together(proxies: Iterable[Any]) -> None:
    """Start several proxies at once (mitmdump alone takes a second or two to import and listen)."""
    with concurrent.futures.ThreadPoolExecutor() as pool:
        for future in [pool.submit(p.start) for p in proxies]:
            future.result(timeout=60)


PROXY_USER = "proxy-user"


@pytest.fixture(scope="session")
def proxy_password() -> str:
    # a colon and a percent sign: escaping mistakes in a helper or a client show up as refusals
    return f"Px:{secrets.token_urlsafe(12)}%1"


@pytest.fixture(scope="session")
def squids(tmp_path_factory: pytest.TempPathFactory, proxy_password: str, echo_server: EchoServer,
           lab_ca: LabCA) -> Iterator[dict[str, SquidProxy]]:
    """One Squid per variant for the whole session, started and stopped together."""
    users = {PROXY_USER: proxy_password}
    ports = [echo_server.port]
    made = {
        "open": SquidProxy(tmp_path_factory.mktemp("squid-open"), allowed_connect_ports=ports),
        "basic": SquidProxy(tmp_path_factory.mktemp("squid-basic"), auth="basic", users=users),
        "digest": SquidProxy(tmp_path_factory.mktemp("squid-digest"), auth="digest", users=users),
        "ntlm": SquidProxy(tmp_path_factory.mktemp("squid-ntlm"), auth="ntlm", users=users,
                           allowed_connect_ports=ports),
        "https": SquidProxy(tmp_path_factory.mktemp("squid-https"), https_port=True, ca=lab_ca,
                            allowed_connect_ports=ports),
    }
    try:
        start_together(made.values())
        yield made
    finally:
        stop_together(made.values())
