"""Service cmdlets over the machine's service table (tests/lab/_machine.py ServiceTable): Get-Service, Start-,
Stop-, Restart-, Suspend- and Resume-Service, and New-Service, with ServiceController objects.

Windows PowerShell 5.1's messages and error ids (Microsoft.PowerShell.Commands.*ServiceCommand): a service
the SCM refuses to start fails "Service '<display> (<name>)' cannot be started due to the following error:
Cannot start service <name> on computer '.'.", stopping one with running dependents needs -Force, and a
standard user gets "Cannot open <name> service on computer '.'." (access denied). -WhatIf changes nothing.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.dotnet_types import EnumType, register, registered, SimpleType
from tests.lab.pwsh.values import as_list, NO_INPUT, to_str

STATUS = {"Stopped": 1, "StartPending": 2, "StopPending": 3, "Running": 4, "ContinuePending": 5, "PausePending": 6,
          "Paused": 7}
_STATE_NAMES = {"stopped": "Stopped", "start_pending": "StartPending", "stop_pending": "StopPending",
                "running": "Running", "continue_pending": "ContinuePending", "pause_pending": "PausePending",
                "paused": "Paused"}
START_MODES = {"auto": "Automatic", "delayed": "Automatic", "manual": "Manual", "disabled": "Disabled"}
register(EnumType("System.ServiceProcess.ServiceControllerStatus", STATUS))
register(EnumType("System.ServiceProcess.ServiceStartMode", {"Boot": 0, "System": 1, "Automatic": 2, "Manual": 3,
                                                             "Disabled": 4}))


def services_of(rt: Any) -> Any:
    """The machine's service table, or a terminating error naming what the lab host lacks."""
    machine = rt.host.process.machine
    if machine is None:
        from tests.lab.pwsh.errors import runtime_error
        raise runtime_error("The lab host has no machine state, so no Service Control Manager.", "LabNoMachine",
                            "NotImplemented")
    return machine.services


def is_win32_error(e: BaseException) -> bool:
    return hasattr(e, "win32_message") and hasattr(e, "code")


class ServiceControllerObj:
    """A System.ServiceProcess.ServiceController over one service of the table (read live, as Refresh does).

    `asked_as` is the name it was made with: ServiceController(name) keeps the name as asked for (recorded:
    Get-Service -Name winrm answers Name 'winrm', test_client_execute_ps).
    """

    ps_type = "System.ServiceProcess.ServiceController"
    # the default table view (DotNetTypes.format.ps1xml, ServiceController): (column, width, property)
    ps_table_view = (("Status", 8, "Status"), ("Name", 18, "Name"), ("DisplayName", 38, "DisplayName"))

    def __init__(self, rt: Any, name: str, asked_as: str | None = None) -> None:
        self.rt = rt
        self.name = name
        self.asked_as = asked_as

    @property
    def Name(self) -> object:
        return self.ps_get("Name")

    @property
    def DisplayName(self) -> object:
        return self.ps_get("DisplayName")

    @property
    def Status(self) -> object:
        return self.ps_get("Status")

    def ps_properties(self) -> dict[str, object]:
        return {k: to_str(self.ps_get(k)) if k in ("Status", "StartType") else self.ps_get(k)
                for k in ("Name", "DisplayName", "Status", "StartType", "ServiceName", "CanStop", "ServiceType",
                          "MachineName")}

    def _svc(self) -> Any:
        return services_of(self.rt).get(self.name)

    def ps_get(self, name: str) -> object:
        low = name.lower()
        svc = self._svc()
        if low in ("name", "servicename"):
            return self.asked_as if self.asked_as is not None and self.asked_as.lower() == svc.name.lower() \
                else svc.name
        if low == "displayname":
            return svc.display_name
        if low == "status":
            return registered("System.ServiceProcess.ServiceControllerStatus").by_name(  # type: ignore[union-attr]
                _STATE_NAMES.get(svc.state, "Stopped"))
        if low == "starttype":
            return registered("System.ServiceProcess.ServiceStartMode").by_name(  # type: ignore[union-attr]
                START_MODES[svc.start_mode])
        if low == "canpauseandcontinue":
            return svc.can_pause_and_continue and svc.state != "stopped"
        if low == "canstop":
            return svc.state != "stopped"
        if low == "dependentservices":
            return [ServiceControllerObj(self.rt, n) for n in services_of(self.rt).dependents(svc.name)]
        if low in ("servicesdependedon", "requiredservices"):
            table = services_of(self.rt)
            return [ServiceControllerObj(self.rt, table.get(d).name) for d in svc.dependencies if table.find(d)]
        if low == "machinename":
            return "."
        if low == "servicetype":
            return "Win32OwnProcess" if svc.service_type == "win32_own_process" else "Win32ShareProcess"
        raise KeyError(name)

    def ps_tostring(self) -> str:
        return "System.ServiceProcess.ServiceController"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() in ("refresh", "dispose", "close"):
            return None
        if name.lower() == "waitforstatus":
            return None
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


