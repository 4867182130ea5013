"""Session state cmdlets: history, aliases, PS drives and script modules, each kept in the runspace as
Windows keeps it (tests/lab/pwsh/runspace.py) and scoped as about_Scopes says: an alias or drive made
without -Scope belongs to the scope the command runs in, so it is gone when a local-scope script ends.
"""

from __future__ import annotations

import re

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, CMDLETS
from tests.lab.pwsh.errors import ErrorRecord, PSError
from tests.lab.pwsh.files import win_full
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.operators import wildcard_regex
from tests.lab.pwsh.parser import parse, ParseError
from tests.lab.pwsh.runspace import Module
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.values import as_list, PSObject, ScriptBlock, to_str

# The drives a Windows PowerShell 5.1 session has before it makes any (Get-PSDrive on Server 2019).
PROVIDER_DRIVES = {
    "alias": "Alias", "c": "FileSystem", "cert": "Certificate", "env": "Environment", "function": "Function",
    "hkcu": "Registry", "hklm": "Registry", "variable": "Variable", "wsman": "WSMan",
}


def _matches(pattern: object, name: str) -> bool:
    return re.fullmatch(wildcard_regex(to_str(pattern)), name, re.IGNORECASE) is not None


# ---- history -----------------------------------------------------------------------------------------
@cmdlet("Get-History", "ghy", "h", "history", positional=("Id", "Count"))
class GetHistory(Cmdlet):
    def end(self) -> None:
        entries = list(self.rt.runspace.history)
        if "Id" in self.p:
            wanted = {self.rt.to_int(i) for i in as_list(self.p["Id"])}
            entries = [e for e in entries if e.Id in wanted]
        if "Count" in self.p:
            entries = entries[-self.rt.to_int(self.p["Count"]):]
        for e in entries:
            self.emit(PSObject({"Id": e.Id, "CommandLine": e.CommandLine, "ExecutionStatus": e.ExecutionStatus,
                                "StartExecutionTime": e.StartExecutionTime, "EndExecutionTime": e.EndExecutionTime}))


@cmdlet("Clear-History", "clhy", positional=("Id",), params=("Count",))
class ClearHistory(Cmdlet):
    def end(self) -> None:
        self.rt.runspace.history.clear()


# ---- aliases -----------------------------------------------------------------------------------------
def _alias_info(name: str, definition: str) -> PSObject:
    return PSObject({"Name": name, "Definition": definition, "CommandType": "Alias",
                     "DisplayName": f"{name} -> {definition}"})


@cmdlet("Set-Alias", "sal", positional=("Name", "Value"), params=("Scope", "Option", "Description"),
        switches=("PassThru", "Force"))
class SetAlias(Cmdlet):
    def end(self) -> None:
        name, value = to_str(self.p.get("Name")), to_str(self.p.get("Value"))
        self.named_scope(self.p.get("Scope")).aliases[name.lower()] = value
        if self.p.get("PassThru"):
            self.emit(_alias_info(name, value))


@cmdlet("New-Alias", "nal", positional=("Name", "Value"), params=("Scope", "Option", "Description"),
        switches=("PassThru", "Force"))
class NewAlias(Cmdlet):
    def end(self) -> None:
        name, value = to_str(self.p.get("Name")), to_str(self.p.get("Value"))
        scope = self.named_scope(self.p.get("Scope"))
        if not self.p.get("Force") and (name.lower() in scope.aliases or name.lower() in CMDLETS):
            self.error(f"The alias is not allowed, because an alias with the name '{name}' already exists.",
                       "AliasAlreadyExists", category="ResourceExists",
                       exc="System.Management.Automation.SessionStateUnauthorizedAccessException", target=name)
            return
        scope.aliases[name.lower()] = value
        if self.p.get("PassThru"):
            self.emit(_alias_info(name, value))


@cmdlet("Get-Alias", "gal", positional=("Name",), params=("Scope", "Definition"))
class GetAlias(Cmdlet):
    def end(self) -> None:
        found: dict[str, str] = {}
        for cls in {id(c): c for c in CMDLETS.values()}.values():
            for alias in cls.names[1:]:
                found.setdefault(alias.lower(), cls.names[0])
        scopes = [self.named_scope(self.p["Scope"])] if "Scope" in self.p else list(reversed(self.rt.scope.chain()))
        for scope in scopes:  # outermost first, so an inner scope's alias wins
            found.update(scope.aliases)
        names = as_list(self.p["Name"]) if "Name" in self.p else ["*"]
        for pattern in names:
            hits = sorted(n for n in found if _matches(pattern, n))
            if not hits and not any(ch in to_str(pattern) for ch in "*?["):
                self.error(f"This command cannot find a matching alias because an alias with the name "
                           f"'{to_str(pattern)}' does not exist.", "ItemNotFoundException", target=to_str(pattern))
            for n in hits:
                self.emit(_alias_info(n, found[n]))


