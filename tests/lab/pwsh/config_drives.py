"""The WSMan: and Cert: drives, as far as scripts read them on the lab host: WSMan:\\localhost\\Listener and its
listeners' settings, and Cert:\\LocalMachine\\My holding the HTTPS listener's certificate.

The listeners are the lab host's own (Machine.winrm_listeners, set by the lab when the host starts: transport,
port, and for HTTPS the certificate's thumbprint, subject and validity). Other WSMan: and Cert: paths are
outside the lab's provider subset and fail naming the path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

WSMAN_ROOT = "WSMan:\\localhost"


def drive_of(path: str) -> str | None:
    low = path.strip().lower()
    if low.startswith(("wsman:", "microsoft.wsman.management\\wsman::")):
        return "wsman"
    if low.startswith(("cert:", "microsoft.powershell.security\\certificate::")):
        return "cert"
    return None


class ConfigItem:
    """An item of the WSMan: drive: a container (Keys, Name) or a leaf setting (Name, Value)."""

    def __init__(self, path: str, name: str, value: object = None, keys: list[str] | None = None,
                 container: bool = False) -> None:
        self.PSPath = path
        self.Name = name
        self.Value = value
        self.Keys = keys or []
        self.PSIsContainer = container
        self.ps_type = "Microsoft.WSMan.Management.WSManConfigContainerElement" if container else \
            "Microsoft.WSMan.Management.WSManConfigLeafElement"

    def ps_tostring(self) -> str:
        return self.PSPath


class CertificateObj:
    ps_type = "System.Security.Cryptography.X509Certificates.X509Certificate2"

    def __init__(self, info: dict[str, Any]) -> None:
        self.Thumbprint = info["thumbprint"]
        self.Subject = info["subject"]
        self.Issuer = info.get("issuer", info["subject"])
        self.NotAfter = info["not_after"]
        self.NotBefore = info["not_before"]
        self.FriendlyName = ""
        self.HasPrivateKey = True
        self.PSPath = f"Cert:\\LocalMachine\\My\\{self.Thumbprint}"

    def ps_tostring(self) -> str:
        return f"[Subject]\r\n  {self.Subject}\r\n\r\n[Thumbprint]\r\n  {self.Thumbprint}\r\n"


def _listeners(rt: Any) -> list[dict[str, Any]]:
    machine = rt.host.process.machine
    return list(getattr(machine, "winrm_listeners", None) or [])


def _listener_name(info: dict[str, Any]) -> str:
    return "Listener_" + str(int(hashlib.sha1(f"{info['transport']}{info['port']}".encode()).hexdigest()[:8], 16))


def wsman_items(rt: Any, path: str, children: bool) -> list[ConfigItem] | None:
    """The item at (or the children of) a WSMan: path; None when the path is outside the subset or missing."""
    p = re.sub(r"^(microsoft\.wsman\.management\\wsman::|wsman:)\\?", "", path.strip(), flags=re.I).rstrip("\\*")
    parts = [x for x in p.split("\\") if x]
    wildcard = path.strip().endswith("*")
    if [x.lower() for x in parts[:2]] != ["localhost", "listener"]:
        return None
    listeners = _listeners(rt)
    base = f"{WSMAN_ROOT}\\Listener"
    if len(parts) == 2:
        if children or wildcard:
            return [ConfigItem(f"{base}\\{_listener_name(i)}", _listener_name(i),
                               keys=[f"Transport={i['transport']}", "Address=*"], container=True) for i in listeners]
        return [ConfigItem(base, "Listener", container=True)]
    match = next((i for i in listeners if _listener_name(i).lower() == parts[2].lower()), None)
    if match is None or len(parts) > 3:
        return None
    if not children:
        return [ConfigItem(f"{base}\\{_listener_name(match)}", _listener_name(match),
                           keys=[f"Transport={match['transport']}", "Address=*"], container=True)]
    leaf = f"{base}\\{_listener_name(match)}"
    settings = [("Address", "*"), ("Transport", match["transport"]), ("Port", str(match["port"])),
                ("Hostname", match.get("hostname", "")), ("Enabled", "true"), ("URLPrefix", "wsman"),
                ("CertificateThumbprint", match.get("thumbprint", "")),
                ("ListeningOn", match.get("listening_on", "127.0.0.1"))]
    return [ConfigItem(f"{leaf}\\{k}", k, v) for k, v in settings]


def certificate(rt: Any, path: str) -> CertificateObj | None:
    """The certificate at Cert:\\LocalMachine\\My\\<thumbprint>, or None."""
    m = re.match(r"^(?:microsoft\.powershell\.security\\certificate::|cert:)\\?localmachine\\my\\([0-9a-f]+)$",
                 path.strip(), re.I)
    if not m:
        return None
    for info in _listeners(rt):
        if str(info.get("thumbprint", "")).lower() == m.group(1).lower():
            return CertificateObj({**info, "not_after": _local(info["not_after"]),
                                   "not_before": _local(info["not_before"])})
    return None


def _local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone() if moment.tzinfo is not None else moment
