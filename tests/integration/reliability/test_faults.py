"""Faults a production path brings, tried with real ansible-playbook runs against the lab.

Each test injects one fault (lab fault switches, real processes restarted or killed) and checks that
the collection survives it: the run carries on (re-opening what was lost, counted by the lab host), or
the one task that cannot know its outcome fails cleanly as `unreachable` and the next task works.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import signal
import threading
import time
import typing as t

import pytest

from tests.integration.e2e.conftest import E2E, delta
from tests.integration.positive_marker import host_connections_before_marker

from . import report
from ._helpers import (
    Gate,
    action_env,
    arm_when_idle,
    closed_port,
    daemon_idle,
    daemon_pid,
    host_path,
    pid_alive,
    quiet_sample,
    raw,
    squid_ntlm,
    wait_for,
    write_playbook,
)
from ._mutant_sessions import mutant_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"
BIG_MIB = int(os.environ.get("PINNED_BIG_STDOUT_MIB", "50"))
RSS_BACK_MIB = 16  # what the daemon may keep, at rest, after a task's big output (allocator arenas, caches)
# Stated generous bounds: a client that waited for a timeout instead of noticing the fault would take this long.
GENEROUS_READ_TIMEOUT_S = 120
GENEROUS_CONNECT_TIMEOUT_S = 120
# The refusal a task whose connection was lost after its request ends with: outcome unknown, not resent (T5).
LOST_NOT_RESENT = (r"was lost after the request was sent and before any answer \(.*\); the outcome on the host is "
                   r"unknown, so it was not resent")


def _outputs(run: t.Any) -> list[str]:
    return [str(r.get("stdout", "")).strip() for r in run.task_results(HOST)
            if "stdout" in r and not r["task"].startswith("gate")]


def _msg(result: dict[str, t.Any], size: int = 260) -> str:
    """The task's message without Ansible's and the plugin's common prefix."""
    text = str(result.get("msg", ""))
    marker = "pinned.winrm.psrp to "
    if marker in text:
        text = text.split(marker, 1)[1].split(": ", 1)[-1]
    return text[:size]


def _statuses(run: t.Any) -> list[str]:
    return [r["status"] for r in run.task_results(HOST)]


