"""What one task leaves on the host, as the next task of the same play sees it.

ansible.builtin.psrp opens a Runspace Pool per task and closes it after (a new wsmprovhost.exe process each
time), so nothing survives a task: not the process environment, not a global variable or function, not the
location or $LASTEXITCODE. The lab keeps all of those in a pool's runspace and process as Windows does
(docs/lab-engine.md, "Runspace and process state"), so this is the host's behaviour, not the test's.
"""

from __future__ import annotations

import pathlib
import typing as t

import pytest

from .test_peers import Peers

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

LEAVE = ("$env:LEFT_ENV = 'env'; $global:leftvar = 'var'; function global:Get-Left { 'function' }; "
         "Set-Location C:\\Windows; cmd.exe /c exit 7")
READ = ("\"env=[$env:LEFT_ENV] var=[$global:leftvar] function=[$([bool](Get-Command Get-Left -ErrorAction "
        "SilentlyContinue))] location=[$((Get-Location).Path)] lastexitcode=[$LASTEXITCODE]\"")
FRESH = "env=[] var=[] function=[False] location=[C:\\Users\\ansible\\Documents] lastexitcode=[]"


@pytest.fixture
def peers(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[Peers]:
    env = Peers(lab, tmp_path)
    lab.clear_faults(env.host["name"])
    yield env
    env.close_pinned_sessions()


def _second_task_sees(peers: Peers, plugin: str) -> str:
    run = peers.run(plugin, "direct", [
        {"name": "leave", "ansible.builtin.raw": LEAVE, "failed_when": False, "changed_when": False},
        {"name": "read", "ansible.builtin.raw": READ, "changed_when": False},
    ], f"state-{plugin}")
    run.assert_ok()
    return run.task_results(peers.host["name"].lower())[1]["stdout"].strip()


def test_builtin_psrp_tasks_each_start_in_a_fresh_process(peers: Peers) -> None:
    assert _second_task_sees(peers, "builtin_psrp") == FRESH


def test_pinned_tasks_each_see_the_host_as_a_fresh_pool(peers: Peers) -> None:
    assert _second_task_sees(peers, "pinned") == FRESH
