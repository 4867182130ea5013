"""The lab host's PowerShell engine: a documented subset of Windows PowerShell 5.1 (docs/lab-engine.md).

Its rooms, each importing only rooms listed before it (tests/unit/lab/test_lab_imports.py):

    limits          the bounds a script meets (read as limits.NAME so tests can lower them)
    command_line    Windows command lines split as CommandLineToArgvW splits them
    parser/         source text -> AST: scanner, statements, pipelines, expressions
    values          PowerShell values, to_str/to_bool
    streams         Streams (where a run writes), ErrorInfo (an error as it leaves)
    errors          ErrorRecord, PSError, the break/continue/return/exit signals
    should_process  -WhatIf and ShouldProcess
    scopes          variable scopes
    process         ProcessState: what the runs of one process share (console, C# types, handles, machine)
    host            HostContext: names, environment, C:\\, native commands, the process
    runspace        what a runspace keeps between pipelines; ResetRunspaceState
    interpreter     Interpreter: what the rooms below ask of the running interpreter `rt`
    dotnet_types    the registry of .NET types the rooms below add (net/, kernel, wmi, csharp/, ...)
    display         values as Out-String text
    dotnet_objects  Guid, Encoding, StringBuilder, Type, Exception, SecureString
    conversions     casts, type names, -f formats
    language        Constrained Language Mode: core types and what CLM refuses
    operators       comparison, arithmetic and string operators
    stages          pipeline stages, ScriptCommand and its parameter binding
    files           FileInfo, FileStream, [IO.File]/[IO.Directory]/[IO.Path]
    automatic       $Host, $ExecutionContext, $PSVersionTable
    statics         [Type]::Member, [Type]::Method(), New-Object
    net/, kernel    .NET Framework types by namespace; kernel objects (events, pipes, processes)
    wmi, registry, config_drives   CIM classes, the Registry provider, WSMan:/Cert:
    steppable       steppable pipelines
    members         $obj.Member, $obj.Method()
    csharp/         the C# sources Ansible compiles, emulated by SHA-256 (registry.py and codedom.py come
                    before cmdlets/, whose Add-Type uses them; scmanager.py after, it uses the service cmdlets)
    cmdlets/        built-in cmdlets by noun; base.py: Cmdlet and @cmdlet
    natives         native commands as pipeline stages
    commands        a command name -> the stage that runs it
    nested_powershell  [PowerShell]::Create() runspaces
    runtime         Runtime, the interpreter

What the rest of the lab uses is exported here; `Engine` (tests/lab/_engine.py) builds a HostContext
and a Runtime per run.
"""

from __future__ import annotations

from tests.lab.pwsh import limits
from tests.lab.pwsh.cmdlets import from_json
from tests.lab.pwsh.commands import resolve_command
from tests.lab.pwsh.display import display_value, format_for_display, render_error_text
from tests.lab.pwsh.errors import (
    BreakSignal, ContinueSignal, ExitScript, parse_error_record, PSError, ReturnSignal, runtime_error,
)
from tests.lab.pwsh.host import (
    FileSystem, HostContext, NativeCommandFn, NativeResult, PathOutsideRoot,
)
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.natives import BUILTIN_NATIVE_COMMANDS
from tests.lab.pwsh.parser import Node, parse, ParseError
from tests.lab.pwsh.process import ProcessState
from tests.lab.pwsh.runspace import HistoryEntry, Module, Runspace
from tests.lab.pwsh.runtime import Runtime
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.streams import ErrorInfo, Streams
from tests.lab.pwsh.values import NO_INPUT, ScriptBlock, SWITCH_PRESENT, to_str

__all__ = [
    "BUILTIN_NATIVE_COMMANDS", "BreakSignal", "ContinueSignal", "ErrorInfo", "ExitScript", "FileSystem", "HostContext",
    "Interpreter", "NO_INPUT", "NativeCommandFn", "NativeResult", "Node", "PSError", "ParseError", "PathOutsideRoot",
    "HistoryEntry", "Module", "ProcessState", "ReturnSignal", "Runspace", "Runtime", "SWITCH_PRESENT", "ScriptBlock",
    "ScriptCommand", "Streams",
    "display_value", "format_for_display", "from_json", "limits", "parse", "parse_error_record", "render_error_text",
    "resolve_command", "run_stage", "runtime_error", "to_str",
]
