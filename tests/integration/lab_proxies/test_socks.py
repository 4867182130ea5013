"""The lab's SOCKS5 proxy (microsocks): it relays streams, refuses a wrong password, and its log counts what it relayed."""

from __future__ import annotations

import pathlib
import socket
import socketserver
import threading
import typing as t

import pytest

from tests.lab._socks import MicroSocks

pytestmark = pytest.mark.timeout(60)
python_socks = pytest.importorskip("python_socks.sync")


class _Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(1024)
        self.request.sendall(b"echo:" + data)


@pytest.fixture
def echo() -> t.Iterator[int]:
    server = _Echo(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _through(proxy: MicroSocks, port: int, *, username: str | None = None, password: str | None = None,
             host: str = "127.0.0.1", rdns: bool = False) -> bytes:
    from python_socks import ProxyType

    client = python_socks.Proxy(ProxyType.SOCKS5, proxy.host, proxy.port, username=username, password=password,
                                rdns=rdns)
    with client.connect(dest_host=host, dest_port=port, timeout=10) as sock:
        sock.sendall(b"ping")
        return sock.recv(1024)


def test_microsocks_relays_and_logs_each_stream_with_the_target_the_client_sent(tmp_path: pathlib.Path,
                                                                                echo: int) -> None:
    with MicroSocks(tmp_path) as proxy:
        assert _through(proxy, echo) == b"echo:ping"
        assert _through(proxy, echo, host="localhost", rdns=True) == b"echo:ping"
        assert proxy.counters() == {"connections": 2, "requests": 2,
                                    "by_target": {f"127.0.0.1:{echo}": 1, f"localhost:{echo}": 1}}


def test_microsocks_with_a_password_refuses_a_wrong_one_and_logs_only_authenticated_streams(
        tmp_path: pathlib.Path, echo: int) -> None:
    from python_socks import ProxyError

    with MicroSocks(tmp_path, username="proxy-socks", password="Socks-Pw-1") as proxy:
        with pytest.raises(ProxyError, match="authentication failure"):
            _through(proxy, echo, username="proxy-socks", password="wrong")
        with pytest.raises(ProxyError, match="No acceptable authentication methods"):
            _through(proxy, echo)
        assert _through(proxy, echo, username="proxy-socks", password="Socks-Pw-1") == b"echo:ping"
        assert proxy.counters()["by_target"] == {f"127.0.0.1:{echo}": 1}
        # microsocks blanks -u and -P in its own argv: the password is not in the process list
        cmdline = pathlib.Path(f"/proc/{proxy.pid}/cmdline").read_bytes()
        assert b"Socks-Pw-1" not in cmdline and b"proxy-socks" not in cmdline


def test_microsocks_probe_for_readiness_leaves_no_log_line(tmp_path: pathlib.Path) -> None:
    with MicroSocks(tmp_path) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5):
            pass
        assert proxy.counters()["connections"] == 0
