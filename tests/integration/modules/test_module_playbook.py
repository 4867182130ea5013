"""Unmodified ansible.windows modules in real ansible-playbook runs against the lab: the same playbooks through
pinned.winrm.psrp (cold, warm, persistence off), ansible.builtin.psrp and ansible.builtin.winrm, directly and
through the Basic Squid's TLS port.

The playbooks (playbooks/*.yml) assert every module's answer against what they sent; these tests then check the
lab host's side: the file it wrote, the service table, the machine's boot count, the counters of the pinned
session. Through Squid only one row per plugin runs: the proxy path is the same for warm and persistence-off
pinned sessions, and every row is a full ansible-playbook run (CI time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import typing as t
import uuid

import pytest

from tests.integration._ansible import ROOT, PlaybookRun, run_playbook, write_inventory
from tests.integration.peers._inventory import group_vars, host_vars

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

PLAYBOOKS = pathlib.Path(__file__).parent / "playbooks"
PROXY = "squid_https"  # Basic is all the builtins can do; pinned refuses a Basic password to an http:// proxy
# module_wrapper.ps1 sets `environment:` variables in the process and never restores them (builtin throws the
# process away after the task); a pinned session keeps its process, so rule T1's restore must put them back.

# (row id, plugin, how the pinned session is used, routes)
VARIANTS = (
    ("pinned-cold", "pinned", "cold", ("direct", "squid")),
    ("pinned-warm", "pinned", "warm", ("direct",)),
    ("pinned-persist-off", "pinned", "off", ("direct",)),
    ("builtin-psrp", "builtin_psrp", "", ("direct", "squid")),
    ("builtin-winrm", "builtin_winrm", "", ("direct", "squid")),
)


class ModuleRuns:
    """One lab host, a private work directory and ansible-playbook runs of the module playbooks."""

    def __init__(self, lab: t.Any, workdir: pathlib.Path) -> None:
        self.lab = lab
        self.desc = lab.describe()
        self.workdir = workdir
        self.host = self.desc["hosts"][0]

    def become_account(self) -> dict[str, t.Any]:
        return next(u for u in self.host["users"] if u["username"] == "labuser")

    def run(self, plugin: str, route: str, playbook: str, name: str, *, persist: bool = True,
            extra_vars: dict[str, t.Any] | None = None) -> PlaybookRun:
        run_dir = self.workdir / name
        account = self.become_account()
        entry = {**host_vars(self.desc), "lab_become_user": account["username"],
                 "lab_become_password": account["password"]}
        group = group_vars(plugin, self.desc, proxy=PROXY if route == "squid" else None)
        if plugin == "pinned" and not persist:
            group["ansible_psrp_persist"] = False
        inventory = write_inventory(run_dir, {self.host["name"].lower(): entry}, group)
        vars_file = run_dir / "vars.json"
        vars_file.write_text(json.dumps(extra_vars or {}))
        return run_playbook(PLAYBOOKS / playbook, inventory, self.workdir, extra_args=["-e", f"@{vars_file}"],
                            timeout=280)

    def counters(self) -> dict[str, int]:
        return self.lab.host_counters(self.host["name"])

    def close_pinned_sessions(self) -> None:
        pc = self.workdir / "pc"
        if pc.exists():
            subprocess.run(
                [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                 "--dir", str(pc), "close", "--all"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
                capture_output=True, timeout=30,
            )


@pytest.fixture
def modules(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[ModuleRuns]:
    runs = ModuleRuns(lab, tmp_path)
    lab.clear_faults(runs.host["name"])
    yield runs
    runs.close_pinned_sessions()


def _module_vars(runs: ModuleRuns, name: str) -> tuple[dict[str, t.Any], bytes]:
    payload = os.urandom(200_000) + "Grüße ✓\r\n".encode()
    local_src = runs.workdir / f"{name}-payload.bin"
    local_src.write_bytes(payload)
    fetch_dir = runs.workdir / f"{name}-fetched"
    fetch_dir.mkdir()
    run_id = uuid.uuid4().hex[:12]
    return {
        "lab_dir": f"C:\\Lab\\modules-{run_id}",
        "local_src": str(local_src),
        "local_sha1": hashlib.sha1(payload).hexdigest(),
        "local_b64": base64.b64encode(payload).decode(),
        "fetch_dir": str(fetch_dir),
        "run_id": run_id,
    }, payload


def _delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return int(after.get(name, 0)) - int(before.get(name, 0))


def _params() -> list[t.Any]:
    return [pytest.param(plugin, mode, route, id=f"{row}-{route}")
            for row, plugin, mode, routes in VARIANTS for route in routes]


@pytest.mark.parametrize(("plugin", "mode", "route"), _params())
def test_the_module_playbook_passes_and_leaves_the_host_as_it_says(modules: ModuleRuns, plugin: str, mode: str,
                                                                    route: str) -> None:
    if mode == "warm":
        # a first run pins the session; the measured run below finds it
        warm_vars, _ = _module_vars(modules, "warm-up")
        modules.run(plugin, route, "modules.yml", "warm-up", extra_vars=warm_vars).assert_ok()
    extra, payload = _module_vars(modules, "run")
    before = modules.counters()
    run = modules.run(plugin, route, "modules.yml", "run", persist=mode != "off", extra_vars=extra)
    run.assert_ok()
    after = modules.counters()

    fetched = pathlib.Path(extra["fetch_dir"]) / "payload.bin"
    assert fetched.read_bytes() == payload
    root = pathlib.Path(modules.host["root"])
    assert not any((root / "Lab").glob(f"modules-{extra['run_id']}*")), "the play removes its folder"
    spooler = modules.lab.host_services(modules.host["name"], "Spooler")
    assert spooler["state"] == "running"
    statuses = [r["status"] for r in run.task_results(modules.host["name"].lower())]
    assert "failed" not in statuses, statuses
    if plugin == "pinned" and mode == "warm":
        # the warm run rode the pinned session: no new connection, handshake or pool
        assert _delta(after, before, "tcp_connections") == 0, after
        assert _delta(after, before, "runspace_pools_created") == 0, after
    if plugin == "pinned" and mode == "cold":
        assert _delta(after, before, "runspace_pools_created") == 1, after


REBOOT_VARIANTS = (
    pytest.param("pinned", "direct", id="pinned-direct"),
    pytest.param("pinned", "squid", id="pinned-squid"),
    pytest.param("builtin_psrp", "direct", id="builtin-psrp-direct"),
    pytest.param("builtin_winrm", "direct", id="builtin-winrm-direct"),
)


@pytest.mark.parametrize(("plugin", "route"), REBOOT_VARIANTS)
def test_win_reboot_completes_and_the_next_task_runs_on_the_rebooted_host(modules: ModuleRuns, plugin: str,
                                                                          route: str) -> None:
    name = modules.host["name"]
    boot_before = modules.lab.host_machine(name)
    counters_before = modules.counters()
    run = modules.run(plugin, route, "reboot.yml", "reboot")
    run.assert_ok()
    boot_after = modules.lab.host_machine(name)
    assert boot_after["boots"] == boot_before["boots"] + 1
    counters = modules.counters()
    assert _delta(counters, counters_before, "reboots") == 1
    if plugin == "pinned":
        # the pinned session died with the host; the next task got a new one without the user doing anything
        assert _delta(counters, counters_before, "runspace_pools_created") >= 2


ENVIRONMENT_VARIANTS = (
    pytest.param("pinned", "cold", id="pinned"),
    pytest.param("pinned", "off", id="pinned-persist-off"),
    pytest.param("builtin_psrp", "", id="builtin-psrp"),
    pytest.param("builtin_winrm", "", id="builtin-winrm"),
)


@pytest.mark.parametrize(("plugin", "mode"), ENVIRONMENT_VARIANTS)
def test_an_environment_variable_set_for_one_task_is_gone_in_the_next(modules: ModuleRuns, plugin: str,
                                                                      mode: str) -> None:
    run_id = uuid.uuid4().hex[:12]
    run = modules.run(plugin, "direct", "environment.yml", "env", persist=mode != "off", extra_vars={"run_id": run_id})
    run.assert_ok()
    seen = [r.get("stdout", "").strip() for r in run.task_results(modules.host["name"].lower())]
    assert seen == [f"seen=only-{run_id}", "seen="], seen


def test_a_module_tasks_input_goes_up_in_as_few_sends_as_builtin_psrps(modules: ModuleRuns) -> None:
    # a module's input is the exec wrapper's payload in a few lines; one Send per line cost pinned two round trips
    # a task more than builtin psrp, which hands pypsrp all the lines at once
    modules.run("pinned", "direct", "ping.yml", "warm-up").assert_ok()  # pins the session
    sends: dict[str, int] = {}
    for plugin in ("pinned", "builtin_psrp"):
        before = modules.counters()
        modules.run(plugin, "direct", "ping.yml", plugin).assert_ok()
        sends[plugin] = _delta(modules.counters(), before, "wsman.Send")
    assert sends["builtin_psrp"] >= 3, sends  # three tasks, each with input
    assert sends["pinned"] == sends["builtin_psrp"], sends
