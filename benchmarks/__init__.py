"""Benchmarks of pinned.winrm.psrp beside ansible.builtin.psrp and ansible.builtin.winrm (make bench)."""

from __future__ import annotations

import pathlib
import sys

_COLLECTIONS = pathlib.Path(__file__).resolve().parents[1] / "build" / "collections"


def _import_collection() -> None:
    """Make ansible_collections.pinned.winrm importable as Ansible loads it (for the pin client)."""
    link = _COLLECTIONS / "ansible_collections" / "pinned" / "winrm"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(pathlib.Path("../../../.."))
    if str(_COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(_COLLECTIONS))
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(_COLLECTIONS)])


_import_collection()
