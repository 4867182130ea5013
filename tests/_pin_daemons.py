"""A pin daemon of a test's own, serving the real Session: what the lab-backed daemon tests share."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import typing as t

from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

from tests._procfs import pid_alive, wait_until

STOP_WAIT_S = 10.0  # a bound for a daemon that does not exit on shutdown, not a timing assumption


@contextlib.contextmanager
def private_pin_client(prefix: str) -> t.Iterator[PinClient]:
    """A PinClient on a fresh persist directory; its daemon is shut down (killed if it does not exit) after use.

    The caller switches off the test session factory (PINNED_WINRM_TEST_SESSION_FACTORY) so the daemon serves
    the real Session.
    """
    root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    client = PinClient(root)
    try:
        yield client
    finally:
        hello = client.hello()
        client.shutdown()
        if hello:
            if not wait_until(lambda: not pid_alive(hello["pid"]), STOP_WAIT_S):
                os.kill(hello["pid"], signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
