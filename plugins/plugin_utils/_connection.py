"""The raw connection: one TCP socket, optional TLS layers, HTTP/1.1 through h11.

A connection is an object the transport holds (R4): the socket it opened is
the socket every later request of the session rides on, so whether the
handshake and the messages share a connection is a property of this code,
not of a pool. TLS layers are stacked with ``ssl.SSLObject`` over memory BIOs
so that TLS to the host can run inside a CONNECT tunnel that is itself inside
TLS to an ``https://`` proxy (``ssl.SSLSocket`` cannot wrap another SSLSocket).
"""

from __future__ import annotations

import dataclasses
import logging
import select
import socket
import ssl
import time
import typing as t

from ._errors import ConnectTimeoutError, MalformedAnswerError, ReadTimeoutError, TransportError, missing_package

# Guarded as ansible-core guards its plugins' imports: this module loads without h11, and building a connection
# names the missing package.
try:
    import h11
except ImportError as import_error:
    H11_IMPORT_ERROR: ImportError | None = import_error
else:
    H11_IMPORT_ERROR = None

log = logging.getLogger(__name__)

_RECV_SIZE = 65536
# Largest answer read when the caller names no bound: WinRM answers are bounded by MaxEnvelopeSize.
DEFAULT_MAX_RESPONSE = 16 * 1024 * 1024


class ConnectionLost(TransportError):
    """The peer closed or reset the connection.

    ``request_complete`` tells whether every byte of the current request had
    been handed to the network before the loss: when False the peer cannot have
    processed the request and resending it is safe.
    """

    def __init__(self, message: str, *, request_complete: bool, response_started: bool = False) -> None:
        super().__init__(message)
        self.request_complete = request_complete
        self.response_started = response_started


class Stream(t.Protocol):
    """What a layer of the connection offers to the layer above."""

    def send_all(self, data: bytes) -> None: ...

    def recv(self, size: int) -> bytes: ...

    def probe(self) -> bytes | None: ...

    def close(self) -> None: ...


