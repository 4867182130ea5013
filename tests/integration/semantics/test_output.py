"""Output of any size: streamed from the pin daemon in bounded frames, equal to persistence off, bounded per task.

The real Session behind a real pin daemon (its own, started by PinClient) and in-process (LocalRunner) run the
same commands on the lab host; what they return must be byte for byte the same. The daemon's memory is read
from /proc: its high-water mark, reset before the task, must stay far below the size of the output.
"""

from __future__ import annotations

import hashlib
import pathlib
import typing as t

import pytest

from tests._pin_daemons import private_pin_client
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import OutputLimitError
from ansible_collections.pinned.winrm.plugins.plugin_utils._local_runner import LocalRunner
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
from tests.integration.e2e.conftest import E2E, delta
from tests.integration.reliability._helpers import raw, write_playbook

from ._plays import HOST, run_with, statuses

pytestmark = [pytest.mark.timeout(300)]

MIB = 1024 * 1024
# 35 Mi characters of "é": 70 MiB of UTF-8, and 210 MiB as ASCII-escaped JSON (the old single reply's 64 MiB cap)
BIG = "1..35 | ForEach-Object { 'é' * 1048576 }; Write-Host 'a host line'; Write-Error 'an error record'"


@pytest.fixture
def spec(lab_description, lab_host) -> t.Any:
    user = next(u for u in lab_host["users"] if u.get("kind") == "local")
    return build_spec({"remote_addr": lab_host["address"], "port": lab_host["https_port"], "protocol": "https",
                       "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
                       "ca_cert": lab_description["ca_cert"]})


@pytest.fixture
def daemon(monkeypatch) -> t.Iterator[PinClient]:
    """A pin daemon of its own with the real Session."""
    monkeypatch.delenv("PINNED_WINRM_TEST_SESSION_FACTORY", raising=False)
    with private_pin_client("pino") as client:
        yield client


