"""A session configuration's input quotas (MaximumReceivedDataSizePerCommandMB, MaximumReceivedObjectSizeMB)
as unmodified pypsrp meets them: the Send past a quota fails with the PowerShell plugin's fault, the
command is closed, the Runspace Pool stays usable, and only what lifts them on Windows lifts them."""

from __future__ import annotations

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool

from tests.lab import _limits

pytestmark = pytest.mark.timeout(60)

MANAGED_EXCEPTION = 0x80540FA0
MIB = 1 << 20
CHUNK = "A" * (64 * 1024)  # one input object of 64 KiB (base64 text, as transfer scripts receive)


def _send(pool: RunspacePool, script: str, objects: int) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(script)
    ps.invoke(input=(CHUNK for _ in range(objects)))
    return ps


def test_windows_defaults_are_the_hosts_limits(host_config):
    assert _limits.limits(host_config)["limits"] == {
        "MaxEnvelopeSizekb": 500, "MaxTimeoutms": 60000, "MaxShellsPerUser": 30,
        "MaxConcurrentOperationsPerUser": 1500, "MaxMemoryPerShellMB": 1024, "IdleTimeout": 7200000,
        "MaximumReceivedDataSizePerCommandMB": 50, "MaximumReceivedObjectSizeMB": 10,
    }


def test_input_past_the_command_data_quota_fails_the_send_with_the_plugin_fault(connect, host_config):
    _limits.set_limits(host_config, MaximumReceivedDataSizePerCommandMB=1)
    with RunspacePool(connect()) as pool:
        with pytest.raises(WSManFaultError) as err:
            _send(pool, "count-input", 24)  # 24 x 64 KiB of text is more than 1 MiB with its CLIXML
        # the command is closed, the pool is not: the next pipeline runs
        assert _send(pool, "count-input", 4).output == [4 * len(CHUNK)]
    assert err.value.code == MANAGED_EXCEPTION
    assert err.value.provider == "microsoft.powershell"
    assert err.value.provider_path == r"C:\Windows\system32\pwrshplugin.dll"
    assert err.value.provider_fault == (
        f"The total data received from the remote client exceeded the allowed maximum. The allowed maximum is {MIB}."
    )


def test_one_object_past_the_object_quota_fails_with_its_size(connect, host_config):
    _limits.set_limits(host_config, MaximumReceivedObjectSizeMB=0.25)
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("count-input")
        with pytest.raises(WSManFaultError) as err:
            ps.invoke(input=["B" * (300 * 1024)])
    text = err.value.provider_fault
    assert text.startswith(
        "The current deserialized object size of the data received from the remote client computer exceeded the "
        "allowed maximum object size. The current deserialized object size is "
    )
    size = int(text.split("object size is ")[1].split(".")[0])
    assert 256 * 1024 < size <= 300 * 1024 + 4096  # counted as the fragments arrive
    assert text.endswith(f"The allowed maximum object size is {256 * 1024}.")


def test_a_script_that_lifts_maximum_allowed_memory_receives_any_amount(connect, host_config):
    _limits.set_limits(host_config, MaximumReceivedDataSizePerCommandMB=1)
    with RunspacePool(connect()) as pool:
        ps = _send(pool, "lift-input-cap\ncount-input", 48)
    assert ps.output == [48 * len(CHUNK)]


def test_a_session_configuration_with_a_larger_quota_receives_what_the_default_one_refuses(connect, host_config):
    _limits.set_limits(host_config, MaximumReceivedDataSizePerCommandMB=1)
    _limits.set_limits(host_config, configuration="Lab.LargeInput", MaximumReceivedDataSizePerCommandMB=8)
    with RunspacePool(connect(), configuration_name="Lab.LargeInput") as pool:
        assert _send(pool, "count-input", 48).output == [48 * len(CHUNK)]
    with RunspacePool(connect()) as pool, pytest.raises(WSManFaultError):
        _send(pool, "count-input", 48)


def test_lifting_a_quota_turns_it_off(connect, host_config):
    _limits.set_limits(host_config, MaximumReceivedDataSizePerCommandMB=1)
    _limits.lift_all(host_config)
    assert _limits.limits(host_config)["limits"]["MaximumReceivedDataSizePerCommandMB"] is None
    assert _limits.limits(host_config)["limits"]["MaxShellsPerUser"] is None
    with RunspacePool(connect()) as pool:
        assert _send(pool, "count-input", 48).output == [48 * len(CHUNK)]
