"""Where a Kerberos identity without a password comes from: the run's credential cache or client keytab.

A run that authenticates with Kerberos or Negotiate and no password uses the tickets of its own
environment: ``KRB5CCNAME`` (else the default cache of its krb5.conf), or a client keytab
(``KRB5_CLIENT_KTNAME``, else the default client keytab) when the cache holds nothing. The pin daemon
serves many runs, so its own environment must not decide whose tickets a session uses: the run resolves
its identity here, the SessionSpec carries it (so it is part of the pin key), and the authentication
providers hand exactly that cache or keytab to pyspnego (``KerberosCCache`` / ``KerberosKeytab``).

The resolution uses pykrb5 (``krb5``), which pyspnego's Kerberos support installs; without it there are
no Kerberos tickets to resolve and the identity stays unset.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

log = logging.getLogger(__name__)

TICKET_AUTHS = ("kerberos", "negotiate")


@dataclasses.dataclass(frozen=True)
class TicketIdentity:
    """The credential cache (``TYPE:residual``) or client keytab a run's tickets come from, and their principal."""

    ccache: str | None = None
    principal: str | None = None
    keytab: str | None = None


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def resolve_ticket_identity(username: str | None, environ: t.Mapping[str, str]) -> TicketIdentity | None:
    """The identity a password-less Kerberos login of this run would use; None without a Kerberos library.

    ``username`` (ansible_user), when given, picks the cache of that principal in a cache collection
    (DIR, KEYRING, KCM). An empty or missing cache yields its name and no principal (the login then fails
    naming that cache), unless a client keytab has keys, which then is the identity.
    """
    try:
        import krb5
    except ImportError:
        return None
    try:
        ctx = krb5.init_context()
        name = environ.get("KRB5CCNAME")
        cache = krb5.cc_resolve(ctx, name.encode()) if name else krb5.cc_default(ctx)
        wanted = krb5.parse_name_flags(ctx, username.encode()) if username else None
        principal = _cache_principal(krb5, ctx, cache)
        if wanted is not None and principal != _text(wanted.name):
            try:
                cache = krb5.cc_cache_match(ctx, wanted)  # the collection's cache for that principal
                principal = _cache_principal(krb5, ctx, cache)
            except krb5.Krb5Error:
                pass
        ccache = f"{_text(cache.cache_type)}:{_text(cache.name)}"
        if principal is None:
            keytab = _client_keytab(krb5, ctx, environ)
            if keytab is not None:
                keytab_name, first = keytab
                return TicketIdentity(principal=_text(wanted.name) if wanted is not None else first, keytab=keytab_name)
        return TicketIdentity(ccache=ccache, principal=principal)
    except krb5.Krb5Error as exc:
        log.debug("could not resolve the Kerberos credential cache: %s", exc)
        return TicketIdentity(ccache=environ.get("KRB5CCNAME"))


def _cache_principal(krb5: t.Any, ctx: t.Any, cache: t.Any) -> str | None:
    try:
        return _text(krb5.cc_get_principal(ctx, cache).name)
    except krb5.Krb5Error:  # no such cache, or an empty one
        return None


def _client_keytab(krb5: t.Any, ctx: t.Any, environ: t.Mapping[str, str]) -> tuple[str, str | None] | None:
    """(full name, first principal) of the client keytab when it holds keys, else None."""
    name = environ.get("KRB5_CLIENT_KTNAME")
    try:
        keytab = krb5.kt_resolve(ctx, name.encode()) if name else krb5.kt_client_default(ctx)
        if not krb5.kt_have_content(ctx, keytab):
            return None
        entries = list(keytab)
    except krb5.Krb5Error:
        return None
    first = _text(entries[0].principal.name) if entries else None
    return _text(krb5.kt_get_full_name(ctx, keytab)) or "", first


def ticket_credentials(identity: TicketIdentity, username: str | None, protocol: str) -> list[t.Any] | None:
    """pyspnego credentials for exactly this cache or keytab (None: no ticket identity to pin)."""
    import spnego

    principal = username or identity.principal
    credentials: list[t.Any]
    if identity.keytab:
        credentials = [spnego.KerberosKeytab(keytab=identity.keytab, principal=principal)]
    elif identity.ccache:
        credentials = [spnego.KerberosCCache(ccache=identity.ccache, principal=principal)]
    else:
        return None
    if protocol == "negotiate":
        # Negotiate may still fall back to NTLM; pyspnego's cached NTLM credential (NTLM_USER_FILE) serves that
        credentials.append(spnego.CredentialCache(username=username))
    return credentials
