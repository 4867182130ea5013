"""The simulated Windows host's operating system state: power (boot time, scheduled restarts, reboots),
the Service Control Manager's service table, local accounts and the few registry keys that boot creates.

One Machine per lab host, shared by every shell, pool and engine of that host, and outliving them: a
reboot ends every shell, pool and TCP connection (the host's listeners are closed, so connecting is
refused while the machine is down) and the Machine starts again with a new boot time, its automatic
services running and its volatile registry keys recreated. Sources for each behaviour are in
docs/lab-engine.md ("Host state").
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import logging
import threading
import time
import typing as t

from tests.lab import _internal

log = logging.getLogger(__name__)

# FILETIME: 100-nanosecond intervals since 1601-01-01 UTC (DateTime.ToFileTime, GetSystemTimeAsFileTime).
_FILETIME_EPOCH = _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc)
# shutdown.exe /t accepts 0..315360000 seconds (10 years), as its usage text says.
MAX_SHUTDOWN_DELAY_S = 315_360_000
# The volatile key Winlogon creates when it is about to show the logon screen; ansible.windows' win_reboot
# (plugin_utils/_reboot.py, _LOGON_UI_KEY) deletes it before rebooting and waits for it to exist again.
LOGON_UI_SESSION_KEY = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon\AutoLogonChecked"

# Win32 error codes the SCM and shutdown.exe return (System Error Codes, 1000-1299).
ERROR_ACCESS_DENIED = 5
ERROR_DEPENDENT_SERVICES_RUNNING = 1051
ERROR_INVALID_SERVICE_CONTROL = 1052
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DISABLED = 1058
ERROR_CIRCULAR_DEPENDENCY = 1059
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_DEPENDENCY_FAIL = 1068
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073
ERROR_DUPLICATE_SERVICE_NAME = 1078
ERROR_SHUTDOWN_IN_PROGRESS = 1115
ERROR_NO_SHUTDOWN_IN_PROGRESS = 1116
ERROR_SHUTDOWN_IS_SCHEDULED = 1190

WIN32_MESSAGES = {
    ERROR_ACCESS_DENIED: "Access is denied.",
    ERROR_DEPENDENT_SERVICES_RUNNING: "A stop control has been sent to a service that other running services are "
                                      "dependent on.",
    ERROR_INVALID_SERVICE_CONTROL: "The requested control is not valid for this service.",
    ERROR_SERVICE_ALREADY_RUNNING: "An instance of the service is already running.",
    ERROR_SERVICE_DISABLED: "The service cannot be started, either because it is disabled or because it has no "
                            "enabled devices associated with it.",
    ERROR_CIRCULAR_DEPENDENCY: "Circular service dependency was specified.",
    ERROR_SERVICE_DOES_NOT_EXIST: "The specified service does not exist as an installed service.",
    ERROR_SERVICE_NOT_ACTIVE: "The service has not been started.",
    ERROR_SERVICE_DEPENDENCY_FAIL: "The dependency service or group failed to start.",
    ERROR_SERVICE_MARKED_FOR_DELETE: "The specified service has been marked for deletion.",
    ERROR_SERVICE_EXISTS: "The specified service already exists.",
    ERROR_DUPLICATE_SERVICE_NAME: "The name is already in use as either a service name or a service display name.",
    ERROR_SHUTDOWN_IN_PROGRESS: "A system shutdown is in progress.",
    ERROR_NO_SHUTDOWN_IN_PROGRESS: "Unable to abort the system shutdown because no shutdown was in progress.",
    ERROR_SHUTDOWN_IS_SCHEDULED: "A system shutdown has already been scheduled.",
}

START_MODES = ("auto", "delayed", "manual", "disabled")
STATES = ("stopped", "start_pending", "stop_pending", "running", "continue_pending", "pause_pending", "paused")


class Win32Error(Exception):
    """A Win32 API call of the simulated OS failed with `code` (the message Windows gives for it)."""

    def __init__(self, code: int, context: str = "") -> None:
        self.code = code
        self.win32_message = WIN32_MESSAGES.get(code, f"Win32 error {code}")
        super().__init__(f"{context}: {self.win32_message}" if context else self.win32_message)


def filetime(moment: _dt.datetime) -> int:
    """A UTC datetime as a Windows FILETIME integer."""
    delta = moment - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# ---------------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Service:
    """One entry of the SCM database, in the terms `ansible.windows.win_service` reports."""

    name: str
    display_name: str
    start_mode: str = "manual"                  # auto, delayed, manual, disabled
    state: str = "stopped"
    dependencies: list[str] = dataclasses.field(default_factory=list)
    description: str = ""
    path: str = r"C:\Windows\system32\svchost.exe -k netsvcs -p"
    username: str = "LocalSystem"
    service_type: str = "win32_share_process"
    error_control: str = "normal"
    can_pause_and_continue: bool = False
    load_order_group: str = ""
    marked_for_delete: bool = False

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


def _svc(name: str, display: str, mode: str, deps: tuple[str, ...] = (), description: str = "",
         path: str = r"C:\Windows\system32\svchost.exe -k netsvcs -p", username: str = "LocalSystem",
         service_type: str = "win32_share_process", pause: bool = False) -> Service:
    return Service(name=name, display_name=display, start_mode=mode, dependencies=list(deps),
                   description=description, path=path, username=username, service_type=service_type,
                   can_pause_and_continue=pause)


def default_services() -> list[Service]:
    """A Windows Server 2019 subset: names, display names, start modes and dependencies as `sc.exe qc` shows."""
    return [
        _svc("RpcEptMapper", "RPC Endpoint Mapper", "auto", path=r"C:\Windows\system32\svchost.exe -k RPCSS -p",
             username=r"NT AUTHORITY\NetworkService",
             description="Resolves RPC interfaces identifiers to transport endpoints."),
        _svc("DcomLaunch", "DCOM Server Process Launcher", "auto",
             path=r"C:\Windows\system32\svchost.exe -k DcomLaunch -p",
             description="The DCOMLAUNCH service launches COM and DCOM servers in response to object activation "
                         "requests."),
        _svc("RpcSs", "Remote Procedure Call (RPC)", "auto", ("RpcEptMapper", "DcomLaunch"),
             path=r"C:\Windows\system32\svchost.exe -k rpcss -p", username=r"NT AUTHORITY\NetworkService",
             description="The RPCSS service is the Service Control Manager for COM and DCOM servers."),
        _svc("EventLog", "Windows Event Log", "auto",
             path=r"C:\Windows\System32\svchost.exe -k LocalServiceNetworkRestricted -p", username=r"NT AUTHORITY\LocalService",
             description="This service manages events and event logs."),
        _svc("HTTP", "HTTP Service", "manual", path=r"system32\drivers\HTTP.sys", service_type="kernel_driver",
             description="This service implements the hypertext transfer protocol (HTTP)."),
        _svc("WinRM", "Windows Remote Management (WS-Management)", "auto", ("RPCSS", "HTTP"),
             path=r"C:\Windows\System32\svchost.exe -k NetworkService -p", username=r"NT AUTHORITY\NetworkService",
             description="Windows Remote Management (WinRM) service implements the WS-Management protocol for "
                         "remote management."),
        _svc("Spooler", "Print Spooler", "auto", ("RPCSS", "http"), path=r"C:\Windows\System32\spoolsv.exe",
             service_type="win32_own_process",
             description="This service spools print jobs and handles interaction with the printer."),
        _svc("W32Time", "Windows Time", "manual", path=r"C:\Windows\system32\svchost.exe -k LocalService",
             username=r"NT AUTHORITY\LocalService",
             description="Maintains date and time synchronization on all clients and servers in the network."),
        _svc("wuauserv", "Windows Update", "manual", ("rpcss",),
             description="Enables the detection, download, and installation of updates for Windows and other "
                         "programs."),
        _svc("BITS", "Background Intelligent Transfer Service", "manual", ("RpcSs",),
             description="Transfers files in the background using idle network bandwidth."),
        _svc("LanmanServer", "Server", "auto", ("SamSS", "Srv2"), pause=True,
             description="Supports file, print, and named-pipe sharing over the network for this computer."),
        _svc("SamSS", "Security Accounts Manager", "auto", ("RPCSS",), path=r"C:\Windows\system32\lsass.exe",
             description="The startup of this service signals other services that the Security Accounts Manager "
                         "(SAM) is ready to accept requests."),
        _svc("Srv2", "Server SMB 2.xxx Driver", "manual", path=r"System32\DRIVERS\srv2.sys",
             service_type="file_system_driver"),
        _svc("TermService", "Remote Desktop Services", "manual", ("RPCSS",),
             path=r"C:\Windows\System32\svchost.exe -k NetworkService", username=r"NT AUTHORITY\NetworkService",
             description="Allows users to connect interactively to a remote computer."),
        _svc("Fax", "Fax", "disabled", ("TapiSrv", "RpcSs", "PlugPlay", "Spooler"),
             path=r"C:\Windows\system32\fxssvc.exe", service_type="win32_own_process", username=r"NT AUTHORITY\NetworkService",
             description="Enables you to send and receive faxes."),
        _svc("TapiSrv", "Telephony", "manual", ("PlugPlay", "RpcSs"), username=r"NT AUTHORITY\NetworkService",
             description="Provides Telephony API (TAPI) support."),
        _svc("PlugPlay", "Plug and Play", "manual", path=r"C:\Windows\system32\svchost.exe -k DcomLaunch -p",
             description="Enables a computer to recognize and adapt to hardware changes."),
    ]


class ServiceTable:
    """The SCM database of one machine: lookups, start/stop/pause with dependency rules, config changes."""

    def __init__(self, services: t.Iterable[Service]) -> None:
        self._lock = threading.RLock()
        self._services: dict[str, Service] = {}
        for service in services:
            self._services[service.name.lower()] = service

    # lookups -------------------------------------------------------------------------------------
    def find(self, name: str) -> Service | None:
        """A service by service name or display name, case-insensitively (OpenService, GetServiceKeyName)."""
        with self._lock:
            low = name.lower()
            if low in self._services:
                return self._services[low]
            return next((s for s in self._services.values() if s.display_name.lower() == low), None)

    def get(self, name: str) -> Service:
        service = self.find(name)
        if service is None:
            raise Win32Error(ERROR_SERVICE_DOES_NOT_EXIST, f"OpenService({name})")
        return service

    def names(self) -> list[str]:
        with self._lock:
            return sorted((s.name for s in self._services.values()), key=str.lower)

    def snapshot(self, name: str | None = None) -> t.Any:
        """Plain data for the control API: one service (with its dependents) or all of them."""
        with self._lock:
            if name is not None:
                service = self.get(name)
                return dict(service.as_dict(), depended_by=self.dependents(service.name))
            return [dict(s.as_dict(), depended_by=self.dependents(s.name))
                    for s in sorted(self._services.values(), key=lambda s: s.name.lower())]

    def dependents(self, name: str) -> list[str]:
        """Services that list `name` among their dependencies (EnumDependentServices, direct ones)."""
        with self._lock:
            low = name.lower()
            return sorted((s.name for s in self._services.values() if low in (d.lower() for d in s.dependencies)),
                          key=str.lower)

    # control -------------------------------------------------------------------------------------
    def start(self, name: str) -> list[str]:
        """StartService: its dependencies first (recursively); returns the services that were started, in order."""
        with self._lock:
            started: list[str] = []
            self._start(self.get(name), started, set(), top=True)
            return started

    def _start(self, service: Service, started: list[str], visiting: set[str], top: bool) -> None:
        if service.marked_for_delete:
            raise Win32Error(ERROR_SERVICE_MARKED_FOR_DELETE, f"StartService({service.name})")
        if service.state == "running":
            if top:
                raise Win32Error(ERROR_SERVICE_ALREADY_RUNNING, f"StartService({service.name})")
            return
        if service.start_mode == "disabled":
            raise Win32Error(ERROR_SERVICE_DISABLED if top else ERROR_SERVICE_DEPENDENCY_FAIL,
                             f"StartService({service.name})")
        visiting.add(service.name.lower())
        for dep in service.dependencies:
            if dep.lower() in visiting:
                raise Win32Error(ERROR_CIRCULAR_DEPENDENCY, f"StartService({service.name})")
            target = self.find(dep)
            if target is None:
                # A missing dependency fails the start the way a failed one does (Event 7003 on Windows).
                raise Win32Error(ERROR_SERVICE_DEPENDENCY_FAIL, f"StartService({service.name})")
            try:
                self._start(target, started, visiting, top=False)
            except Win32Error as e:
                if e.code in (ERROR_SERVICE_DISABLED, ERROR_SERVICE_DEPENDENCY_FAIL, ERROR_SERVICE_MARKED_FOR_DELETE):
                    raise Win32Error(ERROR_SERVICE_DEPENDENCY_FAIL, f"StartService({service.name})") from None
                raise
        service.state = "running"
        started.append(service.name)

    def stop(self, name: str, *, with_dependents: bool = False) -> list[str]:
        """ControlService(STOP); running dependents refuse it unless stopped first (with_dependents)."""
        with self._lock:
            service = self.get(name)
            if service.state == "stopped":
                raise Win32Error(ERROR_SERVICE_NOT_ACTIVE, f"ControlService({service.name}, STOP)")
            running = [d for d in self._all_dependents(service.name) if self.get(d).state != "stopped"]
            if running and not with_dependents:
                raise Win32Error(ERROR_DEPENDENT_SERVICES_RUNNING, f"ControlService({service.name}, STOP)")
            stopped = []
            for dep in running:  # outermost dependents first
                self.get(dep).state = "stopped"
                stopped.append(dep)
            service.state = "stopped"
            stopped.append(service.name)
            return stopped

    def _all_dependents(self, name: str) -> list[str]:
        """Every service that depends on `name`, directly or not, the furthest first."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(current: str) -> None:
            for dep in self.dependents(current):
                if dep.lower() in seen:
                    continue
                seen.add(dep.lower())
                visit(dep)
                order.append(dep)

        visit(name)
        return order

    def pause(self, name: str) -> None:
        self._pause_or_continue(name, pause=True)

    def resume(self, name: str) -> None:
        self._pause_or_continue(name, pause=False)

    def _pause_or_continue(self, name: str, pause: bool) -> None:
        with self._lock:
            service = self.get(name)
            control = "PAUSE" if pause else "CONTINUE"
            if service.state == "stopped":
                raise Win32Error(ERROR_SERVICE_NOT_ACTIVE, f"ControlService({service.name}, {control})")
            if not service.can_pause_and_continue:
                raise Win32Error(ERROR_INVALID_SERVICE_CONTROL, f"ControlService({service.name}, {control})")
            service.state = "paused" if pause else "running"

    def configure(self, name: str, **changes: t.Any) -> Service:
        """ChangeServiceConfig/ChangeServiceConfig2: start mode, display name, description, path, account, ..."""
        allowed = {"start_mode", "display_name", "description", "path", "username", "dependencies",
                   "error_control", "load_order_group", "service_type", "can_pause_and_continue"}
        with self._lock:
            service = self.get(name)
            unknown = set(changes) - allowed
            if unknown:
                raise KeyError(f"service setting(s) {sorted(unknown)} cannot be changed; choose from {sorted(allowed)}")
            if "start_mode" in changes and changes["start_mode"] not in START_MODES:
                raise ValueError(f"start_mode must be one of {START_MODES}, not {changes['start_mode']!r}")
            if "display_name" in changes:
                other = self.find(str(changes["display_name"]))
                if other is not None and other is not service:
                    raise Win32Error(ERROR_DUPLICATE_SERVICE_NAME, f"ChangeServiceConfig({service.name})")
            if "dependencies" in changes:
                deps = [str(d) for d in changes["dependencies"]]
                if self._would_cycle(service.name, deps):
                    raise Win32Error(ERROR_CIRCULAR_DEPENDENCY, f"ChangeServiceConfig({service.name})")
                changes["dependencies"] = deps
            for key, value in changes.items():
                setattr(service, key, value)
            return service

    def _would_cycle(self, name: str, deps: list[str]) -> bool:
        target = name.lower()
        stack = [d.lower() for d in deps]
        seen: set[str] = set()
        while stack:
            current = stack.pop()
            if current == target:
                return True
            if current in seen:
                continue
            seen.add(current)
            found = self.find(current)
            if found is not None:
                stack.extend(d.lower() for d in found.dependencies)
        return False

    def create(self, name: str, path: str, display_name: str | None = None, **settings: t.Any) -> Service:
        """CreateService: a new, stopped service (display name defaults to the name)."""
        with self._lock:
            if self.find(name) is not None:
                raise Win32Error(ERROR_SERVICE_EXISTS, f"CreateService({name})")
            if display_name and self.find(display_name) is not None:
                raise Win32Error(ERROR_DUPLICATE_SERVICE_NAME, f"CreateService({name})")
            service = Service(name=name, display_name=display_name or name, path=path,
                              service_type="win32_own_process", **settings)
            self._services[name.lower()] = service
            return service

    def delete(self, name: str) -> None:
        """DeleteService: gone at once when stopped, else marked and gone when it stops (or at the next boot)."""
        with self._lock:
            service = self.get(name)
            if service.marked_for_delete:
                raise Win32Error(ERROR_SERVICE_MARKED_FOR_DELETE, f"DeleteService({service.name})")
            if service.state == "stopped":
                del self._services[service.name.lower()]
            else:
                service.marked_for_delete = True

    # boot ----------------------------------------------------------------------------------------
    def power_off(self) -> None:
        with self._lock:
            for service in list(self._services.values()):
                service.state = "stopped"
                if service.marked_for_delete:
                    del self._services[service.name.lower()]

    def boot(self) -> list[str]:
        """Start every automatic and delayed-automatic service and what it depends on; returns what started."""
        with self._lock:
            started: list[str] = []
            for mode in ("auto", "delayed"):  # delayed-auto services start after the automatic ones
                for service in list(self._services.values()):
                    if service.start_mode == mode and service.state != "running":
                        try:
                            self._start(service, started, set(), top=False)
                        except Win32Error as e:  # Windows logs Event 7001/7003 and carries on booting
                            log.info("boot: %s did not start: %s", service.name, e)
            return started


