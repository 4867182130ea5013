"""The CIM classes of root/cimv2 the lab host answers (Get-CimInstance, Get-WmiObject), derived from the host:
its names and accounts, the machine's boot time and service table, and the real memory and processor count of
the computer the lab runs on (Win32_* class documentation, Microsoft Learn "Win32 Provider").

A class outside this set fails as WMI does for an unknown class ("Invalid class"); a namespace other than
root/cimv2 as an invalid namespace. Queries take WQL's `SELECT <props|*> FROM <class> [WHERE ...]` with
`=`, `<>`, `LIKE` and `AND`/`OR` on property values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Callable
from typing import Any

from tests.lab.pwsh.values import PSObject, to_str

OS_CAPTION = "Microsoft Windows Server 2019 Datacenter"
OS_VERSION = "10.0.17763"


class CimInstanceObj(PSObject):
    """A CIM instance: its properties, and the class it belongs to (CimClass.CimClassName)."""

    def __init__(self, class_name: str, props: dict[str, object]) -> None:
        super().__init__(props)
        self.class_name = class_name
        self.ps_type = f"Microsoft.Management.Infrastructure.CimInstance#root/cimv2/{class_name}"


class WmiError(Exception):
    """A CIM error: `kind` names the CimException (InvalidClass, InvalidNamespace, InvalidQuery, NotFound)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _memory_kb() -> tuple[int, int]:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        avail = os.sysconf("SC_AVPHYS_PAGES")
        return pages * size // 1024, avail * size // 1024
    except (ValueError, OSError, AttributeError):
        return 8 * 1024 * 1024, 4 * 1024 * 1024


def _serial(rt: Any, salt: str) -> str:
    return hashlib.sha256(f"{rt.host.computer_name}/{salt}".encode()).hexdigest()


def _boot_time(rt: Any) -> dt.datetime:
    machine = rt.host.process.machine
    moment = machine.boot_time if machine is not None else dt.datetime.now(dt.timezone.utc)
    return moment.astimezone()