def _in_background(fn: t.Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def _between_tasks(e2e: E2E, gate: Gate, action: t.Callable[[], None]) -> threading.Thread:
    """Run action while the run waits at the gate, once the daemon has finished the task before it."""

    def go() -> None:
        try:
            if gate.wait() and daemon_idle(e2e):
                action()
        finally:
            gate.open()

    return _in_background(go)


def _run_in_background(e2e: E2E, group: dict[str, t.Any], playbook: str, name: str,
                       env: dict[str, str] | None = None) -> tuple[threading.Thread, list[t.Any]]:
    """Start a playbook run in a thread; the list receives its PlaybookRun."""
    runs: list[t.Any] = []
    thread = _in_background(lambda: runs.append(e2e.run(group, playbook=playbook, env=env, name=name)))
    return thread, runs


def _finished(thread: threading.Thread, runs: list[t.Any]) -> t.Any:
    thread.join(240)
    assert runs, "the playbook run did not finish"
    return runs[0]


@report.row("Faults", "Squid restarted between two tasks of one run (NTLM proxy auth, CONNECT tunnel)",
            "run succeeds; the next task re-opens the tunnel and re-authenticates once; the pool survives",
            report.FAULT)
def test_squid_restarted_between_tasks_of_one_run(e2e: E2E, check) -> None:
    row = check()
    gate = Gate(e2e, "restart")
    playbook = write_playbook(e2e.workdir / "restart.yml",
                              [raw("one", "Write-Output one"), gate.task(), raw("two", "Write-Output two"),
                               raw("three", "Write-Output three")])
    restarted = threading.Event()
    thread = _between_tasks(e2e, gate, lambda: (e2e.lab.restart_proxy("squid_ntlm"), restarted.set()))
    before = e2e.counters()
    run = e2e.run(squid_ntlm(e2e), playbook=playbook, env=action_env(), extra_args=["-vvv"], name="restart")
    thread.join(30)
    after = e2e.counters()
    row.see(f"rc {run.rc}; outputs {_outputs(run)}; host saw {delta(after, before, 'tcp_connections')} connections, "
            f"{delta(after, before, 'auth_handshakes')} handshakes, {delta(after, before, 'runspace_pools_created')} pool(s)")
    assert restarted.is_set()
    run.assert_ok()
    assert _outputs(run) == ["one", "two", "three"]
    assert delta(after, before, "auth_handshakes") == 2
    assert delta(after, before, "runspace_pools_created") == 1


@report.row("Faults", "Squid restarted while a task waits for its answer (Receive in flight)",
            "that task fails as unreachable saying its outcome is unknown and it was not resent (the host ran its "
            "command exactly once); the next run succeeds", report.FAULT)
def test_squid_restarted_while_a_task_waits_for_its_answer(e2e: E2E, check) -> None:
    row = check()
    group = squid_ntlm(e2e)
    name = e2e.host()["name"]
    e2e.run(group, playbook=write_playbook(e2e.workdir / "warm.yml", [raw("w", "Write-Output warm")]),
            name="warm").assert_ok()
    # The task's Receive (the first after a warm run) is held by the host while Squid restarts under it.
    arm_when_idle(e2e, name, hold_on_action_nth={"Receive": 1})
    slow = write_playbook(e2e.workdir / "slow.yml", [raw("slow", "Write-Output slept")])
    before = e2e.counters()
    thread, runs = _run_in_background(e2e, group, slow, "inflight")
    try:
        e2e.lab.wait_held(name, 120)
        e2e.lab.restart_proxy("squid_ntlm")
        # The task ends on the broken tunnel, not on an answer: the host still holds the Receive.
        thread.join(240)
        still_held = e2e.lab.held(name)
    finally:
        e2e.lab.release_held(name)
    run = _finished(thread, runs)
    executions = delta(e2e.counters(), before, "pipelines_started")
    result = run.task_results(HOST)[0]
    nxt = e2e.run(group, playbook=write_playbook(e2e.workdir / "next.yml", [raw("next", "Write-Output next")]),
                  name="next")
    row.see(f"task {result['status']}: {_msg(result)}; the host ran it {executions} time(s); next run rc {nxt.rc} "
            f"{_outputs(nxt)}")
    assert still_held, "the task ended only after its Receive was answered"
    assert result["status"] == "unreachable", result
    assert re.search(LOST_NOT_RESENT, result["msg"]), result["msg"]
    assert executions == 1
    nxt.assert_ok()
    assert _outputs(nxt) == ["next"]


@report.row("Faults", "proxy closes the idle keep-alive connection between runs (Squid restarted while idle)",
            "next run succeeds with exactly one new connection and handshake, pool kept", report.FAULT)
def test_proxy_closing_the_idle_keep_alive_connection_costs_one_reauthentication(e2e: E2E, check) -> None:
    row = check()
    group = squid_ntlm(e2e)
    playbook = write_playbook(e2e.workdir / "two.yml", [raw("a", "Write-Output a"), raw("b", "Write-Output b")])
    e2e.run(group, playbook=playbook, name="warm").assert_ok()
    before = e2e.counters()
    e2e.lab.restart_proxy("squid_ntlm")
    run = e2e.run(group, playbook=playbook, name="after")
    after = e2e.counters()
    row.see(f"rc {run.rc}; {_outputs(run)}; +{delta(after, before, 'tcp_connections')} connection, "
            f"+{delta(after, before, 'auth_handshakes')} handshake, +{delta(after, before, 'runspace_pools_created')} pools")
    run.assert_ok()
    assert delta(after, before, "tcp_connections") == 1
    assert delta(after, before, "auth_handshakes") == 1
    assert delta(after, before, "runspace_pools_created") == 0


@dataclasses.dataclass
class Dropped:
    """What a run saw when the host dropped the connection during its task's Receive."""

    result: dict[str, t.Any]
    executions: int  # pipelines the host started for the task (the lab counts them)
    after_drop_s: float  # from the drop (the lab's clock) to the end of the run
    next_run: t.Any

    def describe(self) -> str:
        return (f"task {self.result['status']}: {_msg(self.result) or self.result.get('stdout', '')}; the host ran "
                f"it {self.executions} time(s); the run ended {self.after_drop_s:.1f}s after the drop; next run rc "
                f"{self.next_run.rc} {_outputs(self.next_run)}")


def _drop_during_a_receive(e2e: E2E, env: dict[str, str] | None = None) -> Dropped:
    group = {**squid_ntlm(e2e), "ansible_psrp_read_timeout": GENEROUS_READ_TIMEOUT_S}
    name = e2e.host()["name"]
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x")])
    e2e.run(group, playbook=one, env=env, name="warm").assert_ok()
    arm_when_idle(e2e, name, drop_on_action_next={"Receive": 1})
    before = e2e.counters()
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "r.yml", [raw("r", "Write-Output dropped")]), env=env,
                  name="drop")
    ended = time.time()
    executions = delta(e2e.counters(), before, "pipelines_started")
    dropped = [e["time"] for e in e2e.lab.host_log(name) if e.get("reason") == "drop_on_action:Receive"]
    assert len(dropped) == 1, "the host did not drop the Receive"
    result = run.task_results(HOST)[0]
    return Dropped(result, executions, ended - dropped[0], e2e.run(group, playbook=one, env=env, name="next"))


