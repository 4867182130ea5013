"""The lab engine's PowerShell subset: each construct, the streams, errors, exit codes, Unicode and bounds."""

from __future__ import annotations

import pathlib

import pytest

from tests.lab.pwsh import limits


def test_arithmetic_and_string_concatenation_follow_the_left_operand(ps):
    assert ps('1 + 2; "1" + 2; 1 + "2"; 7 / 2; 6 / 3; 7 % 3; "ab" * 3').out == [3, "12", 3, 3.5, 2, 1, "ababab"]


def test_expandable_strings_expand_variables_subexpressions_and_backtick_escapes(ps):
    out = ps('$n = "wörld"; "hi $n $(1+1) `$n`t|"; \'no $n\'').out
    assert out == ["hi wörld 2 $n\t|", "no $n"]


def test_here_strings_keep_their_lines(ps):
    script = '$v = 3\n@"\nline $v\n  two\n"@\n@\'\nraw $v\n\'@'
    assert ps(script).out == ["line 3\n  two", "raw $v"]


def test_comparisons_on_strings_are_case_insensitive_unless_prefixed_with_c(ps):
    out = ps('"ABC" -eq "abc"; "ABC" -ceq "abc"; "abc" -like "A?C"; "b" -in @("A","B"); 1,2,3 -gt 1').out
    assert out == [True, False, True, True, 2, 3]


def test_match_sets_matches_and_replace_uses_dotnet_group_references(ps):
    out = ps('"key=val" -match "^(?<k>\\w+)=(\\w+)$"; $Matches.k; $Matches[1]; "a-b" -replace "(\\w)-(\\w)", \'$2-$1\'').out
    assert out == [True, "key", "val", "b-a"]


def test_split_join_and_format_operators(ps):
    assert ps('("a,b,,c" -split ",").Count; @(1,2) -join "+"; "{0:D3}|{1,4}|{{x}}" -f 7, "ab"').out == \
        [4, "1+2", "007|  ab|{x}"]


def test_arrays_hashtables_and_member_access(ps):
    out = ps('$a = @(1) + 2, 3; $a.Count; $a[-1]; $h = @{ Name = "x"; N = @(1,2) }; $h.name; $h["N"].Count;'
             '$h.Keys.Count; ,@(1,2) | ForEach-Object { $_.Count }').out
    assert out == [3, 3, "x", 2, 2, 2]


def test_casts_convert_or_fail_with_invalid_cast_errors(ps):
    streams = ps('[int]"42"; [string]12; [bool]"x"; [byte[]]@(1,2) | Measure-Object | % Count; [int]"nope"')
    assert streams.out[:4] == [42, "12", True, 2]
    assert "Cannot convert value \"nope\" to type \"System.Int32\"" in streams.all_errors[0].message


def test_if_elseif_else_and_loops(ps):
    script = '''
    $r = foreach ($i in 1..5) { if ($i -eq 2) { continue } elseif ($i -eq 4) { break } else { $i } }
    $r -join ","
    $n = 0; while ($n -lt 3) { $n++ }; $n
    for ($i = 0; $i -lt 3; $i++) { "f$i" }
    do { $n-- } until ($n -le 0); $n
    switch (2) { 1 { "one" } 2 { "two" } default { "other" } }
    '''
    assert ps(script).out == ["1,3", 3, "f0", "f1", "f2", 0, "two"]


def test_functions_bind_named_positional_switch_and_pipeline_parameters(ps):
    script = '''
    function Add-It {
        [CmdletBinding()]
        param([Parameter(Mandatory, ValueFromPipeline)][int]$Value, [Parameter(Position=0)][int]$By = 10, [switch]$Neg)
        begin { $total = 0 }
        process { $total += $Value + $By }
        end { if ($Neg) { -$total } else { $total } }
    }
    1, 2 | Add-It 5
    1, 2 | Add-It -By 1 -Neg
    '''
    assert ps(script).out == [13, -5]


