"""Deliberately broken Sessions, for proving that the fault rows' criteria fail on the defects they name.

Loaded by a REAL pin daemon (PINNED_WINRM_TEST_SESSION_FACTORY=_mutant_sessions:<class>, honoured only under
pytest, with this directory on PYTHONPATH: see mutant_env()), so the whole path (ansible-playbook, the plugin,
the pin client, the daemon) is the product's, and only the named defect is not.
"""

from __future__ import annotations

import pathlib
import typing as t

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import TransportError
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session


def mutant_env(name: str) -> dict[str, str]:
    """The environment that makes the daemon of an e2e run serve its sessions with the mutant class `name`."""
    import os

    here = pathlib.Path(__file__).parent
    return {"PINNED_WINRM_TEST_SESSION_FACTORY": f"_mutant_sessions:{name}",
            "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


class ResendingSession(Session):
    """Runs a task again when its outcome is unknown (the connection was lost after the request): the very
    defect rule T5 forbids, since the first run may have happened on the host."""

    # At _run, the one pipeline of a task or of a put_file command: both must never be resent.
    def _run(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super()._run(*args, **kwargs)
        except TransportError as exc:
            if "not resent" not in str(exc):
                raise
            if self.pool is None:
                self.open()
            return super()._run(*args, **kwargs)


class CrashingErrorPathSession(Session):
    """Crashes while handling a failed task (a bug in the error path), before stopping its pipeline."""

    def _fail(self, ps: t.Any, exc: BaseException) -> t.NoReturn:
        raise IndexError("list index out of range")
