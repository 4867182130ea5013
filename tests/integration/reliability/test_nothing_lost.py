"""Nothing lost: transfers verified by hash both ways, failed transfers leave no partial file behind.

Transfers run inside real ansible-playbook runs through this suite's test-only action
(action_plugins/rel_transfer.py: put_file then fetch_file, SHA-256 of both). The host side is checked on
the lab host's disk, never through the plugin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import signal
import threading
import time
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._transfers import FETCH_SCRIPT, PUT_SCRIPT
from tests.integration.e2e.conftest import E2E, delta

from . import report
from ._helpers import (
    action_env,
    arm_when_idle,
    daemon_pid,
    host_path,
    log_mark,
    pid_alive,
    raw,
    script_runs,
    squid_ntlm,
    wait_for,
    write_playbook,
)
from ._mutant_sessions import mutant_env

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"
# The refusal a task whose connection was lost after its request ends with: outcome unknown, not resent (T5).
LOST_NOT_RESENT = (r"was lost after the request was sent and before any answer \(.*\); the outcome on the host is "
                   r"unknown, so it was not resent")
SIZES = [0, 1, 4096, 150 * 1024 + 7, 3 * 1024 * 1024 + 1]


def _sha(path: pathlib.Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _transfer(name: str, src: pathlib.Path | None, dest: str, fetch_to: pathlib.Path | None) -> dict[str, t.Any]:
    args: dict[str, t.Any] = {"dest": dest}
    if src is not None:
        args["src"] = str(src)
    if fetch_to is not None:
        args["fetch_to"] = str(fetch_to)
    return {"name": name, "rel_transfer": args}


def _leftovers(directory: pathlib.Path, stem: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if stem in p.name and "pinned" in p.name) if directory.exists() else []


@pytest.mark.parametrize("route", ["squid-https", "direct-http"])
@report.row("Nothing lost", f"put_file then fetch_file of {len(SIZES)} sizes (0 B to 3 MiB), {{route}}",
            "local SHA-256 = SHA-256 on the host's disk = SHA-256 of the fetched copy, for every file",
            report.ROUND_TRIP)
def test_every_transfer_is_verified_by_hash_both_ways(e2e: E2E, check, tmp_path, route: str) -> None:
    sizes = SIZES
    row = check()
    group = squid_ntlm(e2e) if route == "squid-https" else {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm"}
    tasks, files = [], []
    for size in sizes:
        src = tmp_path / f"src-{size}.bin"
        src.write_bytes(os.urandom(size))
        dest = f"C:\\temp\\rel-hash\\{route}-{size}.bin"
        back = tmp_path / f"back-{size}.bin"
        tasks.append(_transfer(f"transfer {size}", src, dest, back))
        files.append((size, src, dest, back))
    host_path(e2e, "C:\\temp\\rel-hash").mkdir(parents=True, exist_ok=True)
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "hash.yml", tasks), env=action_env(), name="hash")
    observed, ok = [], True
    for size, src, dest, back in files:
        local, on_host, fetched = _sha(src), _sha(host_path(e2e, dest)), _sha(back)
        same = local == on_host == fetched
        ok &= same
        observed.append(f"{size} B {'match' if same else f'MISMATCH {local} {on_host} {fetched}'}")
    row.see(f"rc {run.rc}; " + ", ".join(observed))
    run.assert_ok()
    assert ok


@report.row("Nothing lost", "put_file of 3 MiB fails mid-transfer (host drops the connection on the 2nd Send)",
            "task unreachable saying its outcome is unknown and it was not resent (the host started the put's "
            "script once and handled only the Send before the dropped one); the destination keeps its previous "
            "content (no partial file at the path)", report.FAULT, key="row")
@report.row("Nothing lost", "temporary file of a put_file that failed mid-transfer",
            "removed from the host once the failed pipeline ends (polled with a generous bound of 60 s)",
            report.FAULT, key="tmp_row")
def test_failed_put_leaves_the_destination_untouched(e2e: E2E, check, tmp_path) -> None:
    row, tmp_row = check("row"), check("tmp_row")
    seen = _failed_put(e2e, tmp_path)
    row.see(seen.describe())
    tmp_row.see(f"leftover temporary files: {seen.leftovers or 'none'}")
    _failed_put_verdict(seen)
    assert seen.removed, seen.leftovers


@dataclasses.dataclass
class FailedPut:
    """What a put that lost its connection on its 2nd Send left behind."""

    result: dict[str, t.Any]
    runs: int  # how often the host started the put's script
    sends: int  # Sends the host handled
    content: bytes  # the destination afterwards
    removed: bool  # the temporary file went away once the pipeline ended
    leftovers: list[str]

    def describe(self) -> str:
        return (f"task {self.result['status']}: {str(self.result.get('msg', ''))[-160:]}; the host started the put "
                f"{self.runs} time(s) and got {self.sends} Send(s); destination "
                f"{'unchanged' if self.content == b'PREVIOUS CONTENT' else f'CHANGED ({len(self.content)} bytes)'}")


def _failed_put(e2e: E2E, tmp_path: pathlib.Path, env: dict[str, str] | None = None) -> FailedPut:
    group = squid_ntlm(e2e)
    folder = "C:\\temp\\rel-put"
    dest = f"{folder}\\target.bin"
    host_path(e2e, folder).mkdir(parents=True, exist_ok=True)
    host_path(e2e, dest).write_bytes(b"PREVIOUS CONTENT")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    e2e.run(group, playbook=write_playbook(e2e.workdir / "warm.yml", [raw("w", "Write-Output w")]), env=env,
            name="warm").assert_ok()
    arm_when_idle(e2e, e2e.host()["name"], drop_on_action_nth={"Send": 2})
    before, mark = e2e.counters(), log_mark(e2e)
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "put.yml", [_transfer("put", src, dest, None)]),
                  env=action_env(env), name="put")
    result = run.task_results(HOST)[0]
    after, runs = e2e.counters(), script_runs(e2e, PUT_SCRIPT, mark)
    content = host_path(e2e, dest).read_bytes()
    e2e.lab.clear_faults(e2e.host()["name"])
    e2e.run(group, playbook=write_playbook(e2e.workdir / "after.yml", [raw("a", "Write-Output after")]), env=env,
            name="after")
    removed = wait_for(lambda: not _leftovers(host_path(e2e, folder), "target.bin"), 60)
    return FailedPut(result, runs, delta(after, before, "wsman.Send"), content, removed,
                     _leftovers(host_path(e2e, folder), "target.bin"))


def _failed_put_verdict(seen: FailedPut) -> None:
    assert seen.result["status"] == "unreachable", seen.result
    assert re.search(LOST_NOT_RESENT, seen.result["msg"]), seen.result["msg"]
    assert seen.runs == 1 and seen.sends == 1, "the put went on, or was sent again, after its connection was lost"
    assert seen.content == b"PREVIOUS CONTENT"


@report.row("Criteria that can fail", "mutation: the session resends a put whose outcome is unknown (a real pin "
            "daemon serving a Session that runs the script again after the connection was lost)",
            "the 'put_file of 3 MiB fails mid-transfer' row fails: the host started the put's script twice",
            report.MUTATION)
def test_the_failed_put_criterion_fails_on_a_resend(e2e: E2E, check, tmp_path) -> None:
    row = check()
    seen = _failed_put(e2e, tmp_path, env=mutant_env("ResendingSession"))
    with pytest.raises(AssertionError) as caught:
        _failed_put_verdict(seen)
    row.see(f"{seen.describe()}; the row's criterion failed: {str(caught.value).splitlines()[0][:160]}")
    assert seen.runs == 2


@report.row("Nothing lost", "pin daemon killed (SIGKILL) during a 4 MiB put_file (the host holds the put's "
            "3rd Send until the daemon is dead)", "task unreachable saying the daemon died and the outcome is "
            "unknown; no Send after the held one (not resent); no file at the destination path", report.FAULT)
def test_daemon_killed_during_a_put_leaves_no_file(e2e: E2E, check, tmp_path) -> None:
    row = check()
    group = squid_ntlm(e2e)
    name = e2e.host()["name"]
    folder = "C:\\temp\\rel-put-kill"
    dest = f"{folder}\\new.bin"
    host_path(e2e, folder).mkdir(parents=True, exist_ok=True)
    host_path(e2e, dest).unlink(missing_ok=True)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * 1024 * 1024))
    e2e.run(group, playbook=write_playbook(e2e.workdir / "warm.yml", [raw("w", "Write-Output w")]), name="warm").assert_ok()
    pid = daemon_pid(e2e)
    assert pid
    sends_before = e2e.counters().get("wsman.Send", 0)
    # The moment is held, not guessed: the host keeps the put's third Send unanswered while the daemon dies.
    arm_when_idle(e2e, name, hold_on_action_nth={"Send": 3})
    runs: list[t.Any] = []
    runner = threading.Thread(target=lambda: runs.append(e2e.run(
        group, playbook=write_playbook(e2e.workdir / "put.yml", [_transfer("put", src, dest, None)]),
        env=action_env(), name="put")), daemon=True)
    runner.start()
    try:
        e2e.lab.wait_held(name, 120)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not pid_alive(pid), 30), "the daemon outlived SIGKILL"
    finally:
        e2e.lab.release_held(name)  # the host handles the held Send and answers a connection nobody reads
    runner.join(240)
    assert runs, "the playbook run did not finish"
    result = runs[0].task_results(HOST)[0]
    # The held Send is logged once the host has handled it: after that nothing more can arrive for this put.
    assert wait_for(lambda: any(e.get("held") and "status" in e for e in e2e.lab.host_log(name)), 60)
    exists = host_path(e2e, dest).exists()
    sends = e2e.counters().get("wsman.Send", 0) - sends_before
    row.see(f"task {result['status']}: {str(result.get('msg', ''))[-140:]}; destination "
            f"{'EXISTS' if exists else 'absent'}; Sends the host received {sends} (the 3rd held until the kill)")
    assert result["status"] == "unreachable", result
    assert "the pin daemon died during the task; the task's outcome on the host is unknown" in result["msg"], result
    assert not exists
    assert sends == 3, "a Send after the kill would mean the put went on without its daemon"


@report.row("Nothing lost", "fetch_file of 3 MiB fails mid-transfer (host drops the connection on the 3rd Receive)",
            "task unreachable saying its outcome is unknown and it was not resent (the host started the fetch's "
            "script once); no file (and no temporary file) at the controller's destination", report.FAULT)
def test_failed_fetch_leaves_no_file_on_the_controller(e2e: E2E, check, tmp_path) -> None:
    row = check()
    group = squid_ntlm(e2e)
    folder = "C:\\temp\\rel-fetch"
    source = f"{folder}\\source.bin"
    host_path(e2e, folder).mkdir(parents=True, exist_ok=True)
    host_path(e2e, source).write_bytes(os.urandom(3 * 1024 * 1024))
    local_dir = tmp_path / "fetched"
    local_dir.mkdir()
    target = local_dir / "copy.bin"
    e2e.run(group, playbook=write_playbook(e2e.workdir / "warm.yml", [raw("w", "Write-Output w")]), name="warm").assert_ok()
    arm_when_idle(e2e, e2e.host()["name"], drop_on_action_nth={"Receive": 3})
    mark = log_mark(e2e)
    run = e2e.run(group, playbook=write_playbook(e2e.workdir / "fetch.yml", [_transfer("fetch", None, source, target)]),
                  env=action_env(), name="fetch")
    runs = script_runs(e2e, FETCH_SCRIPT, mark)
    result = run.task_results(HOST)[0]
    left = sorted(p.name for p in local_dir.iterdir())
    row.see(f"task {result['status']}: {str(result.get('msg', ''))[-140:]}; the host started the fetch {runs} "
            f"time(s); controller directory holds {left or 'nothing'}")
    assert result["status"] == "unreachable", result
    assert re.search(LOST_NOT_RESENT, result["msg"]), result["msg"]
    assert runs == 1, "the fetch was started again after its connection was lost"
    assert left == []