def test_script_param_block_binds_positional_arguments_and_args_gets_the_rest(ps):
    assert ps('param($A, [int]$B) "$A/$($B + 1)/$($args.Count)"', "x", "41").out == ["x/42/0"]
    assert ps('"$($args[1])|$($args.Count)"', "a", "b").out == ["b|2"]


def test_scriptblocks_run_with_call_and_dot_source_operators(ps):
    out = ps('$x = 1; $sb = { param($p) $x = $p; $x }; & $sb 5; $x; . $sb 7; $x').out
    assert out == [5, 1, 7, 7]


def test_input_streams_pipeline_objects_without_materialising_them(ps, engine):
    consumed: list[int] = []

    def source():
        for i in range(3):
            consumed.append(i)
            yield f"line{i}"

    streams = RecordingFirstOutput(consumed)
    engine.run_powershell('foreach ($l in $input) { $l.ToUpper() }', [], source(), streams)
    assert streams.out == ["LINE0", "LINE1", "LINE2"]
    assert streams.consumed_at_first_output == 1  # output 1 left before input 2 was read


class RecordingFirstOutput:
    def __init__(self, consumed: list[int]) -> None:
        self.consumed = consumed
        self.out: list[object] = []
        self.consumed_at_first_output: int | None = None

    def output(self, value: object) -> None:
        if self.consumed_at_first_output is None:
            self.consumed_at_first_output = len(self.consumed)
        self.out.append(value)

    def error(self, record): raise AssertionError(record)  # noqa: E704
    def warning(self, message): pass  # noqa: E704
    def verbose(self, message): pass  # noqa: E704
    def host_write(self, text, *, newline=True, to_stderr=False): pass  # noqa: E704
    def set_should_exit(self, code): pass  # noqa: E704


def test_an_array_input_object_stays_one_object_as_powershell_pipeline_input(ps):
    # PowerShell enumerates $input, not the objects in it (recorded: test_psrp_run_protocol_version_2.2)
    assert ps('$input | ForEach-Object { "<$_>" }', input=[["a", "b"], "c"]).out == ["<a b>", "<c>"]


def test_write_cmdlets_reach_their_streams(ps):
    streams = ps('Write-Output o; Write-Host h -NoNewline; Write-Warning w; Write-Verbose v; Write-Verbose v2 -Verbose;'
                 '$host.UI.WriteErrorLine("e"); $host.UI.WriteLine("l")')
    assert streams.out == ["o"]
    assert streams.host == [("h", False, False), ("e", True, True), ("l", True, False)]
    assert streams.warnings == ["w"]
    assert streams.verbose_messages == ["v2"]


def test_write_error_is_non_terminating_and_shaped_like_windows_powershell(ps):
    streams = ps('Write-Error "it broke"; "after"')
    assert streams.out == ["after"]
    (err,) = streams.errors
    assert (err.message, err.category, err.fq_error_id, err.command_name) == (
        "it broke", "NotSpecified", "Microsoft.PowerShell.Commands.WriteErrorException", "Write-Error")
    assert err.position == 'At line:1 char:1\n+ Write-Error "it broke"; "after"\n+ ~~~~~~~~~~~~~~~~~~~~~~'


def test_error_action_preference_stop_makes_write_error_terminating(ps):
    streams = ps('$ErrorActionPreference = "Stop"; Write-Error "halt"; "never"')
    assert streams.out == []
    assert [e.message for e in streams.terminating] == ["halt"]


def test_error_action_silently_continue_hides_the_error_but_records_it(ps):
    streams = ps('Get-Item C:\\missing -ErrorAction SilentlyContinue; $Error.Count; $?')
    assert streams.errors == [] and streams.out == [1, False]


