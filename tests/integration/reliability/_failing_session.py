"""A Session stand-in whose first open fails with an error carrying the password, as any library's might.

Loaded by a REAL pin daemon (PINNED_WINRM_TEST_SESSION_FACTORY, honoured only under pytest) to test what the
daemon logs and answers when a first open fails: the error text is the library's, the redaction the daemon's.
"""

from __future__ import annotations

import typing as t

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostAuthError


class FailingOpenSession:
    """Fails ensure_ready() (the first open) with a HostAuthError whose text repeats the password."""

    def __init__(self, spec: t.Any, *, events: t.Any = None) -> None:
        self.spec = spec

    def ensure_ready(self) -> str:
        raise HostAuthError(f"the host refused {self.spec.username} (debug: password was {self.spec.password!r})",
                            status=401)

    def close(self) -> None:
        pass
