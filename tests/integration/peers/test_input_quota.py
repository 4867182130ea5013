"""A session configuration's input quota (MaximumReceivedDataSizePerCommandMB) as each client meets it.

ansible.builtin.psrp's psrp_put_file.ps1 and pypsrp's copy.ps1 lift their command's quota by reflection on
PowerShell's internals, so on Windows they copy files of any size; a script that streams the same input
without lifting it fails once the command received more than the quota, with the PowerShell plugin's fault.
The fast tests lower the host's quota to 1 MB (the control API) so a few MiB show it; the soak test copies
256 MiB against Windows' default of 50 MB. ansible.builtin.winrm sends through WinRS stdin, which has no
such quota.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
import typing as t

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from .test_peers import Peers

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

MANAGED_EXCEPTION = 0x80540FA0
QUOTA = "MaximumReceivedDataSizePerCommandMB"
SOAK_MIB = int(os.environ.get("PINNED_QUOTA_SOAK_MIB", "256"))


@pytest.fixture
def peers(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[Peers]:
    env = Peers(lab, tmp_path)
    lab.clear_faults(env.host["name"])
    yield env
    env.close_pinned_sessions()
    lab.set_limits(env.host["name"], **{QUOTA: 50})  # Windows' default again for the next test


def _payload(peers: Peers, mib: float) -> pathlib.Path:
    src = peers.workdir / "payload.bin"
    with src.open("wb") as f:
        block = os.urandom(1 << 20)
        for i in range(int(mib)):
            f.write(block[i % 251:] + block[: i % 251])
        f.write(os.urandom(int((mib % 1) * (1 << 20)) + 7))
    return src


def _put(peers: Peers, plugin: str, src: pathlib.Path, name: str) -> tuple[t.Any, pathlib.Path]:
    remote = f"C:\\Users\\ansible\\{name}"
    on_host = pathlib.Path(peers.host["root"]) / "Users" / "ansible" / name
    on_host.unlink(missing_ok=True)
    run = peers.run(plugin, "direct", [{"name": "put", "transfer_probe": {"src": str(src), "dest": remote,
                                                                          "skip_fetch": True}}], f"quota-{name}")
    return run, on_host


def _pool(peers: Peers) -> RunspacePool:
    account = next(u for u in peers.host["users"] if u["username"] == "ansible")
    wsman = WSMan(peers.host["address"], port=peers.host["https_port"], username=account["username"],
                  password=account["password"], ssl=True, auth="ntlm", cert_validation=peers.desc["ca_cert"],
                  no_proxy=True)
    return RunspacePool(wsman)


STREAM_WITHOUT_LIFTING = """
param([string]$Path)
begin { $fd = [System.IO.File]::Create($Path) }
process { $bytes = [Convert]::FromBase64String($_); $fd.Write($bytes, 0, $bytes.Length) }
end { $fd.Close() }
"""


def _stream(pool: RunspacePool, src: pathlib.Path, remote: str) -> PowerShell:
    """The same input ansible.builtin.psrp sends (base64 chunks, one input object each), to a script that does
    not lift its command's quota."""
    def chunks() -> t.Iterator[list[str]]:
        with src.open("rb") as f:
            while block := f.read(262144):
                yield [base64.b64encode(block).decode()]

    ps = PowerShell(pool)
    ps.add_script(STREAM_WITHOUT_LIFTING).add_parameter("Path", remote)
    ps.invoke(input=chunks())
    return ps


def test_builtin_psrp_put_file_lifts_the_quota_that_refuses_a_plain_streaming_script(peers: Peers) -> None:
    peers.lab.set_limits(peers.host["name"], **{QUOTA: 1})
    src = _payload(peers, 3)
    run, on_host = _put(peers, "builtin_psrp", src, "lifted.bin")
    run.assert_ok()
    assert hashlib.sha256(on_host.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    with _pool(peers) as pool, pytest.raises(WSManFaultError) as refused:
        _stream(pool, src, "C:\\Users\\ansible\\refused.bin")
    assert refused.value.code == MANAGED_EXCEPTION
    assert refused.value.provider_fault == (
        "The total data received from the remote client exceeded the allowed maximum. The allowed maximum is 1048576.")


def test_builtin_winrm_put_file_is_not_bound_by_a_powershell_quota(peers: Peers) -> None:
    peers.lab.set_limits(peers.host["name"], **{QUOTA: 1})
    src = _payload(peers, 3)
    run, on_host = _put(peers, "builtin_winrm", src, "winrs.bin")
    run.assert_ok()
    assert on_host.read_bytes() == src.read_bytes()


def test_pinned_put_file_copies_more_than_the_command_input_quota(peers: Peers) -> None:
    peers.lab.set_limits(peers.host["name"], **{QUOTA: 1})
    src = _payload(peers, 3)
    run, on_host = _put(peers, "pinned", src, "pinned.bin")
    run.assert_ok()
    assert on_host.read_bytes() == src.read_bytes()


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_builtin_psrp_copies_256_mib_with_windows_default_quota_and_a_plain_stream_of_it_is_refused(
        peers: Peers) -> None:
    src = _payload(peers, SOAK_MIB)
    run, on_host = _put(peers, "builtin_psrp", src, "soak.bin")
    try:
        run.assert_ok()
        assert on_host.stat().st_size == src.stat().st_size
        assert hashlib.sha256(on_host.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    finally:
        on_host.unlink(missing_ok=True)
    if SOAK_MIB * 4 / 3 < 52:  # a smaller run's base64 stays under Windows' 50 MB: nothing to refuse
        return
    with _pool(peers) as pool, pytest.raises(WSManFaultError) as refused:
        _stream(pool, src, "C:\\Users\\ansible\\soak-refused.bin")
    assert refused.value.provider_fault.endswith("The allowed maximum is 52428800.")