def test_unknown_command_is_a_command_not_found_error_record(ps):
    (err,) = ps("Get-Frobnicator -Now").terminating
    assert err.message.startswith("The term 'Get-Frobnicator' is not recognized as the name of a cmdlet")
    assert (err.category, err.fq_error_id, err.target) == ("ObjectNotFound", "CommandNotFoundException",
                                                           "Get-Frobnicator")
    assert err.exception_type == "System.Management.Automation.CommandNotFoundException"


def test_try_catch_finally_and_throw_give_runtime_exception_records(ps):
    streams = ps('try { throw "boom" } catch [System.Management.Automation.RuntimeException] { "c:" + $_.Exception.Message;'
                 '$_.FullyQualifiedErrorId } finally { "f" }; throw "out"')
    assert streams.out == ["c:boom", "boom", "f"]
    (err,) = streams.terminating
    assert (err.message, err.category, err.exception_type) == (
        "out", "OperationStopped", "System.Management.Automation.RuntimeException")


def test_parse_errors_are_parse_exceptions_with_their_position(ps):
    (err,) = ps("if ($true) { 'x'").terminating
    assert err.exception_type == "System.Management.Automation.ParseException"
    assert err.category == "ParserError" and err.fq_error_id == "MissingEndCurlyBrace"
    assert err.position.startswith("At line:1 char:12")


def test_statements_outside_the_subset_are_refused_not_ignored(ps):
    (err,) = ps("class Foo { }").terminating
    assert "outside the lab engine's PowerShell subset" in err.message


def test_exit_sets_should_exit_and_stops_the_script(ps):
    streams = ps('"a"; exit 7; "b"')
    assert streams.out == ["a"] and streams.exit_code == 7


def test_native_commands_set_lastexitcode(ps):
    assert ps("hostname; whoami; $LASTEXITCODE; whoami /bogus; $LASTEXITCODE").out == [
        "WIN-LAB1", "win-lab1\\vagrant", 0, 1]


def test_files_are_written_under_root_and_read_back_case_insensitively(ps, root: pathlib.Path):
    streams = ps('Set-Content -Path C:\\Temp\\a.txt -Value "x" -ErrorAction SilentlyContinue; $?;'
                 'New-Item -ItemType Directory C:\\Temp | Out-Null; "ünï", "2" | Set-Content C:/temp/A.TXT -Encoding UTF8;'
                 'Get-Content c:\\TEMP\\a.txt; Add-Content C:\\Temp\\a.txt 3; (Get-Content C:\\Temp\\a.txt -Raw).Length;'
                 '(Get-Item C:\\Temp\\a.txt).Length; Test-Path C:\\Temp -PathType Container')
    assert streams.out[0] is False
    assert streams.out[1:] == ["ünï", "2", 11, 16, True]
    assert (root / "Temp" / "A.TXT").read_bytes() == b"\xef\xbb\xbf\xc3\xbcn\xc3\xaf\r\n2\r\n3\r\n"


def test_copy_move_remove_and_hash_work_on_the_files_received(ps, root: pathlib.Path):
    (root / "src.bin").write_bytes(b"abc")
    out = ps('Copy-Item C:\\src.bin C:\\copy.bin; Move-Item C:\\copy.bin C:\\moved.bin; Test-Path C:\\copy.bin;'
             '(Get-FileHash C:\\moved.bin -Algorithm SHA1).Hash; Remove-Item C:\\moved.bin; Test-Path C:\\moved.bin').out
    assert out == [False, "A9993E364706816ABA3E25717850C26C9CD0D89D", False]


def test_paths_escaping_the_root_are_refused(ps, root: pathlib.Path):
    streams = ps('Get-Content C:\\..\\..\\etc\\passwd; Get-Content D:\\x')
    assert [e.fq_error_id.split(",")[0] for e in streams.errors] == ["PathNotFound"]
    assert streams.terminating[0].message == "Cannot find drive. A drive with the name 'D' does not exist."


