"""WinRMTransport against real protocol peers on loopback.

The peers (_transport_peers.py beside this file) are a Windows-like host, authentication bound to the TCP
connection as Windows binds it, and an HTTP proxy; each records the bytes it received so the tests can
prove R2.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import ssl
import sys
import tempfile
import time
import typing as t

import pytest
from pypsrp.exceptions import WinRMTransportError

try:
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _transport
except ImportError:  # running from a checkout: expose it as ansible_collections.pinned.winrm
    _root = pathlib.Path(__file__).resolve().parents[4]
    _tree = pathlib.Path(tempfile.mkdtemp(prefix="pinned-coll-"))
    (_tree / "ansible_collections" / "pinned").mkdir(parents=True)
    (_tree / "ansible_collections" / "pinned" / "winrm").symlink_to(_root)
    sys.path.insert(0, str(_tree))
    from ansible_collections.pinned.winrm.plugins.plugin_utils import _transport

from ansible_collections.pinned.winrm.plugins.plugin_utils import _errors
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import ProxySpec, SessionSpec
from _transport_peers import (
    HOST_PASS,
    HOST_USER,
    PROXY_PASS,
    PROXY_USER,
    Events,
    Host,
    Proxy,
    assert_no_host_secrets,
    assert_no_proxy_secrets,
    make_spec,
    make_tls_files,
)

pytestmark = pytest.mark.timeout(20)


# -- certificates -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, t.Any]:
    """A server certificate for 127.0.0.1 from a CA the client trusts through ca_cert."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def ntlm_users(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspnego's NTLM acceptor reads its accounts from NTLM_USER_FILE (this process only)."""
    path = tmp_path / "ntlm-users"
    path.write_text(f":{HOST_USER}:{HOST_PASS}\n:{PROXY_USER}:{PROXY_PASS}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(path))


@pytest.fixture
def server_tls(tls_files: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files["cert"], tls_files["key"])
    return ctx


@pytest.fixture
def peers() -> t.Iterator[list[t.Any]]:
    made: list[t.Any] = []
    yield made
    for p in made:
        if isinstance(p, Host):
            p.release.set()
        p.peer.close()


# -- direct -------------------------------------------------------------------


def test_ntlm_handshake_and_every_message_share_one_connection_with_encryption_round_trip(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host), events=events)
    assert tr.send(b"<first/>") == b"ECHO:<first/>"
    assert tr.send(b"<second/>") == b"ECHO:<second/>"
    tr.close()
    assert host.peer.connections == 1
    assert host.handshakes == [(1, 2)]  # NTLM negotiate (sent unasked), NTLM authenticate
    assert [m for _, m in host.messages] == [b"<first/>", b"<second/>"]
    assert host.encrypted_seen == [True, True]
    assert b"<first/>" not in host.peer.received  # only ciphertext crossed the wire
    assert tr.stats["tcp_connects"] == 1 and tr.stats["host_handshakes"] == 1 and tr.stats["reauths"] == {}
    assert tr.stats["bytes_out"] == len(host.peer.received)
    assert events.kinds() == ["connect", "host_auth", "close"]


def test_https_ntlm_sends_channel_binding_the_host_checks(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(tls=server_tls, cbt=b"tls-server-end-point:" + tls_files["der_hash"])
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, scheme="https", ca=tls_files["ca"]))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert host.handshakes == [(1, 2)] and host.encrypted_seen == [False]
    tr.close()


def test_https_host_certificate_not_trusted_names_the_host_and_ca_setting(peers: list[t.Any], server_tls: ssl.SSLContext) -> None:
    host = Host(tls=server_tls)
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, scheme="https"))
    with pytest.raises(_errors.TransportError, match=r"Windows host.*ansible_psrp_ca_cert"):
        tr.send(b"<m/>")


def test_wrong_host_password_is_host_auth_error_naming_the_settings_and_offers(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, password="wrong"))
    with pytest.raises(_errors.HostAuthError) as err:
        tr.send(b"<m/>")
    text = str(err.value)
    assert "ansible_user" in text and "ansible_password" in text and "Negotiate" in text
    assert "wrong" not in text
    assert host.messages == []


