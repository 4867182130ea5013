"""Session state cmdlets: history, aliases and PS drives, each kept in the runspace as
Windows keeps it (tests/lab/pwsh/runspace.py) and scoped as about_Scopes says: an alias or drive made
without -Scope belongs to the scope the command runs in, so it is gone when a local-scope script ends.
(Script modules: cmdlets/modules.py.)
"""

from __future__ import annotations

import re

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, CMDLETS
from tests.lab.pwsh.files import win_full
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.operators import wildcard_regex
from tests.lab.pwsh.values import as_list, PSObject, to_str

# The drives a Windows PowerShell 5.1 session has before it makes any (Get-PSDrive on Server 2019).
PROVIDER_DRIVES = {
    "alias": "Alias", "c": "FileSystem", "cert": "Certificate", "env": "Environment", "function": "Function",
    "hkcu": "Registry", "hklm": "Registry", "variable": "Variable", "wsman": "WSMan",
}
_DRIVE_ROOTS = {"c": "C:\\", "cert": "\\", "hkcu": "HKEY_CURRENT_USER", "hklm": "HKEY_LOCAL_MACHINE"}
_DRIVE_NAMES = {"c": "C", "hkcu": "HKCU", "hklm": "HKLM", "wsman": "WSMan", "env": "Env", "cert": "Cert"}


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
        switches=("PassThru", "Force"), should_process=True)
class SetAlias(Cmdlet):
    def end(self) -> None:
        name, value = to_str(self.p.get("Name")), to_str(self.p.get("Value"))
        if not self.should_process(f"Name: {name} Value: {value}", "Set Alias"):
            return
        self.named_scope(self.p.get("Scope")).aliases[name.lower()] = value
        if self.p.get("PassThru"):
            self.emit(_alias_info(name, value))


@cmdlet("New-Alias", "nal", positional=("Name", "Value"), params=("Scope", "Option", "Description"),
        switches=("PassThru", "Force"), should_process=True)
class NewAlias(Cmdlet):
    def end(self) -> None:
        name, value = to_str(self.p.get("Name")), to_str(self.p.get("Value"))
        scope = self.named_scope(self.p.get("Scope"))
        if not self.p.get("Force") and (name.lower() in scope.aliases or name.lower() in CMDLETS):
            self.error(f"The alias is not allowed, because an alias with the name '{name}' already exists.",
                       "AliasAlreadyExists", category="ResourceExists",
                       exc="System.Management.Automation.SessionStateUnauthorizedAccessException", target=name)
            return
        if not self.should_process(f"Name: {name} Value: {value}", "New Alias"):
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
        found = {n: (_DRIVE_ROOTS.get(n, ""), p) for n, p in PROVIDER_DRIVES.items()}
        for scope in reversed(self.rt.scope.chain()):
            for n, root in scope.drives.items():
                found[n] = (root, "FileSystem")
        if "PSProvider" in self.p:  # only that provider's drives (Legacy.psm1 asks for the FileSystem ones)
            providers = {to_str(x).lower() for x in as_list(self.p["PSProvider"])}
            found = {n: v for n, v in found.items() if v[1].lower() in providers}
        patterns = as_list(self.p.get("Name", self.p.get("LiteralName", "*")))
        for pattern in patterns:
            hits = sorted(n for n in found if _matches(pattern, n))
            if not hits:
                self.error(f"Cannot find drive. A drive with the name '{to_str(pattern)}' does not exist.",
                           "GetLocationNoMatchingDrive", category="ObjectNotFound",
                           exc="System.Management.Automation.DriveNotFoundException", target=to_str(pattern))
            for n in hits:
                shown = _DRIVE_NAMES.get(n, n.capitalize() if n in PROVIDER_DRIVES else n)
                self.emit(_drive_info(shown, *found[n]))


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
