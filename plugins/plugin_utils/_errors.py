"""Typed errors of the pinned.winrm engine.

Every message names the party that refused (proxy or host), the setting
involved and the fix. The connection plugin maps them onto Ansible's errors in
one table (``FAILURE_CLASSES`` in plugins/connection/psrp.py, rule T3):

- the host cannot be had (TransportError and its kinds, SessionOpenError):
  AnsibleConnectionFailure, the host is unreachable;
- rejected credentials (HostAuthError): AnsibleAuthenticationFailure;
- what the host or the local file system refused during a task (HostError,
  LocalFileError), a session pool that stayed busy (PoolBusyError) and bad
  settings (ConfigError): AnsibleError, the task fails and ``ignore_errors``,
  ``rescue`` and ``failed_when`` apply, as with ansible.builtin.psrp;
- an exception nobody expected (UnexpectedError: a bug, here or in a library):
  AnsibleError, the task fails naming the original type, rather than passing
  for the network and making the host unreachable.

A wrapper keeps what it wraps as ``__cause__`` (``raise ... from exc``), so a
caller (and the test suite) can tell a refusal made on purpose from a bug.
"""

from __future__ import annotations


class PinnedError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(PinnedError):
    """The inventory settings are invalid or break a proxy rule (R1-R7); nothing was sent."""


class TransportError(PinnedError):
    """The TCP/TLS/HTTP path failed (refused, reset, timed out, closed early)."""


class MalformedAnswerError(TransportError):
    """The peer's answer broke HTTP, XML or the MS-WSMV encryption framing, or did not verify: refused on purpose,
    the connection closed; the outcome of the request on the host is unknown."""


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


class PoolBusyError(PinnedError):
    """Every pinned session to the host stayed busy for the whole wait; nothing of the task ran."""


class LocalFileError(PinnedError):
    """A file on the controller could not be read (put source) or written (fetch destination)."""


class TaskInterrupted(PinnedError):
    """The task's client went away (task timeout, Ctrl-C, a killed worker) and its pipeline was stopped (T2).

    The session stays usable; nobody is left to read the error.
    """


class OutputLimitError(PinnedError):
    """A task's output passed ansible_psrp_max_output_mb; its command was stopped on the host (the message says
    so with STOPPED, which the session replaces when the stop failed)."""

    STOPPED = "its command was stopped on the host"


class UnexpectedError(PinnedError):
    """An exception the engine did not expect (a bug in pinned.winrm or in a library it uses), not a refusal of
    the host, the proxy or the network. The task fails, naming the original type, which stays visible as
    ``__cause__`` in-process (and by name through the pin daemon), so a caller can tell it from a clean refusal."""


class HostError(PinnedError):
    """The Windows host answered a task's request with an HTTP error or a WS-Management fault."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"", code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.code = code  # the WS-Management fault code (_wsman_faults.WSManFault), when the host sent a fault


class SessionOpenError(HostError):
    """The Windows host refused to open the Runspace Pool (quota, unknown configuration, a fault at Create)."""


class HostAuthError(HostError):
    """The Windows host rejected the host credentials (401). Never retried: avoids account lockout."""


def missing_package(package: str, error: ImportError) -> PinnedError:
    """The error for a required package that did not import (its import is guarded so the module still loads)."""
    return PinnedError(
        f"pinned.winrm needs the Python package {package} on the controller ({error}): "
        "pip install -r requirements.txt from the collection"
    )
