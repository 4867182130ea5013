"""Authentication of the simulated Windows host, as WinRM does it over HTTP.

Schemes (header -> counter label):
  Basic               -> basic        (refused over http:// when AllowUnencrypted=false)
  Negotiate <SPNEGO>  -> negotiate    (NTLM or Kerberos inside; pyspnego acceptor)
  Negotiate <NTLMSSP> -> ntlm         (raw NTLM in the Negotiate header, what `auth=ntlm` clients send)
  Kerberos <token>    -> kerberos     (raw GSS-API Kerberos; needs config.keytab)
  CredSSP <token>     -> credssp      (pyspnego acceptor; delegated password checked)
  http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual -> certificate
                                      (TLS client certificate, mapped by thumbprint)

Authentication state lives in `ConnectionAuth`, one per TCP connection, as
Windows binds it (HTTP.sys keeps the security context on the connection).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import hashlib
import hmac
import logging
import os
import pathlib
import threading
import typing as t

import spnego
import spnego._ntlm
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1
from spnego._ntlm_raw.messages import Authenticate, AvId, NTClientChallengeV2
from spnego._negotiate import NegotiateProxy
from spnego._spnego import GSSMech
from spnego.exceptions import BadMechanismError
from spnego.channel_bindings import GssChannelBindings
from spnego.tls import CredSSPTLSContext, default_tls_context, get_certificate_public_key

from tests.lab import _msgenc
from tests.lab._config import HostConfig

log = logging.getLogger(__name__)

MUTUAL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
# The order Windows lists its offers in on a 401 (captured from WinRM 3.0).
_OFFER_ORDER = (("negotiate", "Negotiate"), ("kerberos", "Kerberos"), ("basic", 'Basic realm="WSMAN"'), ("credssp", "CredSSP"))
_HEADER_SCHEMES = {"negotiate": "Negotiate", "kerberos": "Kerberos", "credssp": "CredSSP"}
_NTLM_AUTH_SIG = b"NTLMSSP\x00\x03\x00\x00\x00"
_KRB5_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02"  # 1.2.840.113554.1.2.2, DER


# --- NTLM credential store, per host, in-process only ------------------------------------------
# pyspnego's NTLM acceptor finds the credential store through the NTLM_USER_FILE environment
# variable only. Setting it in os.environ would leak it to every child process (Squid, the KDC)
# and would give all hosts one store. Instead the lab points the lookup at a context variable
# that each connection thread sets to its own host's store; outside the lab it falls back to
# pyspnego's own behaviour.
_NTLM_STORE: contextvars.ContextVar[str | None] = contextvars.ContextVar("lab_ntlm_store", default=None)
_ORIGINAL_CREDENTIAL_FILE = spnego._ntlm._get_credential_file
_install_lock = threading.Lock()


def _lab_credential_file() -> str | None:
    return _NTLM_STORE.get() or _ORIGINAL_CREDENTIAL_FILE()


def _install_ntlm_store_hook() -> None:
    with _install_lock:
        if spnego._ntlm._get_credential_file is not _lab_credential_file:
            spnego._ntlm._get_credential_file = _lab_credential_file


class AuthFailed(Exception):
    """Authentication was refused; `reason` is safe to log (never a secret)."""

    def __init__(self, scheme: str, reason: str) -> None:
        super().__init__(f"{scheme}: {reason}")
        self.scheme = scheme
        self.reason = reason


@dataclasses.dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection."""

    user: str | None = None            # authenticated user (None: not authenticated)
    scheme: str | None = None          # counter label of the completed handshake
    mech: str | None = None            # negotiated mechanism (ntlm / kerberos) when relevant
    context: t.Any = None              # completed security context, used for message encryption
    encryption_protocols: tuple[str, ...] = ()
    pending: t.Any = None              # handshake in progress
    pending_scheme: str | None = None
    pending_header: str | None = None  # header scheme word the handshake uses
    handshakes: int = 0                # completed handshakes on this connection

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def reset_pending(self) -> None:
        self.pending = self.pending_scheme = self.pending_header = None