# ---------------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Account:
    """A local (or domain) account the host knows: what LogonUser, a profile and `whoami /groups` need."""

    name: str
    password: str | None
    sid: str
    groups: tuple[str, ...]
    kind: str = "local"                        # local, domain, builtin

    @property
    def is_admin(self) -> bool:
        return "Administrators" in self.groups

    def profile_path(self) -> str:
        return f"C:\\Users\\{self.name}"


def machine_sid(computer_name: str) -> str:
    """The machine's account domain SID (S-1-5-21-x-y-z), stable for a computer name."""
    digest = hashlib.sha256(computer_name.upper().encode()).digest()
    parts = [int.from_bytes(digest[i:i + 4], "little") for i in (0, 4, 8)]
    return "S-1-5-21-" + "-".join(str(p) for p in parts)


SYSTEM_SID = "S-1-5-18"


# ---------------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------------

PowerListener = t.Callable[[str], None]  # called with "down" (before the machine stops) and "up" (after boot)


def default_machine_environment(processors: int = 2) -> dict[str, str]:
    """The system environment variables of a Windows Server 2019 install (HKLM\\...\\Session Manager\\Environment),
    expanded as [Environment]::GetEnvironmentVariable(name, 'Machine') returns them."""
    return {
        "ComSpec": "C:\\Windows\\system32\\cmd.exe", "DriverData": "C:\\Windows\\System32\\Drivers\\DriverData",
        "NUMBER_OF_PROCESSORS": str(processors), "OS": "Windows_NT",
        "Path": "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\Wbem;"
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\;C:\\Windows\\System32\\OpenSSH\\",
        "PATHEXT": ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC;.CPL",
        "PROCESSOR_ARCHITECTURE": "AMD64", "PROCESSOR_LEVEL": "6",
        "PSModulePath": "C:\\Program Files\\WindowsPowerShell\\Modules;C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules",
        "TEMP": "C:\\Windows\\TEMP", "TMP": "C:\\Windows\\TEMP", "USERNAME": "SYSTEM", "windir": "C:\\Windows",
    }


