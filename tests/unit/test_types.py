"""The collection's Python passes mypy --strict (mypy.ini): `make test` fails on a type error in plugins/."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_plugins_pass_strict_mypy() -> None:
    # run where the collection resolves as ansible_collections.pinned.winrm (tests/conftest.py made the link)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), "--cache-dir",
         str(ROOT / "build" / "mypy_cache"), "-p", "ansible_collections.pinned.winrm.plugins"],
        cwd=ROOT / "build" / "collections", capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, f"mypy (make typecheck) found type errors:\n{out.stdout}{out.stderr}"
    assert "Success: no issues found" in out.stdout
