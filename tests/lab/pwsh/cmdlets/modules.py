"""Module and session-shape cmdlets: New-Module, Import-Module, Export-ModuleMember, Get-Module, Remove-Module,
the alias cmdlets (New-Alias, Set-Alias, Get-Alias) and Set-StrictMode.

A module has its own scope under the runspace's global scope (about_Modules, about_Scopes): its functions
run below that scope, not their caller's, and see its variables as $script:. New-Module runs the script
block in that scope and imports what it exports into the caller's scope; a dynamic module exports every
function unless Export-ModuleMember names them. Import-Module -Scope Global puts them in the global scope.
The lab host's built-in modules (Microsoft.PowerShell.Management, .Utility, .Security, .Core) import
without effect: their cmdlets are the engine's own; any other module name is not found, as on a host
without it.
"""

from __future__ import annotations

import fnmatch

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.values import as_list, NO_INPUT, PSObject, ScriptBlock, to_str

BUILTIN_MODULES = ("Microsoft.PowerShell.Management", "Microsoft.PowerShell.Utility", "Microsoft.PowerShell.Security",
                   "Microsoft.PowerShell.Core")


class ModuleInfo:
    """A loaded module: its scope and what it exports."""

    ps_type = "System.Management.Automation.PSModuleInfo"

    def __init__(self, name: str, scope: Scope, module_type: str = "Script") -> None:
        self.Name = name
        self.scope = scope
        self.ModuleType = module_type
        self.Path = ""
        self.Version = "0.0"
        self.export_functions: list[str] | None = None  # None: everything (no Export-ModuleMember ran)
        self.export_aliases: list[str] | None = None
        self.export_variables: list[str] = []

    def ps_tostring(self) -> str:
        return self.Name

    def exported_functions(self) -> dict[str, object]:
        funcs = {k: v for k, v in self.scope.funcs.items() if isinstance(v, ScriptBlock)}
        if self.export_functions is None:
            return funcs
        return {k: v for k, v in funcs.items() if any(fnmatch.fnmatch(k, p.lower()) for p in self.export_functions)}

    def exported_aliases(self) -> dict[str, str]:
        if self.export_aliases is None:
            return {}
        return {k: v for k, v in self.scope.aliases.items()
                if any(fnmatch.fnmatch(k, p.lower()) for p in self.export_aliases)}

    def ps_get(self, name: str) -> object:
        low = name.lower()
        if low in ("exportedfunctions", "exportedcommands"):
            return {k: v for k, v in self.exported_functions().items()}
        if low == "exportedaliases":
            return dict(self.exported_aliases())
        raise KeyError(name)

    def import_into(self, target: Scope) -> None:
        target.funcs.update(self.exported_functions())
        target.aliases.update(self.exported_aliases())
        for var in self.export_variables:
            if var in self.scope.vars:
                target.vars[var] = self.scope.vars[var]


def _loaded(rt: object) -> dict[str, ModuleInfo]:
    """The runspace's imported modules (Get-Module), kept in its global scope."""
    table = getattr(rt.global_scope, "modules", None)  # type: ignore[attr-defined]
    if table is None:
        table = {}
        rt.global_scope.modules = table  # type: ignore[attr-defined]
    return table  # type: ignore[no-any-return]


@cmdlet("New-Module", "nmo", positional=("ScriptBlock",), params=("Name", "ArgumentList", "Function", "Cmdlet"),
        switches=("AsCustomObject", "ReturnResult"), aliases={"args": "ArgumentList"})