def _operating_system(rt: Any) -> list[dict[str, object]]:
    total, free = _memory_kb()
    return [{"Caption": OS_CAPTION, "Version": OS_VERSION, "BuildNumber": "17763", "OSArchitecture": "64-bit",
             "Name": f"{OS_CAPTION}|C:\\Windows|\\Device\\Harddisk0\\Partition2", "CSName": rt.host.computer_name,
             "LastBootUpTime": _boot_time(rt), "LocalDateTime": dt.datetime.now().astimezone(),
             "InstallDate": dt.datetime(2019, 1, 1, tzinfo=dt.timezone.utc).astimezone(),
             "SystemDirectory": "C:\\Windows\\system32", "WindowsDirectory": "C:\\Windows", "SystemDrive": "C:",
             "TotalVisibleMemorySize": total, "FreePhysicalMemory": free, "TotalVirtualMemorySize": total * 2,
             "FreeVirtualMemory": free * 2, "ProductType": 3, "OperatingSystemSKU": 8, "RegisteredUser": "Windows User",
             "Organization": "", "SerialNumber": "00430-00000-00000-AA" + _serial(rt, "os")[:3].upper(),
             "OSLanguage": 1033, "Locale": "0409", "CountryCode": "1", "CurrentTimeZone": int(
                 dt.datetime.now().astimezone().utcoffset().total_seconds() // 60)}]  # type: ignore[union-attr]


def _computer_system(rt: Any) -> list[dict[str, object]]:
    total, _ = _memory_kb()
    return [{"Name": rt.host.computer_name, "DNSHostName": rt.host.computer_name.lower(), "Domain": "WORKGROUP",
             "Workgroup": "WORKGROUP", "PartOfDomain": False, "DomainRole": 2, "Manufacturer": "Microsoft Corporation",
             "Model": "Virtual Machine", "NumberOfProcessors": 1, "NumberOfLogicalProcessors": os.cpu_count() or 1,
             "TotalPhysicalMemory": total * 1024, "PrimaryOwnerContact": "", "PrimaryOwnerName": "Windows User",
             "SystemType": "x64-based PC", "UserName": None}]


def _bios(rt: Any) -> list[dict[str, object]]:
    return [{"Manufacturer": "Microsoft Corporation", "SMBIOSBIOSVersion": "Hyper-V UEFI Release v4.0",
             "Version": "VRTUAL - 1", "SerialNumber": _serial(rt, "bios")[:24],
             "ReleaseDate": dt.datetime(2019, 11, 1, tzinfo=dt.timezone.utc).astimezone(), "Name": "Hyper-V UEFI"}]


def _product(rt: Any) -> list[dict[str, object]]:
    h = _serial(rt, "uuid")
    uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}".upper()
    return [{"UUID": uuid, "IdentifyingNumber": _serial(rt, "bios")[:24], "Name": "Virtual Machine",
             "Vendor": "Microsoft Corporation"}]


def _processor(rt: Any) -> list[dict[str, object]]:
    cores = os.cpu_count() or 1
    return [{"Name": "Intel(R) Xeon(R) CPU", "Manufacturer": "GenuineIntel", "NumberOfCores": cores,
             "NumberOfLogicalProcessors": cores, "DeviceID": "CPU0", "Architecture": 9, "AddressWidth": 64}]


def _shares(rt: Any) -> list[dict[str, object]]:
    return [{"Name": "ADMIN$", "Path": "C:\\Windows", "Description": "Remote Admin", "Type": 2147483648},
            {"Name": "C$", "Path": "C:\\", "Description": "Default share", "Type": 2147483648},
            {"Name": "IPC$", "Path": "", "Description": "Remote IPC", "Type": 2147483651}]


_STATES = {"running": "Running", "stopped": "Stopped", "paused": "Paused", "start_pending": "Start Pending",
           "stop_pending": "Stop Pending", "continue_pending": "Continue Pending", "pause_pending": "Pause Pending"}
_MODES = {"auto": "Auto", "delayed": "Auto", "manual": "Manual", "disabled": "Disabled"}


def _services(rt: Any) -> list[dict[str, object]]:
    machine = rt.host.process.machine
    if machine is None:
        return []
    out = []
    for svc in machine.services.snapshot():
        out.append({"Name": svc["name"], "DisplayName": svc["display_name"], "State": _STATES.get(svc["state"],
                    svc["state"]), "StartMode": _MODES.get(svc["start_mode"], svc["start_mode"]),
                    "PathName": svc["path"], "StartName": svc["username"], "Description": svc["description"],
                    "Started": svc["state"] == "running", "DelayedAutoStart": svc["start_mode"] == "delayed"})
    return out


CLASSES: dict[str, Callable[[Any], list[dict[str, object]]]] = {
    "win32_operatingsystem": _operating_system, "win32_computersystem": _computer_system, "win32_bios": _bios,
    "win32_computersystemproduct": _product, "win32_processor": _processor, "win32_share": _shares,
    "win32_service": _services,
}
_CANONICAL = {"win32_operatingsystem": "Win32_OperatingSystem", "win32_computersystem": "Win32_ComputerSystem",
              "win32_bios": "Win32_BIOS", "win32_computersystemproduct": "Win32_ComputerSystemProduct",
              "win32_processor": "Win32_Processor", "win32_share": "Win32_Share", "win32_service": "Win32_Service"}


def instances(rt: Any, class_name: str, namespace: str = "root/cimv2", where: str | None = None,
              properties: list[str] | None = None) -> list[CimInstanceObj]:
    """The instances of a class, filtered by a WQL WHERE clause and narrowed to the asked properties."""
    ns = namespace.replace("\\", "/").lower().strip("/")
    if ns not in ("root/cimv2", "cimv2"):
        raise WmiError("InvalidNamespace", "Invalid namespace ")
    low = class_name.lower()
    if low not in CLASSES:
        raise WmiError("InvalidClass", "Invalid class ")
    out = []
    for props in CLASSES[low](rt):
        if where and not _matches(props, where):
            continue
        if properties and properties != ["*"]:
            keep = {p.lower() for p in properties}
            props = {k: (v if k.lower() in keep else None) for k, v in props.items()}
        out.append(CimInstanceObj(_CANONICAL[low], props))
    return out


def query(rt: Any, wql: str, namespace: str = "root/cimv2") -> list[CimInstanceObj]:
    m = re.match(r"^\s*select\s+(.+?)\s+from\s+(\w+)(?:\s+where\s+(.+))?\s*$", wql, re.I | re.S)
    if not m:
        raise WmiError("InvalidQuery", "Invalid query ")
    props = [p.strip() for p in m.group(1).split(",")]
    return instances(rt, m.group(2), namespace, m.group(3), props)


_TERM = re.compile(r"\s*(\w+)\s*(=|<>|!=|\s+like\s+)\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[\w.-]+)\s*", re.I)


def _matches(props: dict[str, object], where: str) -> bool:
    """A WQL condition: terms joined by AND/OR (AND binds tighter), string values with \\ escapes."""
    for alternative in re.split(r"\s+or\s+", where, flags=re.I):
        if all(_term(props, t) for t in re.split(r"\s+and\s+", alternative, flags=re.I)):
            return True
    return False


def _term(props: dict[str, object], text: str) -> bool:
    m = _TERM.fullmatch(text)
    if not m:
        raise WmiError("InvalidQuery", "Invalid query ")
    name, op, raw = m.group(1), m.group(2).strip().lower(), m.group(3)
    value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw[:1] in "'\"" else raw
    actual = next((to_str(v) for k, v in props.items() if k.lower() == name.lower()), None)
    if actual is None:
        return False
    if op == "like":
        rx = "^" + re.escape(value).replace("%", ".*").replace("_", ".") + "$"
        return bool(re.match(rx, actual, re.I))
    equal = actual.lower() == value.lower()
    return equal if op == "=" else not equal