def test_missing_paths_give_item_not_found_errors(ps):
    (err,) = ps("Get-Content C:\\nope.txt").errors
    assert err.message == "Cannot find path 'C:\\nope.txt' because it does not exist."
    assert (err.category, err.fq_error_id) == ("ObjectNotFound", "PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand")


def test_json_round_trips_and_pscustomobjects_reach_output_as_dicts(ps):
    out = ps('$o = \'{"a": [1, 2], "b": {"c": "ü"}}\' | ConvertFrom-Json; $o.b.c; $o.a.Count;'
             '[pscustomobject]@{ N = 1 }; @{ k = "v" } | ConvertTo-Json -Compress').out
    assert out == ["ü", 2, {"N": 1}, '{"k":"v"}']


def test_select_where_foreach_and_measure(ps):
    out = ps('1..10 | Where-Object { $_ % 2 } | Select-Object -First 3 | ForEach-Object { $_ * 10 };'
             '(1..4 | Measure-Object -Sum).Sum; 1..5 | Select-Object -Last 2').out
    assert out == [10, 30, 50, 10, 4, 5]


def test_dotnet_statics_used_by_real_scripts(ps):
    out = ps('[Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes("é")); '
             '[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String("w6k=")); '
             '[BitConverter]::ToString([byte[]](1, 171)); [Math]::Max(3, 9); ([guid]::NewGuid()).ToString().Length;'
             '[IO.Path]::GetFileName("C:\\a\\b.txt"); Join-Path C:\\a b; Split-Path C:\\a\\b.txt -Leaf').out
    assert out == ["w6k=", "é", "01-AB", 9, 36, "b.txt", "C:\\a\\b", "b.txt"]


def test_sha1_transform_blocks_and_file_streams(ps, root: pathlib.Path):
    script = '''
    $fs = [IO.File]::Create("C:\\s.bin"); $sha = [Security.Cryptography.SHA1]::Create()
    foreach ($chunk in "YWJj", "ZGVm") {
        $b = [Convert]::FromBase64String($chunk)
        $null = $sha.TransformBlock($b, 0, $b.Length, $b, 0); $fs.Write($b, 0, $b.Length)
    }
    $fs.Dispose(); $null = $sha.TransformFinalBlock([byte[]]::new(0), 0, 0)
    [BitConverter]::ToString($sha.Hash).Replace("-", "").ToLowerInvariant()
    $r = [IO.File]::OpenRead("C:\\s.bin"); $buf = New-Object byte[] 4; $r.Read($buf, 0, 4); $r.Dispose()
    [IO.File]::Move("C:\\s.bin", "C:\\t.bin"); [IO.File]::Exists("C:\\s.bin")
    '''
    import hashlib
    assert ps(script).out == [hashlib.sha1(b"abcdef").hexdigest(), 4, False]
    assert (root / "t.bin").read_bytes() == b"abcdef"


def test_dotnet_exceptions_become_method_invocation_errors(ps):
    (err,) = ps('[IO.File]::ReadAllBytes("C:\\none.bin")').terminating
    assert err.message == 'Exception calling "ReadAllBytes" with "1" argument(s): "Could not find file \'C:\\none.bin\'."'


def test_null_method_call_is_an_invoke_method_on_null_error(ps):
    (err,) = ps("$nothing.Trim()").terminating
    assert (err.message, err.fq_error_id) == ("You cannot call a method on a null-valued expression.", "InvokeMethodOnNull")


def test_loops_are_bounded(ps, monkeypatch):
    monkeypatch.setattr(limits, "MAX_LOOP_ITERATIONS", 1000)
    (err,) = ps("while ($true) { }").terminating
    assert "1000 iterations" in err.message


def test_recursion_is_bounded(ps):
    (err,) = ps("function f { f }; f").terminating
    assert err.message == "The script failed due to call depth overflow."


def test_strings_are_bounded(ps, monkeypatch):
    monkeypatch.setattr(limits, "MAX_STRING_CHARS", 100)
    assert "longer than the lab engine allows" in ps('"x" * 1000').terminating[0].message


