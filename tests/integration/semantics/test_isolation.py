"""T1 and T4 against the lab host: a pinned Session puts its runspace and process back after every task, and
recycles its pool between tasks when it cannot, when the pool ran its number of tasks, or when its process nears
the host's MaxMemoryPerShellMB.

The real Session talks to the lab host directly (as the pin daemon does: a task, then finish_pending() once
its reply is out). `$PID` tells one pool's process from the next; the lab counts pools and killed processes.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import TaskInterrupted
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = [pytest.mark.timeout(180)]

LEAVE = ("$env:LEFT_ENV = 'env'; $global:leftvar = 'var'; function global:Get-Left { 1 }; "
         "Set-Location C:\\Windows; cmd.exe /c exit 7")
READ = ("\"env=[$env:LEFT_ENV] var=[$global:leftvar] function=[$(@(Get-ChildItem Function: | "
        "Where-Object { $_.Name -eq 'Get-Left' }).Count)] location=[$((Get-Location).Path)] "
        "lastexitcode=[$LASTEXITCODE] mode=[$($ExecutionContext.SessionState.LanguageMode)] pid=[$PID]\"")


def fresh(pid: str) -> str:
    return ("env=[] var=[] function=[0] location=[C:\\Users\\ansible\\Documents] lastexitcode=[] "
            f"mode=[FullLanguage] pid=[{pid}]")


def spec_of(lab_description: dict[str, t.Any], lab_host: dict[str, t.Any]) -> t.Any:
    user = next(u for u in lab_host["users"] if u["username"] == "ansible")
    return build_spec({"remote_addr": lab_host["address"], "port": lab_host["https_port"], "protocol": "https",
                       "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
                       "ca_cert": lab_description["ca_cert"]})


@pytest.fixture
def session(lab_description, lab_host) -> t.Iterator[Session]:
    pinned = Session(spec_of(lab_description, lab_host))
    pinned.ensure_ready()
    yield pinned
    pinned.close()


def task(session: Session, script: str, **kwargs: t.Any) -> t.Any:
    """One task as the pin daemon runs it: the pipeline, then finish_pending() after the reply."""
    session.ensure_ready()
    try:
        return session.run(script, **kwargs)
    finally:
        session.finish_pending()


def read(session: Session) -> tuple[str, str]:
    text = task(session, READ).stdout.decode()
    return text, text[text.index("pid=[") + 5:-1]


def test_what_a_task_leaves_is_put_back_in_the_same_process(session) -> None:
    _, pid = read(session)
    assert task(session, LEAVE + "; " + READ).stdout.decode() != fresh(pid)  # the task itself saw its changes
    assert read(session) == (fresh(pid), pid)
    assert session.stats["pool_recycles"] == 0 and session.stats["restores"] >= 1


def test_a_task_that_fails_after_changing_state_is_put_back_before_the_next_task(session) -> None:
    _, pid = read(session)
    result = task(session, LEAVE + "; throw 'failed after changing state'")
    assert result.rc == 1 and b"failed after changing state" in result.stderr
    assert read(session) == (fresh(pid), pid)  # a restore pipeline of its own ran; the pool stayed


def test_a_stopped_task_is_put_back_before_the_next_task(session) -> None:
    _, pid = read(session)
    asked: list[int] = []

    def stop_after_it_started() -> bool:
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(TaskInterrupted):
        task(session, LEAVE + "; Start-Sleep -Seconds 60", should_stop=stop_after_it_started)
    assert read(session) == (fresh(pid), pid)


def test_a_task_that_constrains_its_runspace_gets_the_pool_recycled_before_the_next(session) -> None:
    _, pid = read(session)
    task(session, "$ExecutionContext.SessionState.LanguageMode = 'ConstrainedLanguage'")
    text, new_pid = read(session)
    assert new_pid != pid and text == fresh(new_pid)
    assert session.stats["pool_recycles"] == 1
    assert "language mode is ConstrainedLanguage" in session.stats["recycle_reasons"][-1]


# A task that, besides leaving state, breaks the pool's own restore function or its data (both in the global
# scope under a per-pool name, docs/pinning.md): the restore cannot be trusted, so the pool is recycled.
OWN_FUNCTION = "Get-ChildItem Function: | Where-Object { $_.Name -like 'PinnedRestore_*' }"
OWN_DATA = "Get-Variable -Scope Global | Where-Object { $_.Name -like 'PinnedBaseline_*' }"
BREAK_RESTORE = {
    "removes every function": ("Remove-Item Function:*", "the restore function failed or is gone"),
    "redefines the restore function": (
        f"{OWN_FUNCTION} | ForEach-Object {{ Invoke-Expression \"function global:$($_.Name) {{ 'redefined' }}\" }}",
        "removed or redefined the pool's restore function"),
    "removes its data": (f"{OWN_DATA} | ForEach-Object {{ Remove-Variable -Name $_.Name -Scope Global -Force }}",
                         "is gone"),
    "changes its data": (f"({OWN_DATA}).Value['location'] = 'C:\\Windows'", "was changed"),
}


@pytest.mark.parametrize("breaking", list(BREAK_RESTORE), ids=lambda name: name.replace(" ", "-"))
def test_a_task_that_breaks_the_restore_function_or_its_data_gets_the_pool_recycled(session, breaking) -> None:
    _, pid = read(session)
    script, why = BREAK_RESTORE[breaking]
    task(session, LEAVE + "; " + script)
    text, new_pid = read(session)
    assert new_pid != pid and text == fresh(new_pid)  # never a silent pool without isolation
    assert session.stats["pool_recycles"] == 1
    assert why in session.stats["recycle_reasons"][-1]
    assert read(session) == (fresh(new_pid), new_pid)  # the new pool has its own restore function, working


def test_the_restore_function_and_its_data_are_not_state_a_task_left(session) -> None:
    _, pid = read(session)
    names = task(session, f"@({OWN_FUNCTION}).Count; @({OWN_DATA}).Count").stdout.decode().split()
    assert names == ["1", "1"]  # what a task can see of them (docs/pinning.md)
    assert read(session) == (fresh(pid), pid)
    assert session.stats["pool_recycles"] == 0 and session.stats["restores"] == 0


def test_the_pool_is_recycled_after_its_number_of_tasks_between_two_tasks(session) -> None:
    session.max_pool_tasks = 3
    pids = [read(session)[1] for _ in range(7)]
    # the pool opened by the fixture runs 3 tasks, is recycled after the third, and so on
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    assert session.stats["pool_recycles"] == 2
    assert all("ansible_psrp_persist_max_tasks 3" in r for r in session.stats["recycle_reasons"])


def test_a_process_near_the_hosts_memory_limit_is_recycled_between_tasks(lab, lab_description, lab_host) -> None:
    # a pool's process starts at about 50 MB in the lab (as on Windows); with a 60 MB limit it is near it
    lab.set_limits(lab_host["name"], MaxMemoryPerShellMB=60)
    session = Session(spec_of(lab_description, lab_host))
    try:
        killed = lab.host_counters(lab_host["name"]).get("shells_killed.memory", 0)
        session.ensure_ready()
        assert session.memory_limit_mb == 60  # read from the host's winrm/config
        _, first = read(session)
        _, second = read(session)
        assert first != second and session.stats["pool_recycles"] == 2
        assert "MaxMemoryPerShellMB 60 MB" in session.stats["recycle_reasons"][-1]
        assert session.stats["memory_used_mb"] is not None and session.stats["memory_used_mb"] <= 60
        assert lab.host_counters(lab_host["name"]).get("shells_killed.memory", 0) == killed  # never mid-task
    finally:
        session.close()
        lab.set_limits(lab_host["name"], MaxMemoryPerShellMB=1024)


def test_the_restore_does_not_change_what_a_task_sees_or_prints(lab_description, lab_host) -> None:
    script = ("param($Name) $i = 0; foreach ($line in $input) { $i++; \"$Name $i $line $($MyInvocation.ExpectingInput)\" }"
              "; Write-Error 'an error'; $PSCommandPath; $MyInvocation.PipelinePosition; exit 4")
    results = []
    for isolate in (True, False):
        session = Session(spec_of(lab_description, lab_host), isolate=isolate)
        try:
            session.ensure_ready()
            results.append(session.run(script, arguments=["seen"], input_data=["a", "b"]))
        finally:
            session.close()
    assert results[0] == results[1]
    assert results[0].rc == 4 and results[0].stdout.startswith(b"seen 1 a True\r\nseen 2 b True")