def _drop_verdict(seen: Dropped) -> None:
    assert seen.result["status"] == "unreachable", seen.result
    assert re.search(LOST_NOT_RESENT, seen.result["msg"]), seen.result["msg"]
    assert seen.executions == 1, "the task was sent again after its outcome became unknown"
    # noticed the drop: a client waiting for an answer instead would only end at the read timeout
    assert seen.after_drop_s < GENEROUS_READ_TIMEOUT_S
    seen.next_run.assert_ok()
    assert _outputs(seen.next_run) == ["x"]


@report.row("Faults", "host drops the TCP connection during a Receive",
            "that task fails as unreachable saying its outcome is unknown and it was not resent (the host ran its "
            f"command exactly once), and ends before the read timeout ({GENEROUS_READ_TIMEOUT_S} s, by the lab's "
            "clock from the drop); the next run succeeds", report.FAULT)
def test_host_dropping_the_connection_during_a_receive(e2e: E2E, check) -> None:
    row = check()
    seen = _drop_during_a_receive(e2e)
    row.see(seen.describe())
    _drop_verdict(seen)


@report.row("Criteria that can fail", "mutation: the session resends a task whose outcome is unknown (a real pin "
            "daemon serving a Session that runs the script again after the connection was lost)",
            "the 'host drops the TCP connection during a Receive' row fails: the host ran the command twice",
            report.MUTATION)
def test_the_drop_criterion_fails_on_a_resend(e2e: E2E, check) -> None:
    row = check()
    seen = _drop_during_a_receive(e2e, env=mutant_env("ResendingSession"))
    with pytest.raises(AssertionError) as caught:
        _drop_verdict(seen)
    row.see(f"{seen.describe()}; the row's criterion failed: {str(caught.value).splitlines()[0][:160]}")


@report.row("Criteria that can fail", "mutation: the session crashes in its error path (an IndexError while "
            "handling the lost connection, in a real pin daemon)", "the 'host drops the TCP connection during a "
            "Receive' row fails: the task fails with 'unexpected IndexError' instead of the refusal it names",
            report.MUTATION)
def test_the_drop_criterion_fails_on_a_crash_in_the_error_path(e2e: E2E, check) -> None:
    row = check()
    seen = _drop_during_a_receive(e2e, env=mutant_env("CrashingErrorPathSession"))
    with pytest.raises(AssertionError) as caught:
        _drop_verdict(seen)
    row.see(f"{seen.describe()}; the row's criterion failed: {str(caught.value).splitlines()[0][:160]}")
    assert "IndexError" in seen.result.get("msg", ""), seen.result


