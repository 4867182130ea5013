"""T3 end to end: what the host or the controller's disk refused fails the task, as with ansible.builtin.psrp.

One playbook runs through pinned.winrm.psrp and through ansible.builtin.psrp against the same lab host: a
WS-Management fault on the Command of a raw task, a script that throws, a put into a missing directory, a
fetch of a missing file and a fetch into a missing local directory. Each must end as a failed task (so
ignore_errors and rescue act on it, and failed_when on a script's result), never as unreachable, and both
plugins must end every task alike. Only the network, the proxy and the transport make a host unreachable.
"""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import E2E
from tests.integration.reliability._helpers import host_path, raw, write_playbook

from ._plays import PLUGINS, run_with, statuses

pytestmark = [pytest.mark.timeout(300)]


def _playbook(e2e: E2E, tmp_path) -> str:
    src = tmp_path / "src.txt"
    src.write_text("payload\n")
    host_path(e2e, "C:\\temp\\sem").mkdir(parents=True, exist_ok=True)
    tasks = [
        # the lab faults this task's Command (access denied), set before the run
        raw("faulted command", "Write-Output never-runs", ignore_errors=True),
        raw("script throws", "throw 'boom'", register="thrown", failed_when="thrown.rc != 1"),
        {"name": "put block", "block": [
            {"name": "put into a missing directory",
             "rel_transfer": {"src": str(src), "dest": "C:\\temp\\sem\\missing-dir\\x.txt"}},
        ], "rescue": [raw("rescued", "Write-Output rescued", register="rescued")]},
        {"name": "fetch a missing file", "rel_transfer": {"dest": "C:\\temp\\sem\\missing.txt",
                                                         "fetch_to": str(tmp_path / "got.txt")},
         "ignore_errors": True},
        {"name": "fetch into a missing local directory",
         "rel_transfer": {"src": str(src), "dest": "C:\\temp\\sem\\present.txt",
                          "fetch_to": str(tmp_path / "no-such-dir" / "got.txt")},
         "ignore_errors": True},
        raw("still running", "Write-Output end"),
        # ansible-core evaluates failed_when on results, not on errors an action raises ("exceptions raised
        # anywhere here bypass failed_when", TaskExecutor): the same for both plugins, so the task still fails
        {"name": "fetch a missing file, failed_when false",
         "rel_transfer": {"dest": "C:\\temp\\sem\\missing.txt", "fetch_to": str(tmp_path / "got2.txt")},
         "failed_when": False},
    ]
    return write_playbook(e2e.workdir / "failures.yml", tasks)


EXPECTED = {
    "faulted command": "ignored",
    "script throws": "ok",
    "put into a missing directory": "failed",
    "rescued": "ok",
    "fetch a missing file": "ignored",
    "fetch into a missing local directory": "ignored",
    "still running": "ok",
    "fetch a missing file, failed_when false": "failed",
}


def test_host_and_local_file_refusals_fail_the_task_as_builtin_psrp_does(e2e: E2E, tmp_path) -> None:
    playbook = _playbook(e2e, tmp_path)
    ended: dict[str, dict[str, str]] = {}
    messages: dict[str, dict[str, str]] = {}
    for plugin in PLUGINS:
        e2e.lab.set_faults(e2e.host()["name"], wsman_fault_on_action_next={"Command": ["access_denied"]})
        run = run_with(e2e, plugin, playbook, name="failures")
        e2e.lab.clear_faults(e2e.host()["name"])
        ended[plugin] = statuses(run)
        messages[plugin] = {r["task"]: str(r.get("msg", "")) for r in run.task_results("win-lab1")}
        assert run.stats["win-lab1"]["unreachable"] == 0, (plugin, ended[plugin], messages[plugin])
        assert run.stats["win-lab1"]["rescued"] == 1, (plugin, run.stats)
    assert ended["pinned"] == EXPECTED, messages["pinned"]
    assert ended["builtin_psrp"] == ended["pinned"], messages
    pinned = messages["pinned"]
    # our messages keep saying which party refused and what
    assert "Access is denied" in pinned["faulted command"], pinned
    assert "does not exist" in pinned["put into a missing directory"], pinned
    assert "Task failed: failed to transfer file to " in pinned["fetch a missing file"], pinned
    assert "on the controller" in pinned["fetch into a missing local directory"], pinned
