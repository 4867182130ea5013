"""The real clients' transfer and bootstrap scripts, built by the clients' own code, run against the engine.

Each test checks the file under root equals the bytes sent and that the hash returned was computed from them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib

import pytest
from ansible._internal._powershell import _clixml, _script
from ansible.executor.powershell.module_manifest import _bootstrap_powershell_script
from pypsrp._utils import get_pwsh_script

from tests.unit.lab.conftest import RecordingStreams

PAYLOAD = os.urandom(150_000) + "ünïcode ✓".encode()


def run_ps(engine, script, args, input_items):  # type: ignore[no-untyped-def]
    """Runs a script as the PSRP host would: a list the client yields is a batch of input objects, each sent
    as its own PIPELINE_INPUT (pypsrp's PowerShell.begin_invoke), never one array object."""
    streams = RecordingStreams()
    objects = (item for batch in input_items for item in (batch if isinstance(batch, list) else [batch]))
    engine.run_powershell(script, args, objects, streams)
    return streams


# ---- ansible.builtin.psrp ------------------------------------------------------------------------

def psrp_put_input(in_data: bytes, payload: bytes, buffer_size: int):  # type: ignore[no-untyped-def]
    """What ansible's psrp put_file feeds the pipeline (read_gen in plugins/connection/psrp.py)."""
    yield from in_data.decode().splitlines()
    for i in range(0, len(payload), buffer_size):
        yield [base64.b64encode(payload[i:i + buffer_size]).decode()]
    if not payload:
        yield [""]


@pytest.mark.parametrize("payload", [PAYLOAD, b""], ids=["data", "empty"])
def test_ansible_psrp_put_file_writes_the_bytes_and_returns_their_sha1(engine, root: pathlib.Path, payload):
    script, in_data = _bootstrap_powershell_script("psrp_put_file.ps1", {"Path": "C:\\Windows\\Temp\\put.bin"},
                                                   has_input=True)
    streams = run_ps(engine, script, [], psrp_put_input(in_data, payload, 40_000))
    assert streams.all_errors == [] and streams.exit_code is None
    assert streams.out == [f'{{"sha1":"{hashlib.sha1(payload).hexdigest()}"}}']
    assert (root / "Windows" / "Temp" / "put.bin").read_bytes() == payload


def test_ansible_psrp_fetch_file_streams_file_marker_then_base64_chunks(engine, root: pathlib.Path):
    (root / "Windows" / "Temp" / "f.bin").write_bytes(PAYLOAD)
    script, in_data = _bootstrap_powershell_script("psrp_fetch_file.ps1", {"Path": "C:\\WINDOWS\\temp\\F.BIN",
                                                                           "BufferSize": 65536})
    streams = run_ps(engine, script, [], in_data.decode().splitlines())
    assert streams.out[0] == "[FILE]"
    chunks = [base64.b64decode(c) for c in streams.out[1:]]
    assert all(len(c) == 65536 for c in chunks[:-1])
    assert b"".join(chunks) == PAYLOAD


def test_ansible_psrp_fetch_file_answers_dir_for_a_directory(engine):
    script, in_data = _bootstrap_powershell_script("psrp_fetch_file.ps1", {"Path": "C:\\Windows", "BufferSize": 1024})
    assert run_ps(engine, script, [], in_data.decode().splitlines()).out == ["[DIR]"]


def test_ansible_psrp_fetch_of_a_missing_file_fails_through_exec_wrapper(engine):
    script, in_data = _bootstrap_powershell_script("psrp_fetch_file.ps1", {"Path": "C:\\nope.txt", "BufferSize": 1024})
    streams = run_ps(engine, script, [], in_data.decode().splitlines())
    # exec_wrapper runs actions with $ErrorActionPreference = 'Stop': Write-Error ends in its failure JSON, rc 1
    import json
    (out,) = streams.out
    result = json.loads(out)
    assert result["failed"] is True and result["msg"] == "failure during exec_wrapper: C:\\nope.txt does not exist"
    assert streams.exit_code == 1


def test_ansible_psrp_raw_command_propagates_lastexitcode(engine):
    streams = run_ps(engine, "whoami /bogus\nexit $LASTEXITCODE", [], [])
    assert streams.exit_code == 1
    assert streams.errors[0].fq_error_id == "NativeCommandError"


def test_ansible_psrp_encoded_command_with_encoded_arguments_binds_the_arguments(engine):
    cmdline = " ".join(_script.get_pwsh_encoded_cmdline("param($a, $b) \"$b-$a\"", args=["x y", "z"]))
    parsed = _script.parse_encoded_cmdline(cmdline)
    assert parsed is not None
    streams = run_ps(engine, parsed[0], parsed[1], [])
    assert streams.out == ["z-x y"]


# ---- ansible.builtin.winrm (WinRS + powershell.exe) ------------------------------------------------

def test_ansible_winrm_put_file_over_winrs_stdin(cmd, root: pathlib.Path):
    script, in_data = _bootstrap_powershell_script("winrm_put_file.ps1", {"Path": "C:\\Windows\\Temp\\w.bin"},
                                                   has_input=True)
    parts = _script.get_pwsh_encoded_cmdline(script, override_execution_policy=True)
    stdin = [in_data] + [base64.b64encode(PAYLOAD[i:i + 25_000]) + b"\r\n" for i in range(0, len(PAYLOAD), 25_000)]
    rc, out, err = cmd(parts[0], *parts[1:], stdin=stdin)
    assert (rc, err) == (0, b"")
    assert out.decode().strip() == f'{{"sha1":"{hashlib.sha1(PAYLOAD).hexdigest()}"}}'
    assert (root / "Windows" / "Temp" / "w.bin").read_bytes() == PAYLOAD


def test_ansible_winrm_fetch_file_reads_from_the_offset(cmd, root: pathlib.Path):
    (root / "Windows" / "Temp" / "w.bin").write_bytes(PAYLOAD)
    script, in_data = _bootstrap_powershell_script("winrm_fetch_file.ps1", {
        "Path": "C:\\Windows\\Temp\\w.bin", "BufferSize": 2 ** 16, "Offset": 2 ** 16})
    cmdline = " ".join(_script.get_pwsh_encoded_cmdline(script, override_execution_policy=True))
    rc, out, _ = cmd(cmdline, stdin=[in_data])  # winrm.py sends the whole command line as the command
    assert rc == 0 and base64.b64decode(out.strip()) == PAYLOAD[2 ** 16:2 ** 17]


def test_ansible_winrm_fetch_of_a_missing_file_writes_stderr_and_exits_1(cmd):
    script, in_data = _bootstrap_powershell_script("winrm_fetch_file.ps1", {
        "Path": "C:\\nope", "BufferSize": 1024, "Offset": 0})
    parts = _script.get_pwsh_encoded_cmdline(script, override_execution_policy=True)
    assert cmd(parts[0], *parts[1:], stdin=[in_data]) == (1, b"", b"C:\\nope does not exist\r\n")


def test_powershell_exe_errors_are_clixml_on_stderr_that_clients_decode(cmd):
    parts = _script.get_pwsh_encoded_cmdline("'ok ✓'; Write-Error 'bad thing'; exit 5", override_execution_policy=True)
    rc, out, err = cmd(parts[0], *parts[1:])
    assert rc == 5 and out == "ok ✓\r\n".encode()
    assert err.startswith(b"#< CLIXML\r\n<Objs ")
    text = _clixml.replace_stderr_clixml(err).decode()
    assert text.startswith("Write-Error : bad thing\r\nAt line:1 char:9\r\n")
    import winrm
    assert winrm.Session("127.0.0.1", auth=("u", "p"))._clean_error_msg(err).startswith(b"Write-Error : bad thing\n")


# ---- pypsrp Client.copy / Client.fetch -----------------------------------------------------------

def pypsrp_copy_input(payload: bytes, buffer_size: int):  # type: ignore[no-untyped-def]
    """pypsrp.client.Client.copy's read_buffer: base64 chunks, then the base64 of the hex sha1 last."""
    sha1 = hashlib.sha1()
    for i in range(0, len(payload), buffer_size):
        data = payload[i:i + buffer_size]
        sha1.update(data)
        result = [base64.b64encode(data).decode()]
        if i + len(data) == len(payload):
            result.append(base64.b64encode(sha1.hexdigest().encode()).decode())
        yield result
    if not payload:
        yield ["", base64.b64encode(sha1.hexdigest().encode()).decode()]


def test_pypsrp_copy_writes_via_a_temp_file_and_returns_the_full_path(engine, root: pathlib.Path):
    streams = run_ps(engine, get_pwsh_script("copy.ps1"), ["C:\\Users\\vagrant\\copied.bin", False],
                     pypsrp_copy_input(PAYLOAD, 30_000))
    assert streams.all_errors == []
    assert streams.out == ["C:\\Users\\vagrant\\copied.bin"]
    assert (root / "Users" / "vagrant" / "copied.bin").read_bytes() == PAYLOAD
    assert list((root / "Users" / "vagrant" / "AppData" / "Local" / "Temp").iterdir()) == []


def test_pypsrp_copy_expands_environment_variables_when_asked(engine, root: pathlib.Path):
    streams = run_ps(engine, get_pwsh_script("copy.ps1"), ["%TEMP%\\x.bin", True], pypsrp_copy_input(b"abc", 30_000))
    assert streams.out == ["C:\\Users\\vagrant\\AppData\\Local\\Temp\\x.bin"]


def test_pypsrp_copy_refuses_data_whose_hash_does_not_match(engine, root: pathlib.Path):
    def tampered():  # type: ignore[no-untyped-def]
        yield [base64.b64encode(b"abc").decode(), base64.b64encode(hashlib.sha1(b"abd").hexdigest().encode()).decode()]
    streams = run_ps(engine, get_pwsh_script("copy.ps1"), ["C:\\t.bin", False], tampered())
    (err,) = streams.terminating
    assert err.message.startswith("Transport failure, hash mismatch\r\nActual: " + hashlib.sha1(b"abc").hexdigest())
    assert not (root / "t.bin").exists()


def test_pypsrp_fetch_returns_base64_then_sha1(engine, root: pathlib.Path):
    (root / "data.bin").write_bytes(PAYLOAD)
    streams = run_ps(engine, get_pwsh_script("fetch.ps1"), ["C:\\data.bin", False], [])
    assert base64.b64decode(streams.out[0]) == PAYLOAD
    assert streams.out[-1] == hashlib.sha1(PAYLOAD).hexdigest()


def test_pypsrp_fetch_of_a_missing_file_throws_as_windows_does(engine):
    (err,) = run_ps(engine, get_pwsh_script("fetch.ps1"), ["C:\\fakefile.txt", False], []).terminating
    # the same text, category and position a real Windows host recorded (test_client_fetch_file_fail_missing.yml)
    assert err.message == "The path at 'C:\\fakefile.txt' does not exist"
    assert err.category == "OperationStopped"
    assert err.position == ("At line:11 char:1\n+ throw \"The path at '$src_path' does not exist\"\n"
                            "+ ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~")


# ---- this collection's own put/fetch (ordinary PowerShell within the subset) -----------------------

COLLECTION_STYLE_PUT = r'''
[CmdletBinding()]
param([Parameter(Mandatory)][string]$Path, [string]$TempPath = "$Path.tmp",
      [Parameter(ValueFromPipeline)][AllowEmptyString()][string]$InputObject)
begin {
    $ErrorActionPreference = 'Stop'
    $fs = [IO.File]::Create($TempPath)
    $sha1 = [Security.Cryptography.SHA1]::Create()
}
process {
    $bytes = [Convert]::FromBase64String($InputObject)
    $null = $sha1.TransformBlock($bytes, 0, $bytes.Length, $bytes, 0)
    $fs.Write($bytes, 0, $bytes.Length)
}
end {
    $fs.Dispose()
    $null = $sha1.TransformFinalBlock([byte[]]::new(0), 0, 0)
    if (Test-Path -LiteralPath $Path) { [IO.File]::Delete($Path) }
    [IO.File]::Move($TempPath, $Path)
    @{ sha1 = [BitConverter]::ToString($sha1.Hash).Replace('-', '').ToLowerInvariant(); path = $Path } |
        ConvertTo-Json -Compress
}
'''


def test_a_collection_style_put_script_streams_to_a_temp_file_and_renames(engine, root: pathlib.Path):
    (root / "Windows" / "Temp" / "dest.bin").write_bytes(b"old")
    chunks = [base64.b64encode(PAYLOAD[i:i + 10_000]).decode() for i in range(0, len(PAYLOAD), 10_000)]
    streams = run_ps(engine, COLLECTION_STYLE_PUT, ["C:\\Windows\\Temp\\dest.bin"], chunks)
    assert streams.all_errors == []
    assert streams.out == ['{"sha1":"%s","path":"C:\\\\Windows\\\\Temp\\\\dest.bin"}' % hashlib.sha1(PAYLOAD).hexdigest()]
    assert (root / "Windows" / "Temp" / "dest.bin").read_bytes() == PAYLOAD
    assert not (root / "Windows" / "Temp" / "dest.bin.tmp").exists()


def test_exec_wrapper_refuses_a_manifest_without_the_action_script(engine):
    import json
    manifest = {"scripts": {}, "actions": [{"name": "missing.ps1", "params": {}}]}
    script, _ = _bootstrap_powershell_script("psrp_fetch_file.ps1", {"Path": "C:\\x", "BufferSize": 1})
    exec_line = _bootstrap_powershell_script("psrp_fetch_file.ps1", {})[1].decode().splitlines()[0]
    streams = run_ps(engine, script, [], [exec_line, "\0\0\0\0", json.dumps(manifest)])
    assert json.loads(streams.out[0])["msg"] == "failure during exec_wrapper: Could not find the script 'missing.ps1'."
    assert streams.exit_code == 1
