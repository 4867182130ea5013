"""The collection as Galaxy users get it: built, installed into a fresh path, documented, and working.

Nothing here reads the checkout at run time: Ansible is pointed at the fresh install only (its own config
file, collections path and home), so a file missing from the tarball fails these tests.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tarfile
import typing as t

import pytest
import yaml

from tests.integration._ansible import run_playbook

from .conftest import Installed, run, tool

# What must never ship: virtual environments, build and test output, caches, the lab's scratch space, VCS.
FORBIDDEN_PARTS = {".venv", ".venv-min", "build", ".pytest_cache", "__pycache__", ".mypy_cache", ".ruff_cache",
                   ".git", ".lab", ".ansible"}
REQUIRED_FILES = {"MANIFEST.json", "FILES.json", "README.md", "COPYING", "CHANGELOG.md", "requirements.txt",
                  "bindep.txt", "meta/runtime.yml", "meta/execution-environment.yml", "plugins/connection/psrp.py",
                  "plugins/doc_fragments/proxy.py", "changelogs/changelog.yaml", "docs/README.md",
                  "docs/quickstart.md", "docs/proxies.md"}


def test_tarball_ships_the_collection_and_no_local_state(collection_tarball: pathlib.Path) -> None:
    with tarfile.open(collection_tarball) as tar:
        names = [m.name.removeprefix("./") for m in tar.getmembers()]
    shipped = set(names)
    assert REQUIRED_FILES <= shipped, sorted(REQUIRED_FILES - shipped)
    leaked = sorted(n for n in names if FORBIDDEN_PARTS & set(n.split("/")) or n.endswith((".pyc", ".tar.gz"))
                    or n.startswith("tests/output"))
    assert not leaked, f"local state in the tarball (add it to build_ignore in galaxy.yml): {leaked[:20]}"


def test_license_file_galaxy_metadata_and_file_headers_name_the_same_license() -> None:
    root = pathlib.Path(__file__).resolve().parents[3]
    assert yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))["license"] == ["GPL-3.0-or-later"]
    copying = (root / "COPYING").read_text(encoding="utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in copying and "Version 3, 29 June 2007" in copying
    headers = [p for p in root.glob("plugins/**/*.py") if "COPYING" in p.read_text(encoding="utf-8")]
    assert headers, "no file header cites COPYING"
    for path in headers:
        assert "GNU General Public License v3.0+ (see COPYING" in path.read_text(encoding="utf-8"), path


def test_installed_collection_reports_its_version_from_the_fresh_path(installed_collection: Installed) -> None:
    proc = run([tool("ansible-galaxy"), "collection", "list", "pinned.winrm", "--format", "json"],
               cwd=installed_collection.home, env=installed_collection.env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing == {str(installed_collection.collections_path / "ansible_collections"): {
        "pinned.winrm": {"version": _galaxy_version()}}}, listing


def _galaxy_version() -> str:
    root = pathlib.Path(__file__).resolve().parents[3]
    return str(yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))["version"])


def test_ansible_doc_renders_every_option_with_its_variables_from_the_install(installed_collection: Installed) -> None:
    env = installed_collection.env()
    text = run([tool("ansible-doc"), "-t", "connection", "pinned.winrm.psrp"], cwd=installed_collection.home,
               env=env, timeout=120)
    assert text.returncode == 0, text.stderr
    assert str(installed_collection.root / "plugins" / "connection" / "psrp.py") in text.stdout
    doc = run([tool("ansible-doc"), "-t", "connection", "--json", "pinned.winrm.psrp"],
              cwd=installed_collection.home, env=env, timeout=120)
    assert doc.returncode == 0, doc.stderr
    options = json.loads(doc.stdout)["pinned.winrm.psrp"]["doc"]["options"]
    for name in ("proxy", "proxy_auth", "proxy_user", "proxy_password", "proxy_ca_cert", "proxy_bypass",
                 "proxy_from_env", "proxy_tunnel", "persist"):
        assert name in options, sorted(options)
    without_vars = sorted(n for n, o in options.items() if n != "pipelining" and not o.get("vars"))
    assert not without_vars, f"options users cannot set from inventory: {without_vars}"
    for name, option in options.items():
        for var in option.get("vars", []):
            assert var["name"] in text.stdout, f"{name}: {var['name']} missing from the rendered page"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_playbook_runs_against_the_lab_from_the_installed_collection(installed_collection: Installed, lab: t.Any,
                                                                     tmp_path: pathlib.Path) -> None:
    desc = lab.describe()
    host = desc["hosts"][0]
    proxy = desc["proxies"]["squid_ntlm"]
    account = next(u for u in host["users"] if u["username"] == "ansible")
    lab.clear_faults(host["name"])
    lab.reset_host(host["name"])
    inventory = tmp_path / "inventory.yml"
    fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # lab passwords are test data, kept private
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"windows": {"hosts": {host["name"].lower(): {
            "ansible_host": host["address"], "ansible_port": host["https_port"],
            "ansible_user": account["username"], "ansible_password": account["password"]}}, "vars": {
            "ansible_connection": "pinned.winrm.psrp", "ansible_psrp_auth": "ntlm",
            "ansible_psrp_ca_cert": desc["ca_cert"], "ansible_psrp_proxy": proxy["url"],
            "ansible_psrp_proxy_auth": "ntlm", "ansible_psrp_proxy_user": proxy["username"],
            "ansible_psrp_proxy_password": proxy["password"]}}}, f)
    pc = tmp_path / "pc"
    env = installed_collection.env(ANSIBLE_PSRP_PERSIST_DIR=str(pc), PINNED_TEST_RESULTS=str(tmp_path / "results.json"))
    # run_playbook's own environment points at the checkout: override every Ansible path with the install's
    env.update({"ANSIBLE_CALLBACK_PLUGINS": str(pathlib.Path(__file__).parents[1] / "callback_plugins"),
                "ANSIBLE_CALLBACKS_ENABLED": "record_results"})
    playbook = pathlib.Path(__file__).parent / "playbooks" / "probe.yml"
    try:
        result = run_playbook(playbook, inventory, tmp_path, env=env, extra_args=["-vvv"])
        sessions = _session_tool(installed_collection, pc, "list")
    finally:
        _session_tool(installed_collection, pc, "stop")
    result.assert_ok()
    probe = result.task_results(host["name"].lower())[0]
    assert f"probe {host['name'].upper()} 42" in probe["stdout"], probe
    assert f"ansible collection location = {installed_collection.collections_path}\n" in result.stdout, \
        result.stdout[:800]
    assert lab.host_counters(host["name"]).get("auth_handshakes.ntlm", 0) == 1
    # the daemon the installed plugin started is the one the installed session tool talks to
    assert sessions.returncode == 0, sessions.stderr
    listing = json.loads(sessions.stdout)
    rows = listing["sessions"]
    assert [r["host"] for r in rows] == [host["address"]], rows
    # the daemon runs the installed engine: the plugin gave it the install's path, not the checkout's
    daemon_env = pathlib.Path(f"/proc/{listing['daemon']['pid']}/environ").read_bytes().split(b"\0")
    pythonpath = next(v for v in daemon_env if v.startswith(b"PYTHONPATH=")).decode().split("=", 1)[1]
    assert pythonpath.split(os.pathsep)[0] == str(installed_collection.collections_path), pythonpath
    assert proxy["password"] not in result.stdout + result.stderr + sessions.stdout


def _session_tool(installed: Installed, pc: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The session tool of the installed copy (python -m, as docs/sessions.md shows for installs)."""
    env = installed.env(PYTHONPATH=str(installed.collections_path))
    return run([sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                "--dir", str(pc), "--json", *args], cwd=installed.home, env=env, timeout=60)