def default_user_environment(profile: str) -> dict[str, str]:
    """A new profile's user environment variables (HKCU\\Environment)."""
    return {"Path": f"{profile}\\AppData\\Local\\Microsoft\\WindowsApps;",
            "TEMP": f"{profile}\\AppData\\Local\\Temp", "TMP": f"{profile}\\AppData\\Local\\Temp"}


class Machine:
    """One simulated Windows machine's OS state; see the module docstring."""

    def __init__(self, computer_name: str, users: dict[str, str], *, admins: t.Iterable[str] = ("ansible",),
                 domain_users: t.Iterable[str] = (), reboot_down_s: float = 5.0) -> None:
        self.computer_name = computer_name
        self.reboot_down_s = float(reboot_down_s)
        self.services = ServiceTable(default_services())
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[PowerListener] = []
        self._timer: threading.Timer | None = None
        self._closed = False
        self.power = "running"                 # running, shutdown_scheduled, down, booting
        self.boots = 0
        self.boot_time = _dt.datetime.now(_dt.timezone.utc)
        self._boot_monotonic = time.monotonic()
        self.pending_shutdown: dict[str, t.Any] | None = None
        self.last_shutdown: dict[str, t.Any] | None = None
        self.registry_keys: set[str] = set()
        # [Environment]::SetEnvironmentVariable(..., 'Machine'/'User'): registry values that outlive processes
        self.machine_environment = default_machine_environment()
        self.user_environment: dict[str, dict[str, str]] = {}
        self.event_log: list[dict[str, t.Any]] = []  # the Application log (Ansible.Basic's LogEvent writes there)
        sid = machine_sid(computer_name)
        admin_names = {a.lower() for a in admins}
        domain_names = {d.lower() for d in domain_users}
        self.accounts: dict[str, Account] = {
            "administrator": Account("Administrator", None, f"{sid}-500", ("Administrators", "Users"), "builtin"),
            "system": Account("SYSTEM", None, SYSTEM_SID, ("Administrators",), "builtin"),
        }
        for rid, (name, password) in enumerate(sorted(users.items()), start=1000):
            groups = ("Administrators", "Users") if name.lower() in admin_names else ("Users",)
            kind = "domain" if name.lower() in domain_names else "local"
            self.accounts[name.lower()] = Account(name, password, f"{sid}-{rid}", groups, kind)
        with self._lock:
            self._boot_locked_state()
            self.power = "running"

    # accounts ------------------------------------------------------------------------------------
    def account(self, name: str) -> Account | None:
        """An account by `name`, `COMPUTER\\name`, `.\\name` or `name@domain`, case-insensitively."""
        low = name.lower()
        if "\\" in low:
            domain, _, low = low.partition("\\")
            if domain not in (".", self.computer_name.lower(), "nt authority", "builtin"):
                acct = self.accounts.get(low)
                return acct if acct is not None and acct.kind == "domain" else None
        elif "@" in low:
            low = low.partition("@")[0]
        return self.accounts.get(low)

    def logon(self, name: str, password: str | None) -> Account:
        """LogonUser: the account if the password is right (SYSTEM needs none); else ERROR_LOGON_FAILURE's text."""
        acct = self.account(name)
        if acct is not None and acct.sid == SYSTEM_SID:
            return acct
        if acct is None or acct.password is None or password != acct.password:
            raise PermissionError("The user name or password is incorrect.")
        return acct

    # environment -------------------------------------------------------------------------------------
    def environment(self, target: str, user: str) -> dict[str, str]:
        """The persistent environment block of `target` (machine or user): a copy, names as stored."""
        with self._lock:
            return dict(self._block(target, user))

    def set_environment(self, target: str, user: str, name: str, value: str | None) -> None:
        """Set (or with None remove) a persistent variable; a machine variable needs an administrator."""
        acct = self.account(user)
        if target == "machine" and acct is not None and not acct.is_admin:
            raise PermissionError("Requested registry access is not allowed.")
        with self._lock:
            block = self._block(target, user)
            for key in [k for k in block if k.lower() == name.lower()]:
                del block[key]
            if value:
                block[name] = value

    def _block(self, target: str, user: str) -> dict[str, str]:
        if target == "machine":
            return self.machine_environment
        acct = self.account(user)
        key = acct.name.lower() if acct is not None else user.lower()
        if key not in self.user_environment:
            self.user_environment[key] = default_user_environment(
                acct.profile_path() if acct is not None else f"C:\\Users\\{user}")
        return self.user_environment[key]

    # power ---------------------------------------------------------------------------------------
    def on_power(self, listener: PowerListener) -> None:
        """Register a callback for "down" and "up" (the host's listeners, its WS-Management service)."""
        with self._lock:
            self._listeners.append(listener)

    def wait_for_power(self, state: str, timeout: float) -> bool:
        """Block until the power state is `state` (running, shutdown_scheduled, down); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.power == state, timeout)

    def uptime_s(self) -> float:
        return time.monotonic() - self._boot_monotonic if self.power not in ("down", "booting") else 0.0

    def tick_count_ms(self) -> int:
        """GetTickCount64: milliseconds since boot."""
        return int(self.uptime_s() * 1000)

    def describe(self) -> dict[str, t.Any]:
        with self._lock:
            return {
                "computer_name": self.computer_name,
                "power": self.power,
                "boots": self.boots,
                "boot_time": self.boot_time.isoformat(),
                "boot_filetime": filetime(self.boot_time),
                "uptime_s": round(self.uptime_s(), 3),
                "pending_shutdown": dict(self.pending_shutdown) if self.pending_shutdown else None,
                "last_shutdown": dict(self.last_shutdown) if self.last_shutdown else None,
                "reboot_down_s": self.reboot_down_s,
                "accounts": [{"name": a.name, "sid": a.sid, "groups": list(a.groups), "kind": a.kind}
                             for a in self.accounts.values()],
            }

    def schedule_shutdown(self, delay_s: int, *, restart: bool, comment: str = "", by: str = "") -> int:
        """shutdown.exe /r|/s /t delay_s /c comment: 0, or the Win32 error shutdown.exe exits with."""
        if not 0 <= delay_s <= MAX_SHUTDOWN_DELAY_S:
            raise ValueError(f"delay {delay_s} outside 0..{MAX_SHUTDOWN_DELAY_S}")
        with self._lock:
            if self.power in ("down", "booting") or (self.pending_shutdown and self.pending_shutdown.get("started")):
                return ERROR_SHUTDOWN_IN_PROGRESS
            if self.pending_shutdown is not None:
                return ERROR_SHUTDOWN_IS_SCHEDULED
            self.pending_shutdown = {"restart": restart, "delay_s": delay_s, "comment": comment, "by": by,
                                     "at": time.time() + delay_s, "started": False}
            self.power = "shutdown_scheduled"
            self._changed.notify_all()
            self._timer = threading.Timer(delay_s, self._shutdown_now)
            self._timer.daemon = True
            self._timer.start()
            return 0

    def abort_shutdown(self) -> int:
        """shutdown.exe /a: 0, or ERROR_NO_SHUTDOWN_IN_PROGRESS."""
        with self._lock:
            if self.pending_shutdown is None or self.pending_shutdown.get("started"):
                return ERROR_NO_SHUTDOWN_IN_PROGRESS if self.pending_shutdown is None else ERROR_SHUTDOWN_IN_PROGRESS
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.pending_shutdown = None
            self.power = "running"
            self._changed.notify_all()
            return 0

    def reboot(self, down_s: float | None = -1.0) -> None:
        """Restart now (the control API's reboot): down for `down_s` (-1: reboot_down_s; None: until boot())."""
        with self._lock:
            if self.power in ("down", "booting"):
                raise RuntimeError(f"{self.computer_name} is already down")
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.pending_shutdown = {"restart": True, "delay_s": 0, "comment": "lab control API", "by": "lab",
                                     "at": time.time(), "started": False}
        self._shutdown_now(down_s=down_s)

    def _shutdown_now(self, down_s: float | None = -1.0) -> None:
        with self._lock:
            if self._closed or self.pending_shutdown is None or self.power == "down":
                return
            self.pending_shutdown["started"] = True
            restart = bool(self.pending_shutdown["restart"])
            listeners = list(self._listeners)
        log.info("%s: %s", self.computer_name, "restarting" if restart else "shutting down")
        for listener in listeners:
            _notify(listener, "down")
        with self._lock:
            self.last_shutdown = dict(self.pending_shutdown, at=time.time())
            self.pending_shutdown = None
            self.power = "down"
            self._timer = None
            self._changed.notify_all()
            self.services.power_off()
            self.registry_keys.clear()  # volatile keys live in memory only
            if self._closed or not restart:
                return
            wait = self.reboot_down_s if down_s is not None and down_s < 0 else down_s
            if wait is None:
                return  # held down until boot() (a test holding the moment)
            self._timer = threading.Timer(wait, self.boot)
            self._timer.daemon = True
            self._timer.start()

    def boot(self) -> None:
        """Come up: a new boot time, automatic services started, LogonUI's key created, listeners open."""
        with self._lock:
            if self._closed or self.power != "down":
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.power = "booting"
            self._boot_locked_state()
            listeners = list(self._listeners)
        log.info("%s: booted (boot %d)", self.computer_name, self.boots)
        for listener in listeners:
            _notify(listener, "up")
        with self._lock:
            self.power = "running"  # only once the listeners are open again
            self._changed.notify_all()

    def _boot_locked_state(self) -> None:
        now = _dt.datetime.now(_dt.timezone.utc)
        # A boot time never repeats, even two boots within the clock's resolution.
        if self.boots and now <= self.boot_time:
            now = self.boot_time + _dt.timedelta(microseconds=1)
        self.boot_time = now
        self._boot_monotonic = time.monotonic()
        self.boots += 1
        self.services.boot()
        self.registry_keys.add(LOGON_UI_SESSION_KEY.lower())

    def close(self) -> None:
        """Stop the power timers (the lab is stopping)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def _notify(listener: PowerListener, event: str) -> None:
    try:
        listener(event)
    except Exception as e:  # one broken listener must not keep the machine from rebooting; the lab's bug: counted
        _internal.lab_bug(f"power listener on {event}", e)
