"""T2 end to end: a task's `timeout:`, Ctrl-C and a killed worker stop the remote pipeline and free the session.

The long command is held by the lab (fault switch `hold_pipelines_containing`): it stays Running with no
output until the client stops it or its shell closes, as a command longer than the test would. Tests wait
for the lab's counters (a pipeline held, a pipeline stopped) and its state (pipelines running now), never
for a fixed time. The bounds on those waits are generous: the daemon notices a departed client between two
Receives, each at most STOP_CHECK_S long, so a stop takes seconds; 60 s covers a loaded 2-core machine.
"""

from __future__ import annotations

import os
import signal
import typing as t

import pytest

from tests.integration.e2e.conftest import E2E, delta
from tests.integration.reliability._helpers import children_of, raw, wait_for, write_playbook

from ._plays import HOST, connection_vars, run_with, statuses

pytestmark = [pytest.mark.timeout(300)]

MARK = "HOLD-UNTIL-STOPPED"
STOP_BOUND_S = 60.0  # generous: a stop takes one Receive (<= 5 s) and a Signal


def _state(e2e: E2E) -> dict[str, t.Any]:
    return e2e.lab.host_state(e2e.host()["name"])


def _running(e2e: E2E) -> int:
    """Held pipelines still running: only this suite's (other tests' leftovers never count)."""
    return int(_state(e2e)["pipelines_held"])


def _held(e2e: E2E) -> int:
    return int(e2e.counters().get("pipelines_held", 0))


def _hold(e2e: E2E) -> None:
    e2e.lab.set_faults(e2e.host()["name"], hold_pipelines_containing=MARK)


# A task's timeout counts from its start, connection included (builtin_psrp's NTLM and pool each task):
# long enough that on a loaded machine the command always reaches the host before it, where it is held.
TASK_TIMEOUT_S = 8


def _timeout_playbook(e2e: E2E) -> str:
    return write_playbook(e2e.workdir / "timeouts.yml", [
        raw("warm", "Write-Output warm"),
        raw("timed out", f"Write-Output {MARK}", timeout=TASK_TIMEOUT_S, ignore_errors=True),
        raw("timed out again", f"Write-Output {MARK}", timeout=TASK_TIMEOUT_S, ignore_errors=True),
        # were the two sessions of the default pool still busy, this task would wait for one: bounded here
        raw("after", "Write-Output after", timeout=60),
    ])


def test_task_timeout_stops_the_pipeline_and_the_next_task_runs_on_the_pool(e2e: E2E) -> None:
    playbook = _timeout_playbook(e2e)
    results: dict[str, dict[str, t.Any]] = {}
    for variant in ("pinned", "pinned_persist_off", "builtin_psrp"):
        plugin = variant.replace("_persist_off", "")
        extra = {"ansible_psrp_persist": False} if variant.endswith("persist_off") else None
        _hold(e2e)
        before = e2e.counters()
        pools_before = _state(e2e)["runspace_pools"]  # other tests' killed daemons may have left pools behind
        run = run_with(e2e, plugin, playbook, name=f"timeouts-{variant}", extra=extra, extra_args=["-vvv"])
        assert statuses(run) == {"warm": "ok", "timed out": "ignored", "timed out again": "ignored",
                                 "after": "ok"}, (plugin, run.stdout[-3000:])
        assert wait_for(lambda: _running(e2e) == 0, STOP_BOUND_S), (plugin, _state(e2e))
        after = e2e.counters()
        assert delta(after, before, "pipelines_held") == 2, plugin
        # no request of ours left in flight (the host's operations for this user)
        assert wait_for(lambda: not _state(e2e)["operations"], STOP_BOUND_S), (plugin, _state(e2e))
        results[variant] = {r["task"]: r for r in run.task_results(HOST)}
        if variant == "pinned":
            # the daemon stopped both pipelines (a Signal each) and kept both sessions for later tasks
            assert delta(after, before, "pipelines_stopped") == 2
            assert delta(after, before, "runspace_pools_deleted") == 0
            assert _state(e2e)["runspace_pools"] - pools_before == 2
        elif variant == "pinned_persist_off":
            # in the worker: the interrupted Session stops its pipeline, then the task's session is closed
            assert delta(after, before, "pipelines_stopped") == 2
            assert delta(after, before, "runspace_pools_deleted") == 4
        else:
            # ansible.builtin.psrp closes its Runspace Pool after every task, which ends the held pipeline
            assert delta(after, before, "runspace_pools_deleted") == 4
        e2e.lab.clear_faults(e2e.host()["name"])
        e2e.close_sessions()
    # the task reports what builtin reports: Ansible's own timeout result
    for task in ("timed out", "timed out again"):
        builtin = results["builtin_psrp"][task]
        assert f"Timed out after {TASK_TIMEOUT_S} second" in builtin["msg"], builtin
        for variant in ("pinned", "pinned_persist_off"):
            ours = results[variant][task]
            periods = (ours["timedout"]["period"], builtin["timedout"]["period"])
            assert ours["msg"] == builtin["msg"] and periods == (TASK_TIMEOUT_S, TASK_TIMEOUT_S), (variant, ours, builtin)


