"""tinyproxy in the lab: bounded start/stop and, above all, its lack of connection affinity, measured."""

from __future__ import annotations

import pathlib
import socket
import time
from collections.abc import Iterator

import h11
import pytest
import requests
import requests.adapters
import urllib3.util

from tests.integration.lab_proxies.conftest import (
    EchoServer,
    RecordingHTTPServer,
    _read_response,
    connect_with_auth,
    echo_through,
)
from tests.lab import _procs
from tests.lab._squid import SquidProxy
from tests.lab._tinyproxy import TinyProxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory, echo_server: EchoServer) -> Iterator[TinyProxy]:
    proxy = TinyProxy(tmp_path_factory.mktemp("tinyproxy"), allowed_connect_ports=[echo_server.port])
    proxy.start()
    yield proxy
    proxy.stop()


def _two_requests_on_one_connection(proxy_port: int, upstream_port: int) -> list[bytes]:
    """Send two keep-alive GETs on ONE client connection; return each response body (b"" = connection closed)."""
    bodies = []
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as sock:
        conn = h11.Connection(h11.CLIENT)
        for path in ("/first", "/second"):
            if conn.our_state is not h11.IDLE:
                conn.start_next_cycle()
            try:
                sock.sendall(conn.send(h11.Request(
                    method="GET", target=f"http://127.0.0.1:{upstream_port}{path}",
                    headers=[("Host", f"127.0.0.1:{upstream_port}"), ("Connection", "keep-alive")])))
                sock.sendall(conn.send(h11.EndOfMessage()))
                _, body = _read_response(conn, sock)
            except (OSError, h11.ProtocolError, AssertionError):
                body = b""  # the proxy closed the connection before answering
            bodies.append(body)
            if conn.their_state is h11.MUST_CLOSE or conn.our_state is h11.MUST_CLOSE:
                bodies.append(b"")
                break
    return bodies[:2]


def test_tinyproxy_starts_within_bounds_and_stops_cleanly(tmp_path: pathlib.Path) -> None:
    proxy = TinyProxy(tmp_path)
    began = time.monotonic()
    proxy.start()
    assert time.monotonic() - began < _procs.START_TIMEOUT_S
    assert _procs.port_accepts("127.0.0.1", proxy.port)
    port = proxy.port
    proxy.restart()
    assert proxy.port == port and proxy.running
    began = time.monotonic()
    proxy.stop()
    assert time.monotonic() - began < _procs.STOP_TIMEOUT_S
    assert not _procs.port_accepts("127.0.0.1", port)


def test_tinyproxy_closes_a_keepalive_client_connection_after_one_forwarded_response(
        tinyproxy: TinyProxy, http_upstream: RecordingHTTPServer) -> None:
    first, second = _two_requests_on_one_connection(tinyproxy.port, http_upstream.port)
    assert b"GET /first on connection" in first
    assert second == b""  # the client connection is gone: the second request never left the client
    # and tinyproxy told the host to close too
    assert http_upstream.requests[0][3].get("Connection", "").lower() == "close"


def test_tinyproxy_sends_each_request_of_a_keepalive_client_on_a_new_upstream_connection(
        tinyproxy: TinyProxy, http_upstream: RecordingHTTPServer) -> None:
    with requests.Session() as client:  # one keep-alive client, as pypsrp/pywinrm are
        client.proxies = {"http": tinyproxy.url}
        # tinyproxy closes the client connection after each response; a client that reuses it before
        # seeing the close gets RemoteDisconnected, so let urllib3 retry on a fresh connection
        client.mount("http://", requests.adapters.HTTPAdapter(max_retries=urllib3.util.Retry(total=3)))
        for path in ("/leg1", "/leg2", "/leg3"):
            assert client.get(f"http://127.0.0.1:{http_upstream.port}{path}", timeout=5).status_code == 200
    peers = http_upstream.peers_of_requests()
    assert len(peers) == 3
    assert len(set(peers)) == 3  # no affinity: an NTLM context bound to leg1's connection is lost at leg2


def test_squid_by_contrast_keeps_one_upstream_connection_for_one_client_connection(
        squids: dict[str, SquidProxy], http_upstream: RecordingHTTPServer) -> None:
    first, second = _two_requests_on_one_connection(squids["open"].port, http_upstream.port)
    assert b"GET /first" in first and b"GET /second" in second
    peers = http_upstream.peers_of_requests()
    assert len(peers) == 2 and len(set(peers)) == 1


def test_tinyproxy_tunnels_connect_to_an_allowed_port_and_refuses_another(
        tinyproxy: TinyProxy, echo_server: EchoServer) -> None:
    allowed = connect_with_auth(tinyproxy.port, echo_server.port)
    try:
        assert allowed.statuses == [200]
        assert echo_through(allowed, b"via tinyproxy") == b"echo:via tinyproxy"
    finally:
        allowed.close()
    refused = connect_with_auth(tinyproxy.port, _procs.free_port())
    assert refused.statuses == [403]
    assert tinyproxy.counters()["requests"] >= 2
