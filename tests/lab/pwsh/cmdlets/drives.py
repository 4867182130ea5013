"""Drive and provider cmdlets: Get-PSDrive and Get-PSProvider, answering the drives a Windows PowerShell 5.1
session on the lab host has (C: on the FileSystem provider, and the built-in provider drives)."""

from __future__ import annotations

import fnmatch

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.values import as_list, PSObject, to_str

# (name, provider, root) of the drives every 5.1 session has; the lab host has one disk, C:.
DRIVES = (("Alias", "Alias", ""), ("C", "FileSystem", "C:\\"), ("Cert", "Certificate", "\\"),
          ("Env", "Environment", ""), ("Function", "Function", ""), ("HKCU", "Registry", "HKEY_CURRENT_USER"),
          ("HKLM", "Registry", "HKEY_LOCAL_MACHINE"), ("Variable", "Variable", ""), ("WSMan", "WSMan", ""))


def _drive(name: str, provider: str, root: str) -> PSObject:
    drive = PSObject({"Name": name, "Provider": provider, "Root": root, "Description": "",
                      "CurrentLocation": ""})
    return drive


@cmdlet("Get-PSDrive", "gdr", positional=("Name",), params=("PSProvider", "Scope", "LiteralName"))
class GetPSDrive(Cmdlet):
    def process(self, item: object) -> None:
        names = [to_str(n).lower() for n in as_list(self.p.get("Name") or self.p.get("LiteralName"))]
        providers = [to_str(p).lower() for p in as_list(self.p.get("PSProvider"))]
        found = False
        for name, provider, root in DRIVES:
            if names and not any(fnmatch.fnmatch(name.lower(), n) for n in names):
                continue
            if providers and provider.lower() not in providers:
                continue
            found = True
            self.emit(_drive(name, provider, root))
        if names and not found and not any(ch in n for n in names for ch in "*?"):
            self.error(f"Cannot find drive. A drive with the name '{to_str(self.p.get('Name'))}' does not exist.",
                       "GetLocationNoMatchingDrive", target=to_str(self.p.get("Name")),
                       exc="System.Management.Automation.DriveNotFoundException")
