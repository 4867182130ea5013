"""System.Net.NetworkInformation on the lab host: its network interfaces and IP global properties.

The lab host has the loopback interface and one Ethernet adapter. The adapter's IPv4 address is the address
the lab host's WinRM listeners are bound to when that is not a loopback address (Machine.ip_address); a host
bound to loopback gets a link-local style private address derived from its name, so every fact is stable for
a host. Its MAC address is derived the same way (a locally administered address, 00-15-5D is Hyper-V's OUI).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from tests.lab.pwsh.dotnet_types import register, SimpleType
from tests.lab.pwsh.errors import no_method
from tests.lab.pwsh.values import to_str


class IPAddressObj:
    ps_type = "System.Net.IPAddress"

    def __init__(self, text: str) -> None:
        self.address = ipaddress.ip_address(text)
        self.AddressFamily = 2 if self.address.version == 4 else 23  # InterNetwork / InterNetworkV6
        self.IPAddressToString = str(self.address)

    def ps_tostring(self) -> str:
        return str(self.address)

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "tostring":
            return str(self.address)
        if name.lower() == "equals":
            return isinstance(args[0], IPAddressObj) and args[0].address == self.address
        raise no_method(self, name)


class UnicastAddress:
    ps_type = "System.Net.NetworkInformation.UnicastIPAddressInformation"

    def __init__(self, text: str, prefix: int) -> None:
        self.Address = IPAddressObj(text)
        self.PrefixLength = prefix
        self.IPv4Mask = IPAddressObj(str(ipaddress.ip_network(f"0.0.0.0/{prefix}").netmask)) if ":" not in text \
            else None


class GatewayAddress:
    ps_type = "System.Net.NetworkInformation.GatewayIPAddressInformation"

    def __init__(self, text: str) -> None:
        self.Address = IPAddressObj(text)


class IPv4Properties:
    ps_type = "System.Net.NetworkInformation.IPv4InterfaceProperties"

    def __init__(self, index: int) -> None:
        self.Index = index
        self.Mtu = 1500
        self.IsDhcpEnabled = False


class IPProperties:
    ps_type = "System.Net.NetworkInformation.IPInterfaceProperties"

    def __init__(self, adapter: AdapterObj) -> None:
        self.adapter = adapter
        self.UnicastAddresses = [UnicastAddress(a, p) for a, p in adapter.addresses]
        self.GatewayAddresses = [GatewayAddress(adapter.gateway)] if adapter.gateway else []
        self.DnsSuffix = ""
        self.DnsAddresses = [IPAddressObj(adapter.gateway)] if adapter.gateway else []

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("getipv4properties", "getipv6properties"):
            return IPv4Properties(self.adapter.index)
        raise no_method(self, name)


class AdapterObj:
    ps_type = "System.Net.NetworkInformation.SystemNetworkInterface"

    def __init__(self, name: str, description: str, kind: str, index: int, addresses: list[tuple[str, int]],
                 mac: str, gateway: str | None, speed: int) -> None:
        self.Name = name
        self.Description = description
        self.NetworkInterfaceType = kind
        self.index = index
        self.addresses = addresses
        self.mac = mac
        self.gateway = gateway
        self.Speed = speed
        self.OperationalStatus = "Up"
        self.Id = "{" + hashlib.md5(name.encode()).hexdigest().upper()[:8] + "-0000-0000-0000-000000000000}"

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getipproperties":
            return IPProperties(self)
        if low == "getphysicaladdress":
            return self.mac
        raise no_method(self, name)


def host_address(rt: Any) -> tuple[str, str]:
    """(IPv4 address, MAC) of the lab host's Ethernet adapter."""
    machine = rt.host.process.machine
    bound = getattr(machine, "ip_address", None)
    digest = hashlib.sha256(rt.host.computer_name.upper().encode()).digest()
    if bound and not ipaddress.ip_address(bound).is_loopback:
        address = bound
    else:
        address = f"192.168.56.{10 + digest[0] % 200}"
    mac = "00155D" + digest[1:4].hex().upper()
    return address, mac


def interfaces(rt: Any) -> list[AdapterObj]:
    address, mac = host_address(rt)
    gateway = address.rsplit(".", 1)[0] + ".1"
    return [AdapterObj("Ethernet", "Microsoft Hyper-V Network Adapter", "Ethernet", 4, [(address, 24)], mac,
                       gateway, 10_000_000_000),
            AdapterObj("Loopback Pseudo-Interface 1", "Software Loopback Interface 1", "Loopback", 1,
                       [("127.0.0.1", 8), ("::1", 128)], "", None, 1_073_741_824)]


class GlobalProperties:
    ps_type = "System.Net.NetworkInformation.SystemIPGlobalProperties"

    def __init__(self, rt: Any) -> None:
        self.HostName = rt.host.computer_name
        self.DomainName = ""
        self.DhcpScopeName = ""
        self.NodeType = "Hybrid"
        self.IsWinsProxy = False


register(SimpleType("System.Net.NetworkInformation.NetworkInterface",
                    methods={"getallnetworkinterfaces": lambda rt, a: interfaces(rt),
                             "getisnetworkavailable": lambda rt, a: True}))
register(SimpleType("System.Net.NetworkInformation.IPGlobalProperties",
                    methods={"getipglobalproperties": lambda rt, a: GlobalProperties(rt)}))
register(SimpleType("System.Net.IPAddress", methods={"parse": lambda rt, a: IPAddressObj(to_str(a[0]))},
                    statics={"loopback": lambda rt: IPAddressObj("127.0.0.1"),
                             "any": lambda rt: IPAddressObj("0.0.0.0")},
                    cast=lambda rt, v: IPAddressObj(to_str(v)), instance=lambda v: isinstance(v, IPAddressObj)),
         "ipaddress")
