"""Session cmdlets: Get-Command, Invoke-Expression, Get-Variable and Set-Variable."""

from __future__ import annotations

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, lookup_cmdlet
from tests.lab.pwsh.errors import CMD_NOT_FOUND, parse_error_record, PSError
from tests.lab.pwsh.parser import parse, ParseError
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


@cmdlet("Get-Variable", "gv", positional=("Name",), params=("Scope",), switches=("ValueOnly",))
class GetVariable(Cmdlet):
    def process(self, item: object) -> None:
        name = to_str(self.p.get("Name"))
        if not self.rt.has_var(name):
            self.error(f"Cannot find a variable with the name '{name}'.", "VariableNotFound", target=name)
            return
        v = self.rt.get_var(name)
        self.emit(v if self.p.get("ValueOnly") else PSObject({"Name": name, "Value": v}))


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