# ---- PS drives ---------------------------------------------------------------------------------------
def _drive_info(name: str, root: str, provider: str = "FileSystem") -> PSObject:
    return PSObject({"Name": name, "Root": root, "Provider": provider, "CurrentLocation": ""})


@cmdlet("New-PSDrive", "mount", "ndr", positional=("Name", "PSProvider", "Root"), params=("Scope", "Description",
        "Credential"), switches=("Persist",))
class NewPSDrive(Cmdlet):
    def end(self) -> None:
        name = to_str(self.p.get("Name"))
        provider = to_str(self.p.get("PSProvider"))
        if provider.lower() not in ("filesystem", "microsoft.powershell.core\\filesystem"):
            raise self.terminate(f"The lab engine makes FileSystem drives only, not {provider!r} ones.",
                                 "LabProviderNotSupported", category="NotImplemented",
                                 exc="System.Management.Automation.ProviderNotFoundException")
        try:
            root = win_full(self.rt, self.p.get("Root"))
            exists = self.rt.host.fs.host_path(root, self.rt.cwd).is_dir()
        except PathOutsideRoot:
            exists = False
            root = to_str(self.p.get("Root"))
        if not exists:
            self.error(f'The specified drive root "{root}" either does not exist, or it is not a folder.',
                       "DriveRootError", category="ReadError", exc="System.IO.IOException", target=name)
            return
        scope = self.rt.global_scope if self.p.get("Persist") else self.named_scope(self.p.get("Scope"))
        if name.lower() in PROVIDER_DRIVES or self.rt.scope.find_drive(name.lower()) is not None:
            self.error(f"A drive with the name '{name}' already exists.", "DriveAlreadyExists",
                       category="ResourceExists", exc="System.Management.Automation.SessionStateException",
                       target=name)
            return
        scope.drives[name.lower()] = root
        self.emit(_drive_info(name, root))


@cmdlet("Get-PSDrive", "gdr", positional=("Name",), params=("PSProvider", "Scope", "LiteralName"))
class GetPSDrive(Cmdlet):
    def end(self) -> None:
        found = {n: ("C:\\" if n == "c" else "", p) for n, p in PROVIDER_DRIVES.items()}
        for scope in reversed(self.rt.scope.chain()):
            for n, root in scope.drives.items():
                found[n] = (root, "FileSystem")
        patterns = as_list(self.p.get("Name", self.p.get("LiteralName", "*")))
        for pattern in patterns:
            hits = sorted(n for n in found if _matches(pattern, n))
            if not hits:
                self.error(f"Cannot find drive. A drive with the name '{to_str(pattern)}' does not exist.",
                           "GetLocationNoMatchingDrive", category="ObjectNotFound",
                           exc="System.Management.Automation.DriveNotFoundException", target=to_str(pattern))
            for n in hits:
                self.emit(_drive_info(n if n not in ("c", "hkcu", "hklm") else n.upper(), *found[n]))


@cmdlet("Remove-PSDrive", "rdr", positional=("Name",), params=("PSProvider", "Scope", "LiteralName"),
        switches=("Force",))
class RemovePSDrive(Cmdlet):
    def end(self) -> None:
        for name in as_list(self.p.get("Name", self.p.get("LiteralName"))):
            low = to_str(name).lower()
            scopes = [self.named_scope(self.p["Scope"])] if "Scope" in self.p else self.rt.scope.chain()
            holder = next((s for s in scopes if low in s.drives), None)
            if holder is None:
                self.error(f"Cannot find drive. A drive with the name '{to_str(name)}' does not exist.",
                           "DriveNotFound", exc="System.Management.Automation.DriveNotFoundException",
                           target=to_str(name))
                continue
            del holder.drives[low]


# ---- script modules ----------------------------------------------------------------------------------
class ModuleScope(Scope):
    """The scope a script module's file runs in; Export-ModuleMember narrows what it exports."""

    def __init__(self, parent: Scope) -> None:
        super().__init__(parent)
        self.exports: set[str] | None = None