@report.row("Faults", "host expires the shell between two tasks of one run",
            "run succeeds; the pool is rebuilt once, no re-authentication", report.FAULT)
def test_shell_expired_by_the_host_between_tasks_of_one_run(e2e: E2E, check) -> None:
    row = check()
    gate = Gate(e2e, "expire")
    playbook = write_playbook(e2e.workdir / "expire.yml",
                              [raw("one", "Write-Output one"), gate.task(), raw("two", "Write-Output two")])
    expired: list[int] = []
    thread = _between_tasks(e2e, gate, lambda: expired.append(e2e.lab.expire_shells(e2e.host()["name"])))
    before = e2e.counters()
    run = e2e.run(squid_ntlm(e2e), playbook=playbook, env=action_env(), name="expire")
    thread.join(30)
    after = e2e.counters()
    row.see(f"rc {run.rc}; {_outputs(run)}; shells expired {expired}; pools created "
            f"+{delta(after, before, 'runspace_pools_created')}; handshakes +{delta(after, before, 'auth_handshakes')}")
    run.assert_ok()
    assert expired and expired[0] >= 1
    assert _outputs(run) == ["one", "two"]
    assert delta(after, before, "runspace_pools_created") == 2
    assert delta(after, before, "auth_handshakes") == 1


@report.row("Faults", "host unreachable (nothing listens on the port)",
            "status unreachable (not failed), message says the connection was refused and names ansible_host and "
            f"ansible_port; the run ends before the connection timeout ({GENEROUS_CONNECT_TIMEOUT_S} s) could fire",
            report.FAULT)
def test_host_unreachable_is_reported_unreachable_not_failed(e2e: E2E, check) -> None:
    row = check()
    started = time.monotonic()
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_connection_timeout": GENEROUS_CONNECT_TIMEOUT_S},
                  host_overrides={"ansible_port": closed_port()}, name="closed")
    took = time.monotonic() - started
    result = run.task_results(HOST)[0]
    row.see(f"{result['status']}, the run took {took:.1f}s: {_msg(result)}")
    assert result["status"] == "unreachable", result
    assert re.search(r"Could not connect to the Windows host 127\.0\.0\.1:\d+: Connection refused; check "
                     r"ansible_host and ansible_port", result["msg"]), result["msg"]
    assert took < GENEROUS_CONNECT_TIMEOUT_S  # the refusal ended it, not a timeout


@report.row("Faults", "host holds a Command unanswered (read timeout 3 s, operation timeout 1 s)",
            "the task fails as unreachable naming ansible_psrp_read_timeout while the host still holds the "
            "request; the next run succeeds", report.FAULT)
def test_read_timeout_on_a_stalled_host(e2e: E2E, check) -> None:
    row = check()
    group = {**squid_ntlm(e2e), "ansible_psrp_read_timeout": 3, "ansible_psrp_operation_timeout": 1}
    name = e2e.host()["name"]
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x")])
    e2e.run(group, playbook=one, name="warm").assert_ok()
    # Held until the run has ended: only the client's read timeout can end it, however slow the machine.
    arm_when_idle(e2e, name, hold_on_action_nth={"Command": 1})
    started = time.monotonic()
    thread, runs = _run_in_background(e2e, group, one, "stalled")
    try:
        e2e.lab.wait_held(name, 120)
        thread.join(240)
        still_held = e2e.lab.held(name)
    finally:
        e2e.lab.clear_faults(name)
    run = _finished(thread, runs)
    took = time.monotonic() - started
    result = run.task_results(HOST)[0]
    nxt = e2e.run(group, playbook=one, name="next")
    row.see(f"{result['status']} after {took:.1f}s with the request still held: {_msg(result)}; next run rc {nxt.rc}")
    assert still_held, "the task ended only after the host answered"
    assert result["status"] == "unreachable", result
    assert "ansible_psrp_read_timeout" in result["msg"], result["msg"]
    nxt.assert_ok()
    # The host serves the stalled Command once its 20 s are up, as Windows would; let that happen here rather
    # than in the next test, whose "host served a Command" trigger it would pull early.
    assert wait_for(lambda: e2e.counters().get("wsman.Command", 0) >= 3, 40), e2e.counters()


