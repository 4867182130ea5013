"""The session lab (tests/lab/pytest_plugin.py) is wired together: realm, hosts, relays and proxies agree."""

from __future__ import annotations

import socket
import time
import typing as t

import pytest

pytestmark = [pytest.mark.timeout(90)]

UNAUTHENTICATED_POST = b"POST /wsman HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and not request.startswith(b"POST"):
                break
        return data


def _user(host: dict[str, t.Any], kind: str) -> dict[str, t.Any]:
    return next(u for u in host["users"] if u.get("kind") == kind)


def test_the_domain_user_logs_on_to_every_host_with_kerberos(lab: t.Any, lab_description: dict[str, t.Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    wsman = pytest.importorskip("pypsrp.wsman")
    if not lab_description.get("kdc"):
        pytest.skip("the session lab runs without the realm")
    for key, value in lab_description["kdc"]["env"].items():
        monkeypatch.setenv(key, value)
    for host in lab_description["hosts"]:
        account = _user(host, "domain")
        before = lab.host_counters(host["name"]).get("auth_handshakes.kerberos", 0)
        client = wsman.WSMan("127.0.0.1", port=host["https_port"], username=account["principal"],
                             password=account["password"], ssl=True, cert_validation=lab_description["ca_cert"],
                             auth="kerberos", negotiate_hostname_override=host["hostname"])
        with client:
            client.get_server_config()
        assert lab.host_counters(host["name"])["auth_handshakes.kerberos"] == before + 1
    principals = lab_description["kdc"]["services"]
    assert {f"HTTP/{h['hostname']}@LAB.TEST" for h in lab_description["hosts"]} <= set(principals)


def test_the_relay_in_front_of_a_host_adds_the_rtt_set_through_the_control_api(
        lab_client: t.Any, lab_description: dict[str, t.Any]) -> None:
    host = lab_description["hosts"][0]
    if "relay" not in host:
        pytest.skip("the session lab runs without relays")
    rtt_s = 0.06
    lab_client.set_rtt(rtt_s * 1000, host=host["name"])
    try:
        relays = [r for r in lab_client.describe()["relays"] if r["host"] == host["name"]]
        before = lab_client.relay_counters(host["name"])["http"]["connections"]
        start = time.monotonic()
        answer = _exchange(host["relay"]["http_port"], UNAUTHENTICATED_POST)
        elapsed = time.monotonic() - start
    finally:
        lab_client.set_rtt(0, host=host["name"])
    assert answer.startswith(b"HTTP/1.1 401")  # the relay reaches the host
    assert relays and all(r["rtt_ms"] == rtt_s * 1000 for r in relays)  # the setting reached every relay
    # One round trip for the emulated TCP handshake, one for the exchange: a lower bound, as scheduling only
    # adds time. The relay's own tests (test_relay.py) check from its stamps that it adds no more.
    assert elapsed >= 2 * rtt_s
    assert lab_client.relay_counters(host["name"])["http"]["connections"] == before + 1


def test_squid_may_connect_to_host_and_relay_ports_and_nothing_else(lab_description: dict[str, t.Any]) -> None:
    proxy = lab_description["proxies"].get("squid_noauth")
    if proxy is None:
        pytest.skip("the session lab runs without an unauthenticated Squid")
    proxy_port = int(proxy["url"].rsplit(":", 1)[1])
    host = lab_description["hosts"][0]
    allowed = [host["https_port"], *([host["relay"]["https_port"]] if "relay" in host else [])]
    for port in allowed:
        answer = _exchange(proxy_port, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert answer.split(b"\r\n")[0].split(b" ")[1] == b"200", answer[:200]
    control_port = int(lab_description["control_url"].rsplit(":", 1)[1])
    answer = _exchange(proxy_port, f"CONNECT 127.0.0.1:{control_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"403", answer[:200]


def test_fault_switches_set_through_the_control_api_reach_the_host(lab_client: t.Any,
                                                                   lab_host: dict[str, t.Any]) -> None:
    delay = 0.4
    assert lab_client.set_faults(lab_host["name"], delay_response_s=delay)["delay_response_s"] == delay
    start = time.monotonic()
    assert _exchange(lab_host["http_port"], UNAUTHENTICATED_POST).startswith(b"HTTP/1.1 401")
    assert time.monotonic() - start >= delay  # a lower bound: scheduling only adds time
    lab_client.clear_faults(lab_host["name"])
    assert _exchange(lab_host["http_port"], UNAUTHENTICATED_POST).startswith(b"HTTP/1.1 401")
    # The host's log says which answers the switch delayed: the first, and not the one after clear_faults.
    assert [e.get("delay_s") for e in lab_client.host_log(lab_host["name"])] == [delay, None]
    # lab_host reset the counters; a connection an earlier test left may still be accepted late, a request not
    assert lab_client.host_counters(lab_host["name"])["http_status.401"] == 2


def test_the_inspecting_proxy_hands_back_what_it_relayed(lab_client: t.Any, lab_description: dict[str, t.Any]) -> None:
    if "mitm" not in lab_description["proxies"]:
        pytest.skip("the session lab runs without the inspecting proxy")
    port = int(lab_description["proxies"]["mitm"]["url"].rsplit(":", 1)[1])
    host = lab_description["hosts"][0]
    marker = f"X-Lab-Marker: {time.time_ns()}".encode()
    request = (f"POST http://127.0.0.1:{host['http_port']}/wsman HTTP/1.1\r\nHost: 127.0.0.1:{host['http_port']}\r\n"
               ).encode() + marker + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert _exchange(port, request).startswith(b"HTTP/1.1 401")
    recorded = b""
    deadline = time.monotonic() + 30  # the proxy records as it relays; the bound only stops a broken one
    while marker not in recorded and time.monotonic() < deadline:
        recorded = lab_client.proxy_recorded("mitm")
        time.sleep(0.1)
    assert marker in recorded  # the request as relayed to the host
    assert b"Microsoft-HTTPAPI/2.0" in recorded  # and the host's answer


def test_a_restarted_proxy_serves_again_on_the_same_port(lab_client: t.Any,
                                                         lab_description: dict[str, t.Any]) -> None:
    if "tinyproxy" not in lab_description["proxies"]:
        pytest.skip("the session lab runs without tinyproxy")
    port = int(lab_description["proxies"]["tinyproxy"]["url"].rsplit(":", 1)[1])
    host = lab_description["hosts"][0]
    request = (f"POST http://127.0.0.1:{host['http_port']}/wsman HTTP/1.1\r\nHost: 127.0.0.1:{host['http_port']}\r\n"
               "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
        lab_client.restart_proxy("tinyproxy")
        held.settimeout(5)
        try:
            assert held.recv(1) == b""  # the restart dropped the connection it held
        except ConnectionResetError:
            pass
    assert _exchange(port, request).startswith(b"HTTP/1.1 401")


def test_each_host_accepts_its_own_client_certificate_and_not_another_hosts(
        lab: t.Any, lab_description: dict[str, t.Any]) -> None:
    wsman = pytest.importorskip("pypsrp.wsman")
    exceptions = pytest.importorskip("pypsrp.exceptions")
    hosts = lab_description["hosts"]
    if len(hosts) < 2:
        pytest.skip("needs two hosts")

    def log_on(host: dict[str, t.Any], cert: dict[str, str]) -> None:
        client = wsman.WSMan("127.0.0.1", port=host["https_port"], ssl=True, auth="certificate",
                             certificate_pem=cert["cert"], certificate_key_pem=cert["key"],
                             cert_validation=lab_description["ca_cert"])
        with client:
            client.get_server_config()

    first, second = hosts[0], hosts[1]
    before = lab.host_counters(first["name"]).get("auth_handshakes.certificate", 0)
    log_on(first, first["client_certs"][0])
    assert lab.host_counters(first["name"])["auth_handshakes.certificate"] == before + 1
    with pytest.raises((exceptions.AuthenticationError, exceptions.WSManFaultError, OSError)):
        log_on(second, first["client_certs"][0])
