"""The per-task timing at -vvv: computed where the session works, checked against what the lab host and proxies counted.

Over http:// directly, every byte the session's socket carried is an HTTP byte the host counted, so the
task's request and byte counts must equal the host's to the byte. Through a proxy, the CONNECT is the
task's request but not the host's.
"""

from __future__ import annotations

import pathlib
import re
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._local_runner import LocalRunner
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

from .conftest import E2E, delta

pytestmark = pytest.mark.timeout(240)


def _options(e2e: E2E, protocol: str = "http", **extra: t.Any) -> dict[str, t.Any]:
    host = e2e.host()
    account = next(u for u in host["users"] if u["username"] == "ansible")
    return {"remote_addr": host["address"], "port": host[f"{protocol}_port"], "protocol": protocol,
            "remote_user": "ansible", "remote_password": account["password"], "auth": "ntlm",
            "ca_cert": e2e.desc["ca_cert"], **extra}


def test_task_counts_equal_what_the_host_counted_and_a_reused_session_pays_no_connect(e2e: E2E) -> None:
    runner = LocalRunner()
    spec = build_spec(_options(e2e), {})
    try:
        before = e2e.counters()
        result, first = runner.exec(spec, "Write-Output 'one'")
        middle = e2e.counters()
        result2, second = runner.exec(spec, "Write-Output 'two'")
        after = e2e.counters()
    finally:
        runner.release()
    assert (result.stdout, result2.stdout) == (b"one", b"two")
    t1, t2 = first["timing"], second["timing"]
    # the first task connected, authenticated and opened the pool: every request and byte is the host's
    assert t1["requests"] == delta(middle, before, "http_requests")
    assert (t1["bytes_out"], t1["bytes_in"]) == (delta(middle, before, "bytes_in"), delta(middle, before, "bytes_out"))
    assert t1["tcp_connects"] == delta(middle, before, "tcp_connections") == 1
    assert t1["auth_legs"] >= 2 and all(t1[f"{p}_ms"] > 0 for p in ("connect", "auth", "pool_open", "command"))
    assert t1["proxy_ms"] == t1["tls_ms"] == t1["transfer_ms"] == 0
    # the second rode the pinned session: no connect, no login, no pool; still every request is counted
    assert t2["requests"] == delta(after, middle, "http_requests")
    assert (t2["bytes_out"], t2["bytes_in"]) == (delta(after, middle, "bytes_in"), delta(after, middle, "bytes_out"))
    assert t2["tcp_connects"] == t2["auth_legs"] == 0 and t2["connect_ms"] == t2["auth_ms"] == t2["pool_open_ms"] == 0
    assert t2["command_ms"] > 0
    assert "command" in second["timing_line"] and "auth" not in second["timing_line"]


def test_transfers_count_their_bytes_and_time_as_transfer_not_command(e2e: E2E, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    runner = LocalRunner()
    spec = build_spec(_options(e2e, "https"), {})
    try:
        runner.exec(spec, "Write-Output warm")
        put = runner.put_file(spec, str(source), "C:\\Windows\\Temp\\timing-payload.bin")
        fetched = runner.fetch_file(spec, "C:\\Windows\\Temp\\timing-payload.bin", str(tmp_path / "back.bin"))
    finally:
        runner.release()
    for info in (put, fetched):
        timing = info["timing"]
        assert timing["transfer_bytes"] == 256000 and timing["transfer_ms"] > 0 and timing["command_ms"] == 0, timing
        assert "250.0 KiB transferred" in info["timing_line"]
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


def test_through_a_connect_tunnel_the_proxy_phase_and_its_request_are_the_tasks(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_noauth")
    runner = LocalRunner()
    spec = build_spec(_options(e2e, "https", proxy=proxy["url"]), {})
    try:
        before = e2e.counters()
        _result, info = runner.exec(spec, "Write-Output 'via proxy'")
        after = e2e.counters()
    finally:
        runner.release()
    timing = info["timing"]
    assert timing["proxy_ms"] > 0 and timing["tls_ms"] > 0
    assert timing["requests"] == delta(after, before, "http_requests") + 1  # the CONNECT


@pytest.mark.parametrize("persist", [True, False], ids=["daemon", "persistence-off"])
def test_every_task_prints_its_timing_line_at_vvv(e2e: E2E, persist: bool) -> None:
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_persist": persist},
                  extra_args=["-vvv"])
    run.assert_ok()
    lines = re.findall(r"PSRP: timing: (.*)", run.stdout)
    assert len(lines) == 3, run.stdout[-3000:]
    assert all(re.search(r"command [\d.]+ms; \d+ request\(s\), [\d.]+ (B|KiB) out", line) for line in lines), lines
    assert "auth" in lines[0] and "pool open" in lines[0]
    # pinned: only the first task paid for the login; without persistence every task does
    assert all(("auth" in line) is (not persist) for line in lines[1:]), lines


def _shape(line: str) -> str:
    """A timing line with its figures taken out: which phases and counts it names, in which order."""
    line = re.sub(r"[\d.]+ (B|KiB|MiB|GiB)\b", "SIZE", line)
    line = re.sub(r"[\d.]+(ms|s)\b", "TIME", line)
    return re.sub(r"\b\d+ ", "N ", line)


def test_the_documented_timing_lines_are_what_a_run_over_https_prints(e2e: E2E) -> None:
    """docs/task-timing.md's example (a task that opened the session, then one that rode it) as the plugin prints it."""
    doc = (pathlib.Path(__file__).resolve().parents[3] / "docs" / "task-timing.md").read_text(encoding="utf-8")
    documented = re.findall(r"^<win01> PSRP: timing: (.*)$", doc, re.M)
    assert len(documented) == 2, documented
    run = e2e.run({"ansible_psrp_protocol": "https", "ansible_psrp_auth": "ntlm"}, extra_args=["-vvv"])
    run.assert_ok()
    printed = re.findall(r"PSRP: timing: (.*)", run.stdout)
    assert len(printed) == 3, run.stdout[-3000:]
    assert [_shape(line) for line in printed[:2]] == [_shape(line) for line in documented], printed