def test_basic_rejected_by_host_is_host_auth_error(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(auth="basic", tls=server_tls)
    peers.append(host)
    ok = _transport.WinRMTransport(make_spec(host, scheme="https", auth="basic", ca=tls_files["ca"]))
    assert ok.send(b"<m/>") == b"ECHO:<m/>"
    bad = _transport.WinRMTransport(make_spec(host, scheme="https", auth="basic", ca=tls_files["ca"], password="nope"))
    with pytest.raises(_errors.HostAuthError, match="Basic"):
        bad.send(b"<m/>")


def test_host_500_with_body_is_pypsrp_winrm_transport_error(peers: list[t.Any]) -> None:
    host = Host()
    host.fault_500 = True
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host))
    with pytest.raises(WinRMTransportError) as err:
        tr.send(b"<m/>")
    assert err.value.code == 500 and err.value.response_text == "<fault/>"  # decrypted before handing to pypsrp


def test_read_timeout_names_the_setting_and_host(peers: list[t.Any]) -> None:
    host = Host()
    host.delay_messages = 60.0  # held until the test ends: only the client's read timeout can end the wait
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, read_timeout=0.5))
    with pytest.raises(_errors.ReadTimeoutError, match="read_timeout"):
        tr.send(b"<m/>")


def test_a_read_timeout_is_final_even_when_pypsrp_asks_to_send_a_receive_again(peers: list[t.Any]) -> None:
    # pypsrp passes retries_on_read_timeout=5 for a Receive; the answer the host may have sent is not kept
    # (no wsmv:OperationID), so sending it again could only lose output or wait for an end already sent
    host = Host()
    host.delay_messages = 60.0  # held until the test ends: only the read timeout can end the wait
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, read_timeout=0.4))
    with pytest.raises(_errors.ReadTimeoutError, match="not sent again.*outcome is unknown"):
        tr.send(b"<m/>", retries_on_read_timeout=5)
    assert host.peer.connections == 1 and tr.stats["reauths"] == {}


def test_a_receive_waits_for_the_read_timeout_when_pypsrps_own_deadline_is_shorter(peers: list[t.Any]) -> None:
    # pypsrp hands a Receive OperationTimeout + 2 s; the error names ansible_psrp_read_timeout, so raising it must
    # lengthen the wait (the host answers within the operation timeout unless it or the network stalls)
    host = Host()
    host.delay_messages = 60.0  # held until the test ends: only the client's timeout can end the wait
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, read_timeout=1.5))
    started = time.monotonic()
    with pytest.raises(_errors.ReadTimeoutError, match=r"within 1\.5s \(ansible_psrp_read_timeout\)"):
        tr.send(b"<m/>", retries_on_read_timeout=5, timeout=0.2)
    assert time.monotonic() - started >= 1.5


def test_connect_refused_names_the_host(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    spec = make_spec(host)
    host.peer.close()
    with pytest.raises(_errors.TransportError, match=r"Windows host 127\.0\.0\.1"):
        _transport.WinRMTransport(spec).send(b"<m/>")


def test_connect_timeout_names_connection_timeout() -> None:
    # a listening socket whose backlog is full never completes the handshake
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(srv.getsockname())
            fillers.append(s)
        spec = SessionSpec(scheme="http", host="127.0.0.1", port=srv.getsockname()[1], auth="ntlm", username="u",
                           password="p", connection_timeout=0.5)
        with pytest.raises((_errors.ConnectTimeoutError, _errors.ReadTimeoutError), match="timeout"):
            _transport.WinRMTransport(spec).send(b"<m/>")
    finally:
        for s in fillers:
            s.close()
        srv.close()


def test_fresh_401_on_authenticated_connection_reauthenticates_and_resends_once(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host), events=events)
    assert tr.send(b"<a/>") == b"ECHO:<a/>"
    host.fresh_401 = 1
    assert tr.send(b"<b/>") == b"ECHO:<b/>"
    assert [m for _, m in host.messages] == [b"<a/>", b"<b/>"]  # <b/> processed exactly once
    assert tr.stats["reauths"] == {"fresh 401 on an authenticated connection": 1}
    assert "affinity_lost" in events.kinds()


def test_drop_after_request_written_is_not_resent(peers: list[t.Any]) -> None:
    host = Host()
    peers.append(host)
    tr = _transport.WinRMTransport(make_spec(host, reconnection_retries=3))
    assert tr.send(b"<a/>") == b"ECHO:<a/>"
    host.drop_before_answer = True
    with pytest.raises(_errors.TransportError, match="outcome on the host is unknown"):
        tr.send(b"<cmd/>")
    assert [m for _, m in host.messages].count(b"<cmd/>") == 1


