"""The real-host integration target, run by ansible-test against the lab, as a user runs it against their hosts.

`tests/integration/targets/connection_pinned_psrp` takes any Windows inventory ansible-test is given. Here the
inventory is the one docs/validate-your-hosts.md tells a user to write (for ansible.builtin.psrp), filled in
with the lab's hosts, accounts, CA and Squid as a user fills it in with theirs, and ansible-test runs from the
collection installed from its tarball: once directly, once through Squid with NTLM proxy login.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import tempfile
import textwrap
import typing as t

import pytest

from .conftest import Installed, clean_env, run, tool

TARGET = "connection_pinned_psrp"
DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "validate-your-hosts.md"


def doc_inventory(route: str) -> str:
    """The INI block of docs/validate-your-hosts.md marked `# it-test: <route>`."""
    text = DOC.read_text(encoding="utf-8")
    for match in re.finditer(r"^\s*```ini\n(?P<body>.*?)^\s*```", text, re.M | re.S):
        body = textwrap.dedent(match.group("body"))
        if re.search(rf"^# it-test: {route}$", body, re.M):
            return body
    raise AssertionError(f"no `# it-test: {route}` inventory in {DOC}")


def lab_inventory(desc: dict[str, t.Any], route: str) -> str:
    """The documented inventory with the lab's values: its hosts, accounts, CA and Squid, as a user fills it in."""
    hosts = iter(desc["hosts"])
    lines = []
    for line in doc_inventory(route).splitlines():
        if re.match(r"^win\d+ ", line):
            host = next(hosts)
            account = next(u for u in host["users"] if u["username"] == "ansible")
            line = (f"{host['name'].lower()} ansible_host={host['address']} ansible_port={host['https_port']} "
                    f"ansible_user={account['username']} ansible_password={account['password']}")
        elif line.startswith("ansible_psrp_ca_cert="):
            line = f"ansible_psrp_ca_cert={desc['ca_cert']}"
        elif line.startswith("ansible_psrp_proxy"):
            squid = desc["proxies"][route]
            key = line.split("=", 1)[0]
            line = f"{key}=" + {"ansible_psrp_proxy": squid["url"], "ansible_psrp_proxy_auth": squid["auth"],
                                "ansible_psrp_proxy_user": squid["username"],
                                "ansible_psrp_proxy_password": squid["password"]}[key]
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("route", ["direct", "squid_ntlm"])
def test_ansible_test_runs_the_integration_target_against_the_lab(installed_collection: Installed, lab: t.Any,
                                                                    tmp_path: pathlib.Path, route: str) -> None:
    desc = lab.describe()
    for host in desc["hosts"]:
        lab.clear_faults(host["name"])
        lab.reset_host(host["name"])
    proxy_before = lab.proxy_counters(route)["requests"] if route != "direct" else None
    inventory = tmp_path / "inventory.winrm"
    fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # lab passwords: test data, still private
    with os.fdopen(fd, "w") as f:
        f.write(lab_inventory(desc, route))
    # ansible-test passes the plugin no variables of ours: the daemon goes to ~/.ansible/pc, so $HOME is a short
    # private directory of this test (a UNIX socket path has 107 bytes)
    home = pathlib.Path(tempfile.mkdtemp(prefix="pw-it-"))
    env = clean_env(HOME=str(home))
    try:
        proc = run([tool("ansible-test"), "windows-integration", "--controller", f"origin:python={sys.version_info[0]}."
                    f"{sys.version_info[1]}", "--target", f"inventory:{inventory}", TARGET, "--color", "no", "-v"],
                   cwd=installed_collection.root, env=env, timeout=840)
    finally:
        run([sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli", "--dir",
             str(home / ".ansible" / "pc"), "stop"], cwd=tmp_path,
            env={**env, "PYTHONPATH": str(installed_collection.collections_path)}, timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert f"Running {TARGET} integration test script" in output, output[-3000:]
    # every host of the inventory ran both playbooks to the end (with and without persistence), none failed
    listed = [h for h in desc["hosts"] if re.search(rf"^{h['name'].lower()} ", inventory.read_text(), re.M)]
    assert listed, inventory.read_text()
    for host in listed:
        name = host["name"].lower()
        recaps = re.findall(rf"^{name}\s*: ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
        assert len(recaps) == 2 and all(u == f == "0" for _ok, u, f in recaps), recaps
        assert lab.host_counters(host["name"]).get("auth_handshakes.ntlm", 0) >= 1
    # T1 ran on every host (nothing skips it) and the next task saw none of what the previous one left
    # (serial: 1, so the task's header comes once per host)
    sections = re.findall(r"^TASK \[T1 - the next task sees the host session as a fresh pool would\].*?(?=^TASK )",
                          output, re.M | re.S)
    ran = [name for section in sections
           for name in re.findall(r"^(?:ok|changed): \[([^\]]+)\]", section, re.M)]  # raw reports changed
    assert sorted(ran) == sorted(h["name"].lower() for h in listed), sections or output[-3000:]
    if proxy_before is not None:
        assert lab.proxy_counters(route)["requests"] > proxy_before
    assert all(u["password"] not in output for h in desc["hosts"] for u in h["users"])