register(SimpleType("System.ServiceProcess.ServiceController", ctor=lambda rt, a: ServiceControllerObj(
    rt, services_of(rt).get(to_str(a[0])).name), instance=lambda v: isinstance(v, ServiceControllerObj)))


@cmdlet("Get-Service", "gsv", positional=("Name",), params=("DisplayName", "Include", "Exclude", "InputObject",
                                                             "ComputerName"),
        switches=("DependentServices", "RequiredServices"))
class GetService(Cmdlet):
    def process(self, item: object) -> None:
        table = services_of(self.rt)
        names = [to_str(n) for n in as_list(self.input_or(item, "Name"))] if ("Name" in self.p or item is not
                                                                               NO_INPUT) else []
        displays = [to_str(n) for n in as_list(self.p.get("DisplayName"))]
        if not names and not displays:
            for name in table.names():
                svc = table.get(name)
                if svc.service_type not in ("kernel_driver", "file_system_driver"):
                    self.emit(ServiceControllerObj(self.rt, svc.name))
            return
        for pattern in names:
            matches = [n for n in table.names() if fnmatch.fnmatch(n.lower(), pattern.lower())]
            if not matches and not any(c in pattern for c in "*?["):
                found = table.find(pattern)
                matches = [found.name] if found is not None else []
            if not matches and not any(c in pattern for c in "*?["):
                self.error(f"Cannot find any service with service name '{pattern}'.", "NoServiceFoundForGivenName",
                           exc="Microsoft.PowerShell.Commands.ServiceCommandException", target=pattern)
            asked_as = None if any(c in pattern for c in "*?[") else pattern
            for n in matches:
                self.emit(ServiceControllerObj(self.rt, n, asked_as))
        for pattern in displays:
            matches = [n for n in table.names() if fnmatch.fnmatch(table.get(n).display_name.lower(), pattern.lower())]
            if not matches and not any(c in pattern for c in "*?["):
                self.error(f"Cannot find any service with display name '{pattern}'.",
                           "NoServiceFoundForGivenDisplayName",
                           exc="Microsoft.PowerShell.Commands.ServiceCommandException", target=pattern)
            for n in matches:
                self.emit(ServiceControllerObj(self.rt, n))


class _ServiceControl(Cmdlet):
    """The state cmdlets: the services named (or piped), each told to change state unless -WhatIf."""

    action = ""

    def process(self, item: object) -> None:
        rt = self.rt
        table = services_of(rt)
        targets = [item] if item is not NO_INPUT else as_list(self.p.get("InputObject") or self.p.get("Name"))
        for target in targets:
            name = target.name if isinstance(target, ServiceControllerObj) else to_str(target)
            svc = table.find(name)
            if svc is None:
                self.error(f"Cannot find any service with service name '{name}'.", "NoServiceFoundForGivenName",
                           exc="Microsoft.PowerShell.Commands.ServiceCommandException", target=name)
                continue
            if not self.should_process(f"{svc.display_name} ({svc.name})", self.name):
                continue
            machine = rt.host.process.machine
            account = machine.account(rt.host.user)
            if account is not None and not account.is_admin:
                self.error(f"Service '{svc.display_name} ({svc.name})' cannot be {self.past()} due to the following "
                           f"error: Cannot open {svc.name} service on computer '.'.", f"CouldNot{self.verb()}Service",
                           "OpenError", "Microsoft.PowerShell.Commands.ServiceCommandException", svc.name)
                continue
            try:
                self.control(table, svc)
            except Exception as e:  # a Win32Error of the SCM; anything else is the lab's bug and propagates
                if not is_win32_error(e):
                    raise
                self.refused(svc, e)
                continue
            if self.p.get("PassThru"):
                self.emit(ServiceControllerObj(rt, svc.name))

    def verb(self) -> str:
        return self.action

    def past(self) -> str:
        return {"Start": "started", "Stop": "stopped", "Suspend": "suspended", "Resume": "resumed",
                "Restart": "restarted"}[self.action]

    def control(self, table: Any, svc: Any) -> None:
        raise NotImplementedError

    def refused(self, svc: Any, e: Any) -> None:
        if self.action in ("Stop", "Restart") and e.code == 1051:
            self.error(f"Cannot stop service '{svc.display_name} ({svc.name})' because it has dependent services. "
                       f"It can only be stopped if the Force flag is set.", "ServiceHasDependentServices",
                       "InvalidOperation", "Microsoft.PowerShell.Commands.ServiceCommandException", svc.name)
            return
        verb = {"Start": "start", "Stop": "stop", "Suspend": "suspend", "Resume": "resume", "Restart": "start"}[
            self.action]
        self.error(f"Service '{svc.display_name} ({svc.name})' cannot be {self.past()} due to the following error: "
                   f"Cannot {verb} service {svc.name} on computer '.'.", f"CouldNot{self.verb()}Service", "OpenError",
                   "Microsoft.PowerShell.Commands.ServiceCommandException", svc.name)