# -- through a CONNECT tunnel ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["basic", "digest", "ntlm"])
def test_connect_407_answered_on_the_same_connection(peers: list[t.Any], scheme: str) -> None:
    host, proxy = Host(), Proxy(auth=scheme)
    peers += [host, proxy]
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth=scheme, tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert tr.send(b"<n/>") == b"ECHO:<n/>"
    expected_legs = 3 if scheme == "ntlm" else 2
    assert proxy.connects == [(1, f"127.0.0.1:{host.peer.port}", expected_legs)]
    assert proxy.peer.connections == 1 and host.peer.connections == 1
    assert tr.stats["proxy_handshakes"] == 1 and "proxy_auth" in events.kinds()
    # R2: the proxy's credentials stay with the proxy, the host's inside the tunnel
    assert_no_proxy_secrets(bytes(host.peer.received))
    assert_no_host_secrets(bytes(proxy.http_bytes))
    for _, detail in events:
        assert PROXY_PASS not in detail and HOST_PASS not in detail


def test_basic_proxy_that_closes_after_407_is_answered_on_a_new_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic", close_after_407=True)
    peers += [host, proxy]
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="basic", tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert proxy.peer.connections == 2
    assert any(k == "reconnect" and "407" in d for k, d in events)


def test_ntlm_proxy_closing_after_its_offers_only_407_is_answered_on_a_new_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    proxy.close_on_offers = True  # no NTLM context exists yet, so a new connection loses nothing
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert proxy.peer.connections == 2 and proxy.connects == [(2, f"127.0.0.1:{host.peer.port}", 2)]


def test_ntlm_proxy_that_closes_after_407_fails_naming_the_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm", close_after_407=True)
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    with pytest.raises(_errors.ProxyAuthError, match="closed the connection after its 407"):
        tr.send(b"<m/>")


def test_wrong_proxy_password_is_proxy_auth_error_with_offers_and_settings(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True, proxy_password="bad-pw"))
    with pytest.raises(_errors.ProxyAuthError) as err:
        tr.send(b"<m/>")
    assert err.value.status == 407 and "NTLM" in err.value.schemes and "Basic" in err.value.schemes
    assert "ansible_psrp_proxy_password" in str(err.value) and "bad-pw" not in str(err.value)
    assert host.peer.connections == 0


def test_proxy_asking_for_auth_without_proxy_credentials_names_proxy_settings(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, tunnel=True))
    with pytest.raises(_errors.ProxyAuthError, match="ansible_psrp_proxy_auth"):
        tr.send(b"<m/>")


def test_proxy_failing_to_reach_host_is_proxy_error(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    spec = make_spec(host, proxy=proxy, tunnel=True)
    host.peer.close()
    with pytest.raises(_errors.ProxyError, match=r"proxy http://127\.0\.0\.1:\d+ could not reach") as err:
        _transport.WinRMTransport(spec).send(b"<m/>")
    assert err.value.status == 502


def test_https_proxy_and_https_host_nest_tls_in_the_tunnel(peers: list[t.Any], server_tls: ssl.SSLContext, tls_files: dict[str, t.Any]) -> None:
    host = Host(tls=server_tls, cbt=b"tls-server-end-point:" + tls_files["der_hash"])
    proxy = Proxy(auth="basic", tls=server_tls)
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, scheme="https", proxy=proxy, proxy_scheme="https", proxy_auth="basic", ca=tls_files["ca"]))
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert tr.stats["tls_handshakes"] == 2
    assert HOST_USER.encode("utf-16-le") not in bytes(proxy.tunnel_bytes)  # the proxy relayed only TLS


def test_tunnel_closed_after_handshake_is_reopened_with_proxy_auth_again(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="digest")
    peers += [host, proxy]
    host.close_after_handshake = 1
    events = Events()
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="digest", tunnel=True), events=events)
    assert tr.send(b"<m/>") == b"ECHO:<m/>"
    assert len(proxy.connects) == 2 and len(host.handshakes) == 2
    assert [m for _, m in host.messages] == [b"<m/>"]
    assert tr.stats["reauths"] == {"closed after the handshake": 1} and tr.stats["proxy_handshakes"] == 2
    assert "affinity_lost" in events.kinds()


