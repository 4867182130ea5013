"""Configuration of one simulated Windows host."""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass
class HostConfig:
    name: str                                  # NetBIOS-style computer name, e.g. "WIN-LAB1"
    address: str = "127.0.0.1"
    http_port: int = 0                         # 0: pick a free port at start
    https_port: int = 0
    users: dict[str, str] = dataclasses.field(default_factory=dict)   # username -> password
    root: pathlib.Path | None = None           # per-host file system root (C:\ maps here)
    # auth schemes the host offers, as WinRM's Auth settings do
    auth: tuple[str, ...] = ("basic", "negotiate", "kerberos", "credssp", "certificate")
    allow_unencrypted: bool = False            # WinRM AllowUnencrypted (Windows default false)
    max_envelope_size: int = 512000            # MaxEnvelopeSizekb * 1024 (Windows default 500 KiB)
    idle_timeout_s: float = 7200.0             # shell IdleTimeout
    max_shells_per_user: int = 30
    max_concurrent_operations_per_user: int = 1500
    max_timeout_ms: int = 60000
    realm: str | None = None                   # Kerberos realm when the lab KDC is up
    keytab: pathlib.Path | None = None         # keytab with HTTP/<name> and host/<name> keys
    # client certificate thumbprint (sha1 hex, lower) -> username, for certificate auth
    cert_map: dict[str, str] = dataclasses.field(default_factory=dict)
    # configuration names of PSRP endpoints besides Microsoft.PowerShell
    extra_configurations: tuple[str, ...] = ("Lab.Restricted",)
    # how long a restart keeps the host down (listeners closed) before it boots again
    reboot_down_s: float = 5.0
