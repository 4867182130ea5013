"""WSManService driven by unmodified pypsrp client code (WinRS, RunspacePool, PowerShell) in-process."""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET

import pytest
from pypsrp.exceptions import WinRMTransportError, WSManFaultError
from pypsrp.host import PSHost
from pypsrp.complex_objects import RunspacePoolState
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.shell import Process, WinRS
from pypsrp.wsman import SelectorSet

from tests.integration.lab_wsman.conftest import run_in_thread, wait_until

pytestmark = pytest.mark.timeout(60)

QUOTA_SHELLS = 0x803381A5
QUOTA_OPERATIONS = 0x803381A6
INVALID_SELECTORS = 0x8033805B
TIMED_OUT = 0x80338029


def test_winrs_command_returns_stdout_and_exit_code(connect, counters):
    with WinRS(connect()) as shell:
        ok = Process(shell, "cmd.exe", ["/c", "echo", "hello lab"])
        ok.invoke()
        bad = Process(shell, "exit", ["7"])
        bad.invoke()
    assert (ok.rc, ok.stdout, ok.stderr) == (0, b"hello lab\r\n", b"")
    assert bad.rc == 7
    assert counters.get("shells_created") == counters.get("shells_deleted") == 1
    assert counters.get("wsman.Command") == 2


def test_winrs_stdin_sent_by_the_client_reaches_the_command(connect):
    with WinRS(connect()) as shell:
        proc = Process(shell, "type")
        proc.begin_invoke()
        proc.send(b"line one\r\n", end=False)
        proc.send(b"line two\r\n", end=True)
        proc.end_invoke()
    assert proc.stdout == b"line one\r\nline two\r\n"


def test_psrp_pipeline_streams_arrive_in_order_with_input(connect, counters):
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("out first\nwarn careful\nerr broken\necho-input\nobject name")
        output = ps.invoke(["in-1", "in-2"])
    assert output[:3] == ["first", "in-1", "in-2"]
    assert output[3].adapted_properties == {} and output[3].extended_properties["Name"] == "name"
    assert [w.message for w in ps.streams.warning] == ["careful"]
    assert [str(e) for e in ps.streams.error] == ["broken"]
    assert ps.streams.error[0].fq_error == "Lab.Err"
    assert ps.state == PSInvocationState.COMPLETED
    assert counters.get("runspace_pools_created") == counters.get("runspace_pools_deleted") == 1


def test_psrp_named_parameters_reach_the_engine_as_name_value_pairs_and_arguments_stay_positional(connect):
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        # A positional "-Path" string must not turn into a parameter name: only AddParameter names one.
        ps.add_script("args").add_argument("positional").add_argument("-Path").add_parameter("Path", "C:\\temp")
        assert ps.invoke() == ["positional", "-Path", ["Path", "C:\\temp"]]


def test_exit_code_reaches_the_client_host_through_set_should_exit(connect):
    host = PSHost(None, None, False, "lab-test", None, None, "1.0")
    with RunspacePool(connect(), host=host) as pool:
        ps = PowerShell(pool)
        ps.add_script("out before\nexit 3")
        assert ps.invoke() == ["before"]
    assert host.rc == 3


def test_write_host_without_client_host_becomes_an_information_record(connect):
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("host shown to the user")
        ps.invoke()
    assert [r.message_data for r in ps.streams.information] == ["shown to the user"]
    assert ps.streams.information[0].tags == ["PSHOST"]


def test_terminating_error_fails_the_pipeline(connect):
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("out partial\nfail it broke")
        assert ps.invoke() == ["partial"]
        assert ps.state == PSInvocationState.FAILED


def test_stop_signal_stops_a_running_pipeline(connect, gates):
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("gate stop\nout never")  # runs until the test opens the gate: only stop() can end it
        ps.begin_invoke()
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        gates("stop").set()
        assert ps.output == []


def test_pool_is_alive_until_the_host_expires_its_shells(connect, service, counters):
    pool = RunspacePool(connect())
    pool.open()
    assert pool.is_alive()
    assert service.expire_shells() == 1
    assert not pool.is_alive()
    assert counters.get("shells_expired") == counters.get("runspace_pools_expired") == 1


def test_idle_shell_expires_after_idle_timeout(connect, host_config, counters, clock):
    host_config.idle_timeout_s = 60
    pool = RunspacePool(connect())
    pool.open()
    clock.advance(59)
    assert pool.is_alive()  # a Get is activity: the idle time starts again
    clock.advance(59)
    assert pool.is_alive()  # 118 s after the open, 59 s after the last Get
    clock.advance(61)
    assert not pool.is_alive()
    assert counters.get("shells_expired") == 1