def _interrupt_playbook(e2e: E2E) -> str:
    return write_playbook(e2e.workdir / "interrupt.yml", [
        raw("warm", "Write-Output warm"),
        raw("held", f"Write-Output {MARK}"),
    ])


def _start_held(e2e: E2E, plugin: str, name: str) -> t.Any:
    _hold(e2e)
    held_before = _held(e2e)
    running = e2e.start(connection_vars(e2e, plugin), playbook=_interrupt_playbook(e2e), name=f"{name}-{plugin}")
    # the moment is the lab's: the held command is running on the host
    assert wait_for(lambda: _held(e2e) > held_before, STOP_BOUND_S), running.finish(30).stdout[-2000:]
    return running


def _after_run(e2e: E2E, plugin: str, name: str) -> t.Any:
    e2e.lab.clear_faults(e2e.host()["name"])
    run = run_with(e2e, plugin, write_playbook(e2e.workdir / f"{name}.yml", [raw("next", "Write-Output next")]),
                   name=name, extra_args=["-vvv"])
    run.assert_ok()
    return run


def test_ctrl_c_stops_the_pipeline_and_the_session_serves_the_next_run(e2e: E2E) -> None:
    before = e2e.counters()
    running = _start_held(e2e, "pinned", "ctrl-c")
    os.kill(running.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends; Ansible passes it to its workers
    running.finish(60)
    assert wait_for(lambda: _running(e2e) == 0, STOP_BOUND_S), _state(e2e)
    after = e2e.counters()
    assert delta(after, before, "pipelines_stopped") == 1
    run = _after_run(e2e, "pinned", "after-ctrl-c")
    assert "PSRP: session reused" in run.stdout  # the interrupted task's session was given back, not dropped
    assert delta(e2e.counters(), before, "runspace_pools_created") == 1


def test_a_killed_worker_has_its_pipeline_stopped(e2e: E2E) -> None:
    before = e2e.counters()
    running = _start_held(e2e, "pinned", "kill")
    workers = children_of(running.pid)
    assert workers, "no worker process to kill"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: _running(e2e) == 0, STOP_BOUND_S), _state(e2e)
    assert delta(e2e.counters(), before, "pipelines_stopped") == 1
    running.proc.send_signal(signal.SIGINT)  # the controller waits for a result the dead worker never sends
    running.finish(60)
    run = _after_run(e2e, "pinned", "after-kill")
    assert "PSRP: session reused" in run.stdout


def test_builtin_psrp_leaves_the_pipeline_running_on_ctrl_c(e2e: E2E) -> None:
    # a difference on purpose (docs/migration.md): ansible.builtin.psrp's worker dies with its connection, and
    # Windows keeps the pipeline and its shell until the shell's idle timeout
    running = _start_held(e2e, "builtin_psrp", "ctrl-c")
    os.kill(running.pid, signal.SIGINT)
    running.finish(60)
    try:
        assert _running(e2e) == 1, _state(e2e)
    finally:
        e2e.lab.expire_shells(e2e.host()["name"])
