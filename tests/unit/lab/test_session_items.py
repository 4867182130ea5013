"""The lab engine's session items as Windows PowerShell 5.1 shows them: the Function: and Alias: drives, every
object's ToString(), String.GetHashCode(), and module-qualified command names that skip a shadowing function."""

from __future__ import annotations

import pytest

from tests.unit.lab.conftest import RecordingStreams


@pytest.fixture
def session(engine):  # type: ignore[no-untyped-def]
    """Runs scripts one after the other in one runspace (a pool's), each with useLocalScope."""
    runspace = engine.new_runspace()

    def run(script: str) -> RecordingStreams:
        streams = RecordingStreams()
        engine.run_powershell(script, [], iter([]), streams, runspace=runspace, local_scope=True)
        return streams
    return run


def test_function_drive_lists_global_functions_with_their_definition_and_remove_item_deletes_one(session):
    session("function global:Get-Left { 'left' }")
    listed = session("Get-ChildItem -LiteralPath Function: | Where-Object { $_.Name -eq 'get-left' } | "
                     "ForEach-Object { $_.Definition -like \"*'left'*\" }").out
    assert listed == [True]
    session("Remove-Item -LiteralPath 'Function:\\Get-Left' -Force")
    assert session("[bool](Get-Command Get-Left -ErrorAction SilentlyContinue)").out == [False]


def test_remove_item_with_a_wildcard_path_removes_every_function_it_matches_and_a_literal_path_none(session):
    session("function global:Get-LeftA { 1 }; function global:Get-LeftB { 2 }; function global:Keep-Me { 3 }")
    session("Remove-Item -LiteralPath 'Function:\\Get-Left*' -ErrorAction SilentlyContinue")
    assert session("@(Get-ChildItem Function: | Where-Object { $_.Name -like 'Get-Left*' }).Count").out == [2]
    assert session("Remove-Item Function:\\Get-Left*; Remove-Item Function:\\NoSuch*; "
                   "@(Get-ChildItem Function:).Name -join ','").out[0].lower() == "keep-me"
    session("Remove-Item Function:*")  # from a task's own scope, the global ones go too
    assert session("@(Get-ChildItem Function:).Count").out == [0]


def test_alias_drive_lists_built_in_and_session_aliases_and_remove_item_deletes_a_session_one(session):
    session("Set-Alias -Name lefta -Value Get-Date -Scope Global")
    out = session("(Get-ChildItem Alias: | Where-Object { $_.Name -in 'lefta','gci' } | Sort-Object Name).Definition").out
    assert out == ["Get-ChildItem", "Get-Date"]
    session("Remove-Item -LiteralPath Alias:\\lefta -Force")
    assert session("@(Get-ChildItem Alias:lefta).Count").out == [0]


def test_removing_a_built_in_alias_is_outside_the_subset_and_says_so(session):
    streams = session("Remove-Item -LiteralPath Alias:\\gci -Force")
    assert streams.terminating and "does not model" in streams.terminating[0].message


def test_to_string_of_an_object_without_its_own_is_its_type_name(session):
    assert session("$Host.ToString(); \"$ExecutionContext\"").out == [
        "System.Management.Automation.Internal.Host.InternalHost", "System.Management.Automation.EngineIntrinsics"]


def test_string_hash_codes_are_stable_within_a_process_and_differ_between_texts(session):
    out = session("'abc'.GetHashCode(); 'abc'.GetHashCode(); 'abd'.GetHashCode()").out
    assert out[0] == out[1] != out[2] and all(isinstance(v, int) for v in out)


def test_a_module_qualified_cmdlet_name_runs_the_cmdlet_a_function_or_alias_of_its_name_hides(session):
    session("function global:Get-Location { 'shadow' }; Set-Alias -Name Get-Date -Value Get-Location -Scope Global")
    out = session("Get-Location; (Microsoft.PowerShell.Management\\Get-Location).Path; "
                  "(Microsoft.PowerShell.Utility\\Get-Date -Format yyyy).Length").out
    assert out == ["shadow", "C:\\Users\\vagrant\\Documents", 4]


def test_a_script_that_constrains_its_runspace_leaves_it_constrained_for_the_next_pipelines(session):
    assert session("$ExecutionContext.SessionState.LanguageMode").out == ["FullLanguage"]
    session("$ExecutionContext.SessionState.LanguageMode = 'ConstrainedLanguage'")
    later = session("[string]$ExecutionContext.SessionState.LanguageMode; [IO.Path]::GetTempPath()")
    assert later.out == ["ConstrainedLanguage"]
    assert later.terminating[0].fq_error_id == "MethodInvocationNotSupportedInConstrainedLanguage"
    back = session("$ExecutionContext.SessionState.LanguageMode = 'FullLanguage'")
    assert back.terminating[0].fq_error_id == "PropertySetterNotSupportedInConstrainedLanguage"