@report.row("Faults", "host handles a Receive but its answer (the task's output and end) comes after the client's "
            "read timeout (read timeout 3 s, operation timeout 1 s)",
            "pinned: the task fails as unreachable naming ansible_psrp_read_timeout and an unknown outcome, without "
            "sending the Receive again; the next run succeeds. builtin psrp (pypsrp sends the Receive again) never "
            "gets the lost answer's end and only the task's timeout stops it", report.FAULT)
def test_a_receive_answered_too_late_is_not_sent_again(e2e: E2E, check) -> None:
    row = check()
    name = e2e.host()["name"]
    timeouts = {"ansible_psrp_auth": "ntlm", "ansible_psrp_read_timeout": 3, "ansible_psrp_operation_timeout": 1}
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x", timeout=30)])

    def lost_answer(group: dict[str, t.Any], run_name: str, nth: int) -> tuple[t.Any, int]:
        """The run, and the Receives the host got from the nth on, while the answer to the nth was held."""
        before = e2e.counters().get("wsman.Receive", 0)
        # Handled at once (the Receive takes the output it answers with), answered only once the run has ended.
        e2e.lab.set_faults(name, hold_answer_on_action_nth={"Receive": nth})
        thread, runs = _run_in_background(e2e, group, one, run_name)
        try:
            e2e.lab.wait_held(name, 120)
            thread.join(240)
            receives = e2e.counters().get("wsman.Receive", 0) - before - (nth - 1)
        finally:
            e2e.lab.clear_faults(name)  # the held answer goes to a connection its client gave up
        return _finished(thread, runs), receives

    pinned_group = {**timeouts}
    e2e.run(pinned_group, playbook=one, name="warm").assert_ok()
    pinned, pinned_receives = lost_answer(pinned_group, "lost-pinned", 1)  # warm: the task's first Receive
    result = pinned.task_results(HOST)[0]
    nxt = e2e.run(pinned_group, playbook=one, name="next")
    # builtin opens a pool first: its first Receive is the pool's, the second the task's
    builtin, builtin_receives = lost_answer({**timeouts, "ansible_connection": "ansible.builtin.psrp"}, "lost-builtin",
                                            2)
    peer = builtin.task_results(HOST)[0]
    row.see(f"pinned: {result['status']}, {pinned_receives} Receive(s): {_msg(result)}; next run rc {nxt.rc}; "
            f"builtin psrp: {peer['status']} after {builtin_receives} Receives: {_msg(peer, 120)}")
    assert result["status"] == "unreachable", result
    assert "ansible_psrp_read_timeout" in result["msg"] and "outcome is unknown" in result["msg"], result["msg"]
    assert pinned_receives == 1, "the Receive whose answer was lost was sent again"
    nxt.assert_ok()
    # builtin asked again and again for an answer the host no longer had, until the task's timeout ended it
    assert builtin_receives > 1 and "Timed out after 30 second" in str(peer.get("msg", "")), peer


@report.row("Faults", "command runs 4 s with operation timeout 1 s, every answer delayed 0.5 s (read timeout 3 s)",
            "task succeeds: the host answers Receive with operation-timeout faults (at least one) and each is "
            "polled again (a Receive after every fault); a slow host below the read timeout is not an error",
            report.FAULT)
def test_commands_longer_than_the_operation_timeout_and_a_slow_host(e2e: E2E, check) -> None:
    row = check()
    group = {**squid_ntlm(e2e), "ansible_psrp_read_timeout": 3, "ansible_psrp_operation_timeout": 1}
    e2e.lab.set_faults(e2e.host()["name"], delay_response_s=0.5)
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "long.yml", [
        raw("long", "Start-Sleep -Seconds 4; Write-Output finished")]), name="long")
    after = e2e.counters()
    receives = after.get("wsman.Receive", 0)
    timeouts = after.get("wsman_fault.operation_timeout", 0)
    row.see(f"rc {run.rc}; {_outputs(run)}; Receive requests {receives}; operation-timeout faults {timeouts}")
    run.assert_ok()
    assert _outputs(run) == ["finished"]
    # the host's clock ran the 4 s command past the 1 s operation timeout: each fault was answered by a new Receive
    assert timeouts >= 1 and receives >= timeouts + 1