def test_another_users_shell_id_is_not_found(connect, counters):
    with WinRS(connect("alice")) as shell:
        intruder = WinRS(connect("bob"), id=shell.id)
        intruder._selector_set = shell._selector_set  # what a client guessing alice's ShellId sends
        with pytest.raises(WSManFaultError) as err:
            Process(intruder, "cmd.exe", ["/c", "echo", "x"]).invoke()
    assert err.value.code == INVALID_SELECTORS
    assert counters.get("rejected.not_owner") == 1


def test_max_shells_per_user_refuses_the_next_create(connect, host_config, counters):
    host_config.max_shells_per_user = 2
    shells = [WinRS(connect("alice")) for _ in range(2)]
    for shell in shells:
        shell.open()
    with pytest.raises(WSManFaultError) as err:
        WinRS(connect("alice")).open()
    assert err.value.code == QUOTA_SHELLS
    assert "maximum number of 2 concurrent shells" in err.value.reason
    other = WinRS(connect("bob"))
    other.open()  # the quota is per user
    shells[0].close()
    WinRS(connect("alice")).open()  # a freed slot can be used again
    assert counters.get("rejected.quota_shells") == 1


def test_concurrent_operations_quota_counts_a_pending_receive(connect, host_config, service, counters, gates):
    host_config.max_concurrent_operations_per_user = 1
    shell = WinRS(connect(operation_timeout=60))
    shell.open()
    proc = Process(shell, "gate", ["quota"])  # produces nothing until the gate opens: the Receive stays pending
    proc.begin_invoke()
    thread, result = run_in_thread(lambda: shell.receive("stdout stderr", command_id=proc.id))
    try:
        assert wait_until(lambda: service.operations_in_flight("alice") == 1)
        with pytest.raises(WSManFaultError) as err:
            WinRS(connect()).open()
    finally:
        gates("quota").set()
    thread.join(20)
    assert err.value.code == QUOTA_OPERATIONS
    assert counters.get("rejected.quota_operations") == 1
    assert not isinstance(result[0], Exception)


def test_a_waiting_receive_does_not_block_other_requests(connect, service, gates):
    # alice's Receive waits on a gate the test opens, not on a timer: bob's whole exchange is served while it
    # is still in flight, however slow the machine.
    slow = WinRS(connect("alice", operation_timeout=60))
    slow.open()
    proc = Process(slow, "gate", ["long-poll"])  # produces nothing until the gate opens
    proc.begin_invoke()
    thread, result = run_in_thread(lambda: slow.receive("stdout stderr", command_id=proc.id))
    try:
        assert wait_until(lambda: service.operations_in_flight("alice") == 1)  # alice's Receive is waiting
        with WinRS(connect("bob")) as fast:
            quick = Process(fast, "cmd.exe", ["/c", "echo", "ok"])
            quick.invoke()
        still_waiting = service.operations_in_flight("alice") == 1 and thread.is_alive()
    finally:
        gates("long-poll").set()
    thread.join(20)
    assert quick.stdout == b"ok\r\n"
    assert still_waiting, "bob was served only after alice's Receive ended"
    assert not isinstance(result[0], Exception), result


def test_a_receive_with_nothing_to_return_times_out_after_its_operation_timeout(connect, service, counters):
    slow = WinRS(connect("alice", operation_timeout=1))
    slow.open()
    proc = Process(slow, "gate", ["never"])  # produces nothing while the test runs
    proc.begin_invoke()
    started = time.monotonic()
    with pytest.raises(WSManFaultError) as err:
        slow.receive("stdout stderr", command_id=proc.id)
    assert err.value.code == TIMED_OUT
    assert time.monotonic() - started >= 1  # a lower bound: the host waited out the OperationTimeout
    log = [e for e in counters.log() if e.get("kind") == "wsman" and e["action"] == "Receive"]
    assert [bool(e.get("fault")) for e in log] == [True]


def test_unknown_configuration_is_refused_and_extra_configuration_works(connect, host_config):
    with pytest.raises(WSManFaultError) as err:
        RunspacePool(connect(), configuration_name="No.Such.Config").open()
    assert "No.Such.Config" in err.value.reason
    name = host_config.extra_configurations[0]
    with RunspacePool(connect(), configuration_name=name) as pool:
        ps = PowerShell(pool)
        ps.add_script("out restricted")
        assert ps.invoke() == ["restricted"]