def test_start_sleep_sleeps(ps):
    import time
    start = time.monotonic()
    ps("Start-Sleep -Milliseconds 200")
    assert time.monotonic() - start >= 0.19


def test_environment_variables_persist_across_runs_like_a_runspace_process(ps):
    ps('New-Item -Path env: -Name LAB_X -Value "ü" -Force | Out-Null; $env:LAB_Y = "y"')
    assert ps("$env:LAB_X; $env:lab_y; Test-Path env:LAB_X; $env:COMPUTERNAME").out == ["ü", "y", True, "WIN-LAB1"]


def test_add_command_mode_binds_named_and_positional_arguments(engine):
    from tests.unit.lab.conftest import RecordingStreams
    streams = RecordingStreams()
    engine.run_powershell("Join-Path", ["C:\\a", ("ChildPath", "b")], iter([]), streams, is_command=True)
    assert streams.out == ["C:\\a\\b"]
    streams = RecordingStreams()
    engine.run_powershell("Get-Nope", [], iter([]), streams, is_command=True)
    assert streams.terminating[0].fq_error_id == "CommandNotFoundException"


def test_invoke_expression_and_out_string_stream_as_pypsrp_execute_ps_uses_them(ps):
    out = ps('Invoke-Expression -Command "`$x = 2; `$x * 21; Get-Item C:\\nope" | Out-String -Stream')
    assert out.out == ["42"]
    assert out.errors[0].message == "Cannot find path 'C:\\nope' because it does not exist."


@pytest.mark.parametrize("script", ["$x = ", "foreach ($i) { }", "@{ a = 1", "'open"])
def test_malformed_scripts_report_parse_errors_never_silence(ps, script):
    streams = ps(script)
    assert streams.terminating and streams.terminating[0].category == "ParserError"


def test_add_parameter_arguments_bind_by_name_for_scripts_and_commands(engine):
    from tests.unit.lab.conftest import RecordingStreams
    streams = RecordingStreams()
    engine.run_powershell("param($Path, [switch]$Force) \"$Path|$Force\"", ["-Force", True, ("Path", "C:\\x")],
                          iter([]), streams)
    assert streams.out == ["C:\\x|True"]
    streams = RecordingStreams()
    engine.run_powershell("Split-Path", ["-Path", "C:\\a\\b.txt", ("Leaf", True)], iter([]), streams, is_command=True)
    assert streams.out == ["b.txt"]


def test_whatif_changes_nothing_and_says_what_it_would_have_done(ps, root):
    streams = ps("New-Item -Path C:\\Planned -ItemType Directory -WhatIf; Test-Path C:\\Planned")
    assert streams.out == [False] and not (root / "Planned").exists()
    assert streams.host == [('What if: Performing the operation "Create Directory" on target "Destination: C:\\Planned".',
                             True, False)]


def test_remove_and_clear_variable_touch_only_variables_they_find_and_only_when_allowed(ps):
    streams = ps("""
$a = 1; $b = 2; $c = 3
Remove-Variable a
Clear-Variable b
Remove-Variable c -WhatIf
Clear-Variable nope
function inner { Remove-Variable c -Scope Local }
inner
$null -eq (Get-Variable -Name a -ErrorAction SilentlyContinue)
$null -eq $b
$c
""")
    assert streams.out == [True, True, 3]
    assert [(e.message, e.fq_error_id) for e in streams.all_errors] == [
        ("Cannot find a variable with the name 'nope'.", "VariableNotFound,Microsoft.PowerShell.Commands.ClearVariableCommand"),
        ("Cannot find a variable with the name 'c'.", "VariableNotFound,Microsoft.PowerShell.Commands.RemoveVariableCommand"),
    ]  # -Scope Local looks in the function's own scope only
    assert streams.host == [('What if: Performing the operation "Remove variable" on target "Name: c".', True, False)]