@report.row("Faults", "pin daemon killed (SIGKILL) between two tasks of one run",
            "run succeeds: the next task starts a new daemon and a new session", report.FAULT, key="row")
@report.row("Nothing lost", "daemon killed between tasks: a task appending a line to a host file",
            "each task's line is in the file exactly once (nothing repeated, nothing lost)", report.FAULT, key="lost")
def test_daemon_killed_between_tasks_of_one_run(e2e: E2E, check) -> None:
    row = check("row")
    lost = check("lost")
    ledger = "C:\\temp\\rel-ledger\\between.txt"
    host_path(e2e, ledger).parent.mkdir(parents=True, exist_ok=True)
    host_path(e2e, ledger).unlink(missing_ok=True)
    add = lambda n: raw(f"append {n}", f"Add-Content -LiteralPath '{ledger}' -Value 'line-{n}'")  # noqa: E731
    gate = Gate(e2e, "kill")
    playbook = write_playbook(e2e.workdir / "kill.yml", [add(1), gate.task(), add(2), add(3)])
    killed: list[int] = []

    def kill() -> None:
        pid = daemon_pid(e2e)
        if pid:
            os.kill(pid, signal.SIGKILL)
            if wait_for(lambda: not pid_alive(pid), 30):
                killed.append(pid)

    thread = _between_tasks(e2e, gate, kill)
    run = e2e.run(squid_ntlm(e2e), playbook=playbook, env=action_env(), name="kill-between")
    thread.join(30)
    lines = host_path(e2e, ledger).read_text(encoding="utf-8-sig").split()
    new_pid = daemon_pid(e2e)
    row.see(f"rc {run.rc}; statuses {_statuses(run)}; killed pid {killed}, new daemon pid {new_pid}")
    lost.see(f"host file lines: {lines}")
    assert killed, "no daemon to kill"
    run.assert_ok()
    assert new_pid and new_pid not in killed
    assert lines == ["line-1", "line-2", "line-3"]


@report.row("Faults", "pin daemon killed (SIGKILL) during a task",
            "that task is unreachable with 'daemon died ... outcome unknown'; the next run succeeds", report.FAULT, key="row")
@report.row("Nothing lost", "daemon killed during a task that appends to a host file",
            "the killed task is never re-run (its first line once), the next task's line exactly once",
            report.FAULT, key="lost")
def test_daemon_killed_during_a_task(e2e: E2E, check) -> None:
    row = check("row")
    lost = check("lost")
    ledger = "C:\\temp\\rel-ledger\\during.txt"
    host_path(e2e, ledger).parent.mkdir(parents=True, exist_ok=True)
    host_path(e2e, ledger).unlink(missing_ok=True)
    group = squid_ntlm(e2e)
    e2e.run(group, playbook=write_playbook(e2e.workdir / "warm.yml", [raw("w", "Write-Output warm")]), name="warm").assert_ok()
    pid = daemon_pid(e2e)
    assert pid
    name = e2e.host()["name"]
    slow = write_playbook(e2e.workdir / "slow.yml", [raw(
        "slow", f"Add-Content -LiteralPath '{ledger}' -Value 'killed-start'; "
                f"Add-Content -LiteralPath '{ledger}' -Value 'killed-end'")])
    # The task's Receive is held by the host until the daemon waiting for it is dead: killed mid-task, always.
    arm_when_idle(e2e, name, hold_on_action_nth={"Receive": 1})
    thread, runs = _run_in_background(e2e, group, slow, "killed")
    try:
        e2e.lab.wait_held(name, 120)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not pid_alive(pid), 30), "the daemon outlived SIGKILL"
    finally:
        e2e.lab.release_held(name)
    run = _finished(thread, runs)
    result = run.task_results(HOST)[0]
    nxt = e2e.run(group, playbook=write_playbook(e2e.workdir / "next.yml", [
        raw("n", f"Add-Content -LiteralPath '{ledger}' -Value 'next'")]), name="next")

    def lines() -> list[str]:
        path = host_path(e2e, ledger)
        return path.read_text(encoding="utf-8-sig").split() if path.exists() else []

    # The orphaned pipeline runs to its end on the host (nobody stops it); wait for that, then count.
    finished = wait_for(lambda: "killed-end" in lines(), 60)
    row.see(f"killed task {result['status']}: {_msg(result)}; next run rc {nxt.rc}")
    lost.see(f"host file lines: {lines()}")
    assert result["status"] == "unreachable", result
    assert "the pin daemon died during the task; the task's outcome on the host is unknown" in result["msg"], result
    nxt.assert_ok()
    assert finished, "the killed task's pipeline never finished on the host"
    assert sorted(lines()) == ["killed-end", "killed-start", "next"]


