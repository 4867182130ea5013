"""Execution environments: ansible-builder turns our metadata into a build context, and the daemon needs no $HOME.

No container engine runs here, so the tests stop where ansible-builder hands over to one: `introspect`
(what the build runs inside the image to collect every collection's requirements) and `create` (the build
context). The daemon test runs a playbook the way a container runs it: $HOME unusable, Ansible's own
settings pointing elsewhere.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import typing as t

import pytest
import yaml

from tests.integration._ansible import ROOT, VENV_BIN

from . import _docs_examples as docs
from .conftest import Installed, clean_env, run, tool

EE_DOC = ROOT / "docs" / "execution-environments.md"


def _lines(path: pathlib.Path) -> list[str]:
    """Requirement lines of a pip or bindep file, without comments."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def test_meta_declares_python_and_system_requirements_for_ansible_builder_3() -> None:
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text(encoding="utf-8"))
    assert meta["version"] == 3
    deps = meta["dependencies"]
    assert (ROOT / deps["python"]).is_file() and (ROOT / deps["system"]).is_file(), deps
    system = " ".join(_lines(ROOT / deps["system"]))
    # Kerberos at run time on both package families, and what building python-gssapi/krb5 needs
    assert re.search(r"krb5-libs \[platform:rpm\]", system), system
    assert re.search(r"libkrb5-3 \[platform:dpkg\]", system), system
    assert re.search(r"krb5-devel \[platform:rpm compile\]", system), system
    assert re.search(r"libkrb5-dev \[platform:dpkg compile\]", system), system
    assert re.search(r"gcc \[compile\]", system), system


def test_introspect_finds_our_requirements_in_the_installed_collection(installed_collection: Installed) -> None:
    proc = run([tool("ansible-builder"), "introspect", str(installed_collection.collections_path)],
               cwd=installed_collection.home, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = yaml.safe_load(proc.stdout.split("\n", 1)[1])  # first line is a comment header
    python = [line.split("#")[0].strip() for line in found["python"] if "pinned.winrm" in line]
    system = [line.split("#")[0].strip() for line in found["system"] if "pinned.winrm" in line]
    assert python == _lines(ROOT / "requirements.txt")
    assert system == _lines(ROOT / "bindep.txt")


def test_ansible_builder_creates_a_context_from_the_collection_metadata(tmp_path: pathlib.Path) -> None:
    # meta/execution-environment.yml read as an EE definition, with the files it names beside it
    for name in ("requirements.txt", "bindep.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "meta" / "execution-environment.yml", tmp_path / "execution-environment.yml")
    proc = run([tool("ansible-builder"), "create", "-f", "execution-environment.yml", "--context", "context",
                "--output-filename", "Containerfile"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "context" / "_build"
    assert _lines(build / "requirements.txt") == _lines(ROOT / "requirements.txt")
    assert _lines(build / "bindep.txt") == _lines(ROOT / "bindep.txt")
    containerfile = (tmp_path / "context" / "Containerfile").read_text(encoding="utf-8")
    assert "requirements.txt" in containerfile and "bindep.txt" in containerfile


def _doc_blocks() -> dict[str, str]:
    """The fenced blocks of docs/execution-environments.md marked `# ee-test: <file name>`."""
    blocks = {}
    for match in re.finditer(r"^```\w*\n(?P<body>.*?)^```", EE_DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
        body = match.group("body")
        match = re.search(r"^#\s*ee-test:\s*(\S+)\s*$", body, re.MULTILINE)
        if match:
            blocks[match.group(1)] = body
    return blocks


def test_documented_execution_environment_builds_a_context_that_installs_pinned_winrm(tmp_path: pathlib.Path) -> None:
    blocks = _doc_blocks()
    assert {"execution-environment.yml", "requirements.yml", "krb5.conf"} <= set(blocks), sorted(blocks)
    for name, body in blocks.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    proc = run([tool("ansible-builder"), "create", "-f", "execution-environment.yml", "--context", "context",
                "--output-filename", "Containerfile"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = tmp_path / "context"
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text(encoding="utf-8"))
    assert any(c.get("name") == "pinned.winrm" for c in galaxy["collections"]), galaxy
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    # the build installs the collection, then collects its Python and system requirements through introspect
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect" in containerfile
    assert (context / "_build" / "configs" / "krb5.conf").read_text(encoding="utf-8") == blocks["krb5.conf"]
    ee = yaml.safe_load(blocks["execution-environment.yml"])
    for key, value in (ee.get("additional_build_steps") or {}).items():
        for step in value if isinstance(value, list) else [value]:
            assert step.strip() in containerfile, f"{key}: {step!r} missing from the Containerfile"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_daemon_lives_under_ansibles_control_path_dir_without_a_usable_home(lab: t.Any, tmp_path: pathlib.Path) -> None:
    desc = lab.describe()
    host = desc["hosts"][0]
    account = next(u for u in host["users"] if u["username"] == "ansible")
    lab.clear_faults(host["name"])
    lab.reset_host(host["name"])
    inventory = tmp_path / "inventory.yml"
    fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # lab passwords are test data, kept private
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"windows": {"hosts": {host["name"].lower(): {
            "ansible_host": host["address"], "ansible_port": host["https_port"], "ansible_user": "ansible",
            "ansible_password": account["password"]}}, "vars": {
            "ansible_connection": "pinned.winrm.psrp", "ansible_psrp_auth": "ntlm",
            "ansible_psrp_ca_cert": desc["ca_cert"]}}}, f)
    home = tmp_path / "no-home"
    home.mkdir(mode=0o500)  # what a container with a random uid often has: a $HOME it cannot write (root can: checked below)
    control = tmp_path / "runner-pc"  # an EE sets Ansible's settings, not $HOME
    env = clean_env(HOME=str(home), ANSIBLE_PERSISTENT_CONTROL_PATH_DIR=str(control),
                    ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "rtmp"),
                    ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                    ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    playbook = pathlib.Path(__file__).parent / "playbooks" / "probe.yml"
    daemon_dir = control / f"pinned-winrm-{os.geteuid()}"
    try:
        proc = run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)], cwd=tmp_path, env=env,
                   timeout=180)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert re.search(rf"{host['name'].lower()}\s*:\s*ok=1\s", proc.stdout), proc.stdout[-2000:]
        assert daemon_dir.is_dir(), sorted(p.name for p in control.iterdir()) if control.exists() else "no control dir"
        assert oct(daemon_dir.stat().st_mode & 0o777) == oct(0o700)
        assert any(p.suffix == ".sock" for p in daemon_dir.iterdir()), sorted(p.name for p in daemon_dir.iterdir())
        assert not any(home.iterdir()), "something wrote into $HOME"
    finally:
        subprocess.run([str(VENV_BIN / "python"), "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                        "--dir", str(control), "stop"], cwd=tmp_path, capture_output=True, timeout=30,
                       env={**env, "PYTHONPATH": str(ROOT / "build" / "collections")}, stdin=subprocess.DEVNULL)
        home.chmod(0o700)
