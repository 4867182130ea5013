"""A TCP relay that adds a chosen round-trip time, so cost per round trip can be measured on one machine.

Definitions (docs/lab.md, "Latency relay"):
- ``rtt_ms`` is the *added round-trip time*: every byte is held ``rtt_ms / 2``
  in each direction, so a request/response exchange through the relay takes
  ``rtt_ms`` longer than without it.
- A new TCP connection also pays one round trip before its first byte reaches
  the target, as a TCP handshake does over a real link (``connect_rtt=True``).
  The relay accepts at once, so the client cannot see this in ``connect()``;
  it sees it in its first exchange.

Each direction of each connection is a timestamped queue: a chunk is stamped
when read and written when its time comes, so chunks in flight overlap (a
burst of N chunks costs one delay, not N) and byte order is preserved. Written
by hand because no library relays with a delay; it is ~150 lines of asyncio.

The relay keeps a bounded trace of the last chunks it moved (``trace()``): when each
was read, when it was due and when it was written, on the relay's own clock
(``time.monotonic``), so tests check the delay it applied from its own stamps
instead of bounding wall time from outside.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import socket
import threading
import typing as t

log = logging.getLogger(__name__)

_CHUNK = 65536
_CONNECT_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0
_ABORT = object()  # queue sentinel: the reading side was reset, reset the writing side too
_TRACE_CHUNKS = 4096  # the trace keeps this many most recent chunks


class LatencyRelay:
    """Relay TCP connections from ``listen`` to ``target``, adding ``rtt_ms`` to every round trip.

    Give either ``rtt_ms`` (added round-trip time) or ``delay_ms`` (one-way delay,
    ``rtt_ms = 2 * delay_ms``).
    """

    def __init__(self, target: tuple[str, int], *, rtt_ms: float | None = None,
                 delay_ms: float | None = None, listen: tuple[str, int] = ("127.0.0.1", 0),
                 connect_rtt: bool = True, name: str | None = None) -> None:
        if (rtt_ms is None) == (delay_ms is None):
            raise ValueError("give exactly one of rtt_ms (added round-trip time) or delay_ms (one-way delay)")
        self.rtt_ms = float(rtt_ms if rtt_ms is not None else 2 * t.cast(float, delay_ms))
        if self.rtt_ms < 0:
            raise ValueError("rtt_ms must not be negative")
        self.target = (target[0], int(target[1]))
        self.listen = listen
        self.connect_rtt = connect_rtt
        self.name = name or f"relay->{target[0]}:{target[1]}"
        self.address: str = listen[0]
        self.port: int = 0
        self._lock = threading.Lock()
        self._stats = {"connections": 0, "active": 0, "bytes_to_target": 0, "bytes_from_target": 0,
                       "connect_failures": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._trace: collections.deque[dict[str, t.Any]] = collections.deque(maxlen=_TRACE_CHUNKS)
        self._conn_ids = itertools.count(1)

    @property
    def delay_s(self) -> float:
        """One-way delay in seconds."""
        return self.rtt_ms / 2000.0

    @property
    def connections(self) -> int:
        """TCP connections accepted since start."""
        return self.counters()["connections"]

    def counters(self) -> dict[str, int]:
        """Connections accepted, connections open now, bytes relayed each way, failed upstream connects."""
        with self._lock:
            return dict(self._stats)

    def trace(self) -> list[dict[str, t.Any]]:
        """The last chunks relayed, oldest first: {conn, direction ("to_target"/"from_target"), bytes,
        accepted_at, read_at, due, written_at}, times in seconds of time.monotonic(), the relay's clock."""
        with self._lock:
            return [dict(c) for c in self._trace]

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[key] += amount

    def describe(self) -> dict[str, t.Any]:
        return {"name": self.name, "address": self.address, "port": self.port,
                "target": f"{self.target[0]}:{self.target[1]}", "rtt_ms": self.rtt_ms,
                "connect_rtt": self.connect_rtt}

    # lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Start listening; returns once the listening socket is bound."""
        if self._thread is not None:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError(f"{self.name} did not start within {_START_TIMEOUT_S} s")
        if self._start_error is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            self._thread = None
            raise RuntimeError(f"{self.name} could not listen on {self.listen}") from self._start_error
        log.info("latency relay %s:%d -> %s:%d adds %.1f ms per round trip",
                 self.address, self.port, *self.target, self.rtt_ms)

    def stop(self) -> None:
        """Stop listening and reset every relayed connection; returns when the relay's thread ended."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._shutdown()))
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("%s did not stop within %s s", self.name, _STOP_TIMEOUT_S)
        self._thread = None
        self._loop = None

    def __enter__(self) -> LatencyRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # event loop thread ---------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
            loop.run_forever()
        except BaseException as e:  # reported to start() through _start_error
            self._start_error = e
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1],
                                                      reuse_address=True)
        except OSError as e:
            self._start_error = e
            self._ready.set()
            asyncio.get_running_loop().stop()
            return
        sock = self._server.sockets[0]
        self.address, self.port = sock.getsockname()[:2]
        self._ready.set()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_STOP_TIMEOUT_S)
        asyncio.get_running_loop().stop()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._count("connections")
        self._count("active")
        loop = asyncio.get_running_loop()
        # Nothing reaches the target before one round trip passed: the cost of a TCP handshake.
        accepted_at = loop.time()
        not_before = accepted_at + (2 * self.delay_s if self.connect_rtt else 0.0)
        stamp = {"conn": next(self._conn_ids), "accepted_at": accepted_at}
        upstream_w: asyncio.StreamWriter | None = None
        try:
            try:
                upstream_r, upstream_w = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), _CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as e:
                self._count("connect_failures")
                log.warning("%s: cannot reach %s:%d: %s", self.name, *self.target, e)
                return
            _nodelay(client_w)
            _nodelay(upstream_w)
            await asyncio.gather(
                self._pipe(client_r, upstream_w, not_before, "bytes_to_target", stamp),
                self._pipe(upstream_r, client_w, 0.0, "bytes_from_target", stamp),
            )
            # Both directions ended in order: close gently so buffered bytes still go out.
            for w in (client_w, upstream_w):
                w.close()
            for w in (client_w, upstream_w):
                try:
                    await asyncio.wait_for(w.wait_closed(), _STOP_TIMEOUT_S)
                except (OSError, asyncio.TimeoutError):
                    pass
        except asyncio.CancelledError:
            pass
        finally:
            for w in (client_w, upstream_w):
                if w is not None and not w.transport.is_closing():
                    w.transport.abort()
            self._count("active", -1)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    not_before: float, counter: str, stamp: dict[str, t.Any]) -> None:
        """Move one direction: stamp chunks on arrival, write each when its delay has passed."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, t.Any, float]] = asyncio.Queue()
        direction = counter.removeprefix("bytes_")

        async def read_side() -> None:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except (ConnectionError, OSError):
                    read_at = loop.time()
                    queue.put_nowait((max(read_at, not_before) + self.delay_s, _ABORT, read_at))
                    return
                read_at = loop.time()
                queue.put_nowait((max(read_at, not_before) + self.delay_s, data, read_at))
                if not data:  # EOF: passed on as a half-close when its time comes
                    return

        async def write_side() -> None:
            while True:
                due, data, read_at = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is _ABORT:
                    writer.transport.abort()
                    return
                try:
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    # Counted and traced before the bytes leave, so whoever received them finds them there.
                    self._count(counter, len(data))
                    with self._lock:
                        self._trace.append({**stamp, "direction": direction, "bytes": len(data), "read_at": read_at,
                                            "due": due, "written_at": loop.time()})
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        reader_task = asyncio.ensure_future(read_side())
        try:
            await write_side()
        finally:
            if not reader_task.done():
                reader_task.cancel()
                try:
                    await reader_task
                except asyncio.CancelledError:
                    pass


def _nodelay(writer: asyncio.StreamWriter) -> None:
    # Nagle would add its own delay on top of ours and blur the measured round trip.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