@report.row("Faults", "proxy credentials rejected midway (Squid's password changed and Squid restarted under a "
            "pinned session)",
            "the next task fails as unreachable naming the proxy, 407 and ansible_psrp_proxy_password, with no "
            "connection to the host; the new password works at once", report.FAULT)
def test_proxy_credentials_rejected_after_a_session_was_up(e2e: E2E, check, tmp_path) -> None:
    from tests.lab._squid import SquidProxy

    row = check()
    host = e2e.host()
    old_pw, new_pw = "Rel-Proxy-Old-1", "Rel-Proxy-New-2"
    ports = [host["https_port"]] + ([host["relay"]["https_port"]] if host.get("relay") else [])
    squid = SquidProxy(tmp_path / "squid-midway", auth="digest", users={"rel-proxy": old_pw}, allowed_connect_ports=ports)
    squid.start()
    try:
        group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": squid.url, "ansible_psrp_proxy_auth": "digest",
                 "ansible_psrp_proxy_user": "rel-proxy", "ansible_psrp_proxy_password": old_pw}
        one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x")])
        e2e.run(group, playbook=one, name="up").assert_ok()
        squid.users = {"rel-proxy": new_pw}
        squid.restart()
        before = e2e.counters().get("tcp_connections", 0)
        run = e2e.run(group, playbook=one, name="rejected")
        reached = host_connections_before_marker(e2e.lab, host, before)
        result = run.task_results(HOST)[0]
        fixed = e2e.run({**group, "ansible_psrp_proxy_password": new_pw}, playbook=one, name="fixed")
        row.see(f"{result['status']}: {_msg(result)}; host connections +{reached} (counted up to a marker "
                f"connection made after the run); with the new password rc {fixed.rc}")
        assert result["status"] == "unreachable", result
        assert re.search(r"The proxy http://127\.0\.0\.1:\d+ rejected the proxy credentials of 'rel-proxy' with "
                         r"digest \(407.*check ansible_psrp_proxy_user and ansible_psrp_proxy_password", result["msg"])
        assert reached == 0
        assert old_pw not in run.stdout + run.stderr
        fixed.assert_ok()
    finally:
        squid.stop()


@report.row("Load", f"{BIG_MIB} MiB of stdout from one task",
            f"task succeeds with all {BIG_MIB} MiB; the daemon's RSS high-water mark grows by less than "
            f"{8 * BIG_MIB} MiB (8x the output) and drops back after the task: at rest within {RSS_BACK_MIB} MiB "
            "of where it was before", report.LOAD)
