"""State a Runspace Pool keeps between pipelines, as Windows keeps it, seen by unmodified pypsrp and by
ansible.builtin.psrp's own way of running a command (docs/lab-engine.md, "Runspace and process state").

A pipeline runs in one of its pool's runspaces; the runspace keeps its session state (global variables,
functions, aliases, PS drives, modules, location, $Error, $LASTEXITCODE, history) and the pool's process
keeps its environment. AddScript without useLocalScope (pypsrp's default) runs in the global scope;
ansible.builtin.psrp asks for a local scope, so only what a script puts in the global scope survives it.
"""

from __future__ import annotations

import pathlib
import types
import typing as t

import pytest
from ansible.plugins.connection.psrp import Connection as AnsiblePSRP
from pypsrp.exceptions import InvalidPSRPOperation, WSManFaultError
from pypsrp.host import PSHost, PSHostUserInterface
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from tests.integration.lab_wsman.conftest import InProcessTransport
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._engine import Engine
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> t.Iterator[t.Callable[..., RunspacePool]]:
    """open_pool(**kwargs) -> an opened pypsrp RunspacePool on one lab host (closed at the end)."""
    config = HostConfig(name="WIN-LAB1", users={"alice": "pw-a"}, root=tmp_path)
    service = WSManService(config, Counters(), Faults(), engine_factory=lambda c, u: Engine(c.root, c.name, u))
    pools: list[RunspacePool] = []

    def open_pool(**kwargs: t.Any) -> RunspacePool:
        wsman = WSMan("127.0.0.1", username="alice", password="unused", ssl=False, auth="basic", encryption="never",
                      operation_timeout=5)
        wsman.transport = InProcessTransport(service, "alice", wsman.transport.endpoint)  # type: ignore[assignment]
        host = PSHost(None, None, False, "Ansible PSRP Host", None, PSHostUserInterface(), None)
        pool = RunspacePool(wsman, host=host, **kwargs)
        pool.open()
        pools.append(pool)
        return pool

    yield open_pool
    for pool in pools:
        pool.close()
    service.close()


def run(pool: RunspacePool, script: str, *, local_scope: bool | None = None, history: bool = False) -> list:
    ps = PowerShell(pool)
    ps.add_script(script, use_local_scope=local_scope)
    output = ps.invoke(add_to_history=history)
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    return output


def ansible_exec(pool: RunspacePool, command: str) -> tuple[int, str, str]:
    """A raw command as ansible.builtin.psrp runs it on its pool: a local-scope script, parsed by its own code."""
    host = pool.host
    host.rc = 0
    ps = PowerShell(pool)
    ps.add_script(f"{command}\nexit $LASTEXITCODE", use_local_scope=True)
    ps.invoke()
    plugin = types.SimpleNamespace(host=host, _play_context=types.SimpleNamespace(no_log=False), _psrp_host="lab")
    rc, stdout, stderr = AnsiblePSRP._parse_pipeline_result(plugin, ps)  # type: ignore[arg-type]
    return rc, stdout.decode() if isinstance(stdout, bytes) else stdout, stderr


SET_EVERYTHING = """
$answer = 42
function Get-Answer { "answer $answer" }
Set-Alias -Name ga -Value Get-Answer
New-Item -ItemType Directory -Path C:\\Data -Force | Out-Null
New-PSDrive -Name Data -PSProvider FileSystem -Root C:\\Data | Out-Null
Set-Location C:\\Windows
$ErrorActionPreference = 'Stop'
$env:LAB_STATE = 'process'
cmd.exe /c exit 3
"""
READ_EVERYTHING = """
[pscustomobject]@{
    Answer = $answer
    Function = [bool](Get-Command Get-Answer -ErrorAction SilentlyContinue)
    Alias = [bool](Get-Alias ga -ErrorAction SilentlyContinue)
    Drive = [bool](Get-PSDrive Data -ErrorAction SilentlyContinue)
    Location = (Get-Location).Path
    Preference = "$ErrorActionPreference"
    Env = $env:LAB_STATE
    LastExitCode = $LASTEXITCODE
}
"""


def _state(pool: RunspacePool) -> dict:
    out = run(pool, READ_EVERYTHING)[0]
    return dict(out.adapted_properties, **out.extended_properties)


