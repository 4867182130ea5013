"""Session cmdlets: Get-Command, Invoke-Expression and the variable cmdlets (Get/Set/Remove/Clear-Variable)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, lookup_cmdlet
from tests.lab.pwsh.errors import CMD_NOT_FOUND, parse_error_record, PSError
from tests.lab.pwsh.operators import wildcard_regex
from tests.lab.pwsh.parser import parse, ParseError
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import CommandInfo, run_stage, ScriptCommand
from tests.lab.pwsh.values import as_list, NO_INPUT, PSObject, ScriptBlock, to_str


def executable_path(base: str) -> str:
    """Where Windows keeps an executable the lab host has (powershell.exe lives in $PSHome)."""
    if base == "powershell":
        return "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
    return f"C:\\Windows\\system32\\{base}.exe"


@cmdlet("Get-Command", "gcm", positional=("Name",), params=("CommandType", "Module"), switches=("All", "ListImported"))
class GetCommand(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        for name in as_list(self.input_or(item, "Name")):
            n = to_str(name)
            fn = rt.scope.find_func(n.lower())
            if isinstance(fn, ScriptBlock):
                self.emit(CommandInfo(n, "Function", fn))
            elif lookup_cmdlet(n) is not None:
                cls = lookup_cmdlet(n)
                canon = cls.names[0]  # type: ignore[union-attr]
                self.emit(CommandInfo(canon, "Cmdlet" if canon.lower() == n.lower() else "Alias",
                                      source="Microsoft.PowerShell.Management"))
            elif rt.host.native_command(n) is not None:
                base = n.lower().rsplit("\\", 1)[-1].removesuffix(".exe")
                self.emit(CommandInfo(f"{base}.exe", "Application", source=executable_path(base)))
            else:
                self.error(CMD_NOT_FOUND.format(n), "CommandNotFoundException", "ObjectNotFound",
                           "System.Management.Automation.CommandNotFoundException", n)


@cmdlet("Invoke-Expression", "iex", positional=("Command",))
class InvokeExpression(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        text = to_str(self.input_or(item, "Command"))
        try:
            body = parse(text)
        except ParseError as e:
            raise PSError(parse_error_record(text, e)) from None
        cmd = ScriptCommand(rt, ScriptBlock(body, text), "", [], {}, new_scope=False)
        cmd.sink = self.sink
        run_stage(cmd, None)


def _scope(cmd: Cmdlet) -> Scope | None:
    """The scope -Scope names, or None to search from the current one."""
    return cmd.named_scope(cmd.p["Scope"]) if "Scope" in cmd.p else None


def _visible(cmd: Cmdlet) -> dict[str, object]:
    """The variables a name can reach from the current scope (inner ones hide outer ones), or in -Scope only."""
    only = _scope(cmd)
    scopes = [only] if only is not None else list(reversed(cmd.rt.scope.chain()))
    found: dict[str, object] = {}
    for scope in scopes:
        found.update(scope.vars)
    return found


def _named_variables(cmd: Cmdlet, action: str) -> Iterator[tuple[Scope, str]]:
    """(scope holding it, lower-case name) of each -Name variable the user lets `action` touch; a missing one
    is a VariableNotFound error (in -Scope only, or searched from the current scope)."""
    only = _scope(cmd)
    for name in as_list(cmd.p.get("Name")):
        low = to_str(name).lower()
        holder = only if only is not None and low in only.vars else (cmd.rt.scope.find(low) if only is None else None)
        if holder is None:
            cmd.error(f"Cannot find a variable with the name '{to_str(name)}'.", "VariableNotFound",
                      target=to_str(name))
        elif cmd.should_process(f"Name: {to_str(name)}", action):
            yield holder, low


@cmdlet("Get-Variable", "gv", positional=("Name",), params=("Scope", "Exclude", "Include"), switches=("ValueOnly",))
class GetVariable(Cmdlet):
    def end(self) -> None:
        found = _visible(self)
        for pattern in as_list(self.p.get("Name", "*")):
            text = to_str(pattern)
            if not any(ch in text for ch in "*?["):
                low = text.lower()
                if low not in found and not (low in ("?", "pwd") and "Scope" not in self.p):
                    self.error(f"Cannot find a variable with the name '{text}'.", "VariableNotFound", target=text)
                    continue
                self._emit(text, found[low] if low in found else self.rt.get_var(text))
                continue
            rx = re.compile(wildcard_regex(text), re.IGNORECASE)
            for name in sorted(n for n in found if rx.fullmatch(n)):
                self._emit(name, found[name])

    def _emit(self, name: str, value: object) -> None:
        self.emit(value if self.p.get("ValueOnly") else PSObject({"Name": name, "Value": value}))


@cmdlet("Set-Variable", "sv", positional=("Name", "Value"), params=("Scope", "Option", "Description", "Visibility"),
        switches=("PassThru", "Force"), should_process=True)
class SetVariable(Cmdlet):
    """Sets the variable when it runs with its -Value, or at the end with the pipeline input it received (so a
    Set-Variable that gets no input still sets its -Value, as SetVariableCommand.EndProcessing does)."""

    def begin(self) -> None:
        self.done = False
        self.received: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT and "Value" not in self.p:
            self.received.append(item)
            return
        self._set(self.p.get("Value"))

    def end(self) -> None:
        if not self.done:
            self._set(self.p.get("Value") if "Value" in self.p or not self.received else
                      self.received[0] if len(self.received) == 1 else self.received)

    def _set(self, value: object) -> None:
        self.done = True
        name = to_str(self.p.get("Name"))
        if not self.should_process(f"Name: {name} Value: {to_str(value)}", "Set variable"):
            return
        scope = to_str(self.p["Scope"]).lower() if "Scope" in self.p else None
        self.rt.set_var(to_str(self.p.get("Name")), value, scope)


@cmdlet("Remove-Variable", "rv", positional=("Name",), params=("Scope", "Exclude", "Include"), switches=("Force",),
        should_process=True)
class RemoveVariable(Cmdlet):
    def end(self) -> None:
        for holder, name in _named_variables(self, "Remove variable"):
            del holder.vars[name]


@cmdlet("Clear-Variable", "clv", positional=("Name",), params=("Scope", "Exclude", "Include"),
        switches=("Force", "PassThru"), should_process=True)
class ClearVariable(Cmdlet):
    def end(self) -> None:
        for holder, name in _named_variables(self, "Clear variable"):
            holder.vars[name] = None
