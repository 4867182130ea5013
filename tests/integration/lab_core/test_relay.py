"""The latency relay adds the configured round-trip time without serialising traffic."""

from __future__ import annotations

import socket
import threading
import time
import typing as t

import pytest

from tests.lab._relay import LatencyRelay

pytestmark = pytest.mark.timeout(30)

RTT_MS = 80.0
# Scheduling on a busy CI machine adds delay, never removes it: the upper slack is generous.
SLACK_S = 0.06


class EchoServer:
    """Echo every byte back; on the client's half-close, finish sending and close."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(10)
        with conn:
            for _ in range(100_000):
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def echo() -> t.Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relay(echo: EchoServer) -> t.Iterator[LatencyRelay]:
    r = LatencyRelay(echo.address, rtt_ms=RTT_MS)
    r.start()
    yield r
    r.stop()


def _connect(relay: LatencyRelay) -> socket.socket:
    s = socket.create_connection((relay.address, relay.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    for _ in range(10_000):
        if len(buf) >= n:
            break
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _ping(s: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    s.sendall(payload)
    assert _recv_exactly(s, len(payload)) == payload
    return time.monotonic() - start


def _direct_rtt(echo: EchoServer) -> float:
    with socket.create_connection(echo.address, timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return min(_ping(s) for _ in range(5))


def test_each_round_trip_through_the_relay_costs_the_configured_rtt(relay: LatencyRelay, echo: EchoServer) -> None:
    base = _direct_rtt(echo)
    with _connect(relay) as s:
        _ping(s)  # the first exchange also pays the emulated TCP handshake
        samples = [_ping(s, f"ping-{i}".encode()) for i in range(5)]
    expected = RTT_MS / 1000
    for sample in samples:
        assert expected <= sample <= expected + base + SLACK_S, samples


def test_a_new_connection_pays_one_extra_round_trip_like_a_tcp_handshake(relay: LatencyRelay) -> None:
    start = time.monotonic()  # from before connect(): the emulated handshake starts when the relay accepts
    with _connect(relay) as s:
        _ping(s)
        first = time.monotonic() - start
        second = _ping(s)
    expected = RTT_MS / 1000
    assert 2 * expected <= first <= 2 * expected + SLACK_S
    assert expected <= second <= expected + SLACK_S


def test_a_burst_of_chunks_is_delayed_once_not_once_per_chunk(relay: LatencyRelay) -> None:
    chunks = [f"chunk-{i:02d};".encode() for i in range(20)]
    with _connect(relay) as s:
        _ping(s)
        start = time.monotonic()
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(0.002)  # separate TCP segments, so the relay reads separate chunks
        received = _recv_exactly(s, sum(map(len, chunks)))
        elapsed = time.monotonic() - start
    assert received == b"".join(chunks)  # byte order preserved
    # sleep-per-chunk would take 20 * RTT; a timestamped queue takes one RTT plus the sending time.
    assert elapsed < RTT_MS / 1000 + 20 * 0.002 + 3 * SLACK_S


def test_connections_are_relayed_concurrently_and_counted(relay: LatencyRelay) -> None:
    n = 8
    socks = [_connect(relay) for _ in range(n)]
    try:
        results: list[float] = []
        lock = threading.Lock()

        def ping_twice(s: socket.socket) -> None:
            _ping(s)
            elapsed = _ping(s, b"second")
            with lock:
                results.append(elapsed)

        start = time.monotonic()
        threads = [threading.Thread(target=ping_twice, args=(s,)) for s in socks]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        total = time.monotonic() - start
    finally:
        for s in socks:
            s.close()
    assert len(results) == n
    # n connections in parallel cost about one handshake and two round trips, not n times that.
    assert total < 3 * RTT_MS / 1000 + 4 * SLACK_S
    assert relay.connections == n


def test_half_close_is_passed_on_and_the_answer_still_arrives(relay: LatencyRelay) -> None:
    payload = b"x" * 300_000
    with _connect(relay) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the echo server answers all, then closes on our EOF
        received = bytearray()
        for _ in range(10_000):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    assert bytes(received) == payload
    deadline = time.monotonic() + 2
    while relay.counters()["active"] and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = relay.counters()
    assert counters["active"] == 0
    assert counters["bytes_to_target"] == counters["bytes_from_target"] == len(payload)


def test_stop_closes_the_port_and_resets_open_connections(echo: EchoServer) -> None:
    relay = LatencyRelay(echo.address, rtt_ms=10)
    relay.start()
    s = _connect(relay)
    _ping(s)
    relay.stop()
    s.settimeout(2)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    finally:
        s.close()
    with pytest.raises(OSError):
        socket.create_connection((relay.address, relay.port), timeout=1).close()


def test_one_way_delay_and_rtt_are_the_same_setting_expressed_twice(echo: EchoServer) -> None:
    assert LatencyRelay(echo.address, delay_ms=25).rtt_ms == 50
    with pytest.raises(ValueError):
        LatencyRelay(echo.address, delay_ms=25, rtt_ms=50)