_UNAUTHORIZED = "System.Management.Automation.SessionStateUnauthorizedAccessException"


def test_readonly_and_constant_variables_refuse_what_powershell_refuses(ps):
    # Set-Variable -Option and Remove-Variable -Force as Microsoft's cmdlet reference describes them: ReadOnly
    # yields to -Force, Constant never, and only a new variable can be made Constant
    streams = ps("""
Set-Variable -Name ro -Value 1 -Option ReadOnly
Set-Variable -Name co -Value 2 -Option Constant
Set-Variable -Name plain -Value 3
try { $ro = 10 } catch { "assign ro: $($_.FullyQualifiedErrorId)" }
try { $co = 20 } catch { "assign co: $($_.FullyQualifiedErrorId)" }
Set-Variable -Name ro -Value 11
Set-Variable -Name ro -Value 12 -Force
Set-Variable -Name co -Value 21 -Force
Set-Variable -Name plain -Value 4 -Option Constant
Set-Variable -Name ro -Option ReadOnly
Remove-Variable ro
Remove-Variable co -Force
Clear-Variable ro
"$ro $co $plain"
(Get-Variable ro).Options
Remove-Variable ro -Force
$null -eq (Get-Variable ro -ErrorAction SilentlyContinue)
$ro = 'writable again'
$ro
""")
    assert streams.out == ["assign ro: VariableNotWritable", "assign co: VariableNotWritable", "12 2 3", "ReadOnly",
                           True, "writable again"]
    assert [(e.message, e.fq_error_id.split(",")[0], e.exception_type) for e in streams.all_errors] == [
        ("Cannot overwrite variable ro because it is read-only or constant.", "VariableNotWritable", _UNAUTHORIZED),
        ("Cannot overwrite variable co because it is read-only or constant.", "VariableNotWritable", _UNAUTHORIZED),
        ("Existing variable plain cannot be made constant. Variables can be made constant only at creation time.",
         "VariableCannotBeMadeConstant", _UNAUTHORIZED),
        # changing a ReadOnly variable's options is changing it too
        ("Cannot overwrite variable ro because it is read-only or constant.", "VariableNotWritable", _UNAUTHORIZED),
        ("Cannot remove variable ro because it is constant or read-only. If the variable is read-only, try the "
         "operation again specifying the Force option.", "VariableNotRemovable", _UNAUTHORIZED),
        ("Cannot remove variable co because it is constant or read-only. If the variable is read-only, try the "
         "operation again specifying the Force option.", "VariableNotRemovable", _UNAUTHORIZED),
        ("Cannot overwrite variable ro because it is read-only or constant.", "VariableNotWritable", _UNAUTHORIZED),
    ]


def test_remove_variable_takes_wildcards_include_and_exclude(ps):
    streams = ps("""
$testaa = 1; $testab = 2; $testb = 3; $other = 4
Remove-Variable testa* -Exclude testab
Remove-Variable nothing*
Remove-Variable testb, other -Include o*
"$testaa|$testab|$testb|$other"
""")
    assert streams.out == ["|2|3|"]
    assert streams.all_errors == []  # a wildcard that matches nothing is no error


def test_an_option_outside_the_subset_is_refused_not_ignored(ps):
    streams = ps("try { Set-Variable -Name p -Value 1 -Option Private } catch { $_.FullyQualifiedErrorId }; "
                 "try { Set-Variable -Name v -Value 1 -Visibility Private } catch { $_.FullyQualifiedErrorId }; "
                 "Set-Variable -Name shown -Value 1 -Visibility Public; $shown")
    assert streams.out == ["LabUnsupportedVariableOption,Microsoft.PowerShell.Commands.SetVariableCommand",
                           "LabUnsupportedVariableVisibility,Microsoft.PowerShell.Commands.SetVariableCommand", 1]