class SocketStream:
    """A connected TCP socket, counting the bytes that cross it.

    ``deadline`` (time.monotonic(), or None) bounds every read and write as a whole: each one gets only the
    time left, so a peer trickling a byte at a time cannot stretch a TLS record, a handshake or an answer
    past it (a per-read timeout restarts with every byte).
    """

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_accounted = (0, 0)  # (in, out) the transport's stats already counted
        self._pushback = b""
        self.deadline: float | None = None

    @classmethod
    def connect(cls, host: str, port: int, timeout: float, *, party: str, setting: str) -> SocketStream:
        """Open a TCP connection; errors name the party (proxy or host) and the setting to check."""
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout or None)
        except TimeoutError as e:
            raise ConnectTimeoutError(
                f"Connecting to the {party} {peer} timed out after {timeout:g}s "
                f"(ansible_psrp_connection_timeout); check {setting} and that the {party} is reachable."
            ) from e
        except OSError as e:
            raise TransportError(
                f"Could not connect to the {party} {peer}: {e.strerror or e}; check {setting} "
                f"and that the {party} is listening."
            ) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("TCP connected to %s %s", party, peer)
        return cls(sock, peer)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout or None)

    def set_deadline(self, timeout: float | None) -> float | None:
        """Bound every read and write from now on by `timeout` seconds in all (None: no bound); the old deadline."""
        previous = self.deadline
        self.deadline = None if not timeout else time.monotonic() + timeout
        if self.deadline is None:
            self.sock.settimeout(None)
        return previous

    def _arm(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the deadline passed")
            self.sock.settimeout(left)

    def send_all(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)  # with a timeout, sendall's is the total time for all the data
        self.bytes_out += len(data)

    def recv(self, size: int) -> bytes:
        if self._pushback:
            data, self._pushback = self._pushback, b""
            return data
        self._arm()
        data = self.sock.recv(size)
        self.bytes_in += len(data)
        return data

    def probe(self) -> bytes | None:
        """Without blocking: None if nothing arrived, b"" on EOF, else the bytes (kept for recv)."""
        if self._pushback:
            return self._pushback
        # poll, not select: select() cannot watch a descriptor numbered 1024 or more, which a daemon holding
        # hundreds of sessions has (it raised ValueError, read as "closed": every new session failed)
        poller = select.poll()
        try:
            poller.register(self.sock.fileno(), select.POLLIN | select.POLLPRI)
            readable = poller.poll(0)
        except (OSError, ValueError):
            return b""
        if not readable:
            return None
        try:
            data = self.sock.recv(_RECV_SIZE)
        except (ConnectionError, OSError):
            return b""
        self.bytes_in += len(data)
        self._pushback = data
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class TLSStream:
    """TLS over any Stream through memory BIOs (so TLS can nest inside a TLS proxy's tunnel)."""

    def __init__(self, inner: Stream, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._pushback = b""

    def handshake(self) -> None:
        """Run the TLS handshake; ssl.SSLError and socket errors propagate to the caller."""
        for _flight in range(1000):  # bounded: a handshake is a handful of flights
            try:
                self._obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self.inner.recv(_RECV_SIZE)
                if not data:
                    raise ConnectionResetError("peer closed the connection during the TLS handshake")
                self._incoming.write(data)
        raise ssl.SSLError("TLS handshake did not finish")

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    def peer_certificate(self) -> bytes | None:
        return self._obj.getpeercert(binary_form=True)

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.inner.send_all(data)

    def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._obj.write(view)
            view = view[written:]
            self._flush()

    def recv(self, size: int) -> bytes:
        if self._pushback:
            data, self._pushback = self._pushback, b""
            return data
        while True:
            try:
                return self._obj.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.inner.recv(_RECV_SIZE)
                if not data:
                    return b""
                self._incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def probe(self) -> bytes | None:
        """Without blocking: None if no application data is waiting, b"" on EOF/close_notify."""
        if self._pushback:
            return self._pushback
        for _turn in range(1000):  # bounded: each turn consumes buffered bytes
            try:
                data = self._obj.read(_RECV_SIZE)
            except ssl.SSLWantReadError:
                raw = self.inner.probe()
                if raw is None:
                    return None
                if raw == b"":
                    return b""
                self.inner.recv(_RECV_SIZE)  # take the probed bytes out of the inner pushback
                self._incoming.write(raw)
                continue
            except ssl.SSLError:  # close_notify, EOF or a broken record: the connection is unusable either way
                return b""
            self._pushback = data
            return data
        return None

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass
class Response:
    """One complete HTTP response (bodies of WinRM messages are small enough to hold)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    will_close: bool

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class HTTPConnection:
    """HTTP/1.1 (h11) over one Stream, one request at a time, keep-alive."""

    def __init__(self, stream: Stream, *, party: str, max_response: int = DEFAULT_MAX_RESPONSE) -> None:
        if H11_IMPORT_ERROR is not None:
            raise missing_package("h11", H11_IMPORT_ERROR)
        self.stream = stream
        self.party = party
        # a peer that sends more than this (oversized or endless answers) is cut off, not buffered
        self.max_response = max_response
        self._h11 = h11.Connection(our_role=h11.CLIENT)
        self.requests = 0

    @property
    def reusable(self) -> bool:
        return self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE

    def idle_state(self) -> str:
        """'open', 'closed' (EOF or reset) or 'unexpected' (bytes arrived unasked) while idle."""
        if not self.reusable:
            return "closed"
        data = self.stream.probe()
        if data is None:
            return "open"
        return "closed" if data == b"" else "unexpected"

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float | None,
        timeout_setting: str = "ansible_psrp_read_timeout",
    ) -> Response:
        """Send one request and read its whole response.

        Raises ConnectionLost (with request_complete) when the peer goes away,
        ReadTimeoutError when no complete answer arrives within ``timeout`` (for the
        whole answer, so a peer trickling an endless answer cannot hold us), and
        TransportError for an answer larger than ``max_response``.
        """
        if not self.reusable:
            raise ConnectionLost(f"the connection to the {self.party} cannot carry another request", request_complete=False)
        all_headers = list(headers)
        if method != "CONNECT" or body:
            all_headers.append(("Content-Length", str(len(body))))
        req = h11.Request(method=method, target=target, headers=all_headers)
        data = self._h11.send(req) or b""
        if body:
            data += self._h11.send(h11.Data(data=body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        self._settimeout(timeout)
        try:
            try:
                self.stream.send_all(data)
            except TimeoutError as e:
                raise ConnectionLost(f"writing to the {self.party} timed out", request_complete=False) from e
            except (OSError, ssl.SSLError) as e:
                raise ConnectionLost(f"the {self.party} reset the connection while the request was written: {e}", request_complete=False) from e
            self.requests += 1
            return self._read_response(method, timeout, timeout_setting)
        finally:
            self._settimeout(None)

    def _settimeout(self, timeout: float | None) -> None:
        """One absolute deadline for the write and the whole answer, through every TLS layer (None: lift it)."""
        socket_of(self.stream).set_deadline(timeout)

    def _read_response(self, method: str, timeout: float | None, timeout_setting: str) -> Response:
        response: h11.Response | None = None
        body = bytearray()
        started = False
        deadline = time.monotonic() + timeout if timeout else None
        for _event_number in range(1_000_000):  # bounded by max_response and the deadline as well
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                raise MalformedAnswerError(f"the {self.party} sent an invalid HTTP response: {e}") from e
            if event is h11.NEED_DATA:
                if deadline is not None and deadline - time.monotonic() <= 0:
                    raise ReadTimeoutError(
                        f"The answer from the {self.party} did not complete within {timeout:g}s "
                        f"({timeout_setting}); {len(body)} body bytes had arrived."
                    )
                try:
                    data = self.stream.recv(_RECV_SIZE)
                except TimeoutError as e:
                    if started:
                        raise ReadTimeoutError(
                            f"The answer from the {self.party} did not complete within {timeout:g}s "
                            f"({timeout_setting}); {len(body)} body bytes had arrived."
                        ) from e
                    raise ReadTimeoutError(
                        f"No answer from the {self.party} within {timeout:g}s ({timeout_setting})."
                        if timeout
                        else f"No answer from the {self.party}."
                    ) from e
                except (OSError, ssl.SSLError) as e:
                    raise ConnectionLost(
                        f"the {self.party} reset the connection before answering: {e}",
                        request_complete=True,
                        response_started=started,
                    ) from e
                if data:
                    started = True
                elif response is None:
                    raise ConnectionLost(
                        f"the {self.party} closed the connection without answering",
                        request_complete=True,
                        response_started=started,
                    )
                self._h11.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                response = event
                if method == "CONNECT" and 200 <= event.status_code < 300:
                    break  # the connection is now a tunnel; h11 hands us nothing more
                self._check_size(_declared_length(event), 0)
                continue
            if isinstance(event, h11.Data):
                self._check_size(len(body) + len(event.data), len(body))
                body += event.data
                continue
            if isinstance(event, h11.EndOfMessage):
                break
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                break
        if response is None:
            raise ConnectionLost(f"the {self.party} closed the connection without answering", request_complete=True)
        will_close = self._h11.our_state is h11.MUST_CLOSE or self._h11.their_state in (h11.MUST_CLOSE, h11.CLOSED)
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        elif not (method == "CONNECT" and 200 <= response.status_code < 300):
            will_close = True
        return Response(
            status=response.status_code,
            reason=response.reason.decode("latin-1", "replace"),
            headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers],
            body=bytes(body),
            will_close=will_close,
        )

    def _check_size(self, size: int | None, received: int) -> None:
        if size is not None and size > self.max_response:
            raise TransportError(
                f"the {self.party} sent an answer larger than {self.max_response} bytes (at least {size}; "
                f"{received} received); WinRM answers are bounded by ansible_psrp_max_envelope_size, so it "
                "was cut off and the connection closed."
            )

    def tunnel_leftover(self) -> bytes:
        """Bytes the proxy sent after its 2xx to CONNECT (they belong to the tunnel)."""
        data, _closed = self._h11.trailing_data
        return bytes(data)

    def close(self) -> None:
        self.stream.close()


def _declared_length(response: h11.Response) -> int | None:
    for name, value in response.headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class PrefixedStream:
    """A Stream that first returns bytes already read from the one below (after CONNECT)."""

    def __init__(self, inner: Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    def send_all(self, data: bytes) -> None:
        self.inner.send_all(data)

    def recv(self, size: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return self.inner.recv(size)

    def probe(self) -> bytes | None:
        return self._prefix or self.inner.probe()

    def close(self) -> None:
        self.inner.close()


def socket_of(stream: Stream) -> SocketStream:
    """The TCP layer under any stack of streams."""
    for _layer in range(8):
        if isinstance(stream, SocketStream):
            return stream
        stream = t.cast(t.Any, stream).inner
    raise TypeError("no socket under this stream")


def start_tls(
    stream: Stream,
    context: ssl.SSLContext,
    server_hostname: str,
    *,
    party: str,
    setting: str,
    timeout: float,
) -> TLSStream:
    """Wrap ``stream`` in TLS; errors name the party and the CA/validation setting to fix."""
    tls = TLSStream(stream, context, server_hostname if context.check_hostname or server_hostname else None)
    tcp = socket_of(stream)
    tcp.set_deadline(timeout)  # the whole handshake, however the peer spreads its bytes
    try:
        tls.handshake()
    except TimeoutError as e:
        raise ConnectTimeoutError(
            f"The TLS handshake with the {party} {server_hostname} timed out after {timeout:g}s "
            "(ansible_psrp_connection_timeout)."
        ) from e
    except ssl.SSLCertVerificationError as e:
        raise TransportError(
            f"The TLS certificate of the {party} {server_hostname} was not trusted: {e.verify_message}; "
            f"set {setting}."
        ) from e
    except (ssl.SSLError, OSError) as e:
        raise TransportError(f"The TLS handshake with the {party} {server_hostname} failed: {e}.") from e
    finally:
        tcp.set_deadline(None)
    log.debug("TLS established with %s %s (%s)", party, server_hostname, tls.ssl_object.version())
    return tls
