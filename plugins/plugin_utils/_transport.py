"""WinRMTransport: WinRM over one held HTTP/1.1 connection, direct or through a proxy.

pypsrp's ``WSMan`` calls ``transport.send(xml, retries_on_read_timeout=, timeout=)``
and reads ``transport.endpoint``; this class gives it exactly that, with the
proxy rules of docs/security.md ("The proxy rules") built in:

R2  the proxy's provider only fills ``Proxy-Authorization`` on CONNECT; the host's
    provider only fills ``Authorization`` on requests inside the tunnel (or
    directly). Forward proxying (http endpoint, no tunnel) never carries
    ``Proxy-Authorization`` (R1 leaves no proxy credentials there).
R4  one TCP connection, the whole handshake on it, every message after it.
R5  affinity loss is detected (fresh 401 on an authenticated connection, close
    after the handshake or while idle, reset while writing) and repaired by
    re-opening only where resending is safe; through a forward proxy it is
    reported as the proxy's fault.
R6  every re-authentication is counted in ``stats["reauths"]`` and reported
    through ``events``.

See docs/transport.md for the connection life and the decisions behind it.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
import time
import typing as t

from . import _socks
from ._connection import (
    ConnectionLost,
    HTTPConnection,
    PrefixedStream,
    Response,
    SocketStream,
    Stream,
    start_tls,
)
from ._encrypted_framing import unwrap
from ._errors import (
    AffinityLostError,
    CommandTimeoutError,
    ConfigError,
    ConnectTimeoutError,
    HostAuthError,
    HostError,
    MalformedAnswerError,
    ProxyAuthError,
    ProxyError,
    ReadTimeoutError,
    TransportError,
    missing_package,
)
from ._httpauth import (
    AuthProvider,
    AuthRejected,
    BasicAuth,
    CertificateAuth,
    certificate_binding,
    host_provider,
    offered,
    parse_challenges,
    proxy_provider,
)
from ._private_tickets import PrivateTickets, check_config
from ._timing import PhaseClock

if t.TYPE_CHECKING:
    from ._spec import ProxySpec, SessionSpec

# Guarded as ansible-core guards its plugins' imports: this module loads without pypsrp, and building a
# transport names the missing package.
try:
    from pypsrp.encryption import WinRMEncryption
    from pypsrp.exceptions import WinRMTransportError
except ImportError as import_error:
    PYPSRP_IMPORT_ERROR: ImportError | None = import_error
else:
    PYPSRP_IMPORT_ERROR = None

log = logging.getLogger(__name__)

USER_AGENT = "pinned.winrm (pypsrp)"
_SOAP = "application/soap+xml;charset=UTF-8"
_MAX_LEGS = 10  # no HTTP auth scheme needs more legs; bounds a misbehaving peer
_MIN_MAX_RESPONSE = 4 * 1024 * 1024

EventSink = t.Callable[[str, str], None]


class _Resend(Exception):
    """Internal: the connection was lost at a point where the request had no effect on the host."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _NotProcessed(Exception):
    """Internal: nothing of the request reached WinRM (no TCP connection, or HTTP 425/429/503), so it may be
    sent again whatever it carries; ``error`` is what the caller sees once reconnection_retries are spent."""

    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


# Answers that say the server did not process the request (RFC 9110 15.6.4, RFC 6585 4, RFC 8470 5.2):
# resent with reconnection_retries, as ansible.builtin.psrp's urllib3 Retry would if it resent POSTs.
_NOT_PROCESSED_STATUSES = frozenset({425, 429, 503})
_MAX_RETRY_AFTER_S = 60.0

