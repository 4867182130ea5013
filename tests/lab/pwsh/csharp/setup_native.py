"""The C# source setup.ps1 (ansible.windows 3.8.0) compiles, emulated: Ansible.Windows.Setup's NativeMethods.
GetTickCount64 (the machine's uptime), DomainInfo (a workgroup member: no DNS domain, the LanmanWorkstation
group WORKGROUP), MemoryInfo, OSVersionInfo (a server product type), SMBIOSInfo and SystemInfo.

Each answers the same as the lab's CIM classes (tests/lab/pwsh/wmi.py) for the same fact, so the facts agree
whichever path setup.ps1 takes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, MemberNotFound, SimpleType
from tests.lab.pwsh.net.collections import GenericList
from tests.lab.pwsh.wmi import instances

SOURCE_SHA256 = "acb32094d60526a59a9507a526ca62504748ca6deb2fdfbe80696b353ad0e81b"
NS = "Ansible.Windows.Setup"


def _first(rt: Any, cls: str) -> Any:
    return instances(rt, cls)[0].props


class TupleObj:
    ps_type = "System.Tuple`2[[System.Int32],[System.Int32]]"

    def __init__(self, a: int, b: int) -> None:
        self.Item1 = a
        self.Item2 = b


class DomainInfoObj:
    ps_type = f"{NS}.DomainInfo"

    def __init__(self, rt: Any) -> None:
        cs = _first(rt, "Win32_ComputerSystem")
        self.Domain = cs["Workgroup"]
        self.DomainRole = cs["DomainRole"]
        self.PartOfDomain = False


class MemoryInfoObj:
    ps_type = f"{NS}.MemoryInfo"

    def __init__(self, rt: Any) -> None:
        os_info = _first(rt, "Win32_OperatingSystem")
        self.TotalPhysical = int(os_info["TotalVisibleMemorySize"]) * 1024
        self.AvailablePhysical = int(os_info["FreePhysicalMemory"]) * 1024


class OSVersionInfoObj:
    ps_type = f"{NS}.OSVersionInfo"

    def __init__(self, rt: Any) -> None:
        self.ProductType = _first(rt, "Win32_OperatingSystem")["ProductType"]


class SMBIOSInfoObj:
    ps_type = f"{NS}.SMBIOSInfo"

    def __init__(self, rt: Any) -> None:
        bios, cs, product = _first(rt, "Win32_BIOS"), _first(rt, "Win32_ComputerSystem"), _first(
            rt, "Win32_ComputerSystemProduct")
        proc = _first(rt, "Win32_Processor")
        self.ReleaseDate = bios["ReleaseDate"]
        self.SMBIOSBIOSVersion = bios["SMBIOSBIOSVersion"]
        self.Manufacturer = cs["Manufacturer"]
        self.Model = cs["Model"]
        self.SerialNumber = bios["SerialNumber"]
        self.UUID = product["UUID"]
        self.ProcessorCountFound = True
        self.ProcessorInfo = GenericList([TupleObj(proc["NumberOfCores"], proc["NumberOfLogicalProcessors"])])


class SystemInfoObj:
    ps_type = f"{NS}.SystemInfo"

    def __init__(self, rt: Any) -> None:
        self.NetBIOSName = rt.host.computer_name.upper()[:15]
        self.NumberOfProcessors = os.cpu_count() or 1
        self.ProcessorArchitecture = 9  # PROCESSOR_ARCHITECTURE_AMD64


class NativeMethodsType(DotNetType):
    full_name = f"{NS}.NativeMethods"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        if name.lower() == "gettickcount64":
            machine = rt.host.process.machine
            return machine.tick_count_ms() if machine is not None else int(time.monotonic() * 1000)
        raise MemberNotFound(name)


def _class(name: str, make: Any) -> SimpleType:
    return SimpleType(f"{NS}.{name}", ctor=lambda rt, a: make(rt), instance=lambda v: isinstance(v, make))


@emulates(SOURCE_SHA256, "ansible.windows 3.8.0 plugins/modules/setup.ps1 (inline Ansible.Windows.Setup)")
def define() -> list[DotNetType]:
    return [NativeMethodsType(), _class("DomainInfo", DomainInfoObj), _class("MemoryInfo", MemoryInfoObj),
            _class("OSVersionInfo", OSVersionInfoObj), _class("SMBIOSInfo", SMBIOSInfoObj),
            _class("SystemInfo", SystemInfoObj), SimpleType(f"{NS}.NativeHelpers"),
            SimpleType(f"{NS}.Win32Exception")]