def test_tunnel_reopens_are_bounded_by_reconnection_retries(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    host.close_after_handshake = 10
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, tunnel=True, reconnection_retries=1))
    with pytest.raises(_errors.TransportError, match="gave up after 2 re-open"):
        tr.send(b"<m/>")
    assert len(host.handshakes) == 3 and host.messages == []


# -- through a forward proxy ---------------------------------------------------------


def test_forward_proxy_uses_absolute_form_and_keeps_one_connection(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    assert tr.send(b"<m/>") == b"ECHO:<m/>" and tr.send(b"<n/>") == b"ECHO:<n/>"
    assert f"POST http://127.0.0.1:{host.peer.port}/wsman HTTP/1.1".encode() in proxy.peer.received
    assert proxy.peer.connections == 1 and host.peer.connections == 1
    assert b"Proxy-Authorization" not in proxy.peer.received
    assert b"<m/>" not in proxy.peer.received  # R3: encrypted through the proxy


def test_forward_proxy_closing_after_handshake_is_affinity_lost_naming_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.close_client_after = 2  # the NTLM challenge and the handshake's 200
    events = Events()
    spec = make_spec(host, proxy=proxy, reconnection_retries=3)
    tr = _transport.WinRMTransport(spec, events=events)
    with pytest.raises(_errors.AffinityLostError) as err:
        tr.send(b"<m/>")
    text = str(err.value)
    assert spec.proxy is not None and spec.proxy.url in text
    assert "ansible_psrp_protocol: https" in text and "ansible_psrp_proxy_tunnel: true" in text
    assert host.messages == [] and "affinity_lost" in events.kinds()


def test_forward_proxy_switching_upstream_shows_as_fresh_401_and_affinity_lost(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.fresh_upstream_after = 2  # the whole handshake on one upstream connection, the message on another
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    with pytest.raises(_errors.AffinityLostError, match="fresh 401"):
        tr.send(b"<m/>")
    assert host.messages == [] and proxy.upstream_connections == 2


def test_forward_proxy_without_affinity_during_handshake_hints_at_the_proxy(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    proxy.fresh_upstream_after = 1  # every request on a new upstream connection (tinyproxy-like)
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy))
    with pytest.raises(_errors.HostAuthError) as err:
        tr.send(b"<m/>")
    assert "without connection affinity" in str(err.value) and "ansible_psrp_proxy_tunnel: true" in str(err.value)
    assert host.peer.connections == 2 and host.handshakes == []


def test_forward_proxy_own_502_is_proxy_error(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy()
    peers += [host, proxy]
    spec = make_spec(host, proxy=proxy)
    host.peer.close()
    with pytest.raises(_errors.ProxyError, match="proxy"):
        _transport.WinRMTransport(spec).send(b"<m/>")


def test_tunnel_mode_for_http_endpoint_keeps_proxy_auth_out_of_host_bytes(peers: list[t.Any]) -> None:
    host, proxy = Host(), Proxy(auth="basic")
    peers += [host, proxy]
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="basic", tunnel=True))
    tr.send(b"<m/>")
    assert b"CONNECT 127.0.0.1:" in proxy.http_bytes and b"POST http://" not in proxy.peer.received
    assert_no_proxy_secrets(bytes(host.peer.received))


def test_debug_logs_carry_no_secrets_or_tokens(peers: list[t.Any], caplog: pytest.LogCaptureFixture) -> None:
    host, proxy = Host(), Proxy(auth="ntlm")
    peers += [host, proxy]
    caplog.set_level("DEBUG", logger="ansible_collections.pinned.winrm")
    tr = _transport.WinRMTransport(make_spec(host, proxy=proxy, proxy_auth="ntlm", tunnel=True))
    assert tr.send(b"<body-text/>") == b"ECHO:<body-text/>"
    tr.close()
    # our own loggers only: pyspnego logs raw tokens at DEBUG, which the plugin keeps quiet
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ansible_collections.pinned.winrm"))
    assert "CONNECT" in text  # the transport did log its steps
    for secret in (HOST_PASS, PROXY_PASS, "TlRMTVNT", "<body-text/>"):  # passwords, NTLM tokens, bodies
        assert secret not in text