_CONTROL_PARAMETERS: dict[str, Any] = {"positional": ("Name",), "params": ("DisplayName", "InputObject", "Include",
                                                                           "Exclude"),
                                       "switches": ("Force", "PassThru", "NoWait"), "should_process": True}


@cmdlet("Start-Service", "sasv", **_CONTROL_PARAMETERS)
class StartService(_ServiceControl):
    action = "Start"

    def control(self, table: Any, svc: Any) -> None:
        if svc.state != "running":
            table.start(svc.name)


@cmdlet("Stop-Service", "spsv", **_CONTROL_PARAMETERS)
class StopService(_ServiceControl):
    action = "Stop"

    def control(self, table: Any, svc: Any) -> None:
        if svc.state != "stopped":
            table.stop(svc.name, with_dependents=bool(self.p.get("Force")))


@cmdlet("Restart-Service", **_CONTROL_PARAMETERS)
class RestartService(_ServiceControl):
    action = "Restart"

    def control(self, table: Any, svc: Any) -> None:
        if svc.state != "stopped":
            stopped = table.stop(svc.name, with_dependents=bool(self.p.get("Force")))
        else:
            stopped = [svc.name]
        for name in reversed(stopped):  # the service first, then the dependents it stopped
            if table.get(name).state != "running":
                table.start(name)


@cmdlet("Suspend-Service", **_CONTROL_PARAMETERS)
class SuspendService(_ServiceControl):
    action = "Suspend"

    def control(self, table: Any, svc: Any) -> None:
        table.pause(svc.name)


@cmdlet("Resume-Service", **_CONTROL_PARAMETERS)
class ResumeService(_ServiceControl):
    action = "Resume"

    def control(self, table: Any, svc: Any) -> None:
        table.resume(svc.name)


_START_TYPES = {"automatic": "auto", "manual": "manual", "disabled": "disabled", "automaticdelayedstart": "delayed"}


@cmdlet("New-Service", positional=("Name", "BinaryPathName"),
        params=("DisplayName", "Description", "StartupType", "Credential", "DependsOn"), should_process=True)
class NewService(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        table = services_of(rt)
        name = to_str(self.p.get("Name"))
        if not self.should_process(name, "New-Service"):
            return
        mode = _START_TYPES.get(to_str(self.p.get("StartupType", "Automatic")).lower(), "auto")
        try:
            table.create(name, to_str(self.p.get("BinaryPathName")), to_str(self.p["DisplayName"]) if "DisplayName" in
                         self.p else None, start_mode=mode, description=to_str(self.p.get("Description", "")),
                         dependencies=[to_str(d) for d in as_list(self.p.get("DependsOn"))])
        except Exception as e:
            if not is_win32_error(e):
                raise
            self.error(f"Service '{name} ({name})' cannot be created due to the following error: {e.win32_message}",
                       "CouldNotNewService", "PermissionDenied", "Microsoft.PowerShell.Commands.ServiceCommandException",
                       name)
            return
        self.emit(ServiceControllerObj(rt, name))
