"""A lab host resets a connection (drop_connections, a reboot, stop) under the thread serving it as a TCP reset
does: that thread sees an I/O error, never a TLS object pulled from under it."""

from __future__ import annotations

import socket
import ssl
import threading

from tests.lab._certs import LabCA
from tests.lab._host import _reset


def _tls_pair(tmp_path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    cert, key = LabCA.create(tmp_path / "ca").issue_server("reset", ["localhost"], ["127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    a, b = socket.socketpair()
    server = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    client = client_ctx.wrap_socket(b, do_handshake_on_connect=False)
    done = threading.Thread(target=client.do_handshake)
    done.start()
    server.do_handshake()
    done.join(30)
    return server, client


def test_a_reset_leaves_the_serving_thread_an_io_error_not_a_missing_tls_object(tmp_path) -> None:
    server, client = _tls_pair(tmp_path)
    try:
        _reset(server)  # what drop_connections does while the serving thread is between two calls
        server.getpeercert(binary_form=True)  # the TLS object is still there
        try:
            server.recv(1)
        except (OSError, ssl.SSLError):
            pass  # the reset, as the serving thread handles it
    finally:
        server.close()
        client.close()


def test_the_tls_socket_s_own_shutdown_would_pull_the_tls_object(tmp_path) -> None:
    """Why _reset() does not call SSLSocket.shutdown(): the serving thread's next call fails with AttributeError."""
    server, client = _tls_pair(tmp_path)
    try:
        server.shutdown(socket.SHUT_RDWR)
        try:
            server.getpeercert(binary_form=True)
            pulled = False
        except (AttributeError, ValueError):
            pulled = True
        assert pulled
    finally:
        server.close()
        client.close()