# Reasons that prove the path keeps no client-to-host affinity (R5); a forward proxy cannot be repaired.
_AFFINITY_REASONS = frozenset(
    {"closed after the handshake", "fresh 401 on an authenticated connection", "closed during the handshake"}
)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class WinRMTransport:
    """WinRM messages over one held connection (R4), with proxy and host authentication (R2) and R5 repair."""

    def __init__(self, spec: SessionSpec, *, events: EventSink | None = None, clock: PhaseClock | None = None) -> None:
        if PYPSRP_IMPORT_ERROR is not None:
            raise missing_package("pypsrp", PYPSRP_IMPORT_ERROR)
        self.spec = spec
        self.clock = clock or PhaseClock()  # the session's: where each task's time went (-vvv)
        self.endpoint: str = spec.endpoint
        self._events = events
        check_config(spec.kerberos_config)  # the krb5.conf the run named is the one this process reads
        proxy = spec.proxy
        self._forward = proxy is not None and not spec.use_tunnel
        self._authority = f"{_bracket(spec.host)}:{spec.port}"
        path = "/" + spec.path.lstrip("/")
        # absolute-form through a forward proxy (RFC 9112 3.2.2), origin-form otherwise
        self._target = f"{spec.scheme}://{self._authority}{path}" if self._forward else path
        self.stats: dict[str, t.Any] = {
            "tcp_connects": 0,
            "tls_handshakes": 0,
            "proxy_handshakes": 0,
            "host_handshakes": 0,
            "reauths": {},
            "requests": 0,
            "messages": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        # WinRM answers fit MaxEnvelopeSize (pypsrp raises it to 512000 on PSRP 2.2+); anything far
        # larger is a broken or hostile peer, cut off instead of buffered
        self._max_response = max(_MIN_MAX_RESPONSE, 4 * max(spec.max_envelope_size, 512000))
        self._conn: HTTPConnection | None = None
        self._ready = False  # the held connection finished its host authentication
        self._sockets: list[SocketStream] = []
        self._host_auth: AuthProvider | None = None
        self._encryption: WinRMEncryption | None = None
        self._cbt: bytes | None = None
        self._messages_on_conn = 0
        self._host_ctx: ssl.SSLContext | None = None
        self._proxy_ctx: ssl.SSLContext | None = None
        self._command_deadline: float | None = None  # set_command_deadline(): the task's own bound
        self._command_timeout: float | None = None
        self._command_setting = "ansible_psrp_persist_command_timeout"
        self._tickets: dict[str, PrivateTickets | None] = {}  # per hop: the session's own Kerberos ticket
        log.debug(
            "WinRM transport for %s (auth %s, encrypt %s, proxy %s, %s)",
            self.endpoint,
            spec.auth,
            spec.encrypt,
            proxy.url if proxy else None,
            "tunnel" if spec.use_tunnel else ("forward" if proxy else "direct"),
        )

    # -- public -------------------------------------------------------------

    def send(
        self,
        message: bytes,
        *,
        retries_on_read_timeout: int = 0,
        timeout: float | tuple[float, float] | None = None,
    ) -> bytes:
        """Send one WS-Management message and return the host's answer (decrypted).

        Opens and authenticates the connection on first use. Re-opens it (R5)
        only where resending is safe; raises a PinnedError naming the party that
        failed, or pypsrp's WinRMTransportError for a host error answer with a body
        (so WSMan can parse the WSManFault). A read timeout is final: nothing is sent
        again after one, whatever ``retries_on_read_timeout`` asks (see below).
        """
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        if read_timeout:
            # pypsrp wants a Receive answered within its OperationTimeout + 2 s. The host answers by then unless it or
            # the network stalls, and for that the user has ansible_psrp_read_timeout (above the operation timeout,
            # _spec), which the error names: the longer of the two is waited for.
            read_timeout = max(read_timeout, self.spec.read_timeout)
        budget = max(1, self.spec.reconnection_retries + 1)
        reopens = 0
        not_processed = 0
        for _attempt in range(budget + self.spec.reconnection_retries + 1):
            limit = self._command_time_left(read_timeout or self.spec.read_timeout)
            try:
                return self._send_once(message, limit)
            except _NotProcessed as e:
                if self._conn is not None and not self._conn.reusable:
                    self._drop()
                if not_processed >= self.spec.reconnection_retries:
                    raise e.error from None
                not_processed += 1
                delay = self.spec.reconnection_backoff * (2 ** (not_processed - 1))
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, _MAX_RETRY_AFTER_S))
                self._emit("retry", f"{e.error} Nothing was processed; retry {not_processed}/"
                                    f"{self.spec.reconnection_retries} in {delay:g}s (ansible_psrp_reconnection_retries)")
                time.sleep(delay)
            except _Resend as e:
                self._drop()
                if self._forward and e.reason in _AFFINITY_REASONS:
                    self._emit("affinity_lost", f"{e.reason} through forward proxy {self._proxy_url()}")
                    raise AffinityLostError(
                        f"The forward proxy {self._proxy_url()} lost the connection to the Windows host "
                        f"{self._authority} ({e.reason}: {e.detail}); it does not keep one client connection "
                        "mapped to one host connection, which WinRM authentication needs (R5). Use "
                        "`ansible_psrp_protocol: https` (a CONNECT tunnel) or `ansible_psrp_proxy_tunnel: true`."
                    ) from None
                if reopens >= budget:
                    raise TransportError(
                        f"The connection to the Windows host {self._authority}{self._via()} kept failing "
                        f"({e.reason}: {e.detail}); gave up after {reopens} re-open(s) "
                        "(ansible_psrp_reconnection_retries)."
                    ) from None
                if reopens:
                    time.sleep(self.spec.reconnection_backoff * (2 ** (reopens - 1)))
                reopens += 1
                self._count_reauth(e.reason)
                kind = "affinity_lost" if e.reason in _AFFINITY_REASONS else "reauth"
                self._emit(kind, f"{e.reason}; re-opening{self._via()} and re-authenticating (attempt {reopens}/{budget})")
            except ReadTimeoutError as e:
                self._drop()
                if self._command_deadline is not None and time.monotonic() >= self._command_deadline:
                    self._command_time_left(0.0)  # raises CommandTimeoutError, once
                if not retries_on_read_timeout:
                    raise
                # pypsrp asks for a Receive to be sent again (retries_on_read_timeout=5), trusting the host to answer
                # the same data again. Windows keeps a copy of an answer only for a request that carries a
                # wsmv:OperationID (robust connections, MS-WSMV 3.1.4.1.39), which pypsrp never sends: the answer the
                # host may have sent, with the task's output and its final state, is gone. Asking again returns
                # output with a hole in it, or, when the lost answer held the final state, Receives that time out
                # for ever (seen in the fleet benchmark). So it is never asked again.
                self._emit("read_timeout", "a Receive got no answer within the read timeout; not sent again")
                raise ReadTimeoutError(
                    f"{e} The Receive is not sent again: the host keeps no copy of an answer it may have sent (the "
                    "task's output and its end), so the task's outcome is unknown; check the host before running it "
                    "again."
                ) from None
            except BaseException:
                if self._conn is not None and not self._conn.reusable:
                    self._drop()
                raise
        raise TransportError(f"The Windows host {self._authority} could not be reached{self._via()}.")

    def set_command_deadline(self, timeout: float | None, setting: str = "ansible_psrp_persist_command_timeout") -> None:
        """Bound the task under way: no request waits past `timeout` seconds from now (None: no bound).

        The first send at or past the deadline raises CommandTimeoutError and lifts the bound, so stopping the
        task's pipeline and closing the session afterwards still have their connection.
        """
        self._command_deadline = None if not timeout else time.monotonic() + timeout
        self._command_timeout = timeout
        self._command_setting = setting

    def _command_time_left(self, read_timeout: float) -> float:
        """The read timeout for the next request, cut to the command deadline; raises once it has passed."""
        if self._command_deadline is None:
            return read_timeout
        left = self._command_deadline - time.monotonic()
        if left <= 0:
            self._command_deadline = None
            self._emit("command_timeout", f"the task ran past {self._command_setting} ({self._command_timeout:g}s)")
            raise CommandTimeoutError(
                f"The task did not finish within {self._command_setting} ({self._command_timeout:g}s) on "
                f"{self._authority}{self._via()}; it was stopped and its session closed. Its outcome on the host is "
                "unknown: check the host before running it again."
            )
        return min(read_timeout, left)

    def close(self) -> None:
        """Close the held connection (the next send opens a new one)."""
        if self._conn is not None:
            self._drop()
            self._emit("close", f"closed the connection to {self._authority}{self._via()}")
        for tickets in self._tickets.values():
            if tickets is not None:
                tickets.destroy()
        self._tickets = {}

    # -- connection life ----------------------------------------------------

    def _send_once(self, message: bytes, timeout: float | None) -> bytes:
        if self._conn is None or not self._ready:
            self._drop()
            try:
                self._open()
                self._authenticate()
            except BaseException:
                self._drop()
                raise
            self._ready = True
        if self._conn is None:
            raise TransportError("internal: no connection is open")
        # before writing: a peer that closed (after the handshake or while idle) is found here, where resending is safe
        state = self._conn.idle_state()
        if state != "open":
            reason = "closed after the handshake" if self._messages_on_conn == 0 else "closed while idle"
            peer = "proxy" if self.spec.proxy else "Windows host"
            what = "closed" if state == "closed" else "sent unrequested data on"
            raise _Resend(reason, f"the {peer} {what} the connection")
        headers = self._base_headers()
        per_request = self._host_auth.preemptive() if self._host_auth is not None else None
        if per_request:
            headers.append(("Authorization", per_request))
        if self._encryption is not None:
            content_type, payload = self._encryption.wrap_message(message)
            headers.append(
                ("Content-Type", f'{content_type};protocol="{self._encryption.protocol}";boundary="Encrypted Boundary"')
            )
        else:
            payload = message
            headers.append(("Content-Type", _SOAP))
        resp = self._request("POST", self._target, headers, payload, timeout=timeout or self.spec.read_timeout)
        self._messages_on_conn += 1
        self.stats["messages"] += 1
        self._check_not_processed(resp)
        if resp.status == 401:
            if self._host_auth is not None and not isinstance(self._host_auth, (BasicAuth, CertificateAuth)):
                raise _Resend("fresh 401 on an authenticated connection", "the host no longer knows this connection's authentication")
            raise self._host_auth_error(resp, rejected=True)
        self._check_proxy_answer(resp)
        # Before the status is read: an unencrypted error (a forged "shell not found" fault, say) must not make
        # the session act, for instance resend a command the host may already run. Only the host can encrypt.
        if self._encryption is not None and resp.body and not self._was_encrypted(resp):
            raise TransportError(
                f"The answer from {self._authority}{self._via()} (HTTP {resp.status}) was not encrypted although WinRM "
                "message encryption is on (R3); refusing it."
            )
        body = self._decrypt(resp)
        if resp.status >= 400:
            self._raise_host_status(resp, body)
        content_type = (resp.header("content-type") or "").lower()
        if body and self._encryption is None and not content_type.startswith("application/soap+xml"):
            # a captive portal, a proxy's own page or a non-WinRM service: say so instead of an XML error
            raise TransportError(
                f"The answer from {self._authority}{self._via()} is not a WS-Management message (HTTP "
                f"{resp.status}, Content-Type {content_type or 'none'!r}); check ansible_port and ansible_psrp_path "
                "point at the WinRM listener."
            )
        return body

    def _request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout: float | None,
        handshake: bool = False,
    ) -> Response:
        if self._conn is None:
            raise TransportError("internal: no connection is open")
        try:
            resp = self._conn.request(method, target, headers, body, timeout=timeout)
        except ConnectionLost as e:
            self._account()
            self._drop()
            if handshake:  # an empty handshake POST has no effect on the host: always safe to resend
                raise _Resend("closed during the handshake", str(e)) from None
            if not e.request_complete:
                raise _Resend("reset while writing", str(e)) from None
            raise TransportError(
                f"The connection to {self._authority}{self._via()} was lost after the request was sent and "
                f"before any answer ({e}); the outcome on the host is unknown, so it was not resent."
            ) from None
        except ReadTimeoutError as e:
            self._account()
            self._drop()
            raise ReadTimeoutError(f"Waiting for the Windows host {self._authority}{self._via()}: {e}") from None
        self.stats["requests"] += 1
        self.clock.count(requests=1)
        self._account()
        log.debug("%s %s (%d bytes) -> %d (%d bytes)", method, target, len(body), resp.status, len(resp.body))
        return resp

    def _open(self) -> None:
        spec = self.spec
        self._messages_on_conn = 0
        self._encryption = None
        # load CA and client certificates before any socket: a bad path is a ConfigError with nothing sent
        host_ctx = self._host_context() if spec.scheme == "https" else None
        if spec.proxy is not None and spec.proxy.scheme == "https":
            self._proxy_context()
        stream: Stream
        if _socks.is_socks(spec.proxy):
            stream = self._open_socks_stream()
            party = f"Windows host {self._authority} (through proxy {t.cast('ProxySpec', spec.proxy).url})"
        elif spec.proxy is not None:
            stream = self._open_proxy_stream()
            if spec.use_tunnel:
                stream = self._open_tunnel(stream)
            party = (f"Windows host {self._authority} (through proxy {spec.proxy.url})" if spec.use_tunnel
                     else f"proxy {spec.proxy.url}")
        else:
            stream = self._new_socket(spec.host, spec.port, party="Windows host", setting="ansible_host and ansible_port")
            party = f"Windows host {self._authority}"
        if spec.scheme == "https":
            if host_ctx is None:
                raise TransportError("internal: no TLS context for an https endpoint")
            with self.clock.phase("tls"):
                tls = start_tls(
                    stream,
                    host_ctx,
                    spec.host,
                    party=f"Windows host{self._via()}",
                    setting="ansible_psrp_ca_cert (or ansible_psrp_cert_validation: ignore)",
                    timeout=spec.connection_timeout,
                )
            self.stats["tls_handshakes"] += 1
            self._cbt = certificate_binding(tls.peer_certificate())
            stream = tls
        self._conn = HTTPConnection(stream, party=party, max_response=self._max_response)
        self._emit("connect", f"connected to {self._authority}{self._via()}")

    def _new_socket(self, host: str, port: int, *, party: str, setting: str) -> SocketStream:
        try:
            with self.clock.phase("connect"):
                sock = SocketStream.connect(host, port, self.spec.connection_timeout, party=party, setting=setting)
        except TransportError as e:  # refused or timed out: nothing was sent
            raise _NotProcessed(e) from None
        self._sockets.append(sock)
        self.stats["tcp_connects"] += 1
        self.clock.count(tcp_connects=1)
        return sock

    def _open_socks_stream(self) -> SocketStream:
        """A TCP stream to the host through the SOCKS5 proxy (the proxy relays it as it is: no CONNECT)."""
        proxy = t.cast("ProxySpec", self.spec.proxy)
        try:
            with self.clock.phase("proxy"):  # TCP to the proxy and its SOCKS handshake, one call of python-socks
                sock = _socks.connect(proxy, self.spec.host, self.spec.port, self.spec.connection_timeout)
        except TransportError as e:
            if type(e) in (TransportError, ConnectTimeoutError):  # the proxy was not reached: nothing was sent
                raise _NotProcessed(e) from None
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = SocketStream(sock, f"{proxy.host}:{proxy.port}")
        self._sockets.append(stream)
        self.stats["tcp_connects"] += 1
        self.clock.count(tcp_connects=1)
        return stream

    def _open_proxy_stream(self) -> Stream:
        proxy = t.cast("ProxySpec", self.spec.proxy)
        stream: Stream = self._new_socket(proxy.host, proxy.port, party=f"proxy {proxy.url}", setting="ansible_psrp_proxy")
        if proxy.scheme == "https":
            with self.clock.phase("tls"):
                stream = start_tls(
                    stream,
                    self._proxy_context(),
                    proxy.host,
                    party=f"proxy {proxy.url}",
                    setting="ansible_psrp_proxy_ca_cert",
                    timeout=self.spec.connection_timeout,
                )
            self.stats["tls_handshakes"] += 1
        return stream

    def _open_tunnel(self, stream: Stream) -> Stream:
        """CONNECT host:port, answering 407s on the same connection (all schemes)."""
        with self.clock.phase("proxy"):
            return self._connect_through(stream)

    def _connect_through(self, stream: Stream) -> Stream:
        proxy = t.cast("ProxySpec", self.spec.proxy)
        party = f"proxy {proxy.url}"
        conn = HTTPConnection(stream, party=party, max_response=self._max_response)
        provider = proxy_provider(proxy, self.spec, private=lambda: self._private_credentials("proxy"))
        base = [("Host", self._authority), ("User-Agent", USER_AGENT)]
        credential: str | None = None
        for _leg in range(_MAX_LEGS):
            headers = base + ([("Proxy-Authorization", credential)] if credential else [])
            try:
                resp = conn.request(
                    "CONNECT", self._authority, headers, timeout=self.spec.connection_timeout,
                    timeout_setting="ansible_psrp_connection_timeout",
                )
            except ConnectionLost as e:
                conn.close()
                raise ProxyError(f"The proxy {proxy.url} dropped the connection during CONNECT {self._authority}: {e}.") from None
            self.stats["requests"] += 1
            self.clock.count(requests=1)
            self._account()
            if 200 <= resp.status < 300:
                if credential:
                    self.stats["proxy_handshakes"] += 1
                    self._emit("proxy_auth", f"proxy {proxy.url} accepted {provider.label if provider else ''} for CONNECT {self._authority}")
                log.debug("CONNECT %s through %s -> %d", self._authority, proxy.url, resp.status)
                leftover = conn.tunnel_leftover()
                return PrefixedStream(conn.stream, leftover) if leftover else conn.stream
            if resp.status == 407:
                challenges = parse_challenges(resp.header_values("proxy-authenticate"))
                schemes = offered(challenges)
                if provider is None:
                    conn.close()
                    raise ProxyAuthError(
                        f"The proxy {proxy.url} requires authentication (407; it offers {', '.join(schemes) or 'no scheme'}); "
                        "set ansible_psrp_proxy_auth, ansible_psrp_proxy_user and ansible_psrp_proxy_password.",
                        status=407,
                        schemes=schemes,
                    )
                credential_sent = credential is not None
                try:
                    credential = provider.respond(challenges, "CONNECT", self._authority)
                except AuthRejected:
                    conn.close()
                    raise ProxyAuthError(self._proxy_rejected_message(proxy, schemes, bool(credential)), status=407, schemes=schemes) from None
                if resp.will_close:
                    conn.close()
                    if credential_sent and not provider.resumable:
                        raise ProxyAuthError(
                            f"The proxy {proxy.url} closed the connection after its 407 in the middle of the "
                            f"{proxy.auth} handshake; {proxy.auth} is bound to one connection (R4), so the proxy must "
                            "keep the connection open for its 407 answers (Squid: keep-alive and "
                            "auth_param ... keep_alive on).",
                            status=407,
                            schemes=schemes,
                        )
                    self._emit("reconnect", f"proxy {proxy.url} closed after its 407; reconnecting to answer with {provider.label}")
                    conn = HTTPConnection(self._open_proxy_stream(), party=party, max_response=self._max_response)
                continue
            conn.close()
            raise self._proxy_refusal(resp, connect=True)
        conn.close()
        raise ProxyAuthError(f"The proxy {proxy.url} kept asking for authentication after {_MAX_LEGS} legs.", status=407)

    def _authenticate(self) -> None:
        """Authenticate to the host on the fresh connection (the whole handshake on it, R4)."""
        with self.clock.phase("auth"):
            self._host_handshake()

    def _host_handshake(self) -> None:
        spec = self.spec
        provider = host_provider(spec, channel_bindings=self._cbt, private=lambda: self._private_credentials("host"))
        self._host_auth = provider
        if isinstance(provider, (BasicAuth, CertificateAuth)):
            if spec.encrypt:
                raise ConfigError(
                    f"ansible_psrp_message_encryption: {spec.auth} authentication cannot encrypt WinRM messages; "
                    "use ntlm, negotiate, kerberos or credssp, or https."
                )
            return  # the header rides on every request; a 401 on the first message is the refusal
        try:
            credential = provider.initial()
        except AuthRejected as e:
            raise HostAuthError(
                f"Could not start {spec.auth} authentication to {self._authority} ({e}); check ansible_user, "
                "ansible_password and ansible_psrp_auth (and the Kerberos set-up for kerberos/negotiate)."
            ) from None
        for leg in range(_MAX_LEGS):
            headers = self._base_headers() + [("Content-Type", _SOAP)]
            if credential:
                headers.append(("Authorization", credential))
            resp = self._request("POST", self._target, headers, b"", timeout=spec.read_timeout, handshake=True)
            self.clock.count(auth_legs=1)
            if resp.status == 401:
                challenges = parse_challenges(resp.header_values("www-authenticate"))
                sent = credential is not None
                try:
                    credential = provider.respond(challenges, "POST", self._target)
                except AuthRejected:
                    raise self._host_auth_error(resp, rejected=sent) from None
                if resp.will_close:
                    if sent:
                        raise _Resend("closed during the handshake", "the peer closed the connection between handshake legs")
                    # an offers-only 401 that closes (as Windows does): no context started yet, start on a new connection
                    self._emit("reconnect", f"{self._authority} closed after its first 401; reconnecting{self._via()}")
                    self._drop()
                    self._open()
                continue
            self._check_proxy_answer(resp)
            self._check_not_processed(resp)
            if 200 <= resp.status < 300:
                try:
                    provider.finish(parse_challenges(resp.header_values("www-authenticate")))
                except AuthRejected as e:
                    raise HostAuthError(
                        f"The Windows host {self._authority}{self._via()} accepted the credentials but its final "
                        f"authentication token did not verify ({e}); refusing the session (mutual authentication)."
                    ) from None
                self.stats["host_handshakes"] += 1
                if spec.encrypt:
                    self._encryption = WinRMEncryption(provider.context, t.cast(str, provider.encryption_protocol))
                self._emit("host_auth", f"authenticated to {self._authority} with {provider.label} in {leg + 1} leg(s)")
                return
            self._raise_host_status(resp, self._decrypt(resp))
        raise HostAuthError(f"The Windows host {self._authority} kept asking for authentication after {_MAX_LEGS} legs.", status=401)

    def _private_credentials(self, hop: str) -> list[t.Any] | None:
        """The session's own Kerberos ticket for `hop` ("host" or "proxy") as pyspnego credentials, or None.

        A password login (Kerberos; Negotiate with a user@REALM name) or a client keytab gets a ticket into a
        private MEMORY: cache once per session (_private_tickets); the same cache serves re-authentications.
        Negotiate whose login fails falls back to what pyspnego does with the password (NTLM), as before.
        """
        spec = self.spec
        auth: str | None  # the proxy's is optional (no proxy authentication)
        if hop == "host":
            auth, user, password, peer = spec.auth, spec.username, spec.password, f"Windows host {self._authority}"
        else:
            proxy = t.cast("ProxySpec", spec.proxy)
            auth, user, password, peer = proxy.auth, proxy.username, proxy.password, f"proxy {proxy.url}"
        keytab = spec.kerberos_keytab if password is None else None
        principal = user or (spec.kerberos_principal if keytab else None)
        if auth not in ("kerberos", "negotiate") or not principal or (password is None and not keytab):
            return None
        if auth == "negotiate" and password is not None and "@" not in principal:
            return None  # a NetBIOS or local name: Negotiate's choice between Kerberos and NTLM stays pyspnego's
        if hop not in self._tickets:
            self._tickets[hop] = PrivateTickets(principal, password=password, keytab=keytab, hop=hop, peer=peer,
                                                forwardable=hop == "host" and spec.negotiate_delegate)
        tickets = self._tickets[hop]
        if tickets is None:
            return None
        try:
            return tickets.credentials(auth)
        except (HostAuthError, ProxyAuthError) as e:
            if auth == "negotiate" and password is not None:
                log.debug("Negotiate: the Kerberos login failed (%s); pyspnego chooses as before", e)
                self._tickets[hop] = None  # not again for this session
                return None
            raise

    def _drop(self) -> None:
        self._account()
        if self._conn is not None:
            self._conn.close()
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._conn = None
        self._encryption = None
        self._ready = False

    # -- answers ------------------------------------------------------------

    def _check_not_processed(self, resp: Response) -> None:
        """425/429/503 from the host (not a forward proxy's own refusal): the message was not processed."""
        if resp.status not in _NOT_PROCESSED_STATUSES or (self._forward and resp.header("x-squid-error")):
            return
        retry_after = resp.header("retry-after")
        seconds = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        raise _NotProcessed(
            HostError(
                f"The Windows host {self._authority} answered HTTP {resp.status} {resp.reason}{self._via()} and did "
                "not process the request; raise ansible_psrp_reconnection_retries to try again.",
                status=resp.status,
            ),
            retry_after=seconds,
        )

    def _check_proxy_answer(self, resp: Response) -> None:
        """Through a forward proxy some answers are the proxy's own, not the host's."""
        if not self._forward:
            return
        if resp.status == 407:
            schemes = offered(parse_challenges(resp.header_values("proxy-authenticate")))
            raise ProxyAuthError(
                f"The proxy {self._proxy_url()} requires authentication (407; it offers {', '.join(schemes) or 'no scheme'}) "
                f"for the http:// endpoint {self.endpoint}. Proxy credentials are only sent inside a CONNECT tunnel (R1): "
                "use `ansible_psrp_protocol: https` or `ansible_psrp_proxy_tunnel: true` with ansible_psrp_proxy_auth, "
                "ansible_psrp_proxy_user and ansible_psrp_proxy_password.",
                status=407,
                schemes=schemes,
            )
        if resp.header("x-squid-error") or resp.status in (502, 504):
            raise self._proxy_refusal(resp, connect=False)

    def _proxy_refusal(self, resp: Response, *, connect: bool) -> ProxyError:
        url = self._proxy_url()
        detail = f"{resp.status} {resp.reason}".strip()
        squid = resp.header("x-squid-error")
        if squid:
            detail += f", X-Squid-Error: {squid}"
        if resp.status == 403:
            what = f"refused to open a tunnel to {self._authority} (CONNECT {detail}); allow CONNECT to port {self.spec.port} in the proxy's rules"
        elif resp.status in (502, 503, 504):
            what = f"could not reach the Windows host {self._authority} ({detail}); check ansible_host/ansible_port from the proxy's side"
        else:
            what = f"refused {'CONNECT ' + self._authority if connect else 'the request'} ({detail})"
        return ProxyError(f"The proxy {url} {what}.", status=resp.status)

    def _host_auth_error(self, resp: Response, *, rejected: bool) -> HostAuthError:
        schemes = offered(parse_challenges(resp.header_values("www-authenticate")))
        offers = ", ".join(schemes) or "nothing"
        if rejected:
            msg = (
                f"The Windows host {self._authority} rejected the credentials of user {self.spec.username!r} "
                f"with {self.spec.auth} (401; it offers {offers}); check ansible_user, ansible_password and "
                "ansible_psrp_auth."
            )
            if self._forward:
                msg += (
                    f" Through the forward proxy {self._proxy_url()} this is also what a proxy without connection "
                    "affinity causes (R5); if the credentials are right, use `ansible_psrp_protocol: https` or "
                    "`ansible_psrp_proxy_tunnel: true`."
                )
        else:
            msg = (
                f"The Windows host {self._authority} does not offer {self.spec.auth} authentication (401; it offers "
                f"{offers}); set ansible_psrp_auth to one it offers."
            )
        return HostAuthError(msg, status=401)

    def _raise_host_status(self, resp: Response, body: bytes) -> t.NoReturn:
        if body:
            # pypsrp's WSMan parses the WSManFault out of this exact exception
            raise WinRMTransportError("http", resp.status, body.decode("utf-8", "replace"))
        raise HostError(
            f"The Windows host {self._authority} answered HTTP {resp.status} {resp.reason}{self._via()}.",
            status=resp.status,
            body=body,
        )

    def _decrypt(self, resp: Response) -> bytes:
        content_type = resp.header("content-type") or ""
        if not self._was_encrypted(resp):
            return resp.body
        if self._encryption is None:
            raise MalformedAnswerError(
                f"The Windows host {self._authority} sent an encrypted answer on a connection that has no encryption "
                "context; it was refused."
            )
        try:
            return unwrap(self._encryption.context, self._encryption.protocol, content_type, resp.body,
                          party=f"{self._authority}{self._via()}")
        except BaseException:
            self._drop()  # the context's sequence (NTLM's RC4 stream too) no longer matches the host's
            raise

    @staticmethod
    def _was_encrypted(resp: Response) -> bool:
        content_type = (resp.header("content-type") or "").lower()
        return content_type.startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))

    # -- helpers ------------------------------------------------------------

    def _base_headers(self) -> list[tuple[str, str]]:
        return [
            ("Host", self._authority),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),  # IIS-hosted endpoints compress otherwise (pypsrp does the same)
            ("Connection", "Keep-Alive"),
        ]

    def _proxy_url(self) -> str:
        return self.spec.proxy.url if self.spec.proxy else ""

    def _via(self) -> str:
        if self.spec.proxy is None:
            return ""
        return f" through {'the tunnel of ' if self.spec.use_tunnel else ''}proxy {self.spec.proxy.url}"

    def _proxy_rejected_message(self, proxy: ProxySpec, schemes: tuple[str, ...], answered: bool) -> str:
        offers = ", ".join(schemes) or "no scheme"
        if answered:
            return (
                f"The proxy {proxy.url} rejected the proxy credentials of {proxy.username!r} with {proxy.auth} "
                f"(407; it offers {offers}); check ansible_psrp_proxy_user and ansible_psrp_proxy_password."
            )
        return (
            f"The proxy {proxy.url} does not offer {proxy.auth} authentication (407; it offers {offers}); "
            "set ansible_psrp_proxy_auth to one it offers."
        )

    def _count_reauth(self, reason: str) -> None:
        reauths = self.stats["reauths"]
        reauths[reason] = reauths.get(reason, 0) + 1

    def _emit(self, kind: str, detail: str) -> None:
        log.debug("event %s: %s", kind, detail)
        if self._events is not None:
            try:
                self._events(kind, detail)
            except Exception:  # an observer must not break the session
                log.debug("event sink failed", exc_info=True)

    def _account(self) -> None:
        for sock in self._sockets:
            seen_in, seen_out = sock.bytes_accounted
            self.stats["bytes_in"] += sock.bytes_in - seen_in
            self.stats["bytes_out"] += sock.bytes_out - seen_out
            self.clock.count(bytes_in=sock.bytes_in - seen_in, bytes_out=sock.bytes_out - seen_out)
            sock.bytes_accounted = (sock.bytes_in, sock.bytes_out)

    def _host_context(self) -> ssl.SSLContext:
        if self._host_ctx is None:
            spec = self.spec
            if spec.cert_validation:
                ctx = _verifying_context(spec.ca_cert, "ansible_psrp_ca_cert")
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if spec.auth == "certificate":
                _load_client_certificate(ctx, spec.certificate_pem, spec.certificate_key_pem, spec.certificate_key_password)
            self._host_ctx = ctx
        return self._host_ctx

    def _proxy_context(self) -> ssl.SSLContext:
        if self._proxy_ctx is None:
            self._proxy_ctx = _verifying_context(t.cast("ProxySpec", self.spec.proxy).ca_cert, "ansible_psrp_proxy_ca_cert")
        return self._proxy_ctx


def _verifying_context(ca: str | None, setting: str) -> ssl.SSLContext:
    try:
        if ca and ca.lstrip().startswith("-----BEGIN"):
            return ssl.create_default_context(cadata=ca)
        if ca and os.path.isdir(ca):
            return ssl.create_default_context(capath=ca)
        return ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"{setting}: could not load the CA certificates: {e}.") from None


def _load_client_certificate(ctx: ssl.SSLContext, cert: str | None, key: str | None, password: str | None) -> None:
    if not cert or not key:
        raise ConfigError(
            "certificate authentication needs ansible_psrp_certificate_pem and ansible_psrp_certificate_key_pem."
        )
    with tempfile.TemporaryDirectory() as tmp:
        # ssl only loads certificates from files; PEM text is written to a private temp dir for the load
        paths = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            if value.lstrip().startswith("-----BEGIN"):
                path = os.path.join(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
                paths.append(path)
            else:
                paths.append(value)
        try:
            ctx.load_cert_chain(paths[0], paths[1], password=password)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"ansible_psrp_certificate_pem / ansible_psrp_certificate_key_pem: could not load the client "
                f"certificate: {getattr(e, 'strerror', None) or e}."
            ) from None
