"""HTTP authentication providers, one shape for the host and for the proxy (R2).

A provider turns the challenges of a 401 (``WWW-Authenticate``) or a 407
(``Proxy-Authenticate``) into the next ``Authorization`` or
``Proxy-Authorization`` value. The transport decides which header pair a
provider serves, so a provider built from proxy credentials can only ever talk
to the proxy and one built from host credentials only to the host.

The token work is done by libraries: pyspnego (NTLM, Negotiate, Kerberos,
CredSSP) and requests' HTTPDigestAuth (Digest). What is written here by hand
is the challenge parser: neither requests nor urllib3 parses a header that
carries several challenges (``Negotiate, NTLM, Basic realm="x"``).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import ssl
import typing as t

from ._errors import ConfigError, missing_package
from ._kerberos import TICKET_AUTHS, ticket_credentials

# Guarded as ansible-core guards its plugins' imports: this module loads without them, and the provider that
# needs one names it when it is built.
try:
    import spnego
    import spnego.channel_bindings
    import spnego.tls
except ImportError as import_error:
    SPNEGO_IMPORT_ERROR: ImportError | None = import_error
else:
    SPNEGO_IMPORT_ERROR = None
try:
    from requests.auth import HTTPDigestAuth
except ImportError as import_error:
    REQUESTS_IMPORT_ERROR: ImportError | None = import_error
else:
    REQUESTS_IMPORT_ERROR = None

log = logging.getLogger(__name__)

CERTIFICATE_AUTH_HEADER = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"

# WinRM message encryption protocol names (same strings as pypsrp.encryption.WinRMEncryption).
ENC_SPNEGO = "application/HTTP-SPNEGO-session-encrypted"
ENC_KERBEROS = "application/HTTP-Kerberos-session-encrypted"
ENC_CREDSSP = "application/HTTP-CredSSP-session-encrypted"

_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class AuthRejected(Exception):
    """The provider has no answer left for the peer's challenge (credentials refused or scheme missing)."""


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate / Proxy-Authenticate header."""

    scheme: str  # as the peer spelled it (Negotiate, NTLM, Digest, ...)
    token: str | None = None  # token68 (base64 auth data), if any
    params: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.scheme.lower()


def parse_challenges(values: t.Iterable[str]) -> list[Challenge]:
    """Parse header values into challenges (RFC 9110 11.6.1: scheme [token68 | #auth-param])."""
    result: list[Challenge] = []
    for value in values:
        result.extend(_parse_one(value))
    return result


def _parse_one(value: str) -> list[Challenge]:
    items: list[Challenge] = []
    pos, end = 0, len(value)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < end and value[pos] in chars:
            pos += 1

    def token() -> str:
        nonlocal pos
        start = pos
        while pos < end and value[pos] in _TCHAR:
            pos += 1
        return value[start:pos]

    def quoted() -> str:
        nonlocal pos
        pos += 1
        out = []
        while pos < end and value[pos] != '"':
            if value[pos] == "\\" and pos + 1 < end:
                pos += 1
            out.append(value[pos])
            pos += 1
        pos += 1
        return "".join(out)

    for _turn in range(len(value) + 1):  # bounded: every turn consumes input
        skip(" \t,")
        if pos >= end:
            break
        scheme = token()
        if not scheme:
            pos += 1
            continue
        skip(" \t")
        params: dict[str, str] = {}
        # token68 (base64 data, '=' padding) when nothing but ',' or the end follows it
        start = pos
        while pos < end and (value[pos] in _TCHAR or value[pos] == "/"):
            pos += 1
        while pos < end and value[pos] == "=":
            pos += 1
        rest = value[pos:].lstrip(" \t")
        if pos > start and (not rest or rest.startswith(",")):
            items.append(Challenge(scheme, value[start:pos], params))
            continue
        pos = start
        # auth-params: name=value pairs until the next bare token (next scheme)
        for _turn in range(len(value) + 1):
            skip(" \t,")
            mark = pos
            name = token()
            skip(" \t")
            if not name or pos >= end or value[pos] != "=":
                pos = mark
                break
            pos += 1
            skip(" \t")
            params[name.lower()] = quoted() if pos < end and value[pos] == '"' else token()
        items.append(Challenge(scheme, None, params))
    return items


def offered(challenges: t.Iterable[Challenge]) -> tuple[str, ...]:
    """The scheme names a peer offered, for error messages (never tokens)."""
    seen: list[str] = []
    for ch in challenges:
        if ch.scheme not in seen:
            seen.append(ch.scheme)
    return tuple(seen)


class AuthProvider:
    """Base: the next credential header for a challenge."""

    #: a provider whose state survives a new TCP connection (Basic, Digest)
    resumable = False

    def __init__(self) -> None:
        self.complete = False
        self.label = ""

    @property
    def encryption_protocol(self) -> str | None:
        """WinRM message encryption protocol once complete, None if the scheme cannot encrypt."""
        return None

    def preemptive(self) -> str | None:
        """A header value to send on every request before any challenge, or None."""
        return None

    def initial(self) -> str | None:
        """A first handshake token to send before any challenge, or None."""
        return None

    def respond(self, challenges: list[Challenge], method: str, target: str) -> str:
        """The header value answering ``challenges``; raises AuthRejected when there is none."""
        raise NotImplementedError

    def finish(self, challenges: list[Challenge]) -> None:
        """Consume a final token sent with the success answer (mutual authentication)."""
        self.complete = True

    @property
    def context(self) -> t.Any:
        return None


class BasicAuth(AuthProvider):
    resumable = True

    def __init__(self, username: str | None, password: str | None, *, send_first: bool) -> None:
        super().__init__()
        if not username or password is None:
            raise ConfigError("basic authentication needs a user name and a password.")
        self.label = "Basic"
        self._value = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self._send_first = send_first
        self._sent = False

    def preemptive(self) -> str | None:
        # the host's Basic rides on every request (as pypsrp does); the proxy's waits for a 407
        return self._value if self._send_first else None

    def respond(self, challenges: list[Challenge], method: str, target: str) -> str:
        if self._sent or not any(c.name == "basic" for c in challenges):
            raise AuthRejected("basic")
        self._sent = True
        return self._value


class DigestAuth(AuthProvider):
    """Digest through requests' own header builder (RFC 2617/7616 hashing, nonce counting)."""

    resumable = True

    def __init__(self, username: str | None, password: str | None) -> None:
        super().__init__()
        if REQUESTS_IMPORT_ERROR is not None:
            raise missing_package("requests", REQUESTS_IMPORT_ERROR)
        if not username or password is None:
            raise ConfigError("digest authentication needs a user name and a password.")
        self.label = "Digest"
        self._digest = HTTPDigestAuth(username, password)
        self._digest.init_per_thread_state()
        self._answered_nonce: str | None = None

    def respond(self, challenges: list[Challenge], method: str, target: str) -> str:
        chal = next((c for c in challenges if c.name == "digest"), None)
        if chal is None or "nonce" not in chal.params:
            raise AuthRejected("digest")
        stale = chal.params.get("stale", "").lower() == "true"
        # A second challenge after our answer means the credentials were refused, whatever nonce it carries
        # (Squid sends a fresh one); only stale=true asks for the same credentials again (RFC 7616 3.3).
        if self._answered_nonce is not None and not stale:
            raise AuthRejected("digest")
        self._digest._thread_local.chal = dict(chal.params, realm=chal.params.get("realm", ""))
        # requests hashes urlparse(url).path as the digest-uri; "x:<target>" makes that the exact
        # request target, including the authority form "host:port" of CONNECT.
        header = self._digest.build_digest_header(method, f"x:{target}")
        if header is None:
            raise AuthRejected("digest (unsupported algorithm or qop)")
        self._answered_nonce = chal.params["nonce"]
        return header


class CertificateAuth(AuthProvider):
    """WinRM certificate auth: the TLS client certificate does the work; the header names the profile."""

    resumable = True

    def __init__(self) -> None:
        super().__init__()
        self.label = "certificate"

    def preemptive(self) -> str | None:
        return CERTIFICATE_AUTH_HEADER

    def respond(self, challenges: list[Challenge], method: str, target: str) -> str:
        raise AuthRejected("certificate")


class SpnegoAuth(AuthProvider):
    """NTLM, Negotiate or Kerberos through a pyspnego initiator context (connection bound)."""

    def __init__(
        self,
        username: str | None,
        password: str | None,
        *,
        protocol: str,
        hostname: str,
        service: str,
        labels: t.Sequence[str],
        delegate: bool = False,
        wrap: bool = False,
        channel_bindings: bytes | None = None,
        first_label: str | None = None,
        tickets: list[t.Any] | None = None,
        private: t.Callable[[], list[t.Any] | None] | None = None,
        spn_settings: str = "ansible_psrp_negotiate_hostname_override or ansible_psrp_negotiate_service",
    ) -> None:
        super().__init__()
        if SPNEGO_IMPORT_ERROR is not None:
            raise missing_package("pyspnego", SPNEGO_IMPORT_ERROR)
        self._first_label = first_label
        self._tickets = tickets  # pyspnego credentials naming the run's own cache/keytab (no password)
        self._private = private  # the session's own ticket for this hop (_private_tickets), asked per context
        self._spn_settings = spn_settings
        self._username = username
        self._password = password
        self._protocol = protocol
        self._hostname = hostname
        self._service = service
        self._labels = tuple(labels)
        self._delegate = delegate
        self._wrap = wrap
        self._cbt = channel_bindings
        self._context: spnego.ContextProxy | None = None

    @property
    def context(self) -> spnego.ContextProxy | None:
        return self._context

    def _new_context(self) -> spnego.ContextProxy:
        context_req = spnego.ContextReq.default
        if self._delegate:
            context_req |= spnego.ContextReq.delegate
        bindings = None
        if self._cbt:
            bindings = spnego.channel_bindings.GssChannelBindings(application_data=self._cbt)
        private = self._private() if self._private is not None else None
        if private:
            who: t.Any = private
            password = None
        else:
            who = self._tickets if self._tickets and self._password is None else self._username
            password = self._password
        return spnego.client(
            who,
            password,
            hostname=self._hostname,
            service=self._service,
            channel_bindings=bindings,
            context_req=context_req,
            protocol=self._protocol,
            options=spnego.NegotiateOptions.wrapping_winrm if self._wrap else spnego.NegotiateOptions.none,
        )

    def initial(self) -> str | None:
        """The first token without waiting for a challenge (saves the offers-only round trip), or None."""
        if self._first_label is None:
            return None
        self.label = self._first_label
        self._context = self._new_context()
        try:
            out_token = self._context.step(None)
        except spnego.exceptions.SpnegoError as e:
            raise AuthRejected(self._explain(str(getattr(e, "message", type(e).__name__)))) from e
        return f"{self.label} {base64.b64encode(out_token).decode()}" if out_token else None

    def respond(self, challenges: list[Challenge], method: str, target: str) -> str:
        if self._context is None:
            names = {c.name: c for c in challenges}
            label = next((lab for lab in self._labels if lab.lower() in names), None)
            if label is None:
                raise AuthRejected(self._protocol)
            self.label = label
            self._context = self._new_context()
            in_token = None
        else:
            chal = next((c for c in challenges if c.name == self.label.lower()), None)
            if chal is None or not chal.token:
                raise AuthRejected(self._protocol)  # a bare challenge again: the credentials were refused
            in_token = _peer_token(chal.token, self._protocol)
        try:
            out_token = self._context.step(in_token)
        except spnego.exceptions.SpnegoError as e:
            raise AuthRejected(self._explain(str(e.message if hasattr(e, "message") else type(e).__name__))) from e
        except Exception as e:  # pyspnego raises struct.error/ValueError/... for malformed tokens from the peer
            raise AuthRejected(f"{self._protocol}: the peer sent a malformed token ({type(e).__name__})") from e
        if not out_token:
            raise AuthRejected(self._protocol)
        return f"{self.label} {base64.b64encode(out_token).decode()}"

    def _explain(self, message: str) -> str:
        """The library's message, with the SPN and the settings that choose it when the KDC knows no such service."""
        spn = f"{self._service}/{self._hostname}"
        lowered = message.lower()
        if "server not found" in lowered or ("server" in lowered and "not found in kerberos database" in lowered):
            return (f"{self._protocol}: {message}; the KDC knows no service principal {spn}: set {self._spn_settings} "
                    f"to the name in its SPN, or register it on the service's account (setspn -S {spn} <account>)")
        return f"{self._protocol}: {message} (SPN {spn})" if self._protocol != "ntlm" else f"{self._protocol}: {message}"

    def finish(self, challenges: list[Challenge]) -> None:
        chal = next((c for c in challenges if c.name == self.label.lower()), None)
        if self._context is not None and not self._context.complete and chal is not None and chal.token:
            try:
                self._context.step(_peer_token(chal.token, self._protocol))  # mutual auth (Kerberos AP-REP)
            except AuthRejected:
                raise
            except Exception as e:  # a bad final token fails mutual authentication, whatever pyspnego raises
                raise AuthRejected(f"{self._protocol}: mutual authentication failed ({type(e).__name__})") from e
        if self._context is None or not self._context.complete:
            # a 200 alone proves nothing about who answered: only a context the peer completed does
            raise AuthRejected(
                f"{self._protocol}: the answer accepting the login carried no final token, so the context is not "
                "complete (no mutual authentication)"
            )
        self.complete = True

    @property
    def encryption_protocol(self) -> str | None:
        return ENC_KERBEROS if self.label.lower() == "kerberos" else ENC_SPNEGO


def _peer_token(token: str, protocol: str) -> bytes:
    """Decode a peer's base64 token; malformed base64 is a refusal, not a crash."""
    try:
        return base64.b64decode(token, validate=True)
    except ValueError as e:  # binascii.Error
        raise AuthRejected(f"{protocol}: the peer sent a token that is not base64") from e


class CredSSPAuth(SpnegoAuth):
    """CredSSP through pyspnego's CredSSP initiator (TLS inside the HTTP headers, then credential delegation)."""

    def __init__(
        self,
        username: str | None,
        password: str | None,
        *,
        hostname: str,
        auth_mechanism: str = "auto",
        disable_tlsv1_2: bool = False,
        minimum_version: int = 2,
    ) -> None:
        if not username or password is None:
            raise ConfigError("credssp authentication needs a user name and a password (ansible_user, ansible_password).")
        super().__init__(
            username, password, protocol="credssp", hostname=hostname, service="HTTP", labels=("CredSSP",),
            first_label="CredSSP",
        )
        self._mechanism = auth_mechanism
        self._disable_tlsv1_2 = disable_tlsv1_2
        self._minimum_version = minimum_version

    def _new_context(self) -> spnego.ContextProxy:
        kwargs: dict[str, t.Any] = {}
        if self._mechanism in ("kerberos", "ntlm"):
            kwargs["credssp_negotiate_context"] = spnego.client(
                self._username, self._password, hostname=self._hostname, service="HTTP", protocol=self._mechanism
            )
        elif self._mechanism not in ("auto", "negotiate"):
            raise ConfigError(
                f"ansible_psrp_credssp_auth_mechanism: {self._mechanism!r} is not one of auto, ntlm, kerberos."
            )
        if self._disable_tlsv1_2:
            tls = spnego.tls.default_tls_context(usage="initiate")
            tls.context.minimum_version = ssl.TLSVersion.TLSv1  # servers without TLS 1.2 (old Windows)
            kwargs["credssp_tls_context"] = tls
        if self._minimum_version > 2:
            kwargs["credssp_min_protocol"] = self._minimum_version
        return spnego.client(
            self._username, self._password, hostname=self._hostname, service="HTTP", protocol="credssp", **kwargs
        )

    def finish(self, challenges: list[Challenge]) -> None:
        self.complete = True

    @property
    def encryption_protocol(self) -> str | None:
        return ENC_CREDSSP


# Header names each scheme order prefers: the host like pypsrp (Negotiate first, it
# carries raw NTLM/Kerberos tokens too); a proxy by its own name first (Squid runs a
# separate helper per scheme, and its Negotiate helper is often Kerberos only).
_HOST_LABELS = ("Negotiate", "Kerberos", "NTLM")
_PROXY_LABELS = {
    "ntlm": ("NTLM", "Negotiate"),
    "negotiate": ("Negotiate",),
    "kerberos": ("Negotiate", "Kerberos"),
}


def host_provider(spec: t.Any, *, channel_bindings: bytes | None,
                  private: t.Callable[[], list[t.Any] | None] | None = None) -> AuthProvider:
    """The provider for the Windows host, from the host settings of a SessionSpec only (R2).

    ``private`` gives the session's own Kerberos ticket for the host (a password or keytab login, _private_tickets).
    """
    auth = spec.auth
    if auth == "basic":
        return BasicAuth(spec.username, spec.password, send_first=True)
    if auth == "certificate":
        return CertificateAuth()
    if auth in ("ntlm", "negotiate", "kerberos"):
        return SpnegoAuth(
            spec.username,
            spec.password,
            protocol=auth,
            hostname=spec.negotiate_hostname_override or spec.host,
            service=spec.negotiate_service or "HTTP",
            labels=_HOST_LABELS,
            delegate=spec.negotiate_delegate,
            wrap=spec.encrypt,
            channel_bindings=channel_bindings if spec.negotiate_send_cbt else None,
            # Windows closes the connection after an offers-only 401, so the first token goes unasked
            first_label="Negotiate",
            tickets=_tickets(spec, spec.username, auth, spec.password),
            private=private if auth != "ntlm" else None,
        )
    if auth == "credssp":
        return CredSSPAuth(
            spec.username,
            spec.password,
            hostname=spec.host,
            auth_mechanism=spec.credssp_auth_mechanism,
            disable_tlsv1_2=spec.credssp_disable_tlsv1_2,
            minimum_version=spec.credssp_minimum_version,
        )
    raise ConfigError(f"ansible_psrp_auth: {auth!r} is not supported.")


def _tickets(spec: t.Any, username: str | None, protocol: str, password: str | None) -> list[t.Any] | None:
    """The run's own Kerberos cache or keytab as pyspnego credentials, for a login without a password."""
    if password is not None or protocol not in TICKET_AUTHS or spec is None:
        return None
    return ticket_credentials(spec.ticket_identity, username, protocol)


def proxy_provider(proxy: t.Any, spec: t.Any = None,
                   private: t.Callable[[], list[t.Any] | None] | None = None) -> AuthProvider | None:
    """The provider for the proxy, from the ProxySpec's own credentials only (R2).

    ``spec`` (the session's SessionSpec) only lends the run's own Kerberos tickets to a password-less proxy login.
    """
    auth = proxy.auth
    if not auth:
        return None
    if auth == "basic":
        return BasicAuth(proxy.username, proxy.password, send_first=False)
    if auth == "digest":
        return DigestAuth(proxy.username, proxy.password)
    if auth in _PROXY_LABELS:
        return SpnegoAuth(
            proxy.username,
            proxy.password,
            protocol=auth,
            hostname=proxy.negotiate_hostname or proxy.host,
            service=proxy.negotiate_service or "HTTP",
            labels=_PROXY_LABELS[auth],
            tickets=_tickets(spec, proxy.username, auth, proxy.password),
            private=private if auth != "ntlm" else None,
            spn_settings="ansible_psrp_proxy_negotiate_hostname_override or ansible_psrp_proxy_negotiate_service",
        )
    raise ConfigError(f"ansible_psrp_proxy_auth: {auth!r} is not one of basic, digest, ntlm, negotiate, kerberos.")


def certificate_binding(der: bytes | None) -> bytes | None:
    """tls-server-end-point channel binding data (RFC 5929) of the host's certificate."""
    if not der:
        return None
    from pypsrp.negotiate import HTTPNegotiateAuth  # reuse pypsrp's hash choice (SHA-256 for MD5/SHA-1 certs)

    certificate_hash: t.Callable[[bytes], bytes] = HTTPNegotiateAuth._get_certificate_hash  # unannotated upstream
    return b"tls-server-end-point:" + certificate_hash(der)
