"""Session cmdlets: Get-Command, Invoke-Expression and the variable cmdlets (Get/Set/Remove/Clear-Variable)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, lookup_cmdlet
from tests.lab.pwsh.errors import CMD_NOT_FOUND, parse_error_record, PSError, UNAUTHORIZED, VARIABLE_NOT_WRITABLE
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


def _matches(patterns: object, name: str) -> bool:
    return any(re.fullmatch(wildcard_regex(to_str(p)), name, re.IGNORECASE) for p in as_list(patterns))


def _named_variables(cmd: Cmdlet, action: str) -> Iterator[tuple[Scope, str, str]]:
    """(scope holding it, lower-case name, name as given) of each -Name variable the user lets `action` touch,
    as the variable cmdlets find them (VariableCommandBase.GetMatchingVariables): a name with wildcards matches
    the variables -Scope holds (or that the current scope sees, inner ones hiding outer ones) and may match
    none; a name without is a VariableNotFound error when missing. -Include and -Exclude filter both."""
    only = _scope(cmd)
    for name in as_list(cmd.p.get("Name")):
        text = to_str(name)
        if any(ch in text for ch in "*?["):
            visible = only.vars if only is not None else _visible(cmd)
            found = [(only if only is not None else cmd.rt.scope.find(n), n, n) for n in sorted(visible)
                     if _matches(text, n)]
        else:
            low = text.lower()
            holder = only if only is not None and low in only.vars else (cmd.rt.scope.find(low) if only is None else None)
            if holder is None:
                cmd.error(f"Cannot find a variable with the name '{text}'.", "VariableNotFound", target=text)
                continue
            found = [(holder, low, text)]
        for holder, low, shown in found:
            if holder is None or ("Include" in cmd.p and not _matches(cmd.p["Include"], low)):
                continue
            if "Exclude" in cmd.p and _matches(cmd.p["Exclude"], low):
                continue
            if cmd.should_process(f"Name: {shown}", action):
                yield holder, low, shown


def _protected(cmd: Cmdlet, holder: Scope, low: str, name: str, verb: str) -> bool:
    """A Constant variable, or a ReadOnly one without -Force: the cmdlet's error, and True (Remove-Variable and
    Clear-Variable's -Force: "Even using the Force parameter, the cmdlet cannot remove a constant")."""
    if not holder.protected(low, bool(cmd.p.get("Force"))):
        return False
    if verb == "remove":
        cmd.error(f"Cannot remove variable {name} because it is constant or read-only. If the variable is read-only, "
                  "try the operation again specifying the Force option.", "VariableNotRemovable", "WriteError",
                  UNAUTHORIZED, target=name)
    else:
        cmd.error(VARIABLE_NOT_WRITABLE.format(name), "VariableNotWritable", "WriteError", UNAUTHORIZED, target=name)
    return True


# ScopedItemOptions the lab models (Set-Variable -Option); Private and AllScope change name resolution and are
# outside its subset
_OPTIONS = {"none": None, "readonly": "ReadOnly", "constant": "Constant"}


def _options(cmd: Cmdlet) -> tuple[bool, str | None]:
    """(-Option given, the option it sets: None, "ReadOnly" or "Constant")."""
    if "Option" not in cmd.p:
        return False, None
    words = [w.strip().lower() for item in as_list(cmd.p["Option"]) for w in to_str(item).split(",") if w.strip()]
    unknown = [w for w in words if w not in _OPTIONS]
    if unknown:
        raise cmd.terminate(f"The variable option '{unknown[0]}' is outside the lab engine's subset (it models None, "
                            "ReadOnly and Constant).", "LabUnsupportedVariableOption", "NotImplemented")
    chosen = {_OPTIONS[w] for w in words} - {None}
    return True, "Constant" if "Constant" in chosen else "ReadOnly" if chosen else None


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
        if self.p.get("ValueOnly"):
            self.emit(value)
            return
        holder = _scope(self) or self.rt.scope.find(name.lower())
        option = holder.options.get(name.lower()) if holder is not None else None
        self.emit(PSObject({"Name": name, "Value": value, "Options": option or "None"}))


@cmdlet("Set-Variable", "sv", positional=("Name", "Value"), params=("Scope", "Option", "Description", "Visibility"),
        switches=("PassThru", "Force"), should_process=True)
class SetVariable(Cmdlet):
    """Sets the variable when it runs with its -Value, or at the end with the pipeline input it received (so a
    Set-Variable that gets no input still sets its -Value, as SetVariableCommand.EndProcessing does)."""

    def begin(self) -> None:
        self.done = False
        self.received: list[object] = []
        self.given = "Value" in self.p  # a Set-Variable with no value keeps an existing variable's

    def process(self, item: object) -> None:
        if item is not NO_INPUT and "Value" not in self.p:
            self.received.append(item)
            self.given = True
            return
        self._set(self.p.get("Value"))

    def end(self) -> None:
        if not self.done:
            self._set(self.p.get("Value") if "Value" in self.p or not self.received else
                      self.received[0] if len(self.received) == 1 else self.received)

    def _set(self, value: object) -> None:
        """SetVariableCommand: a Constant variable is never written, a ReadOnly one only with -Force, and an
        existing variable cannot be made Constant; -Option changes an existing variable's options."""
        self.done = True
        name = to_str(self.p.get("Name"))
        if not self.should_process(f"Name: {name} Value: {to_str(value)}", "Set variable"):
            return
        set_option, option = _options(self)
        if to_str(self.p.get("Visibility", "Public")).lower() != "public":
            raise self.terminate("A Private variable is outside the lab engine's subset (its visibility is not "
                                 "modelled).", "LabUnsupportedVariableVisibility", "NotImplemented")
        holder = self.named_scope(self.p["Scope"]) if "Scope" in self.p else self.rt.scope
        low = name.lower()
        if low in holder.vars:
            if _protected(self, holder, low, name, "set"):
                return
            if option == "Constant":
                self.error(f"Existing variable {name} cannot be made constant. Variables can be made constant only "
                           "at creation time.", "VariableCannotBeMadeConstant", "WriteError", UNAUTHORIZED, target=name)
                return
        if self.given or low not in holder.vars:
            scope = to_str(self.p["Scope"]).lower() if "Scope" in self.p else None
            if scope in ("global", "script"):
                self.rt.set_var(name, value, scope, force=True)
            elif holder is self.rt.scope:
                self.rt.set_var(name, value, force=True)
            else:  # a numbered scope
                holder.vars[low] = value
        if set_option:
            if option is None:
                holder.options.pop(low, None)
            else:
                holder.options[low] = option


@cmdlet("Remove-Variable", "rv", positional=("Name",), params=("Scope", "Exclude", "Include"), switches=("Force",),
        should_process=True)
class RemoveVariable(Cmdlet):
    def end(self) -> None:
        for holder, low, name in _named_variables(self, "Remove variable"):
            if not _protected(self, holder, low, name, "remove"):
                del holder.vars[low]
                holder.options.pop(low, None)


@cmdlet("Clear-Variable", "clv", positional=("Name",), params=("Scope", "Exclude", "Include"),
        switches=("Force", "PassThru"), should_process=True)
class ClearVariable(Cmdlet):
    def end(self) -> None:
        for holder, low, name in _named_variables(self, "Clear variable"):
            if not _protected(self, holder, low, name, "set"):
                holder.vars[low] = None
