"""What one task leaves on the host, as the next task of the same play (and of the next play) sees it.

ansible.builtin.psrp opens a Runspace Pool per task and closes it after (a new wsmprovhost.exe process each
time), so nothing survives a task: not the process environment, not a global variable, function, alias, drive
or module, not the location, a preference variable, $LASTEXITCODE or $Error. The lab keeps all of those in a
pool's runspace and process as Windows does (docs/lab-engine.md, "Runspace and process state"), so this is the
host's behaviour, not the test's. A pinned session keeps its pool and puts all of it back after every task
(T1, docs/pinning.md): its tasks see what builtin's see, on a session opened by the play (cold) and on one a
previous play left (warm), after a task that succeeded, failed, or was stopped by its timeout.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest

from tests.integration._ansible import ROOT

from .test_peers import Peers

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

# Every kind of state a task can leave: the process environment (set, changed, removed), a global variable, a
# preference variable, $PSDefaultParameterValues, a function (one named like a cmdlet too), an alias, a PS
# drive, a module, the location, $LASTEXITCODE and $Error.
LEAVE = "; ".join([
    "$env:LEFT_ENV = 'env'", "$env:TEMP = 'C:\\changed'", "Remove-Item Env:PUBLIC",
    "$global:leftvar = 'var'", "$global:ErrorActionPreference = 'Stop'",
    "Set-Variable -Name leftro -Value 'ro' -Option ReadOnly -Scope Global",
    "$global:PSDefaultParameterValues = @{ 'Get-ChildItem:Force' = $true }",
    "function global:Get-Left { 'function' }", "function global:Get-Location { 'shadowed' }",
    "Set-Alias -Name Get-LeftAlias -Value Get-Date -Scope Global",
    "$null = New-PSDrive -Name LEFT -PSProvider FileSystem -Root C:\\Windows -Scope Global",
    "Set-Content -Path C:\\Users\\ansible\\LeftModule.psm1 -Value 'function Get-LeftModule { 1 }'",
    "Import-Module C:\\Users\\ansible\\LeftModule.psm1",
    "Set-Location C:\\Windows",
    "Write-Error 'a left error' -ErrorAction SilentlyContinue",
    "cmd.exe /c exit 7",
])
# $Error is read first: the read's own look-ups add to it
READ = ("$errors = $Error.Count; "
        "$has = { param($drive, $name) @(Get-ChildItem $drive | Where-Object { $_.Name -eq $name }).Count }; "
        "\"env=[$env:LEFT_ENV] temp=[$env:TEMP] public=[$env:PUBLIC] var=[$global:leftvar] ro=[$global:leftro] "
        "eap=[$ErrorActionPreference] defaults=[$(if ($PSDefaultParameterValues) { $PSDefaultParameterValues.Count } else { 0 })] "
        "function=[$(& $has Function: Get-Left)] shadow=[$(& $has Function: Get-Location)] "
        "alias=[$(& $has Alias: Get-LeftAlias)] drive=[$(@(Get-PSDrive | Where-Object { $_.Name -eq 'LEFT' }).Count)] "
        "module=[$(@(Get-Module LeftModule).Count)] location=[$((Microsoft.PowerShell.Management\\Get-Location).Path)] "
        "errors=[$errors] lastexitcode=[$LASTEXITCODE]\"")
FRESH = ("env=[] temp=[C:\\Users\\ansible\\AppData\\Local\\Temp] public=[C:\\Users\\Public] var=[] ro=[] eap=[Continue] "
         "defaults=[0] function=[0] shadow=[0] alias=[0] drive=[0] module=[0] location=[C:\\Users\\ansible\\Documents] "
         "errors=[0] lastexitcode=[]")

TASKS: list[dict[str, t.Any]] = [
    {"name": "read first", "ansible.builtin.raw": READ, "changed_when": False},
    {"name": "leave", "ansible.builtin.raw": LEAVE + "; " + READ, "changed_when": False, "failed_when": False},
    {"name": "read after a task that succeeded", "ansible.builtin.raw": READ, "changed_when": False},
    {"name": "leave and fail", "ansible.builtin.raw": LEAVE + "; throw 'failed after leaving state'",
     "changed_when": False, "ignore_errors": True},
    {"name": "read after a task that failed", "ansible.builtin.raw": READ, "changed_when": False},
    {"name": "leave and time out", "ansible.builtin.raw": LEAVE + "; Start-Sleep -Seconds 60", "timeout": 3,
     "changed_when": False, "ignore_errors": True},
    {"name": "read after a task that timed out", "ansible.builtin.raw": READ, "changed_when": False},
    {"name": "leave for the next play", "ansible.builtin.raw": LEAVE, "changed_when": False, "failed_when": False},
]
READS = [0, 2, 4, 6]


@pytest.fixture
def peers(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[Peers]:
    env = Peers(lab, tmp_path)
    lab.clear_faults(env.host["name"])
    yield env
    env.close_pinned_sessions()


def _reads(peers: Peers, plugin: str, name: str) -> list[str]:
    run = peers.run(plugin, "direct", TASKS, name)
    results = run.task_results(peers.host["name"].lower())
    assert [r["task"] for r in results] == [task["name"] for task in TASKS], results
    assert FRESH not in results[1]["stdout"], "the leaving task did not change the state it is meant to"
    return [results[i]["stdout"].strip() for i in READS]


def _pinned_sessions(peers: Peers) -> list[dict[str, t.Any]]:
    """The daemon's sessions (pinned-winrm-sessions --json list)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
         "--dir", str(peers.workdir / "pc"), "--json", "list"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
        capture_output=True, text=True, timeout=30, check=True,
    )
    return list(json.loads(proc.stdout)["sessions"])


