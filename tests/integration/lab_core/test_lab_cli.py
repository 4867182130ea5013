"""`python -m tests.lab up --json` starts a lab, prints one JSON line, answers its control API, and stops clean."""

from __future__ import annotations

import pathlib
import signal
import socket
import time
import typing as t

import pytest

from tests.lab._control import ControlError, LabClient

from .conftest import alive, descendants, port_open

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


def _listening_ports(desc: dict[str, t.Any]) -> list[int]:
    ports = [int(desc["control_url"].rsplit(":", 1)[1])]
    for host in desc["hosts"]:
        ports += [host["http_port"], host["https_port"], *[v for k, v in host.get("relay", {}).items()
                                                          if k.endswith("_port")]]
    for proxy in desc["proxies"].values():
        ports.append(int(proxy["url"].rsplit(":", 1)[1]))
    if desc.get("kdc"):
        ports.append(desc["kdc"]["port"])
    return ports


def _assert_stops_clean(lp: t.Any, sig: signal.Signals = signal.SIGTERM) -> None:
    desc = lp.description
    ports = _listening_ports(desc)
    children = descendants(lp.proc.pid)
    assert lp.terminate(sig) == 0, lp.stderr
    assert lp.rest_of_stdout() == b"", "stdout carries the one JSON line and nothing else"
    # The lab has exited; its children and ports go with it. The bound only stops a leak from hanging the test.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (any(map(alive, children)) or any(map(port_open, ports))):
        time.sleep(0.1)
    assert [p for p in children if alive(p)] == [], "processes the lab started outlived it"
    assert [p for p in ports if port_open(p)] == [], "ports the lab opened still accept connections"
    assert not pathlib.Path(desc["workdir"]).exists(), "the lab's temp workdir was not removed"


def test_up_prints_the_lab_as_one_json_line_and_stops_everything_on_sigterm(lab_process: t.Any) -> None:
    lp = lab_process("--kdc", "--rtt-ms", "20")
    desc = lp.description
    assert lp.first_line.endswith(b"\n") and lp.first_line.count(b"\n") == 1
    assert pathlib.Path(desc["ca_cert"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert [h["name"] for h in desc["hosts"]] == ["WIN-LAB1", "WIN-LAB2"]
    for host in desc["hosts"]:
        assert host["address"] == "127.0.0.1"
        assert port_open(host["http_port"]) and port_open(host["https_port"])
        assert host["users"] and all(u["username"] and u["password"] for u in host["users"])
        assert host["relay"]["rtt_ms"] == 20.0 and port_open(host["relay"]["https_port"])
    # each host has its own passwords
    first, second = ({u["username"]: u["password"] for u in h["users"]} for h in desc["hosts"])
    assert first["ansible"] != second["ansible"]
    squid, tiny = desc["proxies"]["squid"], desc["proxies"]["tinyproxy"]
    assert squid["username"] and squid["password"] and port_open(int(squid["url"].rsplit(":", 1)[1]))
    assert squid["username"] not in first  # proxy accounts are not host accounts (R2)
    assert port_open(int(tiny["url"].rsplit(":", 1)[1]))
    assert desc["kdc"]["realm"] == "LAB.TEST" and port_open(desc["kdc"]["port"])
    _assert_stops_clean(lp)


def test_the_control_api_reports_what_a_host_received_and_sets_its_faults(lab_process: t.Any) -> None:
    lp = lab_process("--squid-auth", "", "--no-tinyproxy", "--hosts", "1")
    client = LabClient(lp.description["control_url"])
    host = lp.description["hosts"][0]
    before = client.host_counters(host["name"]).get("tcp_connections", 0)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", host["http_port"]), timeout=5) as s:
            s.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            s.recv(4096)
    assert client.host_counters(host["name"])["tcp_connections"] == before + 3
    client.reset_host(host["name"])
    assert client.host_counters(host["name"]).get("tcp_connections", 0) == 0
    assert client.set_faults(host["name"], refuse_auth=True)["refuse_auth"] is True
    assert client.get_faults(host["name"])["refuse_auth"] is True
    assert client.clear_faults(host["name"])["refuse_auth"] is False
    with pytest.raises(ControlError) as unknown_setting:
        client.set_faults(host["name"], no_such_switch=1)
    assert unknown_setting.value.status == 400
    assert client.expire_shells(host["name"]) == 0
    _assert_stops_clean(lp, signal.SIGINT)


def test_a_lab_of_just_a_realm_answers_its_control_api_and_stops_clean_on_sigint(lab_process: t.Any) -> None:
    lp = lab_process("--hosts", "0", "--squid-auth", "", "--no-tinyproxy", "--kdc")
    desc = lp.description
    assert {"ca_cert", "hosts", "proxies", "control_url", "kdc"} <= set(desc)
    client = LabClient(desc["control_url"])
    assert client.describe() == desc
    assert pathlib.Path(desc["kdc"]["krb5_config"]).read_text().count(f"127.0.0.1:{desc['kdc']['port']}") >= 1
    with pytest.raises(ControlError) as missing:
        client.host_counters("WIN-LAB9")
    assert missing.value.status == 404 and "WIN-LAB9" in missing.value.message
    with pytest.raises(ControlError) as no_proxy:
        client.restart_proxy("squid")
    assert no_proxy.value.status == 404
    _assert_stops_clean(lp, signal.SIGINT)


def test_an_invalid_option_exits_non_zero_with_the_reason_and_prints_no_json(tmp_path: pathlib.Path) -> None:
    import subprocess
    import sys

    from .conftest import ROOT

    workdir = tmp_path / "lab"
    done = subprocess.run(
        [sys.executable, "-m", "tests.lab", "up", "--json", "--hosts", "0", "--kdc", "--no-tinyproxy",
         "--squid-auth", "basic", "--workdir", str(workdir), "--rtt-ms", "-1"],
        cwd=ROOT, capture_output=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0
    assert done.stdout == b""
    assert b"rtt_ms must not be negative" in done.stderr
