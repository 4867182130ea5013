"""What the suite's hand-written HTTP peers share: a threaded TCP server on 127.0.0.1 and an h11 request reader.

The peers are written by hand on purpose (the transport's fake host and proxy in
tests/unit/plugins/plugin_utils/_transport_peers.py, the hostile hosts in
tests/integration/reliability/_hostile.py): a test server must be able to answer with what no library
would send. Their answers differ; accepting, reading a request and closing are this one module.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import typing as t

import h11

# Bounded: every turn consumes an h11 event or received bytes, and no test request needs more.
_MAX_EVENTS = 100_000


class LoopbackServer:
    """A TCP server on 127.0.0.1: each connection runs `serve(sock, number)` on a thread of its own.

    `number` counts connections from 1. With `tls`, each connection is wrapped server-side first. Errors of
    the connection (reset, TLS or HTTP protocol errors) end that connection only. Nothing is accepted
    before `start()`; `close()` stops accepting and closes every connection.
    """

    def __init__(self, serve: t.Callable[[socket.socket, int], None] | None = None, *,
                 tls: ssl.SSLContext | None = None, client_timeout: float = 30.0, name: str = "loopback") -> None:
        self._serve_connection = serve
        self.tls = tls
        self.client_timeout = client_timeout
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"{name}:{self.port}")

    def start(self) -> t.Self:
        self._thread.start()
        return self

    def serve(self, sock: socket.socket, number: int) -> None:
        """One connection's life; the function given to the constructor unless a subclass overrides it."""
        if self._serve_connection is None:
            raise NotImplementedError("give LoopbackServer a serve function or override serve()")
        self._serve_connection(sock, number)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:  # the listener was shut down by close()
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self._clients.append(client)
            threading.Thread(target=self._run, args=(client, number), daemon=True,
                             name=f"{self._thread.name}#{number}").start()

    def _run(self, client: socket.socket, number: int) -> None:
        client.settimeout(self.client_timeout)
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            self.serve(client, number)
        except (OSError, ssl.SSLError, h11.ProtocolError):
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        with self.lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def read_request(sock: socket.socket, parser: h11.Connection,
                 record: t.Callable[[bytes], None] | None = None) -> tuple[h11.Request, bytes] | None:
    """The next request on a server-side h11 connection as (request, body); None when the client closed,
    the socket failed, or something other than a whole request came. `record` sees every byte received."""
    request: h11.Request | None = None
    body = bytearray()
    for _ in range(_MAX_EVENTS):
        event = parser.next_event()
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            if record is not None:
                record(data)
            parser.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return (request, bytes(body)) if request is not None else None
        else:
            return None
    return None