def _module_file(cmd: Cmdlet, name: str) -> str | None:
    """A module name or path as Import-Module finds it: a .psm1/.ps1 path, a folder, or <dir>\\<name>\\<name>.psm1
    under $env:PSModulePath."""
    fs, cwd = cmd.rt.host.fs, cmd.rt.cwd
    candidates: list[str] = []
    if "\\" in name or "/" in name or name.lower().endswith((".psm1", ".ps1")):
        full = win_full(cmd.rt, name)
        leaf = full.rstrip("\\").rsplit("\\", 1)[-1]
        candidates += [full, f"{full}\\{leaf}.psm1"]
    else:
        for folder in (cmd.rt.host.env_get("PSModulePath") or "").split(";"):
            if folder:
                candidates.append(f"{folder.rstrip(chr(92))}\\{name}\\{name}.psm1")
    for path in candidates:
        try:
            if fs.host_path(path, cwd).is_file():
                return path
        except PathOutsideRoot:
            continue
    return None


@cmdlet("Import-Module", "ipmo", positional=("Name",), params=("Prefix", "Function", "Scope", "ArgumentList",
        "MinimumVersion", "RequiredVersion"), switches=("Force", "PassThru", "Global", "DisableNameChecking"))
class ImportModule(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        for name in as_list(self.input_or(item, "Name")):
            text = to_str(name)
            path = _module_file(self, text)
            if path is None:
                self.error(f"The specified module '{text}' was not loaded because no valid module file was found in "
                           f"any module directory.", "Modules_ModuleNotFound", category="ResourceUnavailable",
                           exc="System.IO.FileNotFoundException", target=text)
                continue
            module_name = path.rsplit("\\", 1)[-1].rsplit(".", 1)[0]
            key = module_name.lower()
            if key in rt.runspace.modules and not self.p.get("Force"):
                if self.p.get("PassThru"):
                    self.emit(rt.runspace.modules[key])
                continue
            src = rt.host.fs.read_text(path, rt.cwd)
            try:
                body = parse(src)
            except ParseError as e:
                raise self.terminate(f"The module '{module_name}' could not be parsed: {e}", "LabModuleParseError")
            scope = ModuleScope(rt.global_scope)
            saved = rt.scope
            rt.scope = scope
            try:
                module_cmd = ScriptCommand(rt, ScriptBlock(body, src, path), path, list(as_list(
                    self.p.get("ArgumentList", []))), {}, new_scope=False, is_script=True)
                module_cmd.sink = lambda _v: None
                run_stage(module_cmd, None)
            finally:
                rt.scope = saved
            exported = {n: fn for n, fn in scope.funcs.items() if scope.exports is None or n in scope.exports}
            module = Module(module_name, path, exported)
            rt.runspace.modules[key] = module
            if self.p.get("PassThru"):
                self.emit(module)


@cmdlet("Export-ModuleMember", positional=("Function",), params=("Cmdlet", "Variable", "Alias"))
class ExportModuleMember(Cmdlet):
    def end(self) -> None:
        scope = next((s for s in self.rt.scope.chain() if isinstance(s, ModuleScope)), None)
        if scope is None:
            raise PSError(self.rt.fill(ErrorRecord(
                "The Export-ModuleMember cmdlet can only be called from inside a module.",
                category="PermissionDenied", fq_error_id="Modules_CanOnlyExecuteExportModuleMemberInsideAModule,"
                "Microsoft.PowerShell.Commands.ExportModuleMemberCommand",
                exception_type="System.InvalidOperationException", command_name=self.name)))
        scope.exports = (scope.exports or set()) | {to_str(f).lower() for f in as_list(self.p.get("Function", []))}


@cmdlet("Get-Module", "gmo", positional=("Name",), switches=("ListAvailable", "All", "Refresh"))
class GetModule(Cmdlet):
    def end(self) -> None:
        patterns = as_list(self.p.get("Name", "*"))
        for module in self.rt.runspace.modules.values():
            if any(_matches(p, module.Name) for p in patterns):
                self.emit(module)


@cmdlet("Remove-Module", "rmo", positional=("Name",), switches=("Force",))
class RemoveModule(Cmdlet):
    def process(self, item: object) -> None:
        for name in as_list(self.input_or(item, "Name")):
            key = name.Name.lower() if isinstance(name, Module) else to_str(name).lower()
            if self.rt.runspace.modules.pop(key, None) is None:
                self.error(f"No modules were removed. Verify that the specification of modules to remove is correct "
                           f"and those modules exist in the runspace.", "Modules_NoModulesRemoved",
                           category="ResourceUnavailable", exc="System.InvalidOperationException",
                           target=to_str(name))
