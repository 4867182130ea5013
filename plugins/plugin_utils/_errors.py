"""Typed errors of the pinned.winrm engine.

Every message names the party that refused (proxy or host), the setting
involved and the fix. The connection plugin maps them onto Ansible's errors:
ConfigError -> AnsibleError, HostAuthError -> AnsibleAuthenticationFailure,
every other PinnedError -> AnsibleConnectionFailure (the host is unreachable).
"""

from __future__ import annotations


class PinnedError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(PinnedError):
    """The inventory settings are invalid or break a proxy rule (R1-R7); nothing was sent."""


class TransportError(PinnedError):
    """The TCP/TLS/HTTP path failed (refused, reset, timed out, closed early)."""


class ConnectTimeoutError(TransportError):
    """Connecting to the proxy or the host took longer than connection_timeout."""


class ReadTimeoutError(TransportError):
    """No answer within read_timeout."""


class CommandTimeoutError(ReadTimeoutError):
    """The task ran past ansible_psrp_persist_command_timeout; it was stopped and its outcome is unknown."""


class ProxyError(TransportError):
    """The proxy refused or failed the request (407, 403 on CONNECT, 502, 503, ...)."""

    def __init__(self, message: str, status: int | None = None, schemes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.schemes = schemes


class ProxyAuthError(ProxyError):
    """The proxy rejected the proxy credentials (407 after the handshake)."""


class AffinityLostError(TransportError):
    """The path lost the client-to-host connection mapping (R5)."""


class HostError(PinnedError):
    """The Windows host answered with an HTTP error or a WS-Management fault."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HostAuthError(HostError):
    """The Windows host rejected the host credentials (401). Never retried: avoids account lockout."""
