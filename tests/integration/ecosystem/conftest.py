"""Fixtures for the ecosystem tests: the collection as users get it (built tarball, fresh install)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest

from tests.integration._ansible import ROOT

VENV_BIN = pathlib.Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed in the test venv (ansible-galaxy, ansible-builder, ...)."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in {VENV_BIN} (see tests/requirements.txt)")
    return str(path)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an Ansible tool run outside the checkout: no stray proxies or Ansible config."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: t.Sequence[str], *, cwd: pathlib.Path | str, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded time; stdin closed, output captured."""
    return subprocess.run(list(cmd), cwd=cwd, env=env if env is not None else clean_env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@dataclasses.dataclass(frozen=True)
class Installed:
    """pinned.winrm built with ansible-galaxy and installed from the tarball into a fresh path."""

    tarball: pathlib.Path
    collections_path: pathlib.Path  # holds ansible_collections/pinned/winrm
    home: pathlib.Path  # an empty directory for ANSIBLE_HOME / ANSIBLE_CONFIG of runs against this install

    @property
    def root(self) -> pathlib.Path:
        return self.collections_path / "ansible_collections" / "pinned" / "winrm"

    def env(self, **extra: str) -> dict[str, str]:
        """Ansible sees only this install: its own config file, collections path and home."""
        return clean_env(
            ANSIBLE_CONFIG=str(self.home / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(self.collections_path),
            ANSIBLE_HOME=str(self.home / "ansible-home"),
            ANSIBLE_LOCAL_TEMP=str(self.home / "tmp"),
            ANSIBLE_NOCOLOR="1",
            **extra,
        )


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """`ansible-galaxy collection build` of this checkout, as a maintainer does before publishing."""
    out = tmp_path_factory.mktemp("galaxy-build")
    proc = run([tool("ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(out)], cwd=out,
               timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarballs = list(out.glob("pinned-winrm-*.tar.gz"))
    assert len(tarballs) == 1, proc.stdout
    return tarballs[0]


@pytest.fixture(scope="session")
def installed_collection(collection_tarball: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`ansible-galaxy collection install` of the tarball into a fresh path, far from the checkout."""
    base = tmp_path_factory.mktemp("galaxy-install")
    collections = base / "collections"
    home = base / "home"
    home.mkdir(mode=0o700)
    (home / "ansible.cfg").write_text("[defaults]\nhost_key_checking = False\nretry_files_enabled = False\n")
    installed = Installed(collection_tarball, collections, home)
    proc = run([tool("ansible-galaxy"), "collection", "install", str(collection_tarball), "-p", str(collections),
                "--no-deps"], cwd=base, env=installed.env(), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed.root / "MANIFEST.json").is_file(), proc.stdout
    return installed
