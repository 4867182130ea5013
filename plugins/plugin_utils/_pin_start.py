"""Starting the pin daemon: the process, its environment, and what it needs installed.

Only the task that finds no daemon running loads this module (PinClient, under the directory lock);
every other task's worker never does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import typing as t

from ._errors import ConfigError, TransportError
from ._pin_paths import TRUST_ENV, PinPaths

log = logging.getLogger(__name__)

# The daemon's environment is built from this allow-list, never from what the starting run happens to have:
# the process basics, the trust and identity variables (which also pick the daemon, _pin_paths.TRUST_ENV) and the
# test suite's own hooks (honoured by the daemon only under pytest). Secrets (SSHPASS, ANSIBLE_BECOME_PASS, ...),
# proxies (R7: the spec says which proxy), KRB5CCNAME (the spec carries the run's cache) and debugging sinks
# (SSLKEYLOGFILE, KRB5_TRACE) stay out.
_PLAIN_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "XDG_RUNTIME_DIR"})
_PLAIN_ENV_PREFIXES = ("LC_",)
_TEST_ENV = re.compile(r"^(PYTEST_CURRENT_TEST|PINNED_WINRM_TEST_[A-Z0-9_]+)$")


# What the engine needs beside the standard library (the daemon and the in-process runner; a task's worker
# talking to a running daemon needs none of them).
REQUIRED_PACKAGES = ("pypsrp", "spnego", "h11")


def check_packages() -> None:
    """Raise ConfigError naming the engine's missing packages (find_spec does not import them)."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"needs the Python packages {', '.join(missing)} on the controller: pip install -r requirements.txt "
            "from the collection (pypsrp, pyspnego, requests-credssp, h11)."
        )


def daemon_env(base: t.Mapping[str, str], pythonpath: str) -> dict[str, str]:
    """The daemon's environment from an allow-list of ours, with the collection on PYTHONPATH."""
    env = {
        k: v for k, v in base.items()
        if k in _PLAIN_ENV or k.startswith(_PLAIN_ENV_PREFIXES) or k in TRUST_ENV or _TEST_ENV.match(k)
    }
    existing = base.get("PYTHONPATH")
    env["PYTHONPATH"] = pythonpath + (os.pathsep + existing if existing else "")
    return env


def collection_sys_path_root() -> str:
    """The directory holding ``ansible_collections`` for this very package (what the daemon needs on sys.path)."""
    parts = __name__.split(".")
    root = os.path.abspath(__file__)
    for _part in parts:
        root = os.path.dirname(root)
    return root


def daemon_module() -> str:
    return f"{__package__}._pin_daemon"


def start_daemon(paths: PinPaths, connect_timeout: float, log_level: str = "INFO") -> int | None:
    """Start the daemon (the caller holds the directory lock); returns its pid once its socket listens.

    The daemon's first process binds the socket, forks the daemon away and exits printing its pid.
    """
    check_packages()
    cmd = [
        sys.executable, "-m", daemon_module(),
        "--dir", paths.root,
        "--log-level", log_level,
    ]
    env = daemon_env(os.environ, collection_sys_path_root())
    log.debug("starting the pin daemon: %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            env=env,
            cwd=paths.dir,
        )
    except OSError as exc:
        raise TransportError(f"cannot start the pin daemon ({sys.executable}): {exc}") from exc
    try:
        out, err = proc.communicate(timeout=connect_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TransportError(f"the pin daemon did not start within {connect_timeout:g}s; see {paths.log}") from None
    if proc.returncode != 0:
        detail = err.decode("utf-8", "replace").strip()[-2000:]
        raise TransportError(f"the pin daemon failed to start (exit {proc.returncode}): {detail}")
    text = out.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
