"""A reboot of a lab host is a reboot: every shell, pool and TCP connection gone, connecting refused while it
is down, a new boot time after it; the control API drives and reports it. One private lab, so the session
lab's pinned sessions are not disturbed."""

from __future__ import annotations

import socket
import ssl
import typing as t

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from tests.lab._control import ControlError, LabClient
from tests.lab._lab import Lab, LabOptions

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def small_lab() -> t.Iterator[Lab]:
    with Lab(LabOptions(hosts=1, squid_auth=(), tinyproxy=False)) as lab:
        yield lab


def _wsman(desc: dict[str, t.Any]) -> WSMan:
    host = desc["hosts"][0]
    user = next(u for u in host["users"] if u["username"] == "ansible")
    return WSMan(host["address"], port=host["https_port"], ssl=True, auth="ntlm", username=user["username"],
                 password=user["password"], cert_validation=desc["ca_cert"], connection_timeout=5,
                 operation_timeout=10, read_timeout=15)


def _run(pool: RunspacePool, script: str) -> list[t.Any]:
    ps = PowerShell(pool)
    ps.add_script(script)
    return list(ps.invoke())


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_a_reboot_ends_every_pool_and_connection_and_refuses_connections_until_boot(small_lab: Lab) -> None:
    desc = small_lab.describe()
    host = desc["hosts"][0]
    client = LabClient(desc["control_url"])
    before = client.host_machine(host["name"])
    counters_before = small_lab.host_counters(host["name"])

    wsman = _wsman(desc)
    pool = RunspacePool(wsman)
    pool.open()
    assert _run(pool, "1 + 1") == [2]
    idle = ssl.create_default_context(cafile=desc["ca_cert"]).wrap_socket(
        socket.create_connection(("127.0.0.1", host["https_port"]), timeout=5), server_hostname="127.0.0.1")

    down = client.reboot_host(host["name"], down_s=None)  # held down until boot: nothing depends on timing
    assert down["power"] == "down"
    assert idle.recv(1) == b""  # the host reset the idle TLS connection
    idle.close()
    assert _refused(host["https_port"]) and _refused(host["http_port"])
    counters = small_lab.host_counters(host["name"])
    assert counters.get("reboots", 0) - counters_before.get("reboots", 0) == 1
    assert counters.get("shells_lost_to_reboot", 0) - counters_before.get("shells_lost_to_reboot", 0) == 1
    assert counters.get("runspace_pools_lost_to_reboot", 0) >= 1

    up = client.boot_host(host["name"])
    assert up["power"] == "running"
    assert up["boots"] == before["boots"] + 1
    assert up["boot_filetime"] > before["boot_filetime"]
    assert up["uptime_s"] < before["uptime_s"] + 60

    # The old pool's shell died with the machine: the host no longer knows it.
    with pytest.raises(WSManFaultError) as e:
        _run(pool, "2 + 2")
    assert "shell" in str(e.value).lower()
    # A new session on the rebooted host works.
    fresh = RunspacePool(_wsman(desc))
    fresh.open()
    try:
        assert _run(fresh, "3 + 3") == [6]
    finally:
        fresh.close()


def test_the_control_api_lists_services_and_refuses_an_unknown_one_or_a_second_reboot(small_lab: Lab) -> None:
    desc = small_lab.describe()
    host = desc["hosts"][0]["name"]
    client = LabClient(desc["control_url"])
    services = client.host_services(host)
    spooler = next(s for s in services if s["name"] == "Spooler")
    assert spooler["state"] == "running" and spooler["start_mode"] == "auto"
    assert client.host_services(host, "Windows Remote Management (WS-Management)")["name"] == "WinRM"
    with pytest.raises(ControlError) as e:
        client.host_services(host, "NoSuchService")
    assert e.value.status == 404
    client.reboot_host(host, down_s=None)
    try:
        with pytest.raises(ControlError) as e:
            client.reboot_host(host)
        assert e.value.status == 409 and "already down" in e.value.message
    finally:
        client.boot_host(host)


def test_a_reboot_with_a_down_time_comes_back_by_itself(small_lab: Lab) -> None:
    name = small_lab.describe()["hosts"][0]["name"]
    machine = small_lab.hosts[name].machine
    assert machine is not None
    boots = machine.boots
    small_lab.reboot_host(name, down_s=0.2)
    assert machine.wait_for_power("running", 30)
    assert machine.boots == boots + 1
    port = small_lab.describe()["hosts"][0]["https_port"]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