def test_a_global_scope_script_leaves_everything_it_made_to_the_next_pipeline(lab) -> None:
    pool = lab()
    run(pool, SET_EVERYTHING)  # pypsrp's default: no UseLocalScope, the script runs in the global scope
    assert _state(pool) == {"Answer": 42, "Function": True, "Alias": True, "Drive": True, "Location": "C:\\Windows",
                            "Preference": "Stop", "Env": "process", "LastExitCode": 3}
    assert run(pool, "ga") == ["answer 42"]


def test_a_local_scope_script_leaves_only_what_it_put_in_the_global_scope_location_and_process(lab) -> None:
    pool = lab()
    run(pool, SET_EVERYTHING, local_scope=True)  # what ansible.builtin.psrp asks for
    # its variables, function, alias, drive and preference were local; location, environment and the native
    # command's $LASTEXITCODE (a global variable) belong to the runspace and the process
    assert _state(pool) == {"Answer": None, "Function": False, "Alias": False, "Drive": False,
                            "Location": "C:\\Windows", "Preference": "Continue", "Env": "process", "LastExitCode": 3}
    run(pool, "$global:answer = 7; function global:Get-Answer { 'global' }; "
              "New-PSDrive -Name Data -PSProvider FileSystem -Root C:\\Data -Scope Global | Out-Null",
        local_scope=True)
    assert run(pool, "$answer; Get-Answer; Set-Content Data:\\x.txt 'via drive'; Get-Content C:\\Data\\x.txt") == [
        7, "global", "via drive"]


def test_ansible_builtin_psrp_commands_on_one_pool_share_location_environment_and_exit_code(lab) -> None:
    pool = lab()
    assert ansible_exec(pool, "Set-Location C:\\Windows; $env:FROM_TASK = 'kept'; $mine = 1; cmd /c exit 5")[0] == 5
    rc, stdout, _ = ansible_exec(pool, "(Get-Location).Path; $env:FROM_TASK; \"[$mine]\"; \"$LASTEXITCODE\"")
    assert stdout.split() == ["C:\\Windows", "kept", "[]", "5"]
    assert rc == 5  # `exit $LASTEXITCODE` of the wrapper still sees the runspace's last exit code


def test_errors_accumulate_in_the_runspaces_error_variable(lab) -> None:
    pool = lab()
    ps = PowerShell(pool)
    ps.add_script("Write-Error 'first'")
    ps.invoke()
    ps = PowerShell(pool)
    ps.add_script("Write-Error 'second'", use_local_scope=True)
    ps.invoke()
    assert run(pool, "$Error.Count; \"$($Error[0])\"") == [2, "second"]


def test_imported_modules_stay_loaded_in_the_runspace(lab, tmp_path) -> None:
    pool = lab()
    run(pool, "New-Item -ItemType Directory C:\\Mods -Force | Out-Null; Set-Content C:\\Mods\\Lab.psm1 "
              "'function Get-LabThing { \"thing\" }; function Hidden { }; Export-ModuleMember -Function Get-LabThing'")
    run(pool, "Import-Module C:\\Mods\\Lab.psm1", local_scope=True)
    assert run(pool, "(Get-Module Lab).Name; Get-LabThing") == ["Lab", "thing"]
    assert run(pool, "[bool](Get-Command Hidden -ErrorAction SilentlyContinue)") == [False]
    run(pool, "Remove-Module Lab")
    assert run(pool, "@(Get-Module).Count") == [0]


def test_history_holds_the_pipelines_added_to_it(lab) -> None:
    pool = lab()
    run(pool, "Write-Output 1; Write-Output 2", history=True)
    run(pool, "'not in history'")
    run(pool, "'third'", history=True)
    assert run(pool, "Get-History | ForEach-Object { \"$($_.Id) $($_.CommandLine) $($_.ExecutionStatus)\" }") == [
        "1 Write-Output 1; Write-Output 2 Completed", "2 'third' Completed"]


def test_reset_runspace_state_resets_variables_location_errors_and_history_and_nothing_more(lab) -> None:
    pool = lab()
    run(pool, SET_EVERYTHING + "\nWrite-Output 'x'", history=True)
    run(pool, "$ErrorActionPreference = 'Continue'; Write-Error 'recorded'", local_scope=False)
    pool.reset_runspace_state()
    # ResetRunspaceState rebuilds the global variable table ($answer, preferences, $LASTEXITCODE, $Error),
    # sets the location back and starts a new history; functions, aliases, drives and the process stay
    assert _state(pool) == {"Answer": None, "Function": True, "Alias": True, "Drive": True,
                            "Location": "C:\\Users\\alice\\Documents", "Preference": "Continue", "Env": "process",
                            "LastExitCode": None}
    assert run(pool, "$Error.Count; @(Get-History).Count") == [0, 0]


