"""Fixtures for end-to-end runs: ansible-playbook subprocesses against the session lab."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
from tests.integration._ansible import ROOT, PlaybookRun, RunningPlaybook, start_playbook, write_inventory

PLAYBOOKS = pathlib.Path(__file__).parent / "playbooks"


@dataclasses.dataclass
class E2E:
    lab: t.Any
    desc: dict[str, t.Any]
    workdir: pathlib.Path

    def host(self, index: int = 0) -> dict[str, t.Any]:
        return self.desc["hosts"][index]

    def proxy(self, name: str) -> dict[str, t.Any]:
        return self.desc["proxies"][name]

    def host_vars(self, index: int = 0, *, scheme: str = "https", user: str = "ansible") -> dict[str, t.Any]:
        host = self.host(index)
        account = next(u for u in host["users"] if u["username"] == user)
        return {
            "ansible_host": host["address"],
            "ansible_port": host[f"{scheme}_port"],
            "ansible_psrp_protocol": scheme,
            "ansible_user": account.get("principal", account["username"]),
            "ansible_password": account["password"],
        }

    def counters(self, index: int = 0) -> dict[str, int]:
        return self.lab.host_counters(self.host(index)["name"])

    def proxy_counters(self, name: str) -> dict[str, t.Any]:
        return self.lab.proxy_counters(name)

    def run(
        self,
        group_vars: dict[str, t.Any],
        *,
        hosts: t.Sequence[int] = (0,),
        host_overrides: dict[str, t.Any] | None = None,
        playbook: str = "raw_probe.yml",
        env: dict[str, str] | None = None,
        extra_args: t.Sequence[str] = (),
        name: str = "run",
    ) -> PlaybookRun:
        return self.start(group_vars, hosts=hosts, host_overrides=host_overrides, playbook=playbook, env=env,
                          extra_args=extra_args, name=name).finish()

    def start(
        self,
        group_vars: dict[str, t.Any],
        *,
        hosts: t.Sequence[int] = (0,),
        host_overrides: dict[str, t.Any] | None = None,
        playbook: str = "raw_probe.yml",
        env: dict[str, str] | None = None,
        extra_args: t.Sequence[str] = (),
        name: str = "run",
    ) -> RunningPlaybook:
        """Like run(), in the background: the caller interrupts it or calls finish()."""
        inv_hosts = {}
        for index in hosts:
            entry = self.host_vars(index, scheme=group_vars.get("ansible_psrp_protocol", "https"))
            entry.update(host_overrides or {})
            inv_hosts[self.host(index)["name"].lower()] = entry
        base = {"ansible_connection": "pinned.winrm.psrp", "ansible_psrp_ca_cert": self.desc["ca_cert"]}
        run_dir = self.workdir / name
        inventory = write_inventory(run_dir, inv_hosts, {**base, **group_vars})
        kdc_env = dict((self.desc.get("kdc") or {}).get("env") or {})
        if kdc_env.get("KRB5CCNAME"):
            # a private credential cache per run: Kerberos tests never share tickets by accident
            kdc_env["KRB5CCNAME"] = f"FILE:{run_dir / 'ccache'}"
        return start_playbook(PLAYBOOKS / playbook if "/" not in playbook else playbook, inventory, self.workdir,
                              env={**kdc_env, **(env or {})}, extra_args=extra_args)

    def close_sessions(self) -> None:
        pc = self.workdir / "pc"
        if pc.exists():
            subprocess.run(
                [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                 "--dir", str(pc), "close", "--all"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
                capture_output=True, timeout=30,
            )


@pytest.fixture
def e2e(lab, tmp_path) -> t.Iterator[E2E]:
    desc = lab.describe()
    for host in desc["hosts"]:
        lab.clear_faults(host["name"])
        lab.reset_host(host["name"])
    env = E2E(lab, desc, tmp_path)
    yield env
    env.close_sessions()


def delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return int(after.get(name, 0)) - int(before.get(name, 0))


def direct_session(e2e: E2E, **options: t.Any) -> Session:
    """An in-process Session (not opened) to the first lab host: direct HTTPS, NTLM, the lab's CA; `options` win."""
    host = e2e.host()
    user = host["users"][0]
    spec = build_spec({
        "remote_addr": host["address"], "port": host["https_port"], "protocol": "https",
        "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
        "ca_cert": e2e.desc["ca_cert"], **options,
    })
    return Session(spec)
