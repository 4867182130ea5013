"""Unmodified third-party WinRM clients against a started lab, directly and through Squid.

pypsrp's high-level Client (execute_cmd, execute_ps, copy, fetch) and pywinrm's Session (run_cmd, run_ps)
are used exactly as their users call them; what they report is checked against what the lab's host
did (its file system under `root`, its counters) and what Squid relayed (its own counters).
"""

from __future__ import annotations

import hashlib
import pathlib
import time
import typing as t
import urllib.parse

import pytest

pytestmark = [pytest.mark.timeout(120)]

pypsrp_client = pytest.importorskip("pypsrp.client")
winrm = pytest.importorskip("winrm")

ROUTES = ["direct", "squid"]


def _local_user(host: dict[str, t.Any]) -> dict[str, t.Any]:
    return next(u for u in host["users"] if u.get("kind", "local") == "local")


def _squid(lab_description: dict[str, t.Any]) -> dict[str, t.Any]:
    squid = lab_description["proxies"].get("squid")
    if squid is None:
        pytest.skip("the session lab runs without the Basic-auth Squid")
    return squid


def _proxy_url(squid: dict[str, t.Any]) -> str:
    """Basic proxy credentials in the URL, the only proxy authentication pypsrp and pywinrm know."""
    parts = urllib.parse.urlsplit(squid["url"])
    user = urllib.parse.quote(squid["username"], safe="")
    password = urllib.parse.quote(squid["password"], safe="")
    return f"{parts.scheme}://{user}:{password}@{parts.netloc}"


def _squid_connects(lab: t.Any, before: int, *, at_least: int = 1) -> int:
    """Squid logs a CONNECT when the tunnel closes: wait until the count moved (the bound only stops a broken
    Squid from hanging the test; the tunnel closed before this is called)."""
    deadline = time.monotonic() + 30
    count = lab.proxy_counters("squid").get("connects", 0)
    while count < before + at_least and time.monotonic() < deadline:
        time.sleep(0.2)
        count = lab.proxy_counters("squid").get("connects", 0)
    return count


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest, lab_description: dict[str, t.Any]) -> str | None:
    """The proxy URL for the route (None: direct)."""
    return None if request.param == "direct" else _proxy_url(_squid(lab_description))


def _pypsrp(host: dict[str, t.Any], ca_cert: str, proxy: str | None, auth: str = "ntlm") -> t.Any:
    user = _local_user(host)
    kwargs: dict[str, t.Any] = {"proxy": proxy} if proxy else {"no_proxy": True}
    return pypsrp_client.Client(
        host["address"], port=host["https_port"], username=user["username"], password=user["password"],
        ssl=True, auth=auth, cert_validation=ca_cert, connection_timeout=10, read_timeout=30, **kwargs,
    )


def test_pypsrp_execute_cmd_runs_cmd_on_the_host(lab, lab_host, lab_description, route) -> None:
    before = lab.proxy_counters("squid").get("connects", 0) if route else 0
    with _pypsrp(lab_host, lab_description["ca_cert"], route) as client:
        stdout, stderr, rc = client.execute_cmd("echo lab %COMPUTERNAME% & exit /b 4")
    assert (stdout, stderr, rc) == (f"lab {lab_host['name']} \r\n", "", 4)
    counters = lab.host_counters(lab_host["name"])
    assert counters.get("wsman.Command", 0) >= 1 and counters.get("shells_created", 0) >= 1
    if route:
        assert _squid_connects(lab, before) > before


def test_pypsrp_execute_ps_returns_output_and_error_state(lab, lab_host, lab_description, route) -> None:
    with _pypsrp(lab_host, lab_description["ca_cert"], route, auth="negotiate") as client:
        output, streams, had_errors = client.execute_ps("$env:COMPUTERNAME; 6 * 7")
        assert (output, had_errors, streams.error) == (f"{lab_host['name']}\n42", False, [])
        output, streams, had_errors = client.execute_ps("throw 'lab failure'")
        assert (had_errors, output) == (True, "")
        assert [str(e) for e in streams.error] == ["lab failure"]
    assert lab.host_counters(lab_host["name"]).get("runspace_pools_created", 0) >= 2


def test_pypsrp_copy_and_fetch_round_trip_a_file(lab, lab_host, lab_description, route, tmp_path) -> None:
    data = bytes(range(256)) * 4096 + "Grüße ✓".encode()  # about 1 MiB: several Send fragments
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    remote = f"C:\\Windows\\Temp\\third-party-{'proxy' if route else 'direct'}.bin"
    with _pypsrp(lab_host, lab_description["ca_cert"], route) as client:
        assert client.copy(str(local), remote) == remote
        on_host = pathlib.Path(lab_host["root"]) / "Windows" / "Temp" / remote.rsplit("\\", 1)[1]
        assert hashlib.sha1(on_host.read_bytes()).hexdigest() == hashlib.sha1(data).hexdigest()
        back = tmp_path / "download.bin"
        client.fetch(remote, str(back))
    assert back.read_bytes() == data


def test_pypsrp_fetch_of_a_missing_file_raises_the_hosts_error(lab_host, lab_description, tmp_path) -> None:
    with _pypsrp(lab_host, lab_description["ca_cert"], None) as client:
        with pytest.raises(Exception, match="does not exist|Cannot find path"):
            client.fetch("C:\\Windows\\Temp\\no-such-file.bin", str(tmp_path / "x"))


def _winrm(host: dict[str, t.Any], ca_cert: str, proxy: str | None) -> t.Any:
    user = _local_user(host)
    return winrm.Session(
        f"https://{host['address']}:{host['https_port']}/wsman", auth=(user["username"], user["password"]),
        transport="ntlm", server_cert_validation="validate", ca_trust_path=ca_cert, proxy=proxy,
        operation_timeout_sec=20, read_timeout_sec=30,
    )


def test_pywinrm_run_cmd_gets_stdout_stderr_and_exit_code(lab, lab_host, lab_description, route) -> None:
    before = lab.proxy_counters("squid").get("connects", 0) if route else 0
    session = _winrm(lab_host, lab_description["ca_cert"], route)
    result = session.run_cmd("hostname")
    assert (result.std_out, result.status_code) == (f"{lab_host['name']}\r\n".encode(), 0)
    result = session.run_cmd("type", ["C:\\no\\such\\file.txt"])
    assert result.status_code == 1 and b"cannot find the path" in result.std_err
    if route:
        assert _squid_connects(lab, before) > before


def test_pywinrm_run_ps_runs_powershell_through_encoded_command(lab_host, lab_description, route) -> None:
    session = _winrm(lab_host, lab_description["ca_cert"], route)
    result = session.run_ps("$env:COMPUTERNAME; 'Grüße ✓'")
    assert result.status_code == 0
    assert result.std_out.decode("utf-8").split("\r\n")[:2] == [lab_host["name"], "Grüße ✓"]
    failed = session.run_ps("Write-Error 'lab error'; exit 3")
    assert failed.status_code == 3
    assert b"lab error" in failed.std_err  # pywinrm turns the CLIXML error stream into text
