"""Kerberos without kinit: a session's own ticket, in a private MEMORY: credential cache, for one hop.

With a password (``ansible_password``, ``ansible_psrp_proxy_password``) or a client keytab
(``ansible_psrp_kerberos_keytab``), the transport logs the hop's principal on to its KDC itself (an AS
exchange through pykrb5, as ``kinit`` would) and keeps the ticket in a ``MEMORY:`` cache that belongs to
that hop of that session: re-authentications of the session (R5) reuse it until it nears its end, the
session's close destroys it, and the user's default cache (``KRB5CCNAME``, the krb5.conf default) is never
read or written. pyspnego is then handed exactly that cache (``KerberosCCache``), and for Negotiate the
password too, which NTLM needs when the host prefers it.

A failed login names the hop (the Windows host or the proxy), the principal, the realm, the KDCs the
krb5.conf in use names for it, and the fix. Which krb5.conf is in use is the process's ``KRB5_CONFIG``:
``ansible_psrp_kerberos_config`` sets it in the task's process, where it also picks the pin daemon
(``_pin_paths.TRUST_ENV``), so a session reads only the krb5.conf its run named; a daemon that reads
another one refuses the session.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import typing as t

from ._errors import ConfigError, HostAuthError, ProxyAuthError

log = logging.getLogger(__name__)

# A ticket this close to its end is replaced before a handshake: the handshake and the session's first
# requests must not outlive it.
RENEW_BEFORE_END_S = 300.0
DEFAULT_KRB5_CONF = "/etc/krb5.conf"


def krb5_conf_path(environ: t.Mapping[str, str] | None = None) -> str:
    """The krb5.conf the Kerberos library of this process reads (the first of KRB5_CONFIG's list)."""
    value = (os.environ if environ is None else environ).get("KRB5_CONFIG") or DEFAULT_KRB5_CONF
    return value.split(":")[0]


def check_config(kerberos_config: str | None) -> None:
    """Refuse a session whose run named a krb5.conf this process does not read (ConfigError, nothing sent)."""
    if kerberos_config and os.path.abspath(krb5_conf_path()) != os.path.abspath(kerberos_config):
        raise ConfigError(
            f"ansible_psrp_kerberos_config: the run named {kerberos_config}, but this process reads "
            f"{krb5_conf_path()}; the session was not opened. (A pin daemon serves the krb5.conf it was started "
            "with; a run with another one starts its own: is the client of another version?)"
        )


def kdcs_of(realm: str, path: str) -> list[str]:
    """The `kdc` entries krb5.conf names for `realm` (for error messages only; [] when it names none).

    Written by hand because pykrb5 exposes no profile API; reads only `[realms] REALM = { kdc = ... }`.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1024 * 1024)
    except OSError:
        return []
    section = ""
    current: str | None = None
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section, current = line[1:-1].strip().lower(), None
            continue
        if section != "realms":
            continue
        opened = re.match(r"^(\S+)\s*=\s*\{$", line)
        if opened:
            current = opened.group(1)
            continue
        if line == "}":
            current = None
            continue
        entry = re.match(r"^kdc\s*=\s*(\S+)$", line)
        if entry and current is not None and current.upper() == realm.upper():
            found.append(entry.group(1))
    return found


class PrivateTickets:
    """One hop's Kerberos login: a ticket from a password or keytab in a MEMORY: cache only this session uses."""

    def __init__(self, principal: str, *, password: str | None = None, keytab: str | None = None, hop: str,
                 peer: str, forwardable: bool = False) -> None:
        if password is None and not keytab:
            raise ConfigError("internal: a private Kerberos login needs a password or a keytab")
        self.principal = principal
        self._password = password
        self._keytab = keytab
        self.hop = hop  # "host" or "proxy"
        self.peer = peer  # "Windows host 10.0.0.5:5986" / "proxy http://proxy:3128"
        self._forwardable = forwardable
        self._lock = threading.Lock()
        self._ccache: t.Any = None
        self._name: str | None = None
        self._endtime = 0.0
        self.logins = 0  # AS exchanges this hop made (one per session unless the ticket ran out)

    def cache_name(self) -> str:
        """``MEMORY:<name>`` holding a valid ticket for the principal, logging on to the KDC if needed."""
        with self._lock:
            if self._name is None or time.time() >= self._endtime - RENEW_BEFORE_END_S:
                self._login()
            return t.cast(str, self._name)

    def credentials(self, protocol: str) -> list[t.Any]:
        """pyspnego credentials: this cache (and for Negotiate the password, which an NTLM fallback needs)."""
        import spnego

        creds: list[t.Any] = [spnego.KerberosCCache(ccache=self.cache_name(), principal=self.principal)]
        if protocol == "negotiate" and self._password is not None:
            creds.append(spnego.Password(username=self.principal, password=self._password))
        return creds

    def destroy(self) -> None:
        """Destroy the cache (its tickets leave memory with it)."""
        with self._lock:
            self._destroy()

    def _destroy(self) -> None:
        ccache, self._ccache, self._name = self._ccache, None, None
        if ccache is not None:
            import krb5

            try:
                krb5.cc_destroy(krb5.init_context(), ccache)
            except krb5.Krb5Error as exc:
                log.debug("destroying a private credential cache failed: %s", exc)

    def _login(self) -> None:
        import krb5

        self._destroy()
        ctx = krb5.init_context()
        try:
            principal = krb5.parse_name_flags(ctx, self.principal.encode("utf-8"))
            options = krb5.get_init_creds_opt_alloc(ctx)
            krb5.get_init_creds_opt_set_canonicalize(options, True)
            krb5.get_init_creds_opt_set_forwardable(options, self._forwardable)
            if self._keytab:
                keytab = krb5.kt_resolve(ctx, self._keytab.encode("utf-8"))
                creds = krb5.get_init_creds_keytab(ctx, principal, options, keytab=keytab)
            else:
                creds = krb5.get_init_creds_password(ctx, principal, options,
                                                     password=t.cast(str, self._password).encode("utf-8"))
            ccache = krb5.cc_new_unique(ctx, b"MEMORY")
            krb5.cc_initialize(ctx, ccache, creds.client)
            krb5.cc_store_cred(ctx, ccache, creds)
        except krb5.Krb5Error as exc:
            raise self._error(exc) from None
        name = ccache.name.decode("utf-8") if isinstance(ccache.name, bytes) else str(ccache.name)
        self._ccache, self._name = ccache, f"MEMORY:{name}"
        self._endtime = float(creds.times.endtime)
        self.logins += 1
        log.debug("Kerberos login of %s for the %s: ticket in a private MEMORY cache until %s", self.principal,
                  self.peer, time.strftime("%H:%M:%S", time.localtime(self._endtime)))

    def _error(self, exc: Exception) -> HostAuthError | ProxyAuthError:
        raw = getattr(exc, "message", None) or exc
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        realm = self.principal.rpartition("@")[2] if "@" in self.principal else _default_realm()
        conf = krb5_conf_path()
        kdcs = kdcs_of(realm, conf) if realm else []
        where = f"the KDC of realm {realm or '(no default realm)'} ({', '.join(kdcs) or 'no kdc line'} in {conf})"
        user_setting = "ansible_user" if self.hop == "host" else "ansible_psrp_proxy_user"
        secret_setting = (("ansible_password" if self.hop == "host" else "ansible_psrp_proxy_password")
                          if self._password is not None else "ansible_psrp_kerberos_keytab")
        lowered = text.lower()
        if "not found in kerberos database" in lowered:
            fix = f"check {user_setting} (user@REALM, the realm in capitals)"
        elif any(w in lowered for w in ("preauthentication failed", "password incorrect", "decrypt integrity",
                                        "key table entry not found", "no key table entry")):
            fix = f"check {secret_setting}"
        elif "cannot contact any kdc" in lowered or "cannot find kdc" in lowered or "cannot resolve" in lowered:
            fix = ("check the realm's kdc lines in that krb5.conf (ansible_psrp_kerberos_config names the file) and "
                   "that the controller reaches the KDC")
        elif "clock skew" in lowered:
            fix = "the controller's clock differs from the KDC's by more than the allowed skew: synchronise it"
        else:
            fix = f"check {user_setting}, {secret_setting} and ansible_psrp_kerberos_config"
        message = (f"Kerberos login for the {self.peer} failed: {where} refused {self.principal!r}: {text.strip()}; "
                   f"{fix}. (The ticket goes to a private cache; kinit is not needed.)")
        if self.hop == "proxy":
            return ProxyAuthError(message, status=407)
        return HostAuthError(message, status=401)


def _default_realm() -> str:
    try:
        import krb5

        value = krb5.get_default_realm(krb5.init_context())
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except Exception:  # no default realm configured: the message says so
        return ""
