"""The lab's real command engine behind PSRP, driven by unmodified pypsrp client code in-process.

These check what a client sees end to end: pipeline states, error records, exit codes and the
rc/stdout/stderr that ansible.builtin.psrp derives from them (its own `_parse_pipeline_result`).
"""

from __future__ import annotations

import pathlib
import types
import typing as t

import pytest
from ansible.plugins.connection.psrp import Connection as AnsiblePSRP
from pypsrp.host import PSHost, PSHostUserInterface
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.wsman import WSMan

from tests.integration.lab_wsman.conftest import InProcessTransport
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._engine import Engine
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService

DEMO = "C:\\Windows\\Temp\\pinned-demo.txt"
TEXT = "Grüße aus dem Labor ✓"


@pytest.fixture
def lab_root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


@pytest.fixture
def pool(lab_root: pathlib.Path) -> t.Iterator[tuple[RunspacePool, PSHost]]:
    config = HostConfig(name="WIN-LAB1", users={"alice": "pw-a"}, root=lab_root)
    service = WSManService(config, Counters(), Faults(), engine_factory=lambda c, u: Engine(c.root, c.name, u))
    wsman = WSMan("127.0.0.1", username="alice", password="unused", ssl=False, auth="basic", encryption="never",
                  operation_timeout=5)
    wsman.transport = InProcessTransport(service, "alice", wsman.transport.endpoint)  # type: ignore[assignment]
    # The host ansible.builtin.psrp gives its Runspace Pool: it records SetShouldExit and host output.
    host = PSHost(None, None, False, "Ansible PSRP Host", None, PSHostUserInterface(), None)
    with RunspacePool(wsman, host=host) as rp:
        yield rp, host
    service.close()


def ansible_raw(pool: tuple[RunspacePool, PSHost], command: str) -> tuple[int, str, str, PowerShell]:
    """Runs `command` the way ansible.builtin.psrp runs a raw task and parses the result with its own code."""
    rp, host = pool
    host.rc = 0
    ps = PowerShell(rp)
    ps.add_script(f"{command}\nexit $LASTEXITCODE", use_local_scope=True)
    ps.invoke()
    plugin = types.SimpleNamespace(host=host, _play_context=types.SimpleNamespace(no_log=False), _psrp_host="lab")
    rc, stdout, stderr = AnsiblePSRP._parse_pipeline_result(plugin, ps)  # type: ignore[arg-type]
    text = [v.decode() if isinstance(v, bytes) else v for v in (stdout, stderr)]
    return rc, text[0], text[1], ps


def test_throw_fails_the_pipeline_with_the_error_record_in_its_state(pool) -> None:
    rc, _stdout, stderr, ps = ansible_raw(pool, "'before'; throw 'the operator must see this'; 'after'")
    assert ps.state == PSInvocationState.FAILED
    assert ps.had_errors
    assert ps.output == ["before"]
    assert [str(e) for e in ps.streams.error] == ["the operator must see this"]
    assert rc == 1
    assert "the operator must see this" in stderr
    assert "+ FullyQualifiedErrorId : the operator must see this" in stderr
    assert "At line:1 char:" in stderr


def test_a_non_terminating_error_completes_the_pipeline_and_reaches_stderr(pool) -> None:
    rc, _stdout, stderr, ps = ansible_raw(pool, "Write-Error -Message 'something the operator should see'")
    assert ps.state == PSInvocationState.COMPLETED
    assert "Write-Error : something the operator should see" in stderr
    assert rc == 0  # as against Windows: no exit code and no failed pipeline


def test_error_action_stop_turns_write_error_into_a_failed_pipeline(pool) -> None:
    rc, _stdout, stderr, ps = ansible_raw(pool, "$ErrorActionPreference = 'Stop'; Write-Error 'stop here'; 'after'")
    assert ps.state == PSInvocationState.FAILED
    assert ps.output == []
    assert rc == 1 and "stop here" in stderr


def test_a_native_command_exit_code_becomes_the_rc(pool) -> None:
    rc, _stdout, _stderr, _ps = ansible_raw(pool, "cmd.exe /c exit 3")
    assert rc == 3


def test_native_cmd_output_and_last_exit_code(pool) -> None:
    rc, stdout, _stderr, _ps = ansible_raw(pool, 'cmd.exe /c "echo lab %COMPUTERNAME%"; "rc=$LASTEXITCODE"')
    assert stdout.split("\r\n") == ["lab WIN-LAB1", "rc=0"]
    assert rc == 0


def test_bare_word_windows_paths_bind_to_literal_path(pool, lab_root) -> None:
    rc, _stdout, stderr, _ps = ansible_raw(pool, f"Set-Content -LiteralPath {DEMO} -Value 'plain text'")
    assert (rc, stderr) == (0, "")
    assert (lab_root / "Windows" / "Temp" / "pinned-demo.txt").read_bytes() == b"plain text\r\n"
    rc, stdout, stderr, _ps = ansible_raw(pool, f"Get-Content -LiteralPath {DEMO}")
    assert (rc, stdout, stderr) == (0, "plain text", "")


