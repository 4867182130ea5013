"""The registry as the lab host's PowerShell Registry provider sees it (HKLM:, HKCU:, Registry::HKEY_...).

The keys and values are those of a Windows Server 2019 install that scripts read (CurrentVersion's product and
build, the processors under HARDWARE\\DESCRIPTION, the Session Manager, LanmanServer's parameters), the
machine's volatile keys (tests/lab/_machine.py `registry_keys`: created at boot, gone at shutdown), and what
scripts write. HKLM is the machine's, kept with it across processes; HKCU the user's. A key that does not exist
fails as the provider does ("Cannot find path 'HKLM:\\...' because it does not exist.").
"""

from __future__ import annotations

import os
from typing import Any

HIVES = {"hklm": "HKEY_LOCAL_MACHINE", "hkcu": "HKEY_CURRENT_USER", "hkey_local_machine": "HKEY_LOCAL_MACHINE",
         "hkey_current_user": "HKEY_CURRENT_USER"}
CURRENT_VERSION = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"


def registry_path(path: str) -> str | None:
    """The full key name (HKEY_LOCAL_MACHINE\\...) of a registry provider path, or None for another provider."""
    p = path.strip().replace("/", "\\")
    low = p.lower()
    for prefix in ("microsoft.powershell.core\\registry::", "registry::"):
        if low.startswith(prefix):
            p = p[len(prefix):]
            low = p.lower()
            break
    else:
        drive, sep, _ = low.partition(":")
        if not sep or drive not in ("hklm", "hkcu"):
            return None
        p = HIVES[drive] + p[len(drive) + 1:]
        low = p.lower()
    hive, _, rest = p.partition("\\")
    if hive.lower() not in HIVES:
        return None
    parts = [c for c in rest.split("\\") if c]
    return "\\".join([HIVES[hive.lower()], *parts])


class Key:
    """One key: its values (name -> (kind, value)) in the order they were written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, tuple[str, object]] = {}


def _defaults(rt: Any) -> dict[str, Key]:
    keys: dict[str, Key] = {}

    def key(name: str, **values: tuple[str, object]) -> Key:
        k = keys.setdefault(name.lower(), Key(name))
        k.values.update(values)
        return k

    key(CURRENT_VERSION, ProductName=("String", "Windows Server 2019 Datacenter"), EditionID=("String",
        "ServerDatacenter"), InstallationType=("String", "Server"), CurrentBuild=("String", "17763"),
        CurrentBuildNumber=("String", "17763"), CurrentVersion=("String", "6.3"), ReleaseId=("String", "1809"),
        CurrentMajorVersionNumber=("DWord", 10), CurrentMinorVersionNumber=("DWord", 0), UBR=("DWord", 1007),
        RegisteredOwner=("String", "Windows User"), RegisteredOrganization=("String", ""),
        InstallDate=("DWord", 1546300800), InstallTime=("QWord", 131907744000000000),
        SystemRoot=("String", "C:\\Windows"))
    key(CURRENT_VERSION + "\\Winlogon", Shell=("String", "explorer.exe"), Userinit=("String",
        "C:\\Windows\\system32\\userinit.exe,"))
    for i in range(os.cpu_count() or 1):
        key(f"HKEY_LOCAL_MACHINE\\HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\{i}",
            ProcessorNameString=("String", "Intel(R) Xeon(R) CPU"), VendorIdentifier=("String", "GenuineIntel"),
            Identifier=("String", "Intel64 Family 6 Model 85 Stepping 7"), **{"~MHz": ("DWord", 2500)})
    key("HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager",
        BootExecute=("MultiString", ["autocheck autochk *"]))
    key("HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\LanmanServer\\Parameters",
        srvcomment=("String", ""))
    key("HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\LanmanWorkstation\\Parameters",
        Workgroup=("String", "WORKGROUP"))
    key("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing")
    key("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache")
    key("HKEY_CURRENT_USER\\Environment")
    return keys


class Registry:
    """The keys of one machine (HKLM) and its users (HKCU, per user name)."""

    def __init__(self, rt: Any) -> None:
        self.keys = _defaults(rt)

    def _volatile(self, rt: Any) -> set[str]:
        machine = rt.host.process.machine
        return set(getattr(machine, "registry_keys", ()) or ())

    def _scoped(self, rt: Any, name: str) -> str:
        """HKCU is per user: its keys are kept under the user's name."""
        if name.upper().startswith("HKEY_CURRENT_USER"):
            return f"{rt.host.user}@{name}".lower()
        return name.lower()

    def exists(self, rt: Any, name: str) -> bool:
        low = name.lower()
        if low in self._volatile(rt) or low in ("hkey_local_machine", "hkey_current_user"):
            return True
        scoped = self._scoped(rt, name)
        return scoped in self.keys or any(k.startswith(scoped + "\\") for k in self.keys) or any(
            v.startswith(low + "\\") for v in self._volatile(rt))

    def get(self, rt: Any, name: str) -> Key:
        scoped = self._scoped(rt, name)
        return self.keys.get(scoped) or Key(name)

    def children(self, rt: Any, name: str) -> list[str]:
        prefix = self._scoped(rt, name) + "\\"
        found: dict[str, str] = {}
        candidates = list(self.keys.items()) + [(v, Key(v)) for v in self._volatile(rt)]
        for low, key in candidates:
            if low.startswith(prefix):
                child = low[len(prefix):].split("\\", 1)[0]
                real = key.name.split("\\")[len(name.split("\\"))] if key.name.count("\\") >= name.count("\\") + 1 \
                    else child
                found.setdefault(child, real)
        return [f"{name}\\{real}" for real in sorted(found.values(), key=str.lower)]

    def create(self, rt: Any, name: str) -> Key:
        return self.keys.setdefault(self._scoped(rt, name), Key(name))

    def delete(self, rt: Any, name: str) -> None:
        low = name.lower()
        machine = rt.host.process.machine
        volatile = getattr(machine, "registry_keys", None)
        if volatile is not None:
            volatile.discard(low)
        scoped = self._scoped(rt, name)
        for k in [k for k in self.keys if k == scoped or k.startswith(scoped + "\\")]:
            del self.keys[k]


def registry_of(rt: Any) -> Registry:
    """The registry of the host (kept with the machine so HKLM outlives the process)."""
    holder = rt.host.process.machine if rt.host.process.machine is not None else rt.host.process
    reg = holder.__dict__.get("lab_registry")
    if reg is None:
        reg = Registry(rt)
        holder.__dict__["lab_registry"] = reg
    return reg  # type: ignore[no-any-return]


def ps_path(name: str) -> str:
    return f"Microsoft.PowerShell.Core\\Registry::{name}"


def drive_path(name: str) -> str:
    for short, full in (("HKLM:", "HKEY_LOCAL_MACHINE"), ("HKCU:", "HKEY_CURRENT_USER")):
        if name.upper().startswith(full):
            return short + name[len(full):]
    return name
