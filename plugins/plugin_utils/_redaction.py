"""Secret redaction for the pin daemon: every secret it holds is replaced by ******** wherever it logs or answers.

A filter on the daemon's log handler (so whoever logs, a library included, cannot write a secret) and the
same replacement on error messages sent back to tasks. Secrets are registered per owner: a pin key while a
session holds it, a request while it is being served.
"""

from __future__ import annotations

import logging
import threading
import typing as t
import urllib.parse

if t.TYPE_CHECKING:
    from ._spec import SessionSpec


def spec_secrets(spec: SessionSpec) -> set[str]:
    """Every secret string a spec carries (never logged)."""
    return wire_secrets(spec.to_wire())


def wire_secrets(wire: t.Any) -> set[str]:
    """The secrets of a spec's wire form, read without building the spec (a request's may not even be valid)."""
    if not isinstance(wire, dict):
        return set()
    proxy = wire.get("proxy")
    if not isinstance(proxy, dict):
        proxy = {}
    values = (wire.get("password"), wire.get("certificate_key_password"), wire.get("certificate_key_pem"),
              proxy.get("password"))
    return {v for v in values if isinstance(v, str) and len(v) >= 3}


def option_secrets(options: t.Any) -> set[str]:
    """The secrets among a task's option values (persistence on: the daemon validates them), read without
    building a spec: the host and proxy passwords, the key's password or PEM text, a password in the proxy URL."""
    if not isinstance(options, dict):
        return set()
    values = [options.get(name) for name in
              ("remote_password", "certificate_key_password", "certificate_key_pem", "proxy_password")]
    if isinstance(options.get("proxy"), str):
        try:
            values.append(urllib.parse.unquote(urllib.parse.urlsplit(options["proxy"]).password or ""))
        except ValueError:  # not a URL: build_spec refuses it, naming the setting, and never echoes a password
            pass
    return {v for v in values if isinstance(v, str) and len(v) >= 3}


class SecretRedactor(logging.Filter):
    """Replace every secret the daemon holds in a log record, whoever logged it (belt and braces)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._by_owner: dict[str, set[str]] = {}  # owner: a pin key, or one request in flight
        self._counts: dict[str, int] = {}  # secret: how many owners hold it
        self._all: tuple[str, ...] = ()

    def register(self, owner: str, secrets: set[str]) -> None:
        """Redact `secrets` until `forget(owner)`; a pin's secrets, or a request's for as long as it is served."""
        with self._lock:
            old = self._by_owner.get(owner)
            if old == secrets:
                return  # every task of a pinned session lands here: nothing changes
            self._by_owner[owner] = set(secrets)
            self._recount(old or set(), secrets)

    def forget(self, owner: str) -> None:
        with self._lock:
            old = self._by_owner.pop(owner, None)
            if old:
                self._recount(old, set())

    def _recount(self, removed: set[str], added: set[str]) -> None:
        changed = False
        for secret in added:
            self._counts[secret] = self._counts.get(secret, 0) + 1
            changed |= self._counts[secret] == 1
        for secret in removed:
            self._counts[secret] -= 1
            if not self._counts[secret]:
                del self._counts[secret]
                changed = True
        if changed:  # re-sort only when the set of distinct secrets changed (longest first: no partial reveals)
            self._all = tuple(sorted(self._counts, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._all:
            if secret in text:
                text = text.replace(secret, "********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._all:
            message = self.redact(record.getMessage())
            record.msg, record.args = message, None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