def test_set_content_default_encoding_is_ansi_as_on_windows_powershell(pool, lab_root) -> None:
    ansible_raw(pool, f"Set-Content -LiteralPath {DEMO} -Value '{TEXT}'")
    assert (lab_root / "Windows" / "Temp" / "pinned-demo.txt").read_bytes() == TEXT.encode("cp1252", "replace") + b"\r\n"
    _rc, stdout, _stderr, _ps = ansible_raw(pool, f"Get-Content -LiteralPath {DEMO}")
    assert stdout == TEXT.replace("✓", "?")


def test_set_content_utf8_round_trips_unicode_through_get_content(pool, lab_root) -> None:
    ansible_raw(pool, f"Set-Content -LiteralPath {DEMO} -Value '{TEXT}' -Encoding UTF8")
    # Windows PowerShell's UTF8 writes a byte order mark, which Get-Content's default detects.
    assert (lab_root / "Windows" / "Temp" / "pinned-demo.txt").read_bytes() == b"\xef\xbb\xbf" + TEXT.encode() + b"\r\n"
    rc, stdout, _stderr, _ps = ansible_raw(pool, f"Get-Content -LiteralPath {DEMO}")
    assert (rc, stdout) == (0, TEXT)


def test_add_parameter_binds_by_name_through_add_command(pool, lab_root) -> None:
    (lab_root / "Windows" / "Temp" / "pinned-demo.txt").write_bytes(b"one\r\ntwo\r\n")
    rp, _host = pool
    ps = PowerShell(rp)
    ps.add_cmdlet("Get-Content").add_parameter("LiteralPath", DEMO).add_parameter("TotalCount", 1)
    assert ps.invoke() == ["one"]


def test_debug_information_and_progress_records_reach_a_pypsrp_client(pool) -> None:
    rp, _host = pool
    ps = PowerShell(rp)
    ps.add_script("$DebugPreference = 'Continue'; Write-Debug 'dbg'; Write-Information 'info' -Tags t1; "
                  "Write-Progress -Activity 'act' -Status 'st' -PercentComplete 50; 'out'")
    assert ps.invoke() == ["out"]
    assert [d.message for d in ps.streams.debug] == ["dbg"]
    assert [(i.message_data, i.tags) for i in ps.streams.information] == [("info", ["t1"])]
    assert [(p.activity, p.description, p.percent_complete) for p in ps.streams.progress] == [("act", "st", 50)]


def test_warning_verbose_and_debug_records_print_as_their_message(pool) -> None:
    rp, _host = pool
    ps = PowerShell(rp)
    ps.add_script("$DebugPreference = 'Continue'; Write-Warning 'careful'; Write-Verbose 'detail' -Verbose; Write-Debug 'dbg'")
    ps.invoke()
    # pypsrp's Client.copy re-raises warnings with str(record): Windows sends ToString, so must the lab.
    assert [str(r) for r in (*ps.streams.warning, *ps.streams.verbose, *ps.streams.debug)] == ["careful", "detail", "dbg"]


def test_add_parameter_without_a_value_is_a_present_switch(pool) -> None:
    rp, _host = pool
    ps = PowerShell(rp)
    ps.add_script("'a', 'b'").add_cmdlet("Out-String").add_parameter("Stream")
    assert ps.invoke() == ["a", "b"]


MERGE_SCRIPT = """$DebugPreference = 'Continue'
$VerbosePreference = 'Continue'
Write-Debug 'debug stream'
Write-Verbose 'verbose stream'
Write-Error 'error stream'
Write-Output 'output stream'
Write-Warning 'warning stream'
Write-Information 'information stream'
"""


def test_merged_streams_reach_the_output_in_order_and_unmerged_ones_keep_their_streams(pool) -> None:
    # pypsrp's own test_psrp_merge_commands, whose recording shows Windows' answer: the first statement's
    # records all arrive as output objects, the second statement's on their own streams.
    rp, _host = pool
    ps = PowerShell(rp)
    ps.add_script(MERGE_SCRIPT)
    ps.merge_all("output")
    ps.add_statement().add_script(MERGE_SCRIPT)
    ps.invoke()
    assert [str(o) for o in ps.output] == [
        "debug stream", "verbose stream", "error stream", "output stream", "warning stream", "information stream",
        "output stream",
    ]
    assert [str(r) for r in ps.streams.error] == ["error stream"]
    assert [len(ps.streams.debug), len(ps.streams.verbose), len(ps.streams.warning)] == [1, 1, 1]
    assert len(ps.streams.information) == 1



def test_a_protocol_2_2_client_still_gets_information_records(pool, monkeypatch) -> None:
    # PowerShell's server forwards the information stream whatever protocol the client announced
    # (ServerPowerShellDriver); psrpcore alone would refuse to write it below protocol 2.3.
    import pypsrp.powershell

    rp, host = pool
    monkeypatch.setattr(pypsrp.powershell, "PROTOCOL_VERSION", "2.2")
    with RunspacePool(rp.connection, host=host) as old_client:
        ps = PowerShell(old_client)
        ps.add_script("Write-Information 'for an old client'; 'done'")
        assert ps.invoke() == ["done"]
    assert [str(r.message_data) for r in ps.streams.information] == ["for an old client"]