@dataclasses.dataclass
class StepResult:
    done: bool                         # True: authenticated now, process the request
    scheme: str
    header: str | None = None          # WWW-Authenticate value to send (continuation or final token)
    reauth: bool = False               # completed on a connection that had authenticated before
    counted: bool = False              # a handshake completed with this request


def tls_server_end_point(cert_der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point channel binding application data for a server certificate."""
    cert = x509.load_der_x509_certificate(cert_der)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert_der)
    return b"tls-server-end-point:" + digest.finalize()


def _is_raw_kerberos(token: bytes) -> bool:
    """A GSS-API InitialContextToken whose mech OID (right after the length) is Kerberos, not SPNEGO."""
    if len(token) < 16 or token[0] != 0x60:
        return False
    pos = 2 if token[1] < 0x80 else 2 + (token[1] & 0x7F)
    return token[pos : pos + len(_KRB5_OID)] == _KRB5_OID


def _ntlm_authenticate_has_cbt(token: bytes) -> bool | None:
    """Whether an NTLM AUTHENTICATE message (raw or inside SPNEGO) carries channel bindings.

    None when the token holds no AUTHENTICATE message. Windows (CbtHardeningLevel=Relaxed)
    checks bindings a client sent and accepts a client that sent none; pyspnego's acceptor
    refuses a missing binding when given one, so the lab only hands it the binding to check
    when the client sent one.
    """
    index = token.find(_NTLM_AUTH_SIG)
    if index < 0:
        return None
    try:
        auth = Authenticate.unpack(token[index:])
        response = auth.nt_challenge_response or b""
        if len(response) <= 24:
            return False
        pairs = NTClientChallengeV2.unpack(response[16:]).av_pairs
    except Exception:  # a malformed token fails later in the acceptor with a proper error
        return None
    value = pairs.get(AvId.channel_bindings)
    return bool(value) and value != b"\x00" * 16


class _ClientOrderNegotiate(NegotiateProxy):
    """pyspnego's SPNEGO acceptor, keeping only the mechs the client's NegTokenInit offers, in its order.

    Given ready-made mech contexts, pyspnego picks the first one it holds (Kerberos) even when the
    client offered only NTLM, and its next() over the client's list raises StopIteration. Windows
    picks from what the client offered, so the list is cut to that before pyspnego chooses.
    """

    def _rebuild_context_list(
        self, mech_types: list[str] | None = None, channel_bindings: GssChannelBindings | None = None
    ) -> list[str]:
        if mech_types and self._available_contexts:
            offered: dict[GSSMech, t.Any] = {}
            for oid in mech_types:
                for mech, context in self._available_contexts.items():
                    if mech not in offered and self._is_same_mech(mech, oid):
                        offered[mech] = context
            if not offered:
                raise BadMechanismError(context_msg="Unable to negotiate common mechanism")
            self._available_contexts = offered
        return super()._rebuild_context_list(mech_types=mech_types, channel_bindings=channel_bindings)


class HostAuthenticator:
    """Checks credentials for one host; one instance per WinRMHost, shared by its connections."""

    def __init__(
        self,
        config: HostConfig,
        *,
        private_dir: pathlib.Path,
        server_cert_der: bytes | None,
        server_cert_path: pathlib.Path | None,
        server_key_path: pathlib.Path | None,
    ) -> None:
        self.config = config
        self._private_dir = private_dir
        self._server_cert_der = server_cert_der
        self.cbt_data = tls_server_end_point(server_cert_der) if server_cert_der else None
        self._ntlm_store = self._write_ntlm_store()
        self._krb_cred: t.Any = None
        self._krb_error: str | None = None
        self._credssp_tls = self._credssp_tls_context(server_cert_path, server_key_path, server_cert_der)
        _install_ntlm_store_hook()

    # -- set-up ---------------------------------------------------------------------------------
    def _write_ntlm_store(self) -> pathlib.Path:
        """Write the host's users in smbpasswd form (hashes, no clear-text passwords), mode 0600."""
        lines = []
        for user, password in self.config.users.items():
            lm = lmowfv1(password).hex().upper()
            nt = ntowfv1(password).hex().upper()
            # Local accounts answer to no domain, the computer name and "." as Windows accepts them.
            for domain in self._domains():
                name = f"{domain}\\{user}" if domain else user
                lines.append(f"{name}:1000:{lm}:{nt}:[U]:LCT-00000000")
        path = self._private_dir / "ntlm_users"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    @staticmethod
    def _credssp_tls_context(
        cert_path: pathlib.Path | None, key_path: pathlib.Path | None, cert_der: bytes | None
    ) -> CredSSPTLSContext | None:
        if not (cert_path and key_path and cert_der):
            return None  # pyspnego then generates its own self-signed one, as WinRM over http does
        tls = default_tls_context(usage="accept")
        tls.context.load_cert_chain(str(cert_path), str(key_path))
        tls.public_key = get_certificate_public_key(cert_der)
        return tls

    def _kerberos_credential(self) -> t.Any:
        if self._krb_cred is not None or self._krb_error is not None:
            return self._krb_cred
        if not self.config.keytab:
            self._krb_error = "no keytab configured"
            return None
        try:
            import gssapi

            self._krb_cred = gssapi.Credentials(usage="accept", store={"keytab": str(self.config.keytab)})
        except Exception as e:  # no gssapi, unreadable keytab: Kerberos then fails per request
            self._krb_error = f"{type(e).__name__}: {e}"
            log.warning("host %s: Kerberos acceptor unavailable: %s", self.config.name, self._krb_error)
        return self._krb_cred

    def bind_thread(self) -> None:
        """Point pyspnego's NTLM acceptor at this host's store for the calling thread."""
        _NTLM_STORE.set(str(self._ntlm_store))

    def close(self) -> None:
        try:
            self._ntlm_store.unlink()
        except FileNotFoundError:
            pass

    # -- offers ---------------------------------------------------------------------------------
    def offers(self) -> list[str]:
        """WWW-Authenticate values of a 401, from config.auth, in Windows' order."""
        return [value for name, value in _OFFER_ORDER if name in self.config.auth]

    # -- users ----------------------------------------------------------------------------------
    def _local_user(self, name: str) -> str | None:
        """Map DOMAIN\\user, .\\user or user to a configured user name (case-insensitive)."""
        domain, sep, user = name.rpartition("\\")
        if sep and domain.lower() not in {d.lower() for d in self._domains()}:
            return None
        lowered = user.lower()
        return next((u for u in self.config.users if u.lower() == lowered), None)

    def _domains(self) -> list[str]:
        """Domain parts a user name may carry: none, ".", the computer name, and the realm (domain users)."""
        domains = ["", ".", self.config.name]
        if self.config.realm:
            domains += [self.config.realm, self.config.realm.split(".")[0]]
        return domains

    def _principal_user(self, principal: str | None, mech: str | None) -> str | None:
        if not principal:
            return None
        if mech == "kerberos" or ("@" in principal and "\\" not in principal):
            user, _, realm = principal.rpartition("@")
            if not self.config.realm or realm.lower() != self.config.realm.lower():
                return None
            return self._local_user(user)
        return self._local_user(principal)

    # -- contexts -------------------------------------------------------------------------------
    def _new_negotiate(self) -> t.Any:
        options = spnego.NegotiateOptions.wrapping_winrm
        contexts: dict[GSSMech, t.Any] = {}
        cred = self._kerberos_credential()
        if cred is not None:
            contexts[GSSMech.kerberos] = spnego.server(
                hostname=self.config.name, service="HTTP", protocol="kerberos", options=options,
                _gssapi_credential=cred,
            )
        contexts[GSSMech.ntlm] = spnego.server(protocol="ntlm", options=options | spnego.NegotiateOptions.use_ntlm)
        for context in contexts.values():
            context._is_wrapped = True  # as pyspnego marks the mechs it builds itself (quieter logs)
        return _ClientOrderNegotiate(
            hostname=self.config.name, service="HTTP", usage="accept", protocol="negotiate",
            options=options | spnego.NegotiateOptions.use_negotiate, _negotiate_contexts=contexts,
        )

    def _new_kerberos(self) -> t.Any:
        cred = self._kerberos_credential()
        if cred is None:
            raise AuthFailed("kerberos", f"Kerberos not available on this host ({self._krb_error})")
        return spnego.server(
            hostname=self.config.name, service="HTTP", protocol="kerberos",
            options=spnego.NegotiateOptions.wrapping_winrm, _gssapi_credential=cred,
        )

    def _new_credssp(self) -> t.Any:
        kwargs: dict[str, t.Any] = {"credssp_negotiate_context": self._new_negotiate()}
        if self._credssp_tls is not None:
            kwargs["credssp_tls_context"] = self._credssp_tls
        return spnego.server(protocol="credssp", **kwargs)

    # -- the step -------------------------------------------------------------------------------
    def authenticate(
        self,
        state: ConnectionAuth,
        authorization: str,
        *,
        tls: bool,
        peer_cert_der: bytes | None,
        refuse: bool = False,
    ) -> StepResult:
        """Process one Authorization header; raises AuthFailed when it is refused."""
        word, _, rest = authorization.strip().partition(" ")
        rest = rest.strip()
        if authorization.strip() == MUTUAL:
            return self._certificate(state, tls=tls, peer_cert_der=peer_cert_der, refuse=refuse)
        lowered = word.lower()
        if lowered == "basic":
            return self._basic(state, rest, tls=tls, refuse=refuse)
        if lowered not in _HEADER_SCHEMES:
            raise AuthFailed(lowered or "none", f"scheme {word!r} is not accepted by WinRM")
        if lowered not in self.config.auth:
            raise AuthFailed(lowered, f"{word} is disabled in this host's Auth settings")
        try:
            token = base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            state.reset_pending()
            raise AuthFailed(lowered, "token is not valid base64") from None
        if not token:
            state.reset_pending()
            raise AuthFailed(lowered, "empty token")
        return self._token_step(state, lowered, token, tls=tls, refuse=refuse)

    def _token_step(self, state: ConnectionAuth, header_scheme: str, token: bytes, *, tls: bool, refuse: bool) -> StepResult:
        header_word = _HEADER_SCHEMES[header_scheme]
        fresh = state.pending is None or state.pending_header != header_scheme
        if fresh:
            label = header_scheme
            if header_scheme == "negotiate" and token.startswith(b"NTLMSSP\x00"):
                label = "ntlm"  # raw NTLM in the Negotiate header: what auth=ntlm clients send
            elif header_scheme == "negotiate" and _is_raw_kerberos(token):
                label = "kerberos"  # raw Kerberos in the Negotiate header: what auth=kerberos clients send
            if refuse:
                raise AuthFailed(label, "authentication refused (fault injection)")
            try:
                if header_scheme == "negotiate":
                    context = self._new_negotiate()
                elif header_scheme == "kerberos":
                    context = self._new_kerberos()
                else:
                    context = self._new_credssp()
            except AuthFailed:
                raise
            except Exception as e:
                raise AuthFailed(label, f"acceptor could not start: {type(e).__name__}") from e
            state.pending, state.pending_scheme, state.pending_header = context, label, header_scheme
        context, label = state.pending, t.cast(str, state.pending_scheme)

        cbt = None
        if tls and self.cbt_data and header_scheme != "credssp":
            has_cbt = _ntlm_authenticate_has_cbt(token)
            # Kerberos (MIT) checks bindings only when the initiator sent some; NTLM needs the hint.
            if has_cbt is None or has_cbt:
                cbt = GssChannelBindings(application_data=self.cbt_data)
        try:
            out = context.step(token, channel_bindings=cbt) if cbt else context.step(token)
        except Exception as e:
            state.reset_pending()
            raise AuthFailed(label, f"{type(e).__name__}: {_safe_reason(e)}") from None

        header = f"{header_word} {base64.b64encode(out).decode('ascii')}" if out else None
        if not context.complete:
            if not out:
                state.reset_pending()
                raise AuthFailed(label, "handshake produced no token and did not complete")
            return StepResult(done=False, scheme=label, header=header)

        mech = getattr(context, "negotiated_protocol", None) or label
        user = self._principal_user(getattr(context, "client_principal", None), mech)
        if header_scheme == "credssp":
            user = self._check_delegated(context, user)
        state.reset_pending()
        if user is None:
            raise AuthFailed(label, "authenticated principal is not a user of this host")
        protocols = {
            "negotiate": (_msgenc.SPNEGO, _msgenc.KERBEROS),
            "kerberos": (_msgenc.KERBEROS, _msgenc.SPNEGO),
            "credssp": (_msgenc.CREDSSP,),
        }[header_scheme]
        return self._complete(state, user, label, mech, context, protocols, header)

    def _check_delegated(self, context: t.Any, user: str | None) -> str | None:
        """CredSSP: the delegated TSPasswordCreds must name the authenticated user, with its password."""
        creds = context.get_extra_info("client_credential")
        if creds is None or not hasattr(creds, "password"):
            raise AuthFailed("credssp", "no password credentials were delegated")
        name, domain = creds.username, getattr(creds, "domain_name", "") or ""
        if "@" in name and not domain:
            name, _, domain = name.partition("@")
        delegated = self._local_user(f"{domain}\\{name}" if domain else name)
        if delegated is None or user is None or delegated.lower() != user.lower():
            raise AuthFailed("credssp", "delegated credentials name another user")
        expected = self.config.users.get(delegated, "")
        if not hmac.compare_digest(creds.password.encode("utf-8"), expected.encode("utf-8")):
            raise AuthFailed("credssp", "delegated password does not match")
        return delegated

    def _basic(self, state: ConnectionAuth, rest: str, *, tls: bool, refuse: bool) -> StepResult:
        if "basic" not in self.config.auth:
            raise AuthFailed("basic", "Basic is disabled in this host's Auth settings")
        if not tls and not self.config.allow_unencrypted:
            raise AuthFailed("basic", "Basic over http:// refused (AllowUnencrypted=false)")
        if refuse:
            raise AuthFailed("basic", "authentication refused (fault injection)")
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise AuthFailed("basic", "malformed Basic credentials") from None
        name, sep, password = decoded.partition(":")
        user = self._local_user(name) if sep else None
        expected = self.config.users.get(user, "") if user else ""
        if user is None or not hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8")):
            raise AuthFailed("basic", "wrong user name or password")
        return self._complete(state, user, "basic", None, None, (), None)

    def _certificate(self, state: ConnectionAuth, *, tls: bool, peer_cert_der: bytes | None, refuse: bool) -> StepResult:
        if "certificate" not in self.config.auth:
            raise AuthFailed("certificate", "Certificate is disabled in this host's Auth settings")
        if not tls:
            raise AuthFailed("certificate", "certificate authentication needs https")
        if refuse:
            raise AuthFailed("certificate", "authentication refused (fault injection)")
        if not peer_cert_der:
            raise AuthFailed("certificate", "no client certificate was presented")
        thumbprint = hashlib.sha1(peer_cert_der).hexdigest()
        mapped = self.config.cert_map.get(thumbprint)
        user = self._local_user(mapped) if mapped else None
        if user is None and mapped and not self.config.users:
            user = mapped
        if user is None:
            raise AuthFailed("certificate", f"no mapping for client certificate {thumbprint}")
        return self._complete(state, user, "certificate", None, None, (), None)

    @staticmethod
    def _complete(
        state: ConnectionAuth, user: str, label: str, mech: str | None, context: t.Any,
        protocols: tuple[str, ...], header: str | None,
    ) -> StepResult:
        # Basic and certificate credentials ride every request: the same identity again is not a new handshake.
        if context is None and state.authenticated and state.user == user and state.scheme == label:
            return StepResult(done=True, scheme=label, header=header)
        reauth = state.handshakes > 0
        state.user, state.scheme, state.mech, state.context = user, label, mech, context
        state.encryption_protocols = protocols
        state.handshakes += 1
        return StepResult(done=True, scheme=label, header=header, reauth=reauth, counted=True)


def _safe_reason(error: Exception) -> str:
    """A one-line reason from a pyspnego error, short and free of token bytes."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
