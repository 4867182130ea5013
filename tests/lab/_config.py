"""Configuration of one simulated Windows host."""

from __future__ import annotations

import dataclasses
import pathlib


LANGUAGE_MODES = ("FullLanguage", "ConstrainedLanguage", "RestrictedLanguage", "NoLanguage")


@dataclasses.dataclass
class SessionConfiguration:
    """A registered PowerShell session configuration's restrictions (New-PSSessionConfigurationFile's terms).

    session_type "RestrictedRemoteServer" is a JEA endpoint: NoLanguage, and only the restricted commands plus
    the role's visible_cmdlets; visible_providers limits the providers its paths may use (None: all).
    """

    session_type: str = "Default"
    language_mode: str | None = None  # None: the host's (HostConfig.language_mode), or NoLanguage for JEA
    visible_cmdlets: tuple[str, ...] | None = None
    visible_providers: tuple[str, ...] | None = None


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
    # Windows' quotas with Windows' defaults; tests/lab/_limits.py changes them by their Windows names.
    max_envelope_size: int = 512000            # MaxEnvelopeSizekb * 1024 (Windows default 500 KiB)
    idle_timeout_s: float = 7200.0             # shell IdleTimeout
    max_shells_per_user: int = 30
    max_concurrent_operations_per_user: int = 1500
    max_timeout_ms: int = 60000
    max_memory_per_shell_mb: int = 1024        # MaxMemoryPerShellMB
    # A session configuration's MaximumReceivedDataSizePerCommandMB / MaximumReceivedObjectSizeMB
    # (None: no limit); configuration_quotas holds a configuration's own values, by lower-case name.
    max_received_data_per_command_mb: float | None = 50.0
    max_received_object_mb: float | None = 10.0
    configuration_quotas: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    # The language mode every PowerShell on the host runs in: ConstrainedLanguage is what a WDAC/AppLocker
    # lockdown policy imposes system-wide (about_Language_Modes).
    language_mode: str = "FullLanguage"
    # A registered configuration's restrictions, by lower-case name (JEA endpoints)
    session_configurations: dict[str, SessionConfiguration] = dataclasses.field(default_factory=dict)
    realm: str | None = None                   # Kerberos realm when the lab KDC is up
    keytab: pathlib.Path | None = None         # keytab with HTTP/<name> and host/<name> keys
    # client certificate thumbprint (sha1 hex, lower) -> username, for certificate auth
    cert_map: dict[str, str] = dataclasses.field(default_factory=dict)
    # configuration names of PSRP endpoints besides Microsoft.PowerShell
    extra_configurations: tuple[str, ...] = ("Lab.Restricted",)
    # how long a restart keeps the host down (listeners closed) before it boots again
    reboot_down_s: float = 5.0