class NewModule(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        sb = self.p.get("ScriptBlock")
        if not isinstance(sb, ScriptBlock):
            raise self.terminate("Cannot bind argument to parameter 'ScriptBlock' because it is null.",
                                 "ParameterArgumentValidationErrorNullNotAllowed")
        name = to_str(self.p.get("Name") or f"__DynamicModule_{id(sb):x}")
        module = ModuleInfo(name, Scope(rt.global_scope), "Dynamic")
        body = ScriptBlock(sb.body, sb.src, sb.file_name, sb.usings, module)
        cmd = ScriptCommand(rt, body, "", as_list(self.p.get("ArgumentList")), {}, new_scope=False)
        cmd.scope = module.scope
        results: list[object] = []
        cmd.sink = results.append
        saved = (rt.scope, rt.script_scope, rt.module)
        rt.scope, rt.script_scope, rt.module = module.scope, module.scope, module
        try:
            run_stage(cmd, None)
        finally:
            rt.scope, rt.script_scope, rt.module = saved
        if self.p.get("ReturnResult"):
            for r in results:
                self.emit(r)
            return
        module.import_into(rt.scope)
        self.emit(module)


@cmdlet("Import-Module", "ipmo", positional=("Name",), params=("ModuleInfo", "Scope", "Prefix", "Function",
                                                                "ArgumentList", "MinimumVersion", "RequiredVersion"),
        switches=("Force", "Global", "PassThru", "DisableNameChecking", "AsCustomObject"))
class ImportModule(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        for module in as_list(self.input_or(item, "Name") if item is not NO_INPUT or "Name" in self.p
                              else self.p.get("ModuleInfo")):
            if not isinstance(module, ModuleInfo):
                name = to_str(module)
                known = next((m for m in BUILTIN_MODULES if m.lower() == name.lower()), None)
                if known is None:
                    self.error(f"The specified module '{name}' was not loaded because no valid module file was found "
                               f"in any module directory.", "Modules_ModuleNotFound", "ResourceUnavailable",
                               "System.IO.FileNotFoundException", name)
                    continue
                module = ModuleInfo(known, Scope(rt.global_scope), "Manifest")
            scope = to_str(self.p.get("Scope", "")).lower()
            target = rt.global_scope if scope == "global" or self.p.get("Global") else rt.scope
            module.import_into(target)
            _loaded(rt)[module.Name.lower()] = module
            if self.p.get("PassThru"):
                self.emit(module)


@cmdlet("Export-ModuleMember", positional=("Function",), params=("Alias", "Variable", "Cmdlet"))
class ExportModuleMember(Cmdlet):
    def process(self, item: object) -> None:
        module = self.rt.module
        if not isinstance(module, ModuleInfo):
            raise self.terminate("The Export-ModuleMember cmdlet can only be called from inside a module.",
                                 "Modules_CanOnlyExecuteExportModuleMemberInsideAModule", "PermissionDenied",
                                 "System.InvalidOperationException")
        module.export_functions = (module.export_functions or []) + [to_str(f) for f in as_list(self.p.get("Function"))]
        if "Alias" in self.p:
            module.export_aliases = (module.export_aliases or []) + [to_str(a) for a in as_list(self.p["Alias"])]
        module.export_variables += [to_str(v).lower() for v in as_list(self.p.get("Variable"))]


@cmdlet("Get-Module", "gmo", positional=("Name",), switches=("ListAvailable", "All"))
class GetModule(Cmdlet):
    def process(self, item: object) -> None:
        patterns = [to_str(n).lower() for n in as_list(self.p.get("Name"))] or ["*"]
        if self.p.get("ListAvailable"):
            for name in BUILTIN_MODULES:
                if any(fnmatch.fnmatch(name.lower(), p) for p in patterns):
                    self.emit(ModuleInfo(name, Scope(None), "Manifest"))
            return
        for module in _loaded(self.rt).values():
            if any(fnmatch.fnmatch(module.Name.lower(), p) for p in patterns):
                self.emit(module)


@cmdlet("Remove-Module", "rmo", positional=("Name",), switches=("Force",), should_process=True)
class RemoveModule(Cmdlet):
    def process(self, item: object) -> None:
        for name in as_list(self.input_or(item, "Name")):
            key = (name.Name if isinstance(name, ModuleInfo) else to_str(name)).lower()
            if key in _loaded(self.rt) and not self.should_process(key, "Remove-Module"):
                continue
            module = _loaded(self.rt).pop(key, None)
            if module is not None:
                for fname in module.exported_functions():
                    self.rt.global_scope.funcs.pop(fname, None)


class _SetAlias(Cmdlet):
    must_be_new = False

    def process(self, item: object) -> None:
        rt = self.rt
        name = to_str(self.p.get("Name"))
        scope = to_str(self.p.get("Scope", "")).lower()
        target = rt.global_scope if scope == "global" else rt.script_scope if scope == "script" else rt.scope
        if self.must_be_new and rt.scope.find_alias(name.lower()) is not None and not self.p.get("Force"):
            self.error(f"The alias is not allowed, because an alias with the name '{name}' already exists.",
                       "AliasAlreadyExists", "ResourceExists", "System.Management.Automation.SessionStateException",
                       name)
            return
        value = to_str(self.p.get("Value"))
        if self.should_process(f"Name: {name} Value: {value}", "New alias" if self.must_be_new else "Set alias"):
            target.aliases[name.lower()] = value


@cmdlet("New-Alias", "nal", positional=("Name", "Value"), params=("Scope", "Description", "Option"),
        switches=("Force", "PassThru"), should_process=True)
class NewAlias(_SetAlias):
    must_be_new = True


@cmdlet("Set-Alias", "sal", positional=("Name", "Value"), params=("Scope", "Description", "Option"),
        switches=("Force", "PassThru"), should_process=True)
class SetAlias(_SetAlias):
    pass


@cmdlet("Get-Alias", "gal", positional=("Name",), params=("Scope", "Definition"))
class GetAlias(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        for name in as_list(self.p.get("Name")) or ["*"]:
            pattern = to_str(name).lower()
            found = False
            scope: Scope | None = rt.scope
            seen: set[str] = set()
            while scope is not None:
                for alias, target in scope.aliases.items():
                    if alias not in seen and fnmatch.fnmatch(alias, pattern):
                        seen.add(alias)
                        found = True
                        self.emit(PSObject({"Name": alias, "Definition": target, "CommandType": "Alias"}))
                scope = scope.parent
            if not found and not any(ch in pattern for ch in "*?"):
                self.error(f"Cannot find alias because alias '{to_str(name)}' does not exist.", "ItemNotFoundException",
                           target=to_str(name))


@cmdlet("Set-StrictMode", params=("Version",), switches=("Off",))
class SetStrictMode(Cmdlet):
    def process(self, item: object) -> None:
        if self.p.get("Off"):
            self.rt.scope.strict_version = 0
            return
        version = to_str(self.p.get("Version", "1")).lower()
        self.rt.scope.strict_version = 3 if version == "latest" else int(float(version)) if version else 1
