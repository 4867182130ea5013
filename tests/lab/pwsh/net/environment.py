"""[Environment] with targets: Get/SetEnvironmentVariable(name[, value], Process|User|Machine),
GetEnvironmentVariables([target]), OSVersion, and the EnvironmentVariableTarget enum; the other [Environment]
members stay in statics.py.

Process variables are the running process's (HostContext.env). User and Machine variables are the registry's
(HKCU\\Environment, HKLM\\...\\Session Manager\\Environment), kept by the machine (tests/lab/_machine.py) so they
outlive the process, as on Windows; setting a Machine variable needs an administrator ("Requested registry
access is not allowed.", a SecurityException). A lab host without machine state keeps them in the process.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.dotnet_types import EnumType, register, SimpleType
from tests.lab.pwsh.errors import method_exception
from tests.lab.pwsh.values import Hashtable, to_str, Version

register(EnumType("System.EnvironmentVariableTarget", {"Process": 0, "User": 1, "Machine": 2}))


def _target(value: object) -> str:
    name = to_str(value).lower()
    if name not in ("process", "user", "machine", "0", "1", "2"):
        raise ValueError(name)
    return {"0": "process", "1": "user", "2": "machine"}.get(name, name)


def _block(rt: Any, target: str) -> dict[str, str]:
    """The variables of a target (a copy for user/machine)."""
    if target == "process":
        return rt.host.env  # type: ignore[no-any-return]
    machine = rt.host.process.machine
    if machine is not None:
        return machine.environment(target, rt.host.user)  # type: ignore[no-any-return]
    fallback = rt.host.process.__dict__.setdefault("persistent_environment", {"machine": {}, "user": {}})
    return fallback[target]  # type: ignore[no-any-return]


def _get(rt: Any, args: list[object]) -> object:
    target = _target(args[1]) if len(args) > 1 else "process"
    name = to_str(args[0])
    if target == "process":
        return rt.host.env_get(name)
    for key, value in _block(rt, target).items():
        if key.lower() == name.lower():
            return value
    return None


def _set(rt: Any, args: list[object]) -> None:
    target = _target(args[2]) if len(args) > 2 else "process"
    name = to_str(args[0])
    value = None if len(args) < 2 or args[1] is None or to_str(args[1]) == "" else to_str(args[1])
    if not name or "=" in name:
        raise method_exception("SetEnvironmentVariable", len(args), "Environment variable name cannot contain equal "
                                                                    "character.\r\nParameter name: variable")
    if target == "process":
        rt.host.env_set(name, value)
        return
    machine = rt.host.process.machine
    if machine is not None:
        try:
            machine.set_environment(target, rt.host.user, name, value)
        except PermissionError as e:
            raise method_exception("SetEnvironmentVariable", len(args), str(e)) from None
        return
    block = _block(rt, target)
    for key in [k for k in block if k.lower() == name.lower()]:
        del block[key]
    if value is not None:
        block[name] = value


def _get_all(rt: Any, args: list[object]) -> Hashtable:
    out = Hashtable()
    for key, value in _block(rt, _target(args[0]) if args else "process").items():
        out[key] = value
    return out


class OperatingSystemObj:
    ps_type = "System.OperatingSystem"

    def __init__(self) -> None:
        self.Version = Version("10.0.17763.0")
        self.Platform = "Win32NT"
        self.ServicePack = ""
        self.VersionString = "Microsoft Windows NT 10.0.17763.0"

    def ps_tostring(self) -> str:
        return self.VersionString


register(SimpleType("System.Environment", statics={"osversion": lambda rt: OperatingSystemObj()},
                    methods={"getenvironmentvariable": _get, "setenvironmentvariable": _set,
                             "getenvironmentvariables": _get_all}), "environment")

# [Environment+SpecialFolder]: the folders [Environment]::GetFolderPath knows (System.Environment.SpecialFolder).
register(EnumType("System.Environment+SpecialFolder", {
    "Desktop": 0, "Programs": 2, "MyDocuments": 5, "Personal": 5, "Favorites": 6, "Startup": 7, "Recent": 8,
    "StartMenu": 11, "MyMusic": 13, "DesktopDirectory": 16, "MyComputer": 17, "Templates": 21,
    "ApplicationData": 26, "LocalApplicationData": 28, "InternetCache": 32, "CommonApplicationData": 35,
    "Windows": 36, "System": 37, "ProgramFiles": 38, "MyPictures": 39, "UserProfile": 40, "SystemX86": 41,
    "ProgramFilesX86": 42, "CommonProgramFiles": 43, "CommonDocuments": 46}))
