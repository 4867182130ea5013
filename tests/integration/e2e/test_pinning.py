"""Pinned sessions end to end, counted by the lab host (not by the plugin).

A 20-task playbook through Squid (HTTPS, NTLM to the host, NTLM proxy auth) rides one TCP connection, one
handshake and one Runspace Pool; the next run reuses it with nothing new; persistence off pays for each
task; lost connections, expired shells and killed daemons are recovered from.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import yaml

from tests.integration._ansible import ROOT
from tests.integration.reliability._helpers import arm_when_idle

from .conftest import E2E, delta

pytestmark = pytest.mark.timeout(300)


def _squid_ntlm(e2e: E2E) -> dict[str, t.Any]:
    proxy = e2e.proxy("squid_ntlm")
    return {
        "ansible_psrp_auth": "ntlm",
        "ansible_psrp_proxy": proxy["url"],
        "ansible_psrp_proxy_auth": "ntlm",
        "ansible_psrp_proxy_user": proxy["username"],
        "ansible_psrp_proxy_password": proxy["password"],
    }


def _write_playbook(path: pathlib.Path, commands: list[str]) -> str:
    tasks = [
        {"name": f"task {i}", "ansible.builtin.raw": cmd, "register": f"r{i}", "changed_when": False}
        for i, cmd in enumerate(commands)
    ]
    path.write_text(yaml.safe_dump([{"name": "tasks", "hosts": "windows", "gather_facts": False, "tasks": tasks}]))
    return str(path)


def _twenty(e2e: E2E) -> str:
    return _write_playbook(e2e.workdir / "twenty.yml", [f'Write-Output "task {i} on $env:COMPUTERNAME"' for i in range(20)])


def _daemon_pid(e2e: E2E) -> int:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

    hello = PinClient(str(e2e.workdir / "pc")).hello()
    assert hello and hello.get("pid"), hello
    return int(hello["pid"])


def _outputs(run) -> list[str]:
    return [r.get("stdout", "").strip() for r in run.task_results("win-lab1")]


@pytest.mark.compat
def test_twenty_tasks_through_squid_ride_one_session_and_the_next_run_reuses_it(e2e: E2E) -> None:
    playbook = _twenty(e2e)
    before = e2e.counters()
    run = e2e.run(_squid_ntlm(e2e), playbook=playbook, extra_args=["-vvv"], name="first")
    run.assert_ok()
    assert _outputs(run) == [f"task {i} on WIN-LAB1" for i in range(20)]
    after = e2e.counters()
    assert delta(after, before, "tcp_connections") == 1
    assert delta(after, before, "auth_handshakes") == 1
    assert delta(after, before, "runspace_pools_created") == 1
    assert "PSRP: session opened" in run.stdout and "PSRP: session reused" in run.stdout

    run = e2e.run(_squid_ntlm(e2e), playbook=playbook, extra_args=["-vvv"], name="second")
    run.assert_ok()
    again = e2e.counters()
    assert delta(again, after, "tcp_connections") == 0
    assert delta(again, after, "auth_handshakes") == 0
    assert delta(again, after, "runspace_pools_created") == 0
    assert "PSRP: session opened" not in run.stdout


def test_persistence_off_pays_a_connection_a_handshake_and_a_pool_per_task(e2e: E2E) -> None:
    playbook = _twenty(e2e)
    before = e2e.counters()
    run = e2e.run({**_squid_ntlm(e2e), "ansible_psrp_persist": False}, playbook=playbook)
    run.assert_ok()
    after = e2e.counters()
    assert delta(after, before, "tcp_connections") == 20
    assert delta(after, before, "auth_handshakes") == 20
    assert delta(after, before, "runspace_pools_created") == 20
    assert delta(after, before, "runspace_pools_deleted") == 20  # each task closed its pool
    assert not (e2e.workdir / "pc").exists() or not any((e2e.workdir / "pc").iterdir())


def test_connection_closed_by_the_host_between_tasks_costs_exactly_one_reauthentication(e2e: E2E) -> None:
    playbook = _write_playbook(e2e.workdir / "three.yml", ["Write-Output one", "Write-Output two", "Write-Output three"])
    group = _squid_ntlm(e2e)
    e2e.run(group, playbook=playbook, name="warm").assert_ok()
    before = e2e.counters()
    host = e2e.host()["name"]
    # between runs the host resets the idle keep-alive connection (as a reboot of HTTP.sys or a middlebox would)
    assert e2e.lab.drop_connections(host) == 1
    run = e2e.run(group, playbook=playbook, extra_args=["-vvv"], name="after-drop")
    run.assert_ok()
    assert _outputs(run) == ["one", "two", "three"]
    after = e2e.counters()
    assert delta(after, before, "tcp_connections") == 1
    assert delta(after, before, "auth_handshakes") == 1  # exactly one re-authentication
    assert delta(after, before, "runspace_pools_created") == 0  # the pool survived the connection
    assert "re-authenticat" in run.stdout


def test_shell_expired_by_the_host_between_runs_is_rebuilt_transparently(e2e: E2E) -> None:
    playbook = _write_playbook(e2e.workdir / "two.yml", ["Write-Output before", "Write-Output after"])
    group = _squid_ntlm(e2e)
    e2e.run(group, playbook=playbook, name="warm").assert_ok()
    before = e2e.counters()
    assert e2e.lab.expire_shells(e2e.host()["name"]) >= 1
    run = e2e.run(group, playbook=playbook, extra_args=["-vvv"], name="after-expiry")
    run.assert_ok()
    assert _outputs(run) == ["before", "after"]
    after = e2e.counters()
    assert delta(after, before, "runspace_pools_created") == 1
    assert delta(after, before, "auth_handshakes") == 0  # the connection stayed authenticated
    assert "rebuilding the Runspace Pool" in run.stdout or "reopened" in run.stdout


def test_daemon_killed_between_runs_is_replaced_by_a_new_one(e2e: E2E) -> None:
    playbook = _write_playbook(e2e.workdir / "one.yml", ["Write-Output alive"])
    group = _squid_ntlm(e2e)
    e2e.run(group, playbook=playbook, name="warm").assert_ok()
    old = _daemon_pid(e2e)
    os.kill(old, signal.SIGKILL)
    run = e2e.run(group, playbook=playbook, name="after-kill")
    run.assert_ok()
    assert _outputs(run) == ["alive"]
    assert _daemon_pid(e2e) != old


def test_daemon_killed_during_a_task_fails_that_task_cleanly_and_the_next_succeeds(e2e: E2E) -> None:
    group = _squid_ntlm(e2e)
    warm = _write_playbook(e2e.workdir / "warm.yml", ["Write-Output warm"])
    e2e.run(group, playbook=warm, name="warm").assert_ok()
    pid = _daemon_pid(e2e)
    name = e2e.host()["name"]
    slow = _write_playbook(e2e.workdir / "slow.yml", ["Write-Output slept"])
    # The host holds the task's Receive (the first after the warm run) until the daemon waiting for it is
    # dead: the kill lands during the task however slow the machine is (a timer could fire before or after).
    arm_when_idle(e2e, name, hold_on_action_nth={"Receive": 1})
    runs: list[t.Any] = []
    runner = threading.Thread(target=lambda: runs.append(e2e.run(group, playbook=slow, name="killed")), daemon=True)
    runner.start()
    try:
        e2e.lab.wait_held(name, 120)
        os.kill(pid, signal.SIGKILL)
        runner.join(240)
    finally:
        e2e.lab.clear_faults(name)
    assert runs, "the playbook run did not finish"
    run = runs[0]
    assert run.rc != 0
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert "daemon" in result["msg"], result["msg"]
    run = e2e.run(group, playbook=warm, name="next")
    run.assert_ok()
    assert _outputs(run) == ["warm"]


def test_reset_connection_closes_the_hosts_pinned_session(e2e: E2E) -> None:
    before = e2e.counters()
    run = e2e.run(_squid_ntlm(e2e), playbook=str(ROOT / "examples" / "reset_connection.yml"))
    run.assert_ok()
    after = e2e.counters()
    assert delta(after, before, "runspace_pools_created") == 2
    assert delta(after, before, "runspace_pools_deleted") >= 1


def test_two_playbooks_on_one_host_at_once_both_succeed(e2e: E2E) -> None:
    playbook = _write_playbook(e2e.workdir / "sleepy.yml",
                               [f"Start-Sleep -Milliseconds 300; Write-Output step{i}" for i in range(4)])
    group = _squid_ntlm(e2e)
    runs: dict[str, t.Any] = {}

    def go(name: str) -> None:
        runs[name] = e2e.run(group, playbook=playbook, name=name)

    threads = [threading.Thread(target=go, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    for name in ("a", "b"):
        runs[name].assert_ok()
        assert _outputs(runs[name]) == [f"step{i}" for i in range(4)]


def test_session_tool_lists_and_closes_pinned_sessions(e2e: E2E) -> None:
    e2e.run(_squid_ntlm(e2e), playbook=_write_playbook(e2e.workdir / "one.yml", ["Write-Output x"])).assert_ok()
    cli = [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
           "--dir", str(e2e.workdir / "pc")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")}
    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, env=env, timeout=30)
    assert listed.returncode == 0, listed.stderr
    host = e2e.host()
    assert host["address"] in listed.stdout and "ansible" in listed.stdout
    assert e2e.proxy("squid_ntlm")["password"] not in listed.stdout
    closed = subprocess.run([*cli, "close", "--all"], capture_output=True, text=True, env=env, timeout=30)
    assert closed.returncode == 0, closed.stderr
    deadline = time.monotonic() + 30  # closing is asynchronous; the bound only stops a broken close from hanging
    while time.monotonic() < deadline and not e2e.counters().get("runspace_pools_deleted"):
        time.sleep(0.2)
    assert e2e.counters().get("runspace_pools_deleted", 0) >= 1
