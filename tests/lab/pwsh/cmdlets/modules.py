"""Module cmdlets: New-Module, Import-Module, Export-ModuleMember, Get-Module, Remove-Module, and Set-StrictMode.

A module has its own scope under the runspace's global scope (about_Modules, about_Scopes): its functions
run below that scope, not their caller's, and see its variables as $script:. Import-Module loads a script
module (a .psm1/.ps1 path, a folder, or <dir>\\<name>\\<name>.psm1 under $env:PSModulePath) or takes a module
New-Module made, runs it in its own scope and makes what it exports part of the runspace's session state
(tests/lab/pwsh/runspace.py: it outlives a local-scope script, Remove-Module takes it away). New-Module runs
the script block in a new module's scope and imports what it exports into the caller's scope; a module
exports every function unless Export-ModuleMember names them. The lab host's built-in modules
(Microsoft.PowerShell.Management, .Utility, .Security, .Core) import without effect: their cmdlets are the
engine's own. Binary and manifest modules are outside the subset: any other module name is not found, as
on a host without it.
"""

from __future__ import annotations

import fnmatch

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.files import win_full
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.parser import parse, ParseError
from tests.lab.pwsh.runspace import Module
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.values import as_list, NO_INPUT, ScriptBlock, to_str

BUILTIN_MODULES = ("Microsoft.PowerShell.Management", "Microsoft.PowerShell.Utility", "Microsoft.PowerShell.Security",
                   "Microsoft.PowerShell.Core")


class ModuleInfo(Module):
    """A module (PSModuleInfo): its scope and what it exports; `functions` (the runspace's view) is set when it is
    imported."""

    def __init__(self, name: str, scope: Scope, module_type: str = "Script", path: str = "") -> None:
        super().__init__(name, path, {}, module_type)
        self.scope = scope
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

    @property
    def ExportedFunctions(self) -> list[str]:  # type: ignore[override]
        return sorted(self.exported_functions())

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


def _loaded(rt: object) -> dict[str, Module]:
    """The runspace's imported modules (Get-Module), by lower-case name."""
    return rt.runspace.modules  # type: ignore[attr-defined, no-any-return]


def _run_in_module(cmd: Cmdlet, module: ModuleInfo, sb: ScriptBlock, arguments: list[object], *,
                   is_script: bool = False) -> list[object]:
    """Runs a module's body in its own scope (rt.module set, so Export-ModuleMember and $script: see it)."""
    rt = cmd.rt
    body = ScriptBlock(sb.body, sb.src, sb.file_name, sb.usings, module)
    run = ScriptCommand(rt, body, module.Path, arguments, {}, new_scope=False, is_script=is_script)
    run.scope = module.scope
    results: list[object] = []
    run.sink = results.append
    saved = (rt.scope, rt.script_scope, rt.module)
    rt.scope, rt.script_scope, rt.module = module.scope, module.scope, module
    try:
        run_stage(run, None)
    finally:
        rt.scope, rt.script_scope, rt.module = saved
    module.functions = module.exported_functions()
    return results


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
        results = _run_in_module(self, module, sb, as_list(self.p.get("ArgumentList")))
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
                module = self._load(to_str(module))
                if module is None:
                    continue
            _loaded(rt)[module.Name.lower()] = module  # its functions: found through the runspace (find_function)
            target = rt.global_scope if to_str(self.p.get("Scope", "")).lower() == "global" or self.p.get("Global") \
                else rt.scope
            target.aliases.update(module.exported_aliases())
            for var in module.export_variables:
                if var in module.scope.vars:
                    target.vars[var] = module.scope.vars[var]
            if self.p.get("PassThru"):
                self.emit(module)

    def _load(self, name: str) -> ModuleInfo | None:
        rt = self.rt
        known = next((m for m in BUILTIN_MODULES if m.lower() == name.lower()), None)
        if known is not None:
            return ModuleInfo(known, Scope(rt.global_scope), "Manifest")
        path = _module_file(self, name)
        if path is None:
            self.error(f"The specified module '{name}' was not loaded because no valid module file was found "
                       f"in any module directory.", "Modules_ModuleNotFound", "ResourceUnavailable",
                       "System.IO.FileNotFoundException", name)
            return None
        module_name = path.rsplit("\\", 1)[-1].rsplit(".", 1)[0]
        loaded = _loaded(rt).get(module_name.lower())
        if loaded is not None and not self.p.get("Force"):
            return loaded if isinstance(loaded, ModuleInfo) else None
        src = rt.host.fs.read_text(path, rt.cwd)
        try:
            body = parse(src)
        except ParseError as e:
            raise self.terminate(f"The module '{module_name}' could not be parsed: {e}", "LabModuleParseError")
        module = ModuleInfo(module_name, Scope(rt.global_scope), "Script", path)
        _run_in_module(self, module, ScriptBlock(body, src, path), as_list(self.p.get("ArgumentList", [])),
                       is_script=True)
        return module


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
            key = (name.Name if isinstance(name, Module) else to_str(name)).lower()
            if key in _loaded(self.rt) and not self.should_process(key, "Remove-Module"):
                continue
            if _loaded(self.rt).pop(key, None) is None:
                self.error("No modules were removed. Verify that the specification of modules to remove is correct "
                           "and those modules exist in the runspace.", "Modules_NoModulesRemoved",
                           "ResourceUnavailable", "System.InvalidOperationException", to_str(name))


@cmdlet("Set-StrictMode", params=("Version",), switches=("Off",))
class SetStrictMode(Cmdlet):
    def process(self, item: object) -> None:
        if self.p.get("Off"):
            self.rt.scope.strict_version = 0
            return
        version = to_str(self.p.get("Version", "1")).lower()
        self.rt.scope.strict_version = 3 if version == "latest" else int(float(version)) if version else 1
