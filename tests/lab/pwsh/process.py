"""What belongs to the Windows process a PowerShell run lives in, not to the run: the console's writers and
encodings, the C# types compiled into it and the type accelerators registered in it, and the machine it runs on.

On Windows every runspace of a process (a Runspace Pool's wsmprovhost.exe, powershell.exe and the nested
runspaces module_wrapper.ps1 creates) shares these: an assembly loaded by Add-Type stays loaded for the
process's life, `[Console]::SetOut` redirects every runspace's Console.Out. One ProcessState per lab
Engine (one per WinRS shell or Runspace Pool) stands for that process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TextWriterObj:
    """A System.IO.TextWriter: Console.Out, a StringWriter over a StringBuilder, or TextWriter.Null."""

    ps_type = "System.IO.TextWriter"

    def __init__(self, write: Callable[[str], None] | None, kind: str = "System.IO.TextWriter") -> None:
        self._write = write
        self.ps_type = kind
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            from tests.lab.pwsh.errors import method_exception
            raise method_exception("Write", 1, "Cannot write to a closed TextWriter.")
        if self._write is not None:
            self._write(text)

    def ps_get(self, name: str) -> object:
        if name.lower() == "newline":
            return "\r\n"
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        from tests.lab.pwsh.values import to_str
        low = name.lower()
        if low == "write":
            self.write("".join(to_str(a) for a in args[:1]))
            return None
        if low == "writeline":
            self.write((to_str(args[0]) if args else "") + "\r\n")
            return None
        if low in ("flush",):
            return None
        if low in ("dispose", "close"):
            self.closed = True
            return None
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


class ProcessState:
    """The process-wide state of one lab Engine (see the module docstring)."""

    def __init__(self, *, has_console: bool = False, machine: Any = None) -> None:
        self.types: dict[str, Any] = {}            # lower-case full name -> DotNetType (compiled C#)
        self.accelerators: dict[str, str] = {}     # lower-case accelerator -> full name
        self.compiled_sources: dict[str, Any] = {}  # SHA-256 of each C# source compiled -> the types it defined
        self.has_console = has_console             # powershell.exe has one; wsmprovhost.exe (PSRP) has none
        self.stdout: Callable[[str], None] | None = None
        self.console_out = TextWriterObj(self._to_stdout, "System.IO.SyncTextWriter")
        self.output_encoding = "IBM437"             # Console.OutputEncoding: the OEM code page of en-US Windows
        self.input_encoding = "IBM437"
        self.machine = machine                      # tests/lab/_machine.py Machine, or None when the lab has none
        self.event_log: list[dict[str, object]] = []  # the Application log when there is no machine to keep it
        self.handles: Any = None  # kernel objects by handle value (tests/lab/pwsh/kernel.py), shared with children

    def _to_stdout(self, text: str) -> None:
        if self.stdout is not None:
            self.stdout(text)
