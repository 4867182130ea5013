"""The simulated host speaks HTTP/1.1 as HTTP.sys does and never hangs on a client."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import socket
import ssl
import time

import pytest
import spnego

from tests.integration.lab_host._echo import expected_answer, request_envelope


def _basic(lab, user: str = "alice") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{lab.password(user)}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_keep_alive_serves_many_requests_on_one_tcp_connection(lab) -> None:
    transport = lab.pypsrp(ssl=True, auth="basic")
    for index in range(20):
        transport.send(request_envelope("Get", str(index)))
    assert lab.counters.get("tcp_connections") == 1
    assert lab.counters.get("http_requests") == 20
    assert lab.counters.get("auth_handshakes") == 1


def test_an_ntlm_session_keeps_its_connection_after_the_handshake(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm")
    transport.send(request_envelope("Get", "first"))
    after_handshake = lab.counters.get("tcp_connections")
    for index in range(15):
        transport.send(request_envelope("Get", str(index)))
    assert lab.counters.get("tcp_connections") == after_handshake
    assert lab.counters.get("auth_handshakes") == 1
    assert {e["conn"] for e in lab.counters.log() if e["status"] == 200} == {lab.counters.log()[-1]["conn"]}


def test_responses_carry_windows_headers_and_exact_content_length(lab) -> None:
    raw = lab.raw(tls=True)
    message = request_envelope("Get", "headers")
    response, body = raw.post(message, _basic(lab))
    assert response.status == 200 and response.reason == ""
    assert response.getheader("Server") == "Microsoft-HTTPAPI/2.0"
    assert response.getheader("Content-Type") == "application/soap+xml;charset=UTF-8"
    assert int(response.getheader("Content-Length")) == len(body)
    assert response.getheader("Date")
    assert expected_answer("alice", message)[0] in body.decode()


def test_chunked_request_bodies_are_accepted(lab) -> None:
    raw = lab.raw(tls=True)
    message = request_envelope("Get", "chunked" * 500)
    raw.conn.request("POST", "/wsman", body=iter([message[:100], message[100:3000], message[3000:]]),
                     headers={**_basic(lab), "Content-Type": "application/soap+xml;charset=UTF-8"},
                     encode_chunked=True)
    response = raw.conn.getresponse()
    body = response.read()
    assert response.status == 200
    assert expected_answer("alice", message)[0] in body.decode()
    assert "Transfer-Encoding" not in {k for k, _ in lab.counters.log()[-1].items()}


def test_other_paths_get_the_http_sys_404(lab) -> None:
    response, body = lab.raw(tls=True).post(request_envelope(), _basic(lab), path="/other")
    assert response.status == 404
    assert b"HTTP Error 404. The requested resource is not found." in body
    assert response.getheader("Server") == "Microsoft-HTTPAPI/2.0"
    assert lab.service.received == []


def test_a_body_over_max_envelope_size_is_refused_with_413_before_it_is_read(make_host) -> None:
    lab = make_host(max_envelope_size=20000)
    sock = socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=5)
    announced = 10_000_000
    sock.sendall(
        b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml;charset=UTF-8\r\n"
        + f"Content-Length: {announced}\r\n\r\n".encode() + b"x" * 1000
    )
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert sock.recv(4096) == b""  # closed: the rest of the body is never read
    assert lab.counters.get("rejected.envelope_size") == 1
    assert lab.counters.get("bytes_in") < 2000


def test_a_chunked_body_growing_past_the_limit_is_refused(make_host) -> None:
    lab = make_host(max_envelope_size=20000)
    sock = socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=5)
    sock.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(10):
        sock.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert lab.counters.get("rejected.envelope_size") == 1
    assert lab.service.received == []


def test_a_silent_or_slow_client_is_dropped_after_the_read_timeout(lab) -> None:
    lab.host.read_timeout_s = 0.5
    lab.host.idle_timeout_s = 0.5
    # The clients wait 40 times the host's timeouts: recv() returning b"" (not TimeoutError) proves the host
    # closed them itself; the margin only keeps a loaded machine from passing for a hung host's timeout.
    silent = socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=20)
    slow = socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=20)
    slow.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    # Meanwhile other clients are served.
    response, _ = lab.raw(tls=True).post(request_envelope(), _basic(lab))
    assert response.status == 200
    assert silent.recv(1024) == b""
    assert slow.recv(1024) == b""


def test_hundreds_of_concurrent_connections_are_served(lab) -> None:
    count = 200
    context = ssl.create_default_context(cafile=str(lab.ca.cert_path))
    headers = {**_basic(lab), "Content-Type": "application/soap+xml;charset=UTF-8"}

    def one(index: int) -> bool:
        conn = http.client.HTTPSConnection("127.0.0.1", lab.config.https_port, context=context, timeout=10)
        message = request_envelope("Get", f"c{index}")
        conn.request("POST", "/wsman", body=message, headers=headers)
        response = conn.getresponse()
        ok = response.status == 200 and expected_answer("alice", message)[0] in response.read().decode()
        conn.close()
        return ok

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))
    assert all(results)
    assert lab.counters.get("tcp_connections") == count


def test_stop_closes_listeners_and_every_open_connection(lab) -> None:
    clients = [socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=5) for _ in range(30)]
    deadline = time.monotonic() + 20
    while lab.host.open_connections() < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lab.host.open_connections() == 30
    lab.host.stop()
    # Every connection's thread ended and let go of its connection: stop() did not return on its join deadline.
    assert lab.host.open_connections() == 0
    assert all(c.recv(16) == b"" for c in clients)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=1)


def test_start_writes_the_chosen_ports_into_the_config_and_describe(lab) -> None:
    info = lab.host.describe()
    assert info["http_port"] == lab.config.http_port != 0
    assert info["https_port"] == lab.config.https_port != 0
    assert {u["username"] for u in info["users"]} == {"alice", "bob"}
    with socket.create_connection(("127.0.0.1", info["https_port"]), timeout=5):
        pass


def test_two_hosts_keep_their_own_users(make_host) -> None:
    one = make_host(name="WIN-LAB1")
    two = make_host(name="WIN-LAB2", users={"carol": "C-" + one.password("alice")})
    assert one.raw(tls=False).handshake(spnego.client("alice", one.password("alice"), protocol="ntlm"))[0].status == 200
    response, _ = two.raw(tls=False).handshake(spnego.client("alice", one.password("alice"), protocol="ntlm"))
    assert response.status == 401
    response, _ = two.raw(tls=False).handshake(spnego.client("carol", two.password("carol"), protocol="ntlm"))
    assert response.status == 200


def test_a_malformed_request_gets_the_http_sys_400_and_a_close(lab) -> None:
    sock = socket.create_connection(("127.0.0.1", lab.config.http_port), timeout=5)
    sock.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"HTTP Error 400. The request is badly formed." in answer
    assert lab.counters.get("rejected.bad_request") == 1
