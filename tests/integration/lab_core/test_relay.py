"""The latency relay adds the configured round-trip time without serialising traffic.

Timing is checked two ways that a loaded machine cannot break: lower bounds on the test's clock (scheduling
adds time, never removes it), and the relay's own stamps (``trace()``: when it read each chunk, when the chunk
was due and when it wrote it). Where lateness is bounded, the bound is a multiple of the RTT far below what
the defect it guards against would cost, and says so.
"""

from __future__ import annotations

import socket
import threading
import time
import typing as t

import pytest

from tests.lab._relay import LatencyRelay

pytestmark = pytest.mark.timeout(30)

RTT_MS = 80.0
DELAY_S = RTT_MS / 2000  # one way
SETTLE_S = 20  # bound on waiting for a state the relay reaches by itself; only a broken relay reaches it


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


def _check_schedule(chunks: list[dict[str, t.Any]], delay: float = DELAY_S) -> None:
    """Every chunk was due one one-way delay after the relay read it (the first ones towards the target also
    waited out the emulated handshake, one RTT after accept) and was written no earlier, by the relay's clock."""
    assert chunks
    for c in chunks:
        not_before = c["accepted_at"] + 2 * delay if c["direction"] == "to_target" else 0.0
        assert c["due"] == pytest.approx(max(c["read_at"], not_before) + delay, abs=1e-6), c
        assert c["written_at"] >= c["due"], c


def _lateness(chunks: list[dict[str, t.Any]]) -> float:
    """How much later than due the relay wrote its latest chunk (its event loop's scheduling)."""
    return max(c["written_at"] - c["due"] for c in chunks)


def test_each_round_trip_through_the_relay_costs_the_configured_rtt(relay: LatencyRelay) -> None:
    payloads = [f"ping-{i}".encode() for i in range(5)]
    with _connect(relay) as s:
        _ping(s)  # the first exchange also pays the emulated TCP handshake
        samples = [_ping(s, payload) for payload in payloads]
    expected = RTT_MS / 1000
    assert all(sample >= expected for sample in samples), samples
    chunks = relay.trace()
    _check_schedule(chunks)
    # Each way one delay per chunk, every byte relayed once: a round trip is scheduled one RTT, no more.
    for direction in ("to_target", "from_target"):
        assert sum(c["bytes"] for c in chunks if c["direction"] == direction) == 4 + sum(map(len, payloads))


def test_a_new_connection_pays_one_extra_round_trip_like_a_tcp_handshake(relay: LatencyRelay) -> None:
    start = time.monotonic()  # from before connect(): the emulated handshake starts when the relay accepts
    with _connect(relay) as s:
        _ping(s)
        first = time.monotonic() - start
        second = _ping(s)
    expected = RTT_MS / 1000
    assert first >= 2 * expected
    assert second >= expected
    chunks = relay.trace()
    _check_schedule(chunks)
    opening = chunks[0]
    assert opening["direction"] == "to_target"
    assert opening["due"] - opening["accepted_at"] >= 3 * DELAY_S - 1e-6  # one RTT of handshake, then one way
    later = [c for c in chunks if c["direction"] == "to_target"][1:]
    assert later and all(c["due"] - c["read_at"] == pytest.approx(DELAY_S, abs=1e-6) for c in later)


def test_a_burst_of_chunks_is_delayed_once_not_once_per_chunk(relay: LatencyRelay) -> None:
    chunks = [f"chunk-{i:02d};".encode() for i in range(20)]
    with _connect(relay) as s:
        _ping(s)
        before = len(relay.trace())
        start = time.monotonic()
        for chunk in chunks:
            s.sendall(chunk)
            time.sleep(0.002)  # separate TCP segments, so the relay reads separate chunks
        received = _recv_exactly(s, sum(map(len, chunks)))
        elapsed = time.monotonic() - start
    assert received == b"".join(chunks)  # byte order preserved
    assert elapsed >= RTT_MS / 1000
    burst = relay.trace()[before:]
    _check_schedule(burst)
    # Each chunk was due one delay after its own arrival, not after the chunks before it. A relay that slept
    # one delay per chunk would write the 20th about 19 delays late; 12 delays of lateness (480 ms) allows the
    # event loop a stall that long on a loaded machine and still fails that relay.
    assert _lateness(burst) < 12 * DELAY_S, burst


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

        threads = [threading.Thread(target=ping_twice, args=(s,)) for s in socks]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
    finally:
        for s in socks:
            s.close()
    assert len(results) == n
    assert all(elapsed >= RTT_MS / 1000 for elapsed in results)
    assert relay.connections == n
    chunks = relay.trace()
    _check_schedule(chunks)
    assert len({c["conn"] for c in chunks}) == n
    # Every connection's chunks were scheduled from their own arrival. A relay serving one connection at a time
    # would write the last connection's chunks about 7 x 3 RTT late; 10 RTT of lateness (800 ms) allows the
    # event loop a stall that long on a loaded machine and still fails that relay.
    assert _lateness(chunks) < 10 * RTT_MS / 1000, chunks


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
    deadline = time.monotonic() + SETTLE_S
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
