"""Hostile HTTP peers on loopback: a scripted WinRM "host" and a tampering relay in front of a lab host.

Hand-written on purpose (h11 for parsing requests): a test server must be able to answer with bytes no
library would produce (truncated bodies, lying Content-Length, endless chunked streams, non-HTTP).

ScriptedHost(answer): answer(index, body) -> bytes | Iterable[bytes] is written raw for the index-th
request (0-based, counted over all connections); the connection closes after each answer's iterable
ends unless it is plain bytes (then it stays open for the next request).

TricklingTLSHost(cert, key, mode): a TLS "host" that sends its handshake, or its first answer, one byte at a
time, each byte well within any per-read timeout.

TamperingRelay(upstream_host, upstream_port, tamper, request_filter=None): relays requests over one upstream
connection per client connection (so NTLM stays bound to it), and passes each answer through
tamper(index, status, headers, body) -> bytes | Iterable[bytes] | None (None: relay unchanged), where
index counts answers to requests with a non-empty body (WinRM messages, not handshake legs) that pass
request_filter(request body), when one is given.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import typing as t

import h11

from tests._loopback import LoopbackServer, read_request

Answer = t.Union[bytes, t.Iterable[bytes]]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def http_response(status: int, headers: list[tuple[str, str]], body: bytes, *, reason: str = "OK") -> bytes:
    """A raw HTTP/1.1 response with Content-Length set to the body's real length."""
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body


class _Server(LoopbackServer):
    """A hostile peer: started by `with`, counting the requests it read and the bytes it wrote."""

    def __init__(self) -> None:
        super().__init__(client_timeout=30, name="hostile")
        self.requests = 0
        self.bytes_sent = 0

    def __enter__(self) -> t.Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serve(self, sock: socket.socket, number: int) -> None:
        self._serve(sock)

    def _write(self, conn: socket.socket, answer: Answer) -> bool:
        """Write an answer; True when the connection may carry another request."""
        if isinstance(answer, (bytes, bytearray)):
            conn.sendall(answer)
            self.bytes_sent += len(answer)
            return True
        for chunk in answer:
            if self.stopping.is_set():
                break
            conn.sendall(chunk)
            self.bytes_sent += len(chunk)
        return False

    def _serve(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ScriptedHost(_Server):
    """A "Windows host" that answers every request with what the test's function returns."""

    def __init__(self, answer: t.Callable[[int, bytes], Answer]) -> None:
        super().__init__()
        self._answer = answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/wsman"

    def _serve(self, conn: socket.socket) -> None:
        parser = h11.Connection(our_role=h11.SERVER)
        for _ in range(10_000):
            got = read_request(conn, parser)
            if got is None:
                return
            with self.lock:
                index = self.requests
                self.requests += 1
            if not self._write(conn, self._answer(index, got[1])):
                return
            # the raw answer bypassed h11's state machine: a fresh parser for the next request
            parser = h11.Connection(our_role=h11.SERVER)


class TamperingRelay(_Server):
    """Relays to a real (lab) host and lets the test rewrite chosen answers."""

    def __init__(self, upstream_host: str, upstream_port: int,
                 tamper: t.Callable[[int, int, list[tuple[str, str]], bytes], Answer | None], *,
                 request_filter: t.Callable[[bytes], bool] | None = None,
                 legs: bool = False, tls: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self._tamper = tamper
        # only answers to requests whose body passes it are offered to tamper (and counted in index)
        self._request_filter = request_filter
        # legs: offer the answers to handshake legs (empty POSTs) instead of the WinRM messages'
        self._legs = legs
        # tls: (cert, key) to terminate TLS from the client; then the relay speaks TLS to the host too (unverified)
        self._tls = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
        self.messages = 0
        self.tampered = 0

    def _offered(self, body: bytes) -> bool:
        if self._legs:
            return not body
        return bool(body) and (self._request_filter is None or self._request_filter(body))

    def _serve(self, conn: socket.socket) -> None:
        if self._tls is not None:
            conn.settimeout(30)
            conn = self._tls.wrap_socket(conn, server_side=True)
            upstream: http.client.HTTPConnection = http.client.HTTPSConnection(
                *self.upstream, timeout=60, context=ssl._create_unverified_context())  # loopback lab host only
        else:
            upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            parser = h11.Connection(our_role=h11.SERVER)
            for _ in range(10_000):
                got = read_request(conn, parser)
                if got is None:
                    return
                request, body = got
                headers = {k.decode(): v.decode() for k, v in request.headers if k.lower() not in (b"content-length",)}
                upstream.request(request.method.decode(), request.target.decode(), body=body, headers=headers)
                resp = upstream.getresponse()
                payload = resp.read()
                resp_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
                answer: Answer | None = None
                if self._offered(body):
                    with self.lock:
                        index = self.messages
                        self.messages += 1
                    answer = self._tamper(index, resp.status, resp_headers, payload)
                    if answer is not None:
                        self.tampered += 1
                if answer is None:
                    answer = http_response(resp.status, resp_headers, payload, reason=resp.reason)
                if not self._write(conn, answer):
                    return
                parser = h11.Connection(our_role=h11.SERVER)
        finally:
            upstream.close()


class TricklingTLSHost(_Server):
    """A TLS "host" that sends its bytes one at a time, each well within any per-read timeout.

    mode "handshake": the server's handshake flight (ServerHello ... Finished) is trickled, so the handshake
    never completes in time; mode "answer": the handshake is normal, then the answer to the first request
    is one TLS record trickled a byte every `interval` seconds. Bounded: at most `limit` bytes are trickled.
    """

    def __init__(self, cert: str, key: str, *, mode: str, interval: float = 0.25, limit: int = 400) -> None:
        super().__init__()
        self.mode = mode
        self.interval = interval
        self.limit = limit
        self.trickled = 0
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for byte in data[: self.limit]:
            if self.stopping.wait(self.interval):
                return
            conn.sendall(bytes([byte]))
            self.trickled += 1

    def _serve(self, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(30)
        for _ in range(100):  # bounded: a handshake is a few flights
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flight = outgoing.read()
                if flight:
                    if self.mode == "handshake":
                        self._trickle(conn, flight)
                        return
                    conn.sendall(flight)
                data = conn.recv(65536)
                if not data:
                    return
                incoming.write(data)
        conn.sendall(outgoing.read())
        for _ in range(100):  # read the first request (its end does not matter: the answer is what is trickled)
            try:
                if tls.read(65536):
                    break
            except ssl.SSLWantReadError:
                data = conn.recv(65536)
                if not data:
                    return
                incoming.write(data)
        tls.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 4000\r\n\r\n" + b"<" * 4000)
        self._trickle(conn, outgoing.read())