def test_reset_runspace_state_forgets_variable_options(engine):
    # ResetRunspaceState gives the runspace a new runspace's variables: a Constant one a script left is gone
    from tests.lab import pwsh
    from tests.unit.lab.conftest import RecordingStreams
    runspace = pwsh.Runspace("C:\\Users\\vagrant\\Documents", 4242)
    engine.run_powershell("Set-Variable -Name kept -Value 1 -Option Constant -Scope Global", [], iter([]),
                          RecordingStreams(), runspace=runspace)
    streams = RecordingStreams()
    engine.run_powershell("$global:kept = 'new'", [], iter([]), streams, runspace=runspace)
    assert [e.fq_error_id for e in streams.all_errors] == ["VariableNotWritable"]
    runspace.reset()
    streams = RecordingStreams()
    engine.run_powershell("$global:kept = 'new'; $global:kept", [], iter([]), streams, runspace=runspace)
    assert streams.out == ["new"] and streams.all_errors == []


def test_an_advanced_function_called_with_whatif_passes_it_to_shouldprocess_and_the_cmdlets_it_calls(ps, root):
    (root / "keep.txt").write_text("x")
    streams = ps("""
function Clear-Things {
    [CmdletBinding(SupportsShouldProcess)] param()
    if ($PSCmdlet.ShouldProcess('things', 'Clear')) { 'cleared' }
    Remove-Item -LiteralPath C:\\keep.txt
    $WhatIfPreference
}
Clear-Things -WhatIf
Clear-Things -WhatIf:$false
""")
    assert streams.out == [True, "cleared", False]
    assert not (root / "keep.txt").exists()  # only the second call removed it
    assert [h[0] for h in streams.host] == ['What if: Performing the operation "Clear" on target "things".',
                                           'What if: Performing the operation "Remove File" on target "C:\\keep.txt".']


def test_whatif_is_refused_by_a_cmdlet_that_does_not_support_shouldprocess(ps):
    [error] = ps("Get-Item C:\\ -WhatIf").all_errors
    assert error.message == "A parameter cannot be found that matches parameter name 'WhatIf'."
def test_get_service_returns_the_hosts_services_in_windows_table_view(ps):
    # the lines Windows PowerShell 5.1 printed for pypsrp's execute_ps (recorded: test_client_execute_ps)
    out = ps('$serv = Get-Service -Name winrm; $serv.Name; "$($serv.Status)"; $serv | Out-String -Stream').out
    assert out == ["winrm", "Running", "", "Status   Name               DisplayName" + " " * 27,
                   "------   ----               -----------" + " " * 27,
                   "Running  winrm              Windows Remote Management (WS-Manag...", "", ""]


def test_get_service_of_an_unknown_name_is_windows_error(ps):
    (err,) = ps("Get-Service -Name nosuchservice").errors
    assert err.message == "Cannot find any service with service name 'nosuchservice'."
    assert err.fq_error_id == "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"


def test_registry_property_cmdlets_act_on_the_values_a_key_has_and_name_each_missing_one(ps):
    streams = ps(r"""
New-Item -Path HKCU:\Software\LabTest | Out-Null
New-ItemProperty -Path HKCU:\Software\LabTest -Name One -Value 1 -PropertyType DWord | Out-Null
Set-ItemProperty -Path HKCU:\Software\LabTest -Name Two -Value x
Get-ItemPropertyValue -Path HKCU:\Software\LabTest -Name one, nope
(Get-ItemProperty -Path HKCU:\Software\LabTest -Name two, nope).Two
Remove-ItemProperty -Path HKCU:\Software\LabTest -Name One, Nope
Remove-ItemProperty -Path HKCU:\Software\LabTest -Name Two -WhatIf
(Get-Item HKCU:\Software\LabTest).Property
Get-ItemPropertyValue -Path HKCU:\Software\Missing -Name x
""")
    assert streams.out == [1, "x", "Two"]
    missing = "Property {} does not exist at path HKEY_CURRENT_USER\\Software\\LabTest."
    assert [(e.message, e.fq_error_id.split(",")[-1]) for e in streams.all_errors] == [
        (missing.format("nope"), "Microsoft.PowerShell.Commands.GetItemPropertyValueCommand"),
        (missing.format("nope"), "Microsoft.PowerShell.Commands.GetItemPropertyCommand"),
        (missing.format("Nope"), "Microsoft.PowerShell.Commands.RemoveItemPropertyCommand"),
        ("Cannot find path 'HKCU:\\Software\\Missing' because it does not exist.",
         "Microsoft.PowerShell.Commands.GetItemPropertyValueCommand"),
    ]
    assert streams.host == [('What if: Performing the operation "Remove Property" on target '
                             '"Item: HKEY_CURRENT_USER\\Software\\LabTest Property: Two".', True, False)]


