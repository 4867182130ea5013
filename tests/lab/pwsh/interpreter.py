"""What the engine's rooms may ask of the interpreter that runs them.

Operators, members, .NET objects, pipeline stages, cmdlets and native commands are handed the
running interpreter (`rt`) instead of importing it: `Interpreter` is that interface, and
tests/lab/pwsh/runtime.py's `Runtime` is its one implementation. Keeping the rooms on this side of
it is what lets the package's imports point one way (tests/unit/lab/test_lab_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tests.lab.pwsh.errors import ErrorRecord, PSError
from tests.lab.pwsh.host import HostContext
from tests.lab.pwsh.parser import Node
from tests.lab.pwsh.runspace import Runspace
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.streams import Streams


class Interpreter(Protocol):
    """One run's interpreter state and the services the rooms call back into."""

    host: HostContext                # names, environment, file system, native commands
    streams: Streams                 # where output, errors, warnings and host text go
    runspace: Runspace               # the session state kept between pipelines (history, modules, ...)
    global_scope: Scope
    script_scope: Scope
    scope: Scope                     # the scope the running statement reads and writes
    cwd: str                         # the current location (Set-Location), a Windows path
    src: str                         # source text of the running script block (for positions)
    cur: tuple[int, int]             # span of the running statement or command in `src`
    call_depth: int                  # nested calls so far, bounded by limits.MAX_CALL_DEPTH
    last_ok: bool                    # $?
    usings: list[str]                # `using namespace` lines of the running script (type name resolution)
    module: object                   # the module whose function is running (its scope is $script:), or None

    def fill(self, record: ErrorRecord) -> ErrorRecord:
        """Gives a record the position of the running statement, unless it has one."""

    def write_error(self, record: ErrorRecord, action: str | None = None) -> None:
        """A non-terminating error, handled as $ErrorActionPreference (or -ErrorAction) says."""

    def warn(self, message: str, action: str | None = None) -> None:
        """A warning, handled as $WarningPreference (or -WarningAction) says."""

    def get_var(self, name: str, scope: str | None = None) -> object:
        """A variable's value as `$name` (or `$scope:name`) reads it."""

    def has_var(self, name: str) -> bool:
        """Whether a variable of that name is visible from the current scope."""

    def set_var(self, name: str, value: object, scope: str | None = None, local: bool = True) -> None:
        """Assigns a variable as `$name = value` (or `$scope:name = value`) does."""

    def eval(self, node: Node) -> object:
        """The value of an expression node."""

    def exec_stmts(self, node: Node, sink: Callable[[object], None]) -> None:
        """Runs a statement list, writing its output to sink."""

    def interp_str(self, v: object) -> str:
        """A value as an expandable string shows it (arrays joined by $OFS)."""

    def bound_error(self, what: str) -> PSError:
        """The error for a loop that ran past limits.MAX_LOOP_ITERATIONS."""

    def to_num(self, v: object) -> int | float:
        """A value as a number, or PowerShell's conversion error."""

    def to_int(self, v: object) -> int:
        """A value as an integer (.NET rounding), or PowerShell's conversion error."""

    def convert(self, v: object, type_name: str) -> object:
        """A value cast to a type, as `[type]value` does."""

    def new_runspace(self, streams: Any) -> Interpreter:
        """A nested runspace of the same process ([PowerShell]::Create()): own scopes and $Error, same host."""

    def stage_for(self, node: Node) -> Any:
        """The pipeline stage (tests/lab/pwsh/stages.py) a command node runs as, its arguments evaluated now."""