def _peak_kib(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_seventy_mib_of_output_arrives_whole_equal_to_persistence_off_without_the_daemon_holding_it(
        daemon: PinClient, spec: t.Any) -> None:
    _, info = daemon.exec(spec, "'warm'")
    pid = int(info["daemon_pid"])
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    base = _peak_kib(pid)
    pinned, _ = daemon.exec(spec, BIG)
    growth_mib = (_peak_kib(pid) - base) / 1024

    local = LocalRunner()
    try:
        unpinned, _ = local.exec(spec, BIG)
    finally:
        local.release()

    assert len(pinned.stdout) > 70 * MIB
    assert pinned.stdout.startswith("é".encode() * 1000)
    assert pinned.stdout.endswith(b"\r\na host line\r\n")  # Write-Host lines follow the output objects
    assert b"an error record" in pinned.stderr
    assert (pinned.rc, _sha(pinned.stdout), pinned.stderr) == (unpinned.rc, _sha(unpinned.stdout), unpinned.stderr)
    # one output object at a time: far below the 70 MiB of output, let alone a copy of it
    print(f"70 MiB of output: the daemon's peak memory grew {growth_mib:.1f} MiB")  # the figure in docs/pinning.md
    assert growth_mib < 24, f"the daemon's peak memory grew {growth_mib:.1f} MiB during the task"


# 3 MiB of output, then a command that runs ten minutes unless stopped: the Signal finds it running whatever the
# machine's load (a command that only wrote 50 MiB could finish on the host before the stop reached it).
PAST_THE_BOUND = ("1..3 | ForEach-Object { 'y' * 1048576 }; "
                  "1..3000 | ForEach-Object { Start-Sleep -Milliseconds 200; 'tick' }")


def test_output_past_the_bound_stops_the_command_and_names_the_setting(
        daemon: PinClient, spec: t.Any, lab, lab_host) -> None:
    daemon.exec(spec, "'warm'")
    before = lab.host_counters(lab_host["name"])
    running_before = lab.host_state(lab_host["name"])["pipelines_running"]  # other tests' leftovers, if any
    with pytest.raises(OutputLimitError, match="ansible_psrp_max_output_mb") as err:
        daemon.exec(spec, PAST_THE_BOUND, max_output=2 * MIB)
    assert "stopped on the host" in str(err.value)
    after = lab.host_counters(lab_host["name"])
    assert delta(after, before, "pipelines_stopped") == 1
    assert lab.host_state(lab_host["name"])["pipelines_running"] <= running_before
    result, info = daemon.exec(spec, "'next'")
    assert result.stdout == b"next" and info["session"] == "reused"
    with pytest.raises(OutputLimitError, match="stopped on the host"):  # persistence off: the same bound and error
        local = LocalRunner()
        try:
            local.exec(spec, PAST_THE_BOUND, max_output=2 * MIB)
        finally:
            local.release()


def test_output_past_the_bound_whose_stop_fails_says_the_command_may_still_run(spec: t.Any, lab, lab_host) -> None:
    # the engine itself, so that no Signal but the stop's follows the armed fault (a daemon releases the last
    # task's pipeline with one after its reply, when it likes)
    session = Session(spec, isolate=True)
    try:
        session.run("'warm'")
        session.finish_pending()  # the warm task's own Signal goes now
        lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Signal": ["access_denied"]})
        try:
            with pytest.raises(OutputLimitError, match="ansible_psrp_max_output_mb") as err:
                session.run(PAST_THE_BOUND, max_output=2 * MIB)
        finally:
            faults_left = lab.get_faults(lab_host["name"])["wsman_fault_on_action_next"]
            lab.clear_faults(lab_host["name"])
        message = str(err.value)
        assert faults_left == {"Signal": []}  # the stop's Signal took it
        assert "stopped on the host" not in message, message
        assert f"stopping its command on {spec.host} failed" in message and "may still run there" in message, message
        # the pool the command still runs in is not the next task's (its restore would queue behind the command
        # for ten minutes): the pool is recycled, which ends the command with its process
        running = lab.host_state(lab_host["name"])["pipelines_running"]
        session.finish_pending()
        assert session.stats["recycle_reasons"][-1].startswith("a command in it could not be stopped")
        assert lab.host_state(lab_host["name"])["pipelines_running"] <= running - 1
        assert session.run("'next'").stdout == b"next"
    finally:
        session.close()


def test_the_same_output_through_ansible_with_pinning_without_and_through_builtin(e2e: E2E) -> None:
    command = "1..3 | ForEach-Object { 'ü€' * 300000 }; [pscustomobject]@{Name='n'; Value=1}; Write-Host 'host'"
    playbook = write_playbook(e2e.workdir / "output.yml", [raw("output", command, register="out")])
    seen = {}
    for variant, plugin, extra in (("pinned", "pinned", None), ("persist_off", "pinned", {"ansible_psrp_persist": False}),
                                   ("builtin", "builtin_psrp", None)):
        run = run_with(e2e, plugin, playbook, name=f"output-{variant}", extra=extra)
        run.assert_ok()
        seen[variant] = run.task_results(HOST)[0]["stdout"]
    assert len(seen["builtin"]) > 1_800_000  # characters
    assert seen["pinned"] == seen["persist_off"] == seen["builtin"]


def test_the_output_bound_fails_the_task_naming_the_setting_where_builtin_has_none(e2e: E2E) -> None:
    playbook = write_playbook(e2e.workdir / "bound.yml", [
        raw("too much", "1..3 | ForEach-Object { 'z' * 1048576 }", ignore_errors=True),
        raw("after", "Write-Output after"),
    ])
    run = run_with(e2e, "pinned", playbook, name="bound", extra={"ansible_psrp_max_output_mb": 1})
    assert statuses(run) == {"too much": "ignored", "after": "ok"}
    assert "ansible_psrp_max_output_mb" in run.task_results(HOST)[0]["msg"]
    builtin = run_with(e2e, "builtin_psrp", playbook, name="bound", extra={"ansible_psrp_max_output_mb": 1})
    assert statuses(builtin) == {"too much": "ok", "after": "ok"}  # builtin has no bound: it keeps it all
