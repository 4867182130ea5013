"""The inspecting proxy records every byte it relays, so tests can prove what a proxy could read."""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.lab_proxies.conftest import (
    EchoServer,
    RecordingHTTPServer,
    connect_with_auth,
    echo_through,
    start_together,
    stop_together,
)
from tests.lab import _procs
from tests.lab._certs import LabCA
from tests.lab._mitm import TO_CLIENT, TO_SERVER, InspectingProxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def inspectors(tmp_path_factory: pytest.TempPathFactory, lab_ca: LabCA) -> Iterator[dict[str, InspectingProxy]]:
    made = {
        "passthrough": InspectingProxy(tmp_path_factory.mktemp("mitm-pass")),
        "intercept": InspectingProxy(tmp_path_factory.mktemp("mitm-intercept"), tls_passthrough=False,
                                     upstream_ca=lab_ca.cert_path),
    }
    try:
        start_together(made.values())
        yield made
    finally:
        stop_together(made.values())


def _wait_for_record(proxy: InspectingProxy, marker: bytes, timeout: float = 3.0) -> bytes:
    # the addon writes as mitmproxy relays; the client may see the echo a moment before the record lands
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = proxy.recorded_bytes()
        if marker in data:
            return data
        time.sleep(0.05)
    return proxy.recorded_bytes()


def test_passthrough_records_the_raw_tls_bytes_of_a_tunnel_and_no_plaintext(
        inspectors: dict[str, InspectingProxy], tls_echo_server: EchoServer, lab_ca: LabCA) -> None:
    proxy = inspectors["passthrough"]
    secret = f"password={secrets.token_hex(16)}".encode()
    tunnel = connect_with_auth(proxy.port, tls_echo_server.port)
    assert tunnel.statuses == [200]
    assert tunnel.sock is not None
    tls = ssl.create_default_context(cafile=str(lab_ca.cert_path)).wrap_socket(tunnel.sock, server_hostname="localhost")
    tunnel.sock = tls
    try:
        assert echo_through(tunnel, secret) == b"echo:" + secret  # the secret did cross the proxy
    finally:
        tunnel.close()
    recorded = _wait_for_record(proxy, f"CONNECT 127.0.0.1:{tls_echo_server.port}".encode())
    chunks = proxy.recorded_chunks()
    to_server = proxy.recorded_bytes(TO_SERVER)
    to_client = proxy.recorded_bytes(TO_CLIENT)
    assert f"CONNECT 127.0.0.1:{tls_echo_server.port} HTTP/1.1".encode() in to_server
    assert b"\x16\x03\x01" in to_server      # the client's TLS handshake record, as sent
    assert b"\x17\x03\x03" in to_server and b"\x17\x03\x03" in to_client  # TLS application data both ways
    assert len(to_server) > len(secret) and len(to_client) > len(secret)
    assert secret not in recorded and secret.hex().encode() not in recorded
    assert any(d == TO_CLIENT for d, _ in chunks) and any(d == TO_SERVER for d, _ in chunks)


def test_plain_http_forwarding_is_recorded_whole_both_ways(
        inspectors: dict[str, InspectingProxy], http_upstream: RecordingHTTPServer) -> None:
    proxy = inspectors["passthrough"]
    body = f"script-{secrets.token_hex(8)}".encode()
    response = requests.post(f"http://127.0.0.1:{http_upstream.port}/wsman", data=body,
                             proxies={"http": proxy.url}, timeout=10)
    assert response.status_code == 200
    recorded = _wait_for_record(proxy, response.content)
    assert f"POST http://127.0.0.1:{http_upstream.port}/wsman HTTP/1.1".encode() in proxy.recorded_bytes(TO_SERVER) \
        or b"POST /wsman HTTP/1.1" in proxy.recorded_bytes(TO_SERVER)
    assert body in proxy.recorded_bytes(TO_SERVER)
    assert response.content in proxy.recorded_bytes(TO_CLIENT)
    assert b"HTTP/1.1 200" in recorded


def test_intercepting_mode_reads_what_tls_carried_when_the_client_trusts_its_ca(
        inspectors: dict[str, InspectingProxy], https_upstream: RecordingHTTPServer) -> None:
    """What message_encryption: always is for: TLS alone does not keep the body from an intercepting proxy."""
    proxy = inspectors["intercept"]
    secret = f"secret-{secrets.token_hex(8)}".encode()
    response = requests.post(f"https://127.0.0.1:{https_upstream.port}/wsman", data=secret,
                             proxies={"https": proxy.url}, verify=str(proxy.ca_cert_path), timeout=10)
    assert response.status_code == 200
    recorded = _wait_for_record(proxy, secret)
    assert secret in recorded
    assert b"POST /wsman HTTP/1.1" in proxy.recorded_bytes(TO_SERVER)


def test_inspecting_proxy_stops_cleanly_and_starts_again_within_bounds(
        inspectors: dict[str, InspectingProxy]) -> None:
    proxy = inspectors["passthrough"]
    port = proxy.port
    began = time.monotonic()
    proxy.stop()
    assert time.monotonic() - began < _procs.STOP_TIMEOUT_S
    assert not _procs.port_accepts("127.0.0.1", port)
    began = time.monotonic()
    proxy.start()
    assert time.monotonic() - began < _procs.START_TIMEOUT_S
    assert proxy.port == port and _procs.port_accepts("127.0.0.1", port)