def test_reset_runspace_state_is_refused_for_a_pool_of_several_runspaces(lab) -> None:
    pool = lab(max_runspaces=2)
    with pytest.raises(InvalidPSRPOperation, match="Failed to reset runspace state"):
        pool.reset_runspace_state()


def test_a_new_pool_is_a_new_process_with_its_own_environment_and_state(lab) -> None:
    first = lab()
    run(first, "$env:ONLY_HERE = 'first'; $x = 1")
    second = lab()
    assert run(second, "\"[$env:ONLY_HERE][$x]\"") == ["[][]"]
    assert run(first, "$PID") != run(second, "$PID")


def test_a_process_past_max_memory_per_shell_ends_and_its_requests_get_windows_fault(lab, tmp_path) -> None:
    pool = lab()
    service = pool.connection.transport.service
    service.config.max_memory_per_shell_mb = 64  # the process starts at about 50 MB
    assert run(pool, "$small = 'x' * 1MB; 'fits'") == ["fits"]
    ps = PowerShell(pool)
    ps.add_script("$global:big = 'x' * 8MB; 'never seen'")  # 16 MB more as UTF-16
    with pytest.raises(WSManFaultError) as died:
        ps.invoke()
    assert died.value.code == 1726
    assert "The WSMan provider host process did not return a proper response." in died.value.message
    assert not pool.is_alive()  # WinRM answers Get itself: the shell is gone
    assert service.counters.get("shells_killed.memory") == 1


def _shell_of(pool):
    service = pool.connection.transport.service
    (shell,) = [s for s in service._shells.values() if s.id == pool.shell.id.upper()]
    return shell


def test_a_large_input_is_read_at_the_pace_a_windows_host_keeps_and_stays_within_memory(lab) -> None:
    # 160 MB of input as UTF-16 (80 strings of 1 Mi characters) to a script that reads it all: the host answers
    # each Send once its script has caught up, so the unread backlog stays near 64 MiB, never the whole input.
    pool = lab()
    pool.connection.transport.service.config.max_received_data_per_command_mb = 500  # a configuration that allows it
    ps = PowerShell(pool)
    # a reader slower than the network (as this interpreter is on a loaded machine): without the host's pacing
    # nearly the whole input would sit unread
    ps.add_script("$n = 0; foreach ($s in $input) { Start-Sleep -Milliseconds 25; $n += $s.Length }; $n")
    chunk = "z" * (1 << 20)
    assert ps.invoke(input=[chunk] * 80) == [80 << 20]
    peak = _shell_of(pool).input_peak
    assert 0 < peak <= (64 << 20) + (8 << 20), peak


def test_input_a_script_stops_reading_is_held_and_weighed_as_on_windows(lab) -> None:
    # A script that stops reading its input: after the lab's pacing wait finds no progress, the input is buffered
    # as Windows buffers it, and the process ends past MaxMemoryPerShellMB.
    pool = lab()
    service = pool.connection.transport.service
    service.config.max_memory_per_shell_mb = 128  # the process starts at about 50 MB
    service.config.max_received_data_per_command_mb = 500
    ps = PowerShell(pool)
    ps.add_script("process { Start-Sleep -Seconds 600 }")  # reads the first object, then stops reading
    chunk = "z" * (1 << 20)
    with pytest.raises(WSManFaultError) as died:
        ps.invoke(input=[chunk] * 48)  # 96 MB as UTF-16, one string of it read
    assert died.value.code == 1726
    assert service.counters.get("shells_killed.memory") == 1


def test_memory_used_grows_with_what_the_runspace_holds(lab) -> None:
    pool = lab()
    service = pool.connection.transport.service

    def used() -> int:
        (shell,) = [s for s in service._shells.values() if s.id == pool.shell.id.upper()]
        return shell.memory_used_mb()

    before = used()
    run(pool, "$global:held = 'y' * 4MB")
    assert used() >= before + 8
    run(pool, "Remove-Variable held -Scope Global")
    assert used() == before
