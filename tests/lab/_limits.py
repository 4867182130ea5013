"""Windows' quotas on a simulated host, by the names Windows gives them, with Windows' defaults.

A host starts with every quota at the value a default Windows Server has (WinRM 3.0 and the
Microsoft.PowerShell session configuration of Windows PowerShell 5.1). ``python -m tests.lab up
--limit NAME=VALUE`` / ``--no-limits`` and the control API (``POST /hosts/<host>/limits``) change
them per host; ``off`` (None) is Windows' own "unlimited": 2147483647 for the WinRM quotas (what
``winrm get winrm/config`` shows on a host configured without them) and no limit (null) for the two
PowerShell quotas, which is what ``MaximumAllowedMemory = $null`` means to the deserializer.

The two PowerShell quotas belong to a session configuration: ``configuration=<name>`` sets them for
that configuration only and registers it when the host does not have it yet, as
``Register-PSSessionConfiguration -MaximumReceivedDataSizePerCommandMB ...`` would. Sources are in
docs/lab-wsman.md ("Ownership, quotas, limits and their faults").
"""

from __future__ import annotations

import dataclasses
import typing as t

from tests.lab._config import HostConfig

UNLIMITED = 2147483647  # what WinRM shows for a quota it does not enforce


@dataclasses.dataclass(frozen=True)
class Quota:
    """One Windows quota: its name, where the lab keeps it and Windows' default."""

    name: str  # as Windows names it (winrm/config, New-PSSessionConfigurationOption)
    attribute: str  # the HostConfig field
    default: float  # Windows' default, in the unit of the name (kb, MB, ms, count)
    scale: float = 1.0  # HostConfig value = Windows value * scale
    configuration: bool = False  # a session configuration's quota (else the WinRM service's)


QUOTAS: tuple[Quota, ...] = (
    Quota("MaxEnvelopeSizekb", "max_envelope_size", 500, scale=1024),
    Quota("MaxTimeoutms", "max_timeout_ms", 60000),
    Quota("MaxShellsPerUser", "max_shells_per_user", 30),
    Quota("MaxConcurrentOperationsPerUser", "max_concurrent_operations_per_user", 1500),
    Quota("MaxMemoryPerShellMB", "max_memory_per_shell_mb", 1024),
    Quota("IdleTimeout", "idle_timeout_s", 7200000, scale=0.001),
    Quota("MaximumReceivedDataSizePerCommandMB", "max_received_data_per_command_mb", 50, configuration=True),
    Quota("MaximumReceivedObjectSizeMB", "max_received_object_mb", 10, configuration=True),
)
_BY_NAME = {q.name.lower(): q for q in QUOTAS}


def quota(name: str) -> Quota:
    """The quota called `name` (case-insensitive); KeyError naming the known ones otherwise."""
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        raise KeyError(f"unknown limit {name!r}; the host has {', '.join(q.name for q in QUOTAS)}") from None


def parse_value(text: str) -> float | None:
    """A limit value from a command line: a number, or off/none/unlimited for no limit."""
    if text.strip().lower() in ("off", "none", "null", "unlimited"):
        return None
    value = float(text)
    if value <= 0:
        raise ValueError(f"a limit must be positive (or 'off'), not {text!r}")
    return value


def _to_config(q: Quota, value: float | None) -> t.Any:
    if value is None:
        return None if q.configuration else (UNLIMITED * q.scale if q.scale < 1 else int(UNLIMITED * q.scale))
    if value <= 0:
        raise ValueError(f"{q.name} must be positive (or null for no limit), not {value!r}")
    scaled = value * q.scale
    return scaled if q.configuration or q.scale < 1 else int(scaled)


def _from_config(q: Quota, stored: t.Any) -> float | None:
    if stored is None:
        return None
    value = round(stored / q.scale, 3)
    if not q.configuration and value >= UNLIMITED:
        return None
    return int(value) if float(value).is_integer() else value


def set_limits(config: HostConfig, configuration: str | None = None, **values: float | None) -> None:
    """Changes quotas by Windows name; None lifts one. `configuration` scopes the PowerShell quotas."""
    quotas = [(quota(name), value) for name, value in values.items()]
    if configuration is not None:
        wrong = [q.name for q, _ in quotas if not q.configuration]
        if wrong:
            raise KeyError(f"{', '.join(wrong)} belong to the WinRM service, not to session configuration {configuration!r}")
        if configuration.lower() != "microsoft.powershell" and not any(
            c.lower() == configuration.lower() for c in config.extra_configurations
        ):
            config.extra_configurations = (*config.extra_configurations, configuration)
        own = config.configuration_quotas.setdefault(configuration.lower(), {})
        for q, value in quotas:
            own[q.attribute] = _to_config(q, value)
        return
    for q, value in quotas:
        setattr(config, q.attribute, _to_config(q, value))


def lift_all(config: HostConfig) -> None:
    """Every quota off, as a host configured without them ("--no-limits")."""
    set_limits(config, **{q.name: None for q in QUOTAS})


def limits(config: HostConfig) -> dict[str, t.Any]:
    """{"limits": {name: value or None}, "configurations": {name: {name: value or None}}} for describe and the API."""
    host = {q.name: _from_config(q, getattr(config, q.attribute)) for q in QUOTAS}
    configurations = {}
    for name in ("Microsoft.PowerShell", *config.extra_configurations):
        configurations[name] = {
            q.name: _from_config(q, configuration_quota(config, name, q.attribute)) for q in QUOTAS if q.configuration
        }
    return {"limits": host, "configurations": configurations}


def configuration_quota(config: HostConfig, configuration: str, attribute: str) -> t.Any:
    """A session configuration's own value of a PowerShell quota, else the host's."""
    own = config.configuration_quotas.get(configuration.lower(), {})
    return own[attribute] if attribute in own else getattr(config, attribute)


def received_input_caps(config: HostConfig, configuration: str) -> tuple[int | None, int | None]:
    """(MaximumReceivedDataSizePerCommand, MaximumReceivedObjectSize) of a configuration, in bytes (None: none)."""
    data = configuration_quota(config, configuration, "max_received_data_per_command_mb")
    obj = configuration_quota(config, configuration, "max_received_object_mb")
    return (None if data is None else int(data * (1 << 20)), None if obj is None else int(obj * (1 << 20)))
