"""What one runspace keeps from one pipeline to the next, and what ResetRunspaceState puts back.

A Runspace Pool's process holds one or more runspaces; a pipeline runs in one of them, and PowerShell
keeps that runspace's session state between pipelines (about_Scopes, about_Automatic_Variables): the
global scope's variables, functions, aliases and drives, the current location, $Error, the history and
the imported modules. The process around it keeps its environment variables (HostContext.env).

`reset()` is PowerShell's `LocalRunspace.ResetRunspaceState` (InitialSessionState.ResetRunspaceState):
the global variable table is cleared and rebuilt with the built-in variables (so preference variables,
$LASTEXITCODE and every user variable go, and $Error is a new empty list), the location goes back to
where the process started, and the history starts again. Functions, aliases, drives and modules stay:
ResetRunspaceState does not touch them.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing as t

from tests.lab.pwsh.scopes import Scope

# The preference and built-in variables a new runspace's global scope starts with (Windows PowerShell 5.1).
BUILTIN_VARIABLES: dict[str, object] = {
    "true": True,
    "false": False,
    "null": None,
    "erroractionpreference": "Continue",
    "warningpreference": "Continue",
    "verbosepreference": "SilentlyContinue",
    "debugpreference": "SilentlyContinue",
    "progresspreference": "Continue",
    "informationpreference": "SilentlyContinue",
    "confirmpreference": "High",
    "whatifpreference": False,
    "ofs": " ",
    "pshome": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
    "shellid": "Microsoft.PowerShell",
    "nestedpromptlevel": 0,
    "maximumfunctioncount": 4096,
    "maximumhistorycount": 4096,
}


# An imported script module's own cost in its process beyond its functions' text (its PSModuleInfo,
# session state and compiled script blocks); an estimate, the lab loads no assemblies.
MODULE_OVERHEAD = 256 * 1024


@dataclasses.dataclass
class HistoryEntry:
    """One Get-History entry (Microsoft.PowerShell.Commands.HistoryInfo)."""

    Id: int
    CommandLine: str
    ExecutionStatus: str
    StartExecutionTime: datetime.datetime
    EndExecutionTime: datetime.datetime

    ps_type = "Microsoft.PowerShell.Commands.HistoryInfo"

    def ps_tostring(self) -> str:
        return self.CommandLine


@dataclasses.dataclass
class Module:
    """An imported script module: its name, where it came from and the functions it exports."""

    Name: str
    Path: str
    functions: dict[str, object]  # lower-case name -> ScriptBlock
    ModuleType: str = "Script"

    ps_type = "System.Management.Automation.PSModuleInfo"

    @property
    def ExportedFunctions(self) -> list[str]:
        return sorted(self.functions)

    def ps_tostring(self) -> str:
        return self.Name


# What a value costs the process that holds it, as .NET lays it out: UTF-16 strings, one byte per byte[]
# element, a reference and a small header per array element or hashtable entry (bounded walk: collections
# deeper than _SIZE_DEPTH or longer than _SIZE_SAMPLE count by their first elements).
_OBJECT_OVERHEAD = 24
_SIZE_DEPTH = 4
_SIZE_SAMPLE = 4096


def value_size(value: object, depth: int = 0) -> int:
    """An estimate of the bytes a value holds in a .NET process."""
    if value is None or isinstance(value, (bool, int, float)):
        return 8
    if isinstance(value, str):
        return _OBJECT_OVERHEAD + 2 * len(value)
    if isinstance(value, (bytes, bytearray)):
        return _OBJECT_OVERHEAD + len(value)
    if depth >= _SIZE_DEPTH:
        return _OBJECT_OVERHEAD
    if isinstance(value, dict):
        items = list(value.items())
        sample = items[:_SIZE_SAMPLE]
        each = sum(value_size(k, depth + 1) + value_size(v, depth + 1) + 16 for k, v in sample)
        return _OBJECT_OVERHEAD + (each * len(items) // len(sample) if sample else 0)
    if isinstance(value, (list, tuple)):
        sample = list(value[:_SIZE_SAMPLE])
        each = sum(value_size(v, depth + 1) + 8 for v in sample)
        return _OBJECT_OVERHEAD + (each * len(value) // len(sample) if sample else 0)
    props = getattr(value, "props", None)  # a PSCustomObject
    if isinstance(props, dict):
        return value_size(props, depth + 1)
    return _OBJECT_OVERHEAD


class Runspace:
    """One runspace's session state: it outlives the pipelines that run in it."""

    def __init__(self, start_location: str, process_id: int) -> None:
        self.start_location = start_location  # the process' working directory when the runspace opened
        self.process_id = process_id
        self.global_scope = Scope(None)
        self.errors: list[object] = []
        self.cwd = start_location
        self.history: list[HistoryEntry] = []
        self.modules: dict[str, Module] = {}  # lower-case name -> module
        self.language_mode: str | None = None  # set by a script ($ExecutionContext.SessionState.LanguageMode)
        self.busy = False  # a pipeline runs in it (a nested pipeline may join)
        self.running: list[t.Any] = []  # the interpreters running in it: their local scopes are held too
        self._init_variables()

    def memory_bytes(self) -> int:
        """What this runspace holds: every variable of its global scope and of the scopes of running pipelines,
        and its modules' functions."""
        seen: set[int] = set()
        total = 0
        for top in [self.global_scope, *(run.scope for run in list(self.running))]:
            for scope in top.chain():
                if id(scope) in seen:
                    continue
                seen.add(id(scope))
                total += sum(value_size(v) for k, v in scope.vars.items() if k not in ("error",))
        total += sum(value_size(e.CommandLine) for e in self.history)
        for module in self.modules.values():
            total += MODULE_OVERHEAD + sum(2 * len(getattr(fn, "src", "")) for fn in module.functions.values())
        return total

    def _init_variables(self) -> None:
        g = self.global_scope.vars
        g.clear()
        self.global_scope.options.clear()
        g.update(BUILTIN_VARIABLES)
        self.errors = []
        g["error"] = self.errors
        g["pid"] = self.process_id
        g["lastexitcode"] = None

    def reset(self) -> None:
        """ResetRunspaceState: variables, $Error, location and history back to a new runspace's; the rest stays."""
        self._init_variables()
        self.cwd = self.start_location
        self.history = []

    def add_history(self, command_line: str, status: str, started: datetime.datetime,
                    ended: datetime.datetime) -> None:
        """A pipeline the client asked to add to the history (AddToHistory in its CREATE_PIPELINE)."""
        next_id = self.history[-1].Id + 1 if self.history else 1
        self.history.append(HistoryEntry(next_id, command_line, status, started, ended))

    def find_module_function(self, name: str) -> t.Any:
        for module in reversed(list(self.modules.values())):
            if name in module.functions:
                return module.functions[name]
        return None
