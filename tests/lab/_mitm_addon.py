"""mitmdump addon: append every byte the inspecting proxy relays to a record file.

Loaded by tests/lab/_mitm.py with ``-s``. Each record is one chunk::

    1 byte   direction: b">" client towards server, b"<" server towards client
    4 bytes  big-endian length
    n bytes  the chunk

What is recorded:
- CONNECT tunnels in TLS passthrough (mitmproxy ignores the host but still
  shows it as a TCP flow): the raw bytes of the tunnel, TLS records as sent;
- plain HTTP forwarding, and HTTP inside TLS that mitmproxy intercepts with
  its own CA: each request and response re-assembled by mitmproxy (request
  line or status line, headers, body as sent on the wire, i.e. still
  content-encoded; chunked framing is not kept);
- the CONNECT request itself (the proxy reads it, so it is readable to it).
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import BinaryIO

from mitmproxy import ctx, http, tcp
from mitmproxy.net.http.http1 import assemble

log = logging.getLogger(__name__)

TO_SERVER = b">"
TO_CLIENT = b"<"


class ByteRecorder:
    """Writes relayed chunks to the file named by the ``lab_record_path`` option."""

    def __init__(self) -> None:
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def load(self, loader) -> None:  # noqa: ANN001 - mitmproxy's Loader
        loader.add_option("lab_record_path", str, "", "File the lab's byte recorder appends to.")

    def configure(self, updated: set[str]) -> None:
        if "lab_record_path" in updated and ctx.options.lab_record_path:
            if self._file is not None:
                self._file.close()
            self._file = open(ctx.options.lab_record_path, "ab")  # noqa: SIM115 - lives as long as the addon

    def done(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _record(self, direction: bytes, data: bytes) -> None:
        if not data or self._file is None:
            return
        with self._lock:
            self._file.write(direction + struct.pack(">I", len(data)) + data)
            self._file.flush()  # tests read the file while the proxy runs

    # CONNECT: the request the proxy itself consumes
    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._record(TO_SERVER, assemble.assemble_request_head(flow.request))

    # plain HTTP, or HTTP inside intercepted TLS
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT":
            self._record(TO_SERVER, _whole_request(flow.request))

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "CONNECT" and flow.response is not None:
            self._record(TO_CLIENT, _whole_response(flow.response))

    # passthrough tunnels: the raw bytes
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        self._record(TO_SERVER if message.from_client else TO_CLIENT, message.content)


def _whole_request(request: http.Request) -> bytes:
    return assemble.assemble_request_head(request) + (request.raw_content or b"")


def _whole_response(response: http.Response) -> bytes:
    return assemble.assemble_response_head(response) + (response.raw_content or b"")


addons = [ByteRecorder()]
