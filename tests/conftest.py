"""Test-session set-up shared by every test: import paths and the lab fixtures."""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / "build" / "collections"

# The engine is imported as ansible_collections.pinned.winrm.*, as Ansible loads it.
link = COLLECTIONS / "ansible_collections" / "pinned" / "winrm"
if not link.exists():
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(pathlib.Path("../../../.."))
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# Install Ansible's collection loader first, so every import of ansible_collections.* (tests, plugin
# loader) yields the same module objects, exactly as under ansible-playbook.
from ansible.plugins.loader import init_plugin_loader  # noqa: E402

init_plugin_loader([str(COLLECTIONS)])

# the session lab's fixtures, and the reliability report's rows (declared by tests, written at the end)
pytest_plugins = ["tests.lab.pytest_plugin", "tests.integration.reliability.report_plugin"]
