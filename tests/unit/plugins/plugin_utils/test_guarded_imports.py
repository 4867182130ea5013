"""The engine modules load without their third-party packages and name the missing one when it is needed.

ansible-test's import sanity test loads every plugin_utils module in an environment without the collection's
requirements; ansible-core guards its own plugins' imports the same way.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from ansible_collections.pinned.winrm.plugins.plugin_utils import _connection, _httpauth, _transport

COLLECTIONS = pathlib.Path(__file__).resolve().parents[4] / "build" / "collections"

# Runs in a fresh interpreter where importing any of the packages fails as if it were not installed.
_WITHOUT_PACKAGES = r"""
import json, sys
for name in ("h11", "spnego", "requests", "pypsrp"):
    sys.modules[name] = None  # `import name` now raises ImportError
sys.path.insert(0, sys.argv[1])
from ansible_collections.pinned.winrm.plugins.plugin_utils import _connection, _errors, _httpauth, _transport

def refusal(build):
    try:
        build()
    except _errors.PinnedError as e:
        return str(e)
    return None

print(json.dumps({
    "connection": refusal(lambda: _connection.HTTPConnection(None, party="host")),
    "digest": refusal(lambda: _httpauth.DigestAuth("user", "secret")),
    "spnego": refusal(lambda: _httpauth.SpnegoAuth("user", "secret", protocol="ntlm", hostname="win01",
                                                   service="HTTP", labels=("NTLM",))),
    "transport": refusal(lambda: _transport.WinRMTransport(None)),
    "basic": refusal(lambda: _httpauth.BasicAuth("user", "secret", send_first=True)),
}))
"""


def test_engine_modules_import_without_their_packages_and_each_builder_names_the_missing_one() -> None:
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_PACKAGES, str(COLLECTIONS)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    refused = json.loads(proc.stdout)
    for built, package in (("connection", "h11"), ("digest", "requests"), ("spnego", "pyspnego"),
                           ("transport", "pypsrp")):
        message = refused[built]
        assert message is not None, f"{built} was built without {package}"
        assert f"the Python package {package} " in message and "pip install -r requirements.txt" in message, message
    assert refused["basic"] is None  # Basic needs no third-party package


def test_with_the_packages_installed_nothing_is_reported_missing() -> None:
    assert _connection.H11_IMPORT_ERROR is None
    assert _httpauth.SPNEGO_IMPORT_ERROR is None and _httpauth.REQUESTS_IMPORT_ERROR is None
    assert _transport.PYPSRP_IMPORT_ERROR is None