def test_each_task_sees_the_host_as_a_fresh_pool_with_builtin_psrp_and_pinned_cold_and_warm(peers: Peers) -> None:
    before = peers.counters().get("runspace_pools_created", 0)
    builtin = _reads(peers, "builtin_psrp", "state-builtin")
    assert builtin == [FRESH] * len(READS)
    assert peers.counters().get("runspace_pools_created", 0) - before == len(TASKS)  # builtin: a pool per task
    cold = _reads(peers, "pinned", "state-pinned-cold")  # the play opens the pinned session
    opened = {s["id"] for s in _pinned_sessions(peers)}
    warm = _reads(peers, "pinned", "state-pinned-warm")  # the next play rides it, after the last task's leftovers
    sessions = _pinned_sessions(peers)
    # warm: the second play rode the sessions of the first (the task after a timeout may find its session still
    # stopping the timed-out command, and open a second one, as pool_size 2 allows: T2)
    assert opened <= {s["id"] for s in sessions}
    # everything was put back in place: no pool had to be recycled, and restores happened
    assert [s["pool_recycles"] for s in sessions] == [0] * len(sessions)
    assert sum(s["restores"] for s in sessions) >= 4
    assert cold == builtin
    assert warm == builtin


# State the restore cannot put back on Windows: a new Constant variable (not even Remove-Variable -Force removes
# it) and a built-in variable made ReadOnly (Set-Variable -Force keeps its options). The pool must be recycled.
READ_KEPT = {"name": "read", "changed_when": False,
             "ansible.builtin.raw": "\"const=[$global:leftconst] wp=[$((Get-Variable WarningPreference -Scope Global).Options)]\"; "
                                    "$global:WarningPreference = 'Continue'; $global:leftconst = 'assigned'; $global:leftconst"}
KEEP = [
    {"name": "make a built-in variable ReadOnly", "changed_when": False,
     "ansible.builtin.raw": "Set-Variable -Name WarningPreference -Option ReadOnly -Scope Global -Force; 'left'"},
    READ_KEPT,
    {"name": "leave a Constant variable", "changed_when": False,
     "ansible.builtin.raw": "Set-Variable -Name leftconst -Value 'c' -Option Constant -Scope Global; 'left'"},
    READ_KEPT,
]


def test_a_variable_the_restore_cannot_put_back_gets_the_pool_recycled(peers: Peers) -> None:
    def reads(plugin: str, name: str) -> list[str]:
        results = peers.run(plugin, "direct", KEEP, name).task_results(peers.host["name"].lower())
        assert [r["status"] for r in results] == ["ok"] * len(KEEP), results
        return [str(results[i]["stdout"]).strip() for i in (1, 3)]

    builtin = reads("builtin_psrp", "keep-builtin")
    assert [r.splitlines() for r in builtin] == [["const=[] wp=[None]", "assigned"]] * 2
    reads("pinned", "keep-pinned-open")  # opens the session, which the next play rides warm
    assert reads("pinned", "keep-pinned-warm") == builtin
    assert sum(s["pool_recycles"] for s in _pinned_sessions(peers)) >= 4  # one per leaving task