def test_fifty_mib_of_stdout_with_bounded_memory(e2e: E2E, check) -> None:
    mib = BIG_MIB
    row = check()
    group = squid_ntlm(e2e)
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x")])
    e2e.run(group, playbook=one, name="warm").assert_ok()
    pid = daemon_pid(e2e)
    assert pid
    before = quiet_sample(e2e, pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "big.yml", [
        raw("big", f"1..{mib} | ForEach-Object {{ 'x' * 1048576 }}")]), name="big")
    took = time.monotonic() - started
    after = quiet_sample(e2e, pid)  # at rest: the task's pipeline finished, no client connection open
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stdout = run.task_results(HOST)[0].get("stdout", "") if run.task_results(HOST) else ""
    growth = (after["hwm_kib"] - before["hwm_kib"]) / 1024
    kept = (after["rss_kib"] - before["rss_kib"]) / 1024
    row.see(f"rc {run.rc}; {stdout.count('x') / 1048576:.1f} MiB of output in {took:.1f}s; daemon RSS at rest "
            f"{before['rss_kib'] / 1024:.0f} -> peak {after['hwm_kib'] / 1024:.0f} -> at rest {after['rss_kib'] / 1024:.0f}"
            f" MiB (high-water +{growth:.0f} MiB, kept +{kept:.1f} MiB); largest ansible process "
            f"{children_after / 1024:.0f} MiB{'' if children_after > children_before else ' or less'}")
    run.assert_ok()
    assert stdout.count("x") == mib * 1048576
    assert growth < 8 * mib
    assert kept < RSS_BACK_MIB, f"the daemon kept {kept:.1f} MiB after the task"


@report.row("Nothing lost", "Unicode in commands, output and file paths (accents, CJK, emoji, RTL)",
            "output comes back byte-exact; a file put to and fetched from a Unicode path keeps its SHA-256",
            report.ROUND_TRIP)
def test_unicode_in_commands_output_and_paths(e2e: E2E, check, tmp_path) -> None:
    from ._helpers import action_env

    row = check()
    text = "ünïcödé ✓ 日本語 عربى 🎉"
    folder = "C:\\temp\\rel-ünï 日本"
    dest = f"{folder}\\fïlé ✓ 🎉.txt"
    host_path(e2e, folder).mkdir(parents=True, exist_ok=True)
    src = tmp_path / "src ✓.bin"
    src.write_bytes(("payload " + text + "\n").encode("utf-8") * 500)
    back = tmp_path / "back 🎉.bin"
    playbook = write_playbook(e2e.workdir / "uni.yml", [
        raw("echo", f"Write-Output '{text}'"),
        {"name": "transfer", "rel_transfer": {"src": str(src), "dest": dest, "fetch_to": str(back)}},
    ])
    run = e2e.run(squid_ntlm(e2e), playbook=playbook, env=action_env(), name="unicode")
    results = run.task_results(HOST)
    on_host = host_path(e2e, dest)
    import hashlib

    host_sha = hashlib.sha256(on_host.read_bytes()).hexdigest() if on_host.exists() else None
    transfer = results[1] if len(results) > 1 else {}
    row.see(f"rc {run.rc}; echo {results[0].get('stdout', '').strip()!r}; put sha256 {str(transfer.get('src_sha256'))[:12]}, "
            f"on host {str(host_sha)[:12]}, fetched {str(transfer.get('fetched_sha256'))[:12]}")
    run.assert_ok()
    assert results[0]["stdout"].strip() == text
    assert transfer["src_sha256"] == host_sha == transfer["fetched_sha256"]


@report.row("Load", "two playbooks on one host at once (same pinned settings)",
            "both succeed, each sees only its own outputs, in order", report.LOAD)
def test_two_playbooks_on_one_host_at_once_keep_their_own_results(e2e: E2E, check) -> None:
    row = check()
    group = squid_ntlm(e2e)
    runs: dict[str, t.Any] = {}

    def go(tag: str) -> None:
        playbook = write_playbook(e2e.workdir / f"{tag}.yml", [
            raw(f"{tag}{i}", f"Start-Sleep -Milliseconds 200; Write-Output '{tag}-{i}'") for i in range(5)])
        runs[tag] = e2e.run(group, playbook=playbook, name=tag)

    threads = [threading.Thread(target=go, args=(tag,)) for tag in ("A", "B")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(240)
    row.see("; ".join(f"{tag}: rc {runs[tag].rc} {_outputs(runs[tag])}" for tag in sorted(runs)))
    for tag in ("A", "B"):
        runs[tag].assert_ok()
        assert _outputs(runs[tag]) == [f"{tag}-{i}" for i in range(5)]
