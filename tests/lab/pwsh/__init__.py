"""The lab host's PowerShell engine: a documented subset of Windows PowerShell 5.1 (docs/lab-engine.md).

The package is laid out in rooms, each importing only the rooms below it:

    limits       the bounds a script meets (read as limits.NAME so tests can lower them)
    parser/      source text -> AST (scanner, statements, pipelines, expressions)
    values       PowerShell values and to_str/to_bool      errors     ErrorRecord, PSError, signals
    streams      Streams, ErrorInfo (what leaves a run)    scopes     variable and function scopes
    host         HostContext: names, environment, C:\\, the native commands and script emulations it has
    interpreter  the Interpreter protocol: what the rooms below may ask of the running interpreter
    display      values as Out-String text                 dotnet_objects  Guid, Encoding, Exception...
    conversions  casts, type names, -f formats             operators  comparison, arithmetic, regex
    stages       pipeline stages, ScriptCommand's binding  files      FileInfo, FileStream, [IO.*] statics
    automatic    $Host, $ExecutionContext, $PSVersionTable statics    [Type]::Member, New-Object
    members      $obj.Member and $obj.Method()             cmdlets/   built-in cmdlets by noun
    natives      native commands as stages                 commands   a command name -> its stage
    runtime      Runtime, the interpreter itself

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
    FileSystem, HostContext, NativeCommandFn, NativeResult, PathOutsideRoot, ScriptEmulation,
)
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.natives import BUILTIN_NATIVE_COMMANDS
from tests.lab.pwsh.parser import Node, parse, ParseError
from tests.lab.pwsh.runtime import Runtime
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.streams import ErrorInfo, Streams
from tests.lab.pwsh.values import NO_INPUT, ScriptBlock, SWITCH_PRESENT, to_str

__all__ = [
    "BUILTIN_NATIVE_COMMANDS", "BreakSignal", "ContinueSignal", "ErrorInfo", "ExitScript", "FileSystem", "HostContext",
    "Interpreter", "NO_INPUT", "NativeCommandFn", "NativeResult", "Node", "PSError", "ParseError", "PathOutsideRoot",
    "ReturnSignal", "Runtime", "SWITCH_PRESENT", "ScriptBlock", "ScriptCommand", "ScriptEmulation", "Streams",
    "display_value", "format_for_display", "from_json", "limits", "parse", "parse_error_record", "render_error_text",
    "resolve_command", "run_stage", "runtime_error", "to_str",
]