def test_sids_and_account_names_translate_into_each_other_and_compare_ignoring_case(ps):
    streams = ps(r"""
$sid = New-Object System.Security.Principal.SecurityIdentifier 'S-1-5-32-544'
$account = New-Object System.Security.Principal.NTAccount 'BUILTIN\Administrators'
$sid.Translate([System.Security.Principal.NTAccount]).Value
$account.Translate([System.Security.Principal.SecurityIdentifier]).Value
$sid.Translate([System.Security.Principal.SecurityIdentifier]).Equals($sid)
$account.Equals((New-Object System.Security.Principal.NTAccount 'builtin\administrators'))
$sid.Equals($account)
"$sid|$account"
(New-Object System.Security.Principal.NTAccount 'nobody').Translate([System.Security.Principal.SecurityIdentifier])
""")
    # .NET's NTAccount and SecurityIdentifier equality is OrdinalIgnoreCase on the value, and only within one type
    assert streams.out == ["BUILTIN\\Administrators", "S-1-5-32-544", True, True, False,
                           "S-1-5-32-544|BUILTIN\\Administrators"]
    [error] = streams.all_errors
    assert error.fq_error_id == "IdentityNotMappedException"
    assert error.message.endswith('"Some or all identity references could not be translated."')


def test_hashtable_keys_stay_case_insensitive_through_every_way_a_key_is_added_or_removed(ps):
    # the first spelling of a key is kept; .Remove, .Clear, a re-add and a big table all find keys by any case
    out = ps('$h = @{ Path = 1 }; $h["PATH"] = 2; $h.Keys; $h["path"]; $h.Remove("pATh"); $h.Count; '
             '$h["PATH"] = 3; $h.Keys; $h.ContainsKey("path"); $h.Clear(); $h.ContainsKey("PATH"); '
             '$big = @{}; foreach ($i in 1..300) { $big["Key$i"] = $i }; foreach ($i in 1..300) { $big["KEY$i"] += 1 }; '
             '$big.Count; $big["key300"]; ($big.Keys | Select-Object -First 1)').out
    assert out == ["Path", 2, 0, "PATH", True, False, 300, 301, "Key1"]


def test_hashtable_index_follows_dict_methods_called_past_it():
    from tests.lab.pwsh.values import Hashtable

    h = Hashtable()
    h["Name"] = 1
    dict.__setitem__(h, "Other", 2)  # past the index: the next lookup rebuilds it
    assert h["OTHER"] == 2 and "other" in h
    dict.pop(h, "Name")  # past the index: the table is smaller than its index, which is rebuilt
    assert "name" not in h and h["NAME"] is None
    h["Third"] = 3
    h.update({"OTHER": 20, "new": 4})
    assert dict(h) == {"Other": 20, "Third": 3, "new": 4}
    assert h.setdefault("NEW", 9) == 4 and h.pop("THIRD") == 3 and h.popitem() == ("new", 4)
    del h["other"]
    assert len(h) == 0 and "Other" not in h
