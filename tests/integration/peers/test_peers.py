"""The peers against the lab: ansible.builtin.psrp, ansible.builtin.winrm and pinned.winrm.psrp, unmodified,
in real ansible-playbook runs, directly and through the Basic Squid's TLS port (HTTPS, NTLM to the host).

Each row runs raw tasks and a put_file/fetch_file round trip (through the test-only transfer_probe action,
since Ansible's file actions need Windows modules the lab cannot run), and checks what the lab host and the
proxy received: the file under the host's root is byte for byte what was sent, the fetched copy too, the host
saw NTLM, and through Squid the proxy authenticated the proxy user.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import time
import typing as t

import pytest
import yaml

from tests.integration._ansible import ROOT, PlaybookRun, run_playbook, write_inventory

from ._inventory import PLUGINS, group_vars, host_vars

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

ACTION_PLUGINS = pathlib.Path(__file__).parent / "action_plugins"
ROUTES = ("direct", "squid")
# The Basic Squid on its TLS port: Basic is all the builtin plugins can do, and pinned refuses to send a
# Basic password to an http:// proxy.
PROXY = "squid_https"

def _params() -> list[t.Any]:
    return [pytest.param(plugin, route, id=f"{plugin}-{route}") for plugin in PLUGINS for route in ROUTES]


class Peers:
    """One lab host, one work directory, and ansible-playbook runs with any of the three plugins."""

    def __init__(self, lab: t.Any, workdir: pathlib.Path) -> None:
        self.lab = lab
        self.desc = lab.describe()
        self.workdir = workdir
        self.host = self.desc["hosts"][0]

    def counters(self) -> dict[str, int]:
        return self.lab.host_counters(self.host["name"])

    def run(self, plugin: str, route: str, tasks: list[dict[str, t.Any]], name: str, timeout: float = 180) -> PlaybookRun:
        run_dir = self.workdir / name
        inventory = write_inventory(run_dir, {self.host["name"].lower(): host_vars(self.desc)},
                                    group_vars(plugin, self.desc, proxy=PROXY if route == "squid" else None))
        playbook = run_dir / "playbook.yml"
        playbook.write_text(yaml.safe_dump([{"name": name, "hosts": "windows", "gather_facts": False,
                                             "tasks": tasks}]))
        return run_playbook(playbook, inventory, self.workdir,
                            env={"ANSIBLE_ACTION_PLUGINS": str(ACTION_PLUGINS)}, timeout=timeout)

    def close_pinned_sessions(self) -> None:
        pc = self.workdir / "pc"
        if pc.exists():
            subprocess.run(
                [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                 "--dir", str(pc), "close", "--all"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
                capture_output=True, timeout=30,
            )

    def squid_users(self) -> dict[str, int]:
        return dict(self.lab.proxy_counters(PROXY).get("by_user", {}))


@pytest.fixture
def peers(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[Peers]:
    env = Peers(lab, tmp_path)
    lab.clear_faults(env.host["name"])
    yield env
    env.close_pinned_sessions()


def _delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return int(after.get(name, 0)) - int(before.get(name, 0))


def _assert_route(peers: Peers, route: str, plugin: str, users_before: dict[str, int]) -> None:
    """Through Squid, the proxy authenticated our proxy user (its access log is written as tunnels close)."""
    peers.close_pinned_sessions()
    proxy_user = peers.desc["proxies"][PROXY]["username"]
    deadline = time.monotonic() + 10
    seen = 0
    while time.monotonic() < deadline:
        seen = peers.squid_users().get(proxy_user, 0) - users_before.get(proxy_user, 0)
        if route == "direct" or seen > 0:
            break
        time.sleep(0.2)
    if route == "squid":
        assert seen > 0, f"{plugin}: Squid logged no request by {proxy_user}"


@pytest.mark.parametrize(("plugin", "route"), _params())
def test_raw_tasks_return_output_exit_code_and_errors_derived_by_the_host(peers: Peers, plugin: str, route: str) -> None:
    tasks = [
        {"name": "output", "ansible.builtin.raw": 'Write-Output "peer $env:COMPUTERNAME $(7 * 6)"', "changed_when": False},
        {"name": "exit code", "ansible.builtin.raw": "exit 5", "register": "code", "changed_when": False,
         "failed_when": "code.rc != 5"},
        {"name": "error stream", "ansible.builtin.raw": 'Write-Error -Message "bad thing $(1 + 1)"',
         "register": "err", "changed_when": False, "failed_when": "'bad thing 2' not in err.stderr"},
    ]
    before, users_before = peers.counters(), peers.squid_users()
    run = peers.run(plugin, route, tasks, f"raw-{plugin}-{route}")
    run.assert_ok()
    results = run.task_results(peers.host["name"].lower())
    assert [r["status"] for r in results] == ["ok", "ok", "ok"], results
    assert results[0]["stdout"].strip() == f"peer {peers.host['name']} 42"
    assert results[1]["rc"] == 5
    after = peers.counters()
    assert _delta(after, before, "auth_handshakes.ntlm") >= 1, after
    assert _delta(after, before, "wsman.Command") >= 3, after
    _assert_route(peers, route, plugin, users_before)


@pytest.mark.parametrize(("plugin", "route"), _params())
def test_put_file_and_fetch_file_round_trip_byte_for_byte(peers: Peers, plugin: str, route: str) -> None:
    # not a multiple of any chunk size the plugins use, and every byte value
    payload = os.urandom(300 * 1024 + 7) + bytes(range(256))
    src = peers.workdir / "payload.bin"
    src.write_bytes(payload)
    fetched = peers.workdir / "fetched.bin"
    name = f"peer-{plugin}-{route}.bin"
    remote = f"C:\\Users\\ansible\\{name}"
    on_host = pathlib.Path(peers.host["root"]) / "Users" / "ansible" / name
    on_host.unlink(missing_ok=True)
    users_before = peers.squid_users()
    try:
        run = peers.run(plugin, route, [{"name": "transfer", "transfer_probe": {
            "src": str(src), "dest": remote, "fetch_to": str(fetched)}}], f"transfer-{plugin}-{route}")
        run.assert_ok()
        result = run.task_results(peers.host["name"].lower())[0]
        assert on_host.read_bytes() == payload
        assert fetched.read_bytes() == payload
        assert result["fetched_sha256"] == result["src_sha256"] == hashlib.sha256(payload).hexdigest()
    finally:
        on_host.unlink(missing_ok=True)
    _assert_route(peers, route, plugin, users_before)
