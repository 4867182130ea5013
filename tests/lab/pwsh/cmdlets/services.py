"""Get-Service: the lab host's Windows services as ServiceController objects (read-only; starting and stopping
services is outside the subset).

The host runs the services a Windows Server 2019 core install runs that remote management touches; their
names and display names are Windows'. The default table view is Windows PowerShell 5.1's
(DotNetTypes.format.ps1xml, System.ServiceProcess.ServiceController: Status 8, Name 18, DisplayName 38),
as recorded in pypsrp's test_client_execute_ps.
"""

from __future__ import annotations

import re

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.operators import wildcard_regex
from tests.lab.pwsh.values import as_list, EnumValue, to_str

# name, display name, status, start type
SERVICES: tuple[tuple[str, str, str, str], ...] = (
    ("BITS", "Background Intelligent Transfer Service", "Stopped", "Manual"),
    ("CryptSvc", "Cryptographic Services", "Running", "Automatic"),
    ("Dhcp", "DHCP Client", "Running", "Automatic"),
    ("Dnscache", "DNS Client", "Running", "Automatic"),
    ("EventLog", "Windows Event Log", "Running", "Automatic"),
    ("LanmanServer", "Server", "Running", "Automatic"),
    ("LanmanWorkstation", "Workstation", "Running", "Automatic"),
    ("mpssvc", "Windows Defender Firewall", "Running", "Automatic"),
    ("RpcSs", "Remote Procedure Call (RPC)", "Running", "Automatic"),
    ("Schedule", "Task Scheduler", "Running", "Automatic"),
    ("Spooler", "Print Spooler", "Stopped", "Manual"),
    ("W32Time", "Windows Time", "Running", "Manual"),
    ("WinRM", "Windows Remote Management (WS-Management)", "Running", "Automatic"),
    ("wuauserv", "Windows Update", "Stopped", "Manual"),
)


class ServiceController:
    """System.ServiceProcess.ServiceController as Get-Service returns it."""

    ps_type = "System.ServiceProcess.ServiceController"
    # the default table view: (column, width, property)
    ps_table_view = (("Status", 8, "Status"), ("Name", 18, "Name"), ("DisplayName", 38, "DisplayName"))

    def __init__(self, name: str, display_name: str, status: str, start_type: str) -> None:
        self.Name = name
        self.ServiceName = name
        self.DisplayName = display_name
        self.Status = EnumValue("System.ServiceProcess.ServiceControllerStatus", status)
        self.StartType = EnumValue("System.ServiceProcess.ServiceStartMode", start_type)
        self.ServiceType = EnumValue("System.ServiceProcess.ServiceType", "Win32OwnProcess")
        self.CanStop = status == "Running"
        self.CanPauseAndContinue = False
        self.CanShutdown = False
        self.MachineName = "."

    def ps_tostring(self) -> str:
        return self.Name

    def ps_properties(self) -> dict[str, object]:
        return {"Name": self.Name, "DisplayName": self.DisplayName, "Status": str(self.Status),
                "StartType": str(self.StartType), "ServiceName": self.ServiceName, "CanStop": self.CanStop,
                "ServiceType": str(self.ServiceType), "MachineName": self.MachineName}


@cmdlet("Get-Service", "gsv", positional=("Name",), params=("DisplayName", "Include", "Exclude", "ComputerName",
        "InputObject"), switches=("DependentServices", "RequiredServices"), aliases={"servicename": "Name"})
class GetService(Cmdlet):
    def end(self) -> None:
        services = [ServiceController(*s) for s in SERVICES]
        if "DisplayName" in self.p:
            patterns, attr, missing = as_list(self.p["DisplayName"]), "DisplayName", "display name"
        else:
            patterns, attr, missing = as_list(self.p.get("Name", "*")), "Name", "service name"
        for pattern in patterns:
            rx = re.compile(wildcard_regex(to_str(pattern)), re.IGNORECASE)
            hits = [s for s in services if rx.fullmatch(getattr(s, attr))]
            if not hits and not any(ch in to_str(pattern) for ch in "*?["):
                key = "NoServiceFoundForGivenName" if attr == "Name" else "NoServiceFoundForGivenDisplayName"
                self.error(f"Cannot find any service with {missing} '{to_str(pattern)}'.", key,
                           exc="Microsoft.PowerShell.Commands.ServiceCommandException", target=to_str(pattern))
            for s in hits:
                if attr == "Name" and rx.fullmatch(to_str(pattern)) and to_str(pattern).lower() == s.Name.lower():
                    # ServiceController(name) keeps the name as asked for (recorded: Get-Service -Name winrm)
                    s.Name = s.ServiceName = to_str(pattern)
                self.emit(s)