def test_request_above_max_envelope_size_gets_http_413(connect, host_config, counters):
    host_config.max_envelope_size = 20000
    with RunspacePool(connect()) as pool:
        ps = PowerShell(pool)
        ps.add_script("out " + "x" * 30000)
        with pytest.raises(WinRMTransportError) as err:
            ps.invoke()
    assert err.value.code == 413
    assert counters.get("rejected.envelope_size") == 1


def test_large_output_is_fragmented_to_the_negotiated_envelope_size(connect, service):
    wsman = connect()
    sizes: list[int] = []
    original = service.handle

    def measuring(user, body, **kw):
        status, answer = original(user, body, **kw)
        sizes.append(len(answer))
        return status, answer

    service.handle = measuring  # type: ignore[method-assign]
    with RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script("out " + "y" * 400000)
        assert ps.invoke() == ["y" * 400000]
    assert max(sizes) <= wsman.max_envelope_size


def test_get_config_reports_this_hosts_envelope_size(connect, host_config):
    host_config.max_envelope_size = 300 * 1024
    wsman = connect()
    wsman.update_max_payload_size()
    assert wsman.max_envelope_size == 300 * 1024


def test_injected_wsman_fault_answers_the_next_request(connect, faults, counters):
    faults.update(wsman_fault_next=["access_denied"])
    with pytest.raises(WSManFaultError) as err:
        WinRS(connect()).open()
    assert err.value.code == 5
    WinRS(connect()).open()  # consumed: the next request is served
    assert counters.get("wsman.Create") == 2


def test_unknown_command_id_is_the_windows_invalid_selectors_fault(connect):
    with WinRS(connect()) as shell:
        with pytest.raises(WSManFaultError) as err:
            shell.receive("stdout stderr", command_id=str(uuid.uuid4()).upper())
    assert err.value.code == INVALID_SELECTORS
    assert "command identifier that does not exist" in err.value.reason


def test_a_disconnected_pool_keeps_its_commands_output_for_the_next_client(connect, counters):
    # pypsrp's own disconnected-commands flow (recorded from Windows in test_psrp_disconnected_commands).
    first = RunspacePool(connect())
    first.open()
    ps = PowerShell(first)
    ps.add_script("out a\nout b")
    ps.begin_invoke()
    first.disconnect()
    assert not first.is_alive()  # Get answers State Disconnected

    pools = RunspacePool.get_runspace_pools(connect())
    assert [p.id.upper() for p in pools] == [first.id.upper()]
    pool = pools[0]
    pool.connect()
    commands = pool.create_disconnected_power_shells()
    assert [c.id.upper() for c in commands] == [ps.id.upper()]
    assert commands[0].connect() == ["a", "b"]
    assert pool.is_alive()
    pool.close()
    assert counters.get("wsman_fault.internal_error") == 0


def test_a_disconnected_pool_answers_nothing_until_reconnected_and_then_resumes(connect):
    pool = RunspacePool(connect())
    pool.open()
    pool.disconnect()
    ps = PowerShell(pool)
    ps.add_script("out refused")
    pool.state = RunspacePoolState.OPENED  # send anyway, as a client ignoring its own state would
    with pytest.raises(WSManFaultError, match="disconnected"):
        ps.invoke()
    pool.state = RunspacePoolState.DISCONNECTED
    pool.connect()  # the same client: Reconnect
    ps = PowerShell(pool)
    ps.add_script("out resumed")
    assert ps.invoke() == ["resumed"]
    pool.close()


def test_a_disconnected_pool_expires_after_the_idle_timeout_its_disconnect_named(connect, clock, counters):
    pool = RunspacePool(connect())
    pool.open()
    idle = ET.Element("{http://schemas.microsoft.com/wbem/wsman/1/windows/shell}Disconnect")
    ET.SubElement(idle, "{http://schemas.microsoft.com/wbem/wsman/1/windows/shell}IdleTimeOut").text = "PT60S"
    selectors = SelectorSet()
    selectors.add_option("ShellId", pool.shell.id)
    pool.connection.disconnect(pool.shell.resource_uri, idle, selector_set=selectors)
    clock.advance(61)
    assert RunspacePool.get_runspace_pools(connect()) == []
    assert counters.get("shells_expired") == 1
