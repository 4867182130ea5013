""""Nothing reached the proxy (or the host)", proved with a positive marker instead of a pause.

Squid writes an access-log line when a transaction ends, the inspecting proxy records a request once it has
read it, and a lab host counts a connection when its accept loop takes it from the listen queue: reading any
of them right after a run can miss what the run sent a moment before. So the test sends a request of its own
through the same proxy (or to the same host listener), after the run, and waits until that request shows in
the log (the record, the host's request log); whatever the run sent got there before the marker did, so it is
counted by then too. Only then is the absence of anything else a fact. The wait is bounded only so that a
broken proxy cannot hang a test.
"""

from __future__ import annotations

import http.client
import secrets
import socket
import ssl
import time
import typing as t
import urllib.parse

MARKER_WAIT_S = 60.0  # a bound for a broken proxy, not a timing assumption


def send_marker(proxy_url: str) -> str:
    """Send one plain GET for a unique host through the proxy and read its answer to the end; returns the host
    name, which the proxy's log (Squid: the URL) or record (the inspecting proxy: the Host header) shows.

    The URL names the discard port of the loopback address, so a proxy answers at once with an error page
    (Squid: 403 for a port outside Safe_ports, 407 before that, or 503 for the refused connection) and logs it
    with the URL, which carries the marker; a name to resolve (say under .invalid) would hold Squid's answer for
    its DNS timeout on a machine without a resolver. The Host header carries it too, for the inspecting proxy's
    record of the request as it read it.
    """
    parts = urllib.parse.urlsplit(proxy_url)
    marker = f"lab-marker-{secrets.token_hex(8)}.invalid"
    # The answer is read to its end by its framing (Content-Length or chunked), not to the connection's close: Squid
    # keeps a client connection open after a 407 despite "Connection: close", which cost each marker its timeout.
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", f"http://127.0.0.1:9/{marker}", headers={"Host": marker, "Connection": "close"})
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # the marker only has to reach the proxy's log; an odd answer does not matter
    finally:
        conn.close()
    return marker


def _wait(read: t.Callable[[], t.Any], found: t.Callable[[t.Any], bool], what: str) -> t.Any:
    deadline = time.monotonic() + MARKER_WAIT_S
    while True:
        value = read()
        if found(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the marker request never showed in {what}: the proxy's record cannot be trusted")
        time.sleep(0.05)


def access_lines_before_marker(lab: t.Any, proxy: str, before: int) -> list[str]:
    """The Squid access-log lines written after the first `before` ones and before this call's marker request."""
    marker = send_marker(lab.describe()["proxies"][proxy]["url"])
    text = _wait(lambda: lab.proxy_access_log(proxy), lambda text: marker in text, f"{proxy}'s access log")
    lines = [line for line in text.splitlines() if line.strip()]
    cut = next(i for i, line in enumerate(lines) if marker in line)
    return lines[before:cut]


def access_line_count(lab: t.Any, proxy: str) -> int:
    """How many lines the proxy's access log holds now (the `before` of access_lines_before_marker)."""
    return len([line for line in lab.proxy_access_log(proxy).splitlines() if line.strip()])


def recorded_before_marker(lab: t.Any, proxy: str, before: int) -> bytes:
    """The bytes the inspecting proxy recorded after the first `before` ones and before this call's marker request."""
    marker = send_marker(lab.describe()["proxies"][proxy]["url"]).encode()
    recorded = _wait(lambda: lab.proxy_recorded(proxy), lambda blob: marker in blob, f"{proxy}'s byte record")
    # it records the request as it forwards it (origin-form): "GET / HTTP/1.1 ... Host: <marker>"
    return recorded[before:max(before, recorded.rfind(b"GET ", 0, recorded.index(marker)))]


def host_connections_before_marker(lab: t.Any, host: dict[str, t.Any], before: int,
                                   ports: t.Sequence[str] = ("http_port", "https_port")) -> int:
    """Connections the lab host accepted on its listeners after its tcp_connections counter read `before`, not
    counting this call's markers: on each listener, a GET for a unique path on a connection of its own, read to
    its 404.

    Each listener's queue is first in, first out: once a marker's request is in the host's log, every connection
    made to that listener before it has been counted.
    """
    for port in ports:
        path = f"/lab-marker-{secrets.token_hex(8)}"
        with socket.create_connection((host["address"], host[port]), timeout=30) as raw_sock:
            sock: socket.socket = raw_sock
            if port == "https_port":
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # only the marker's path matters
                sock = ctx.wrap_socket(raw_sock, server_hostname=host["address"])
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host['address']}\r\nConnection: close\r\n\r\n".encode())
            answer = http.client.HTTPResponse(sock)  # read to the end of its framing, not to the close
            answer.begin()
            answer.read()
        _wait(lambda: lab.host_log(host["name"]), lambda log: any(e.get("path") == path for e in log),
              f"{host['name']}'s request log")
    return int(lab.host_counters(host["name"]).get("tcp_connections", 0)) - before - len(ports)
