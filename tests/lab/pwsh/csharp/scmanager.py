"""ansible.windows 3.8.0's SCManager.cs (module_utils/SCManager.cs, used by win_service), emulated over the machine's
service table (tests/lab/_machine.py ServiceTable): Service's configuration and status properties, their setters
(ChangeServiceConfig/ChangeServiceConfig2), Create, Delete and Refresh, and the enums the module compares with.

Opening a service as a standard user fails as OpenServiceW does for one (Access is denied, 5); a missing service
with 1060. The SERVICE_CONFIG_2 settings the table has no column for (failure actions, SID type, required
privileges, pre-shutdown timeout) are kept with the service and start at Windows' defaults.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.cmdlets.service import services_of
from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound, SimpleType
from tests.lab.pwsh.errors import no_method
from tests.lab.pwsh.net.automation import method_failed, win32_exception
from tests.lab.pwsh.net.collections import GenericList
from tests.lab.pwsh.net.principal import NTAccountObj, SecurityIdentifierObj, sid_of
from tests.lab.pwsh.values import as_list, to_str

SOURCE_SHA256 = "bc6fe6afc3d7b39b309ab8990d62bd8f40f99f694a2992234903c122b01ce701"
NS = "ansible_collections.ansible.windows.plugins.module_utils.SCManager"
_WIN32_TEXT = {5: "Access is denied", 1060: "The specified service does not exist as an installed service",
               1072: "The specified service has been marked for deletion", 1073: "The specified service already exists",
               1078: "The name is already in use as either a service name or a service display name",
               1059: "Circular service dependency was specified"}
START = {"auto": "AutoStart", "delayed": "AutoStartDelayed", "manual": "DemandStart", "disabled": "Disabled"}
STATE = {"stopped": "Stopped", "start_pending": "StartPending", "stop_pending": "StopPending", "running": "Running",
         "continue_pending": "ContinuePending", "pause_pending": "PausePending", "paused": "Paused"}
TYPES = {"kernel_driver": "KernelDriver", "file_system_driver": "FileSystemDriver", "adapter": "Adapter",
         "recognizer_driver": "RecognizerDriver", "win32_own_process": "Win32OwnProcess",
         "win32_share_process": "Win32ShareProcess", "user_own_process": "UserOwnprocess",
         "user_share_process": "UserShareProcess"}


def _enums() -> dict[str, EnumType]:
    e = {
        "ControlsAccepted": EnumType(f"{NS}.ControlsAccepted", {
            "None": 0, "Stop": 1, "PauseContinue": 2, "Shutdown": 4, "ParamChange": 8, "NetbindChange": 0x10,
            "HardwareProfileChange": 0x20, "PowerEvent": 0x40, "SessionChange": 0x80, "PreShutdown": 0x100},
            flags=True),
        "ErrorControl": EnumType(f"{NS}.ErrorControl", {"Ignore": 0, "Normal": 1, "Severe": 2, "Critical": 3}),
        "FailureAction": EnumType(f"{NS}.FailureAction", {"None": 0, "Restart": 1, "Reboot": 2, "RunCommand": 3}),
        "LaunchProtection": EnumType(f"{NS}.LaunchProtection", {"None": 0, "Windows": 1, "WindowsLight": 2,
                                                                "AntimalwareLight": 3}),
        "SCMRights": EnumType(f"{NS}.SCMRights", {"Connect": 1, "CreateService": 2, "EnumerateService": 4, "Lock": 8,
                                                  "QueryLockStatus": 0x10, "ModifyBootConfig": 0x20,
                                                  "AllAccess": 0xF003F}, flags=True),
        "ServiceFlags": EnumType(f"{NS}.ServiceFlags", {"None": 0, "RunsInSystemProcess": 1}, flags=True),
        "ServiceRights": EnumType(f"{NS}.ServiceRights", {
            "QueryConfig": 1, "ChangeConfig": 2, "QueryStatus": 4, "EnumerateDependents": 8, "Start": 0x10,
            "Stop": 0x20, "PauseContinue": 0x40, "Interrogate": 0x80, "UserDefinedControl": 0x100, "Delete": 0x10000,
            "ReadControl": 0x20000, "WriteDac": 0x40000, "WriteOwner": 0x80000, "AllAccess": 0xF01FF,
            "AccessSystemSecurity": 0x1000000}, flags=True),
        "ServiceStartType": EnumType(f"{NS}.ServiceStartType", {"BootStart": 0, "SystemStart": 1, "AutoStart": 2,
                                                                "DemandStart": 3, "Disabled": 4,
                                                                "AutoStartDelayed": 0x1000000}),
        "ServiceType": EnumType(f"{NS}.ServiceType", {
            "KernelDriver": 1, "FileSystemDriver": 2, "Adapter": 4, "RecognizerDriver": 8, "Driver": 0xB,
            "Win32OwnProcess": 0x10, "Win32ShareProcess": 0x20, "Win32": 0x30, "UserProcess": 0x40,
            "UserOwnprocess": 0x50, "UserShareProcess": 0x60, "UserServiceInstance": 0x80, "InteractiveProcess": 0x100,
            "PkgService": 0x200}, flags=True),
        "ServiceSidInfo": EnumType(f"{NS}.ServiceSidInfo", {"None": 0, "Unrestricted": 1, "Restricted": 3}),
        "ServiceStatus": EnumType(f"{NS}.ServiceStatus", {n: i for i, n in enumerate(
            ("Stopped", "StartPending", "StopPending", "Running", "ContinuePending", "PausePending", "Paused"), 1)}),
        "TriggerAction": EnumType(f"{NS}.TriggerAction", {"ServiceStart": 1, "ServiceStop": 2}),
        "TriggerDataType": EnumType(f"{NS}.TriggerDataType", {"Binary": 1, "String": 2, "Level": 3, "KeywordAny": 4,
                                                              "KeywordAll": 5}),
        "TriggerType": EnumType(f"{NS}.TriggerType", {"DeviceInterfaceArrival": 1, "IpAddressAvailability": 2,
                                                      "DomainJoin": 3, "FirewallPortEvent": 4, "GroupPolicy": 5,
                                                      "NetworkEndpoint": 6, "Custom": 0x14}),
    }
    return e


def _fail(method: str, nargs: int, message: str, code: int) -> Exception:
    exc = win32_exception(code, message, _WIN32_TEXT.get(code, f"Win32 error {code}"))
    exc.ps_type = f"{NS}.ServiceManagerException"
    return method_failed(method, nargs, exc)


class FailureActionsObj:
    ps_type = f"{NS}.FailureActions"

    def __init__(self, reset: int | None = None, reboot_msg: str | None = None, command: str | None = None,
                 actions: list[object] | None = None) -> None:
        self.ResetPeriod = reset
        self.RebootMsg = reboot_msg
        self.Command = command
        self.Actions = actions


class ActionObj:
    ps_type = f"{NS}.Action"

    def __init__(self, kind: object = None, delay: int = 0) -> None:
        self.Type = kind
        self.Delay = delay


class ServiceObj:
    """Ansible.Windows.SCManager.Service: one open service handle, read live from the table."""

    ps_type = f"{NS}.Service"

    def __init__(self, rt: Any, enums: dict[str, EnumType], name: str, rights: int) -> None:
        self.rt = rt
        self.enums = enums
        table = _table(rt)
        svc = table.find(name)
        if svc is None:
            raise _fail("new", 2, f"Failed to open service '{name}'", 1060)
        machine = rt.host.process.machine
        account = machine.account(rt.host.user)
        read_only = 0x1 | 0x4 | 0x8 | 0x20000
        if account is not None and not account.is_admin and rights & ~read_only:
            raise _fail("new", 2, f"Failed to open service '{name}'", 5)
        self.ServiceName = svc.name
        extra = svc.__dict__.setdefault("config2", {"failure": FailureActionsObj(0, None, None, []),
                                                    "non_crash": False, "sid": "None", "privileges": [],
                                                    "preshutdown": 180000})
        self.extra = extra

    def _svc(self) -> Any:
        svc = _table(self.rt).find(self.ServiceName)
        if svc is None:
            raise _fail("Refresh", 0, "Failed to query service config", 1060)
        return svc

    def _change(self, **changes: Any) -> None:
        try:
            _table(self.rt).configure(self.ServiceName, **changes)
        except Exception as e:
            if not hasattr(e, "win32_message"):
                raise
            raise _fail("set", 1, "Failed to change service config", e.code) from None  # type: ignore[attr-defined]

    def ps_get(self, name: str) -> object:
        low = name.lower()
        svc = self._svc()
        e = self.enums
        if low == "servicetype":
            return e["ServiceType"].by_name(TYPES.get(svc.service_type, "Win32OwnProcess"))
        if low == "starttype":
            return e["ServiceStartType"].by_name(START[svc.start_mode])
        if low == "errorcontrol":
            return e["ErrorControl"].by_name(svc.error_control.capitalize())
        if low == "path":
            return svc.path
        if low == "loadordergroup":
            return svc.load_order_group
        if low == "dependenton":
            return GenericList(svc.dependencies)
        if low == "dependedby":
            return GenericList(_table(self.rt).dependents(svc.name))
        if low == "account":
            if svc.username == "LocalSystem":
                return NTAccountObj(self.rt, "NT AUTHORITY\\SYSTEM")
            return NTAccountObj(self.rt, svc.username)
        if low == "displayname":
            return svc.display_name
        if low == "description":
            return svc.description
        if low == "failureactions":
            return self.extra["failure"]
        if low == "failureactionsonnoncrashfailures":
            return self.extra["non_crash"]
        if low == "servicesidinfo":
            return e["ServiceSidInfo"].by_name(self.extra["sid"])
        if low == "requiredprivileges":
            return GenericList(self.extra["privileges"])
        if low == "preshutdowntimeout":
            return self.extra["preshutdown"]
        if low == "state":
            return e["ServiceStatus"].by_name(STATE.get(svc.state, "Stopped"))
        if low == "controlsaccepted":
            value = 0 if svc.state == "stopped" else 1 | 4 | (2 if svc.can_pause_and_continue else 0)
            return e["ControlsAccepted"].value(value)
        if low in ("win32exitcode", "serviceexitcode", "checkpoint", "waithint"):
            return 1077 if low == "win32exitcode" and svc.state == "stopped" else 0
        if low == "processid":
            return 0 if svc.state == "stopped" else 1000 + sum(map(ord, svc.name)) % 4000
        if low == "serviceflags":
            return e["ServiceFlags"].value(0)
        if low == "triggers":
            return GenericList()
        if low == "launchprotection":
            return e["LaunchProtection"].value(0)
        if low == "preferrednode":
            return None
        raise KeyError(name)

    def ps_set(self, name: str, value: object) -> bool:
        low = name.lower()
        if low == "starttype":
            text = to_str(value)
            mode = {v.lower(): k for k, v in START.items()}.get(text.lower())
            if mode is None:
                raise _fail("set_StartType", 1, "Failed to change service config", 87)
            self._change(start_mode=mode)
        elif low == "servicetype":
            raw = getattr(value, "value", value)
            base = int(raw) & ~0x100  # type: ignore[call-overload]
            kind = next((k for k, v in TYPES.items() if self.enums["ServiceType"].by_name(v).value == base), None)
            self._change(service_type=kind or "win32_own_process")
        elif low == "errorcontrol":
            self._change(error_control=to_str(value).lower())
        elif low == "path":
            self._change(path=to_str(value))
        elif low == "loadordergroup":
            self._change(load_order_group=to_str(value))
        elif low == "dependenton":
            self._change(dependencies=[to_str(d) for d in as_list(value)])
        elif low == "displayname":
            self._change(display_name=to_str(value))
        elif low == "description":
            self._change(description="" if value is None else to_str(value))
        elif low == "account":
            sid = value.Value if isinstance(value, SecurityIdentifierObj) else sid_of(self.rt, to_str(getattr(
                value, "Value", value)))
            self._change(username="LocalSystem" if sid == "S-1-5-18" else to_str(getattr(value, "Value", value)))
        elif low == "password":
            pass  # the SCM stores it; nothing in the lab reads a service's password back
        elif low == "failureactions":
            current = self.extra["failure"]
            for attr in ("ResetPeriod", "RebootMsg", "Command", "Actions"):
                new = getattr(value, attr, None)
                if new is not None:
                    setattr(current, attr, new)
        elif low == "failureactionsonnoncrashfailures":
            self.extra["non_crash"] = bool(value)
        elif low == "servicesidinfo":
            self.extra["sid"] = to_str(value)
        elif low == "requiredprivileges":
            self.extra["privileges"] = [to_str(p) for p in as_list(value)]
        elif low == "preshutdowntimeout":
            self.extra["preshutdown"] = int(value)  # type: ignore[call-overload]
        else:
            return False
        return True

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "refresh" or low == "dispose":
            return None
        if low == "delete":
            try:
                _table(self.rt).delete(self.ServiceName)
            except Exception as e:
                if not hasattr(e, "win32_message"):
                    raise
                raise _fail(name, 0, "Failed to delete service", e.code) from None  # type: ignore[attr-defined]
            return None
        raise no_method(self, name)


def _table(rt: Any) -> Any:
    return services_of(rt)


class ServiceType(DotNetType):
    full_name = f"{NS}.Service"

    def __init__(self, enums: dict[str, EnumType]) -> None:
        super().__init__()
        self.enums = enums

    def new(self, rt: Any, args: list[object]) -> object:
        rights = getattr(args[1], "value", args[1]) if len(args) > 1 else 0xF01FF
        return ServiceObj(rt, self.enums, to_str(args[0]), int(rights))  # type: ignore[call-overload]

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        if name.lower() == "create":
            try:
                _table(rt).create(to_str(args[0]), to_str(args[1]), to_str(args[2]) if len(args) > 2 and args[2]
                                  else None)
            except Exception as e:
                if not hasattr(e, "win32_message"):
                    raise
                raise _fail(name, len(args), f"Failed to create new service '{to_str(args[0])}'",
                            e.code) from None  # type: ignore[attr-defined]
            return ServiceObj(rt, self.enums, to_str(args[0]), 0xF01FF)
        raise MemberNotFound(name)

    def is_instance(self, value: object) -> bool:
        return isinstance(value, ServiceObj)


@emulates(SOURCE_SHA256, "ansible.windows 3.8.0 plugins/module_utils/SCManager.cs")
def define() -> list[DotNetType]:
    enums = _enums()
    return [ServiceType(enums), *enums.values(),
            SimpleType(f"{NS}.FailureActions", ctor=lambda rt, a: FailureActionsObj(),
                       instance=lambda v: isinstance(v, FailureActionsObj)),
            SimpleType(f"{NS}.Action", ctor=lambda rt, a: ActionObj(), cast=lambda rt, v: _action(v),
                       instance=lambda v: isinstance(v, ActionObj)),
            SimpleType(f"{NS}.ServiceManagerException"), SimpleType(f"{NS}.TriggerItem"), SimpleType(f"{NS}.Trigger")]


def _action(value: object) -> ActionObj:
    if isinstance(value, dict):
        return ActionObj(value.get("Type"), int(value.get("Delay") or 0))  # type: ignore[call-overload]
    raise ValueError(value)
