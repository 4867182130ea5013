"""The lab's Squid: bounded start/stop, CONNECT restricted to the lab's ports, and proxy auth that checks credentials."""

from __future__ import annotations

import base64
import http.server
import pathlib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import spnego

from tests.integration.lab_proxies.conftest import (
    EchoServer,
    HTTPProxyDigestAuth,
    RecordingHTTPServer,
    connect_with_auth,
    PROXY_USER,
    echo_through,
    logged,
)
from tests.lab import _procs
from tests.lab._squid import SquidProxy

pytestmark = pytest.mark.timeout(60)

USER = PROXY_USER


@pytest.fixture()
def password(proxy_password: str) -> str:
    return proxy_password


@pytest.fixture()
def open_squid(squids: dict[str, SquidProxy]) -> SquidProxy:
    return squids["open"]


@pytest.fixture()
def basic_squid(squids: dict[str, SquidProxy]) -> SquidProxy:
    return squids["basic"]


@pytest.fixture()
def digest_squid(squids: dict[str, SquidProxy]) -> SquidProxy:
    return squids["digest"]


@pytest.fixture()
def ntlm_squid(squids: dict[str, SquidProxy]) -> SquidProxy:
    return squids["ntlm"]


# ------------------------------------------------------------------------------------------ lifecycle
def test_squid_starts_within_bounds_stops_cleanly_and_restarts_on_the_same_port(tmp_path: pathlib.Path) -> None:
    squid = SquidProxy(tmp_path, allowed_connect_ports=[])
    began = time.monotonic()
    squid.start()
    started_in = time.monotonic() - began
    assert started_in < _procs.START_TIMEOUT_S
    assert _procs.port_accepts("127.0.0.1", squid.port)
    port = squid.port
    pid = squid.pid  # the test checks the process really went away

    squid.restart()
    assert squid.port == port and _procs.port_accepts("127.0.0.1", port)
    assert squid.pid != pid

    began = time.monotonic()
    squid.stop()
    stopped_in = time.monotonic() - began
    assert stopped_in < _procs.STOP_TIMEOUT_S
    assert not _procs.port_accepts("127.0.0.1", port)
    assert squid.cache_log_path.read_text().count("Exiting normally") == 2  # SIGTERM was enough, twice


def test_squid_startup_failure_reports_the_log_tail_within_the_bound(tmp_path: pathlib.Path,
                                                                    open_squid: SquidProxy) -> None:
    twin = SquidProxy(tmp_path / "twin")
    twin.port = open_squid.port  # the port is taken: Squid cannot listen
    began = time.monotonic()
    with pytest.raises(_procs.DaemonStartError, match="squid") as info:
        twin.start()
    assert time.monotonic() - began < _procs.START_TIMEOUT_S + _procs.STOP_TIMEOUT_S
    assert "cache.log" in str(info.value)
    assert not twin.running


# ------------------------------------------------------------------------------------------ CONNECT policy
def test_squid_tunnels_connect_to_an_allowed_port(open_squid: SquidProxy, echo_server: EchoServer) -> None:
    result = connect_with_auth(open_squid.port, echo_server.port)
    try:
        assert result.statuses == [200]
        assert echo_through(result, b"ping through squid") == b"echo:ping through squid"
    finally:
        result.close()


def test_squid_refuses_connect_to_a_port_that_is_not_a_lab_port(open_squid: SquidProxy,
                                                                echo_server: EchoServer) -> None:
    other = _procs.free_port()
    result = connect_with_auth(open_squid.port, other)
    assert result.statuses == [403]
    denied = logged(lambda: [e for e in open_squid.access_entries() if e.url == f"127.0.0.1:{other}"], 1)
    assert [e.squid_status for e in denied] == ["TCP_DENIED"]


def test_squid_serves_https_proxy_port_with_a_lab_ca_certificate(squids: dict[str, SquidProxy], lab_ca,
                                                                 echo_server: EchoServer) -> None:
    squid = squids["https"]
    assert squid.https_url == f"https://127.0.0.1:{squid.tls_port}"
    tls = ssl.create_default_context(cafile=str(lab_ca.cert_path))
    result = connect_with_auth(squid.tls_port, echo_server.port, wrap=tls)
    try:
        assert result.statuses == [200]
        assert echo_through(result, b"inside TLS to the proxy") == b"echo:inside TLS to the proxy"
    finally:
        result.close()
    # and a client that does not trust the lab CA refuses the proxy's certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        connect_with_auth(squid.tls_port, echo_server.port, wrap=ssl.create_default_context())


# ------------------------------------------------------------------------------------------ Basic
def test_squid_basic_accepts_the_right_password_and_answers_407_to_a_wrong_one(
        basic_squid: SquidProxy, http_upstream: RecordingHTTPServer, password: str) -> None:
    target = f"http://127.0.0.1:{http_upstream.port}/basic"

    def through(pw: str | None) -> requests.Response:
        cred = "" if pw is None else f"{USER}:{requests.utils.quote(pw, safe='')}@"
        return requests.get(target, proxies={"http": f"http://{cred}127.0.0.1:{basic_squid.port}"}, timeout=10)

    assert through(None).status_code == 407
    assert through(password + "x").status_code == 407
    assert len(http_upstream.requests) == 0
    ok = through(password)
    assert ok.status_code == 200
    assert len(http_upstream.requests) == 1
    # the host never sees the proxy credentials (R2)
    assert "Proxy-Authorization" not in http_upstream.requests[0][3]
    accepted = logged(lambda: [e for e in basic_squid.access_entries() if e.user == USER and e.http_status == 200], 1)
    assert len(accepted) == 1 and basic_squid.counters()["by_user"].get(USER) == 1


def test_squid_proxy_passwords_appear_in_no_file_and_no_process_argument(
        squids: dict[str, SquidProxy], password: str) -> None:
    """Credential files hold hashes; confs, logs and helper command lines hold paths only."""
    import urllib.parse

    forms = {password, urllib.parse.quote(password, safe=""), base64.b64encode(password.encode()).decode()}
    for name in ("basic", "digest", "ntlm"):
        squid = squids[name]
        run = squid.access_log_path.parent
        files = [f for f in run.iterdir() if f.is_file()]
        assert files
        for f in files:
            text = f.read_bytes().decode("utf-8", "replace")
            assert not any(form in text for form in forms), f"{f} holds the password"
    cmdlines = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdlines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
            except OSError:
                continue
    assert any("squid" in c for c in cmdlines)
    assert not any(form in c for c in cmdlines for form in forms)


# ------------------------------------------------------------------------------------------ Digest
def test_squid_digest_accepts_the_right_password_and_answers_407_to_a_wrong_one(
        digest_squid: SquidProxy, http_upstream: RecordingHTTPServer, password: str) -> None:
    target = f"http://127.0.0.1:{http_upstream.port}/digest"
    proxies = {"http": digest_squid.url}
    wrong = requests.get(target, proxies=proxies, auth=HTTPProxyDigestAuth(USER, password + "x"), timeout=10)
    assert wrong.status_code == 407
    assert wrong.history and wrong.history[0].headers["Proxy-Authenticate"].startswith("Digest")
    assert len(http_upstream.requests) == 0
    right = requests.get(target, proxies=proxies, auth=HTTPProxyDigestAuth(USER, password), timeout=10)
    assert right.status_code == 200
    assert [r[2] for r in http_upstream.requests] == ["/digest"]


# ------------------------------------------------------------------------------------------ NTLM
def _ntlm(user: str, pw: str) -> spnego.ContextProxy:
    return spnego.client(user, pw, hostname="127.0.0.1", service="HTTP", protocol="ntlm")


def test_squid_ntlm_connect_authenticates_over_407_legs_on_one_connection(
        ntlm_squid: SquidProxy, echo_server: EchoServer, password: str) -> None:
    result = connect_with_auth(ntlm_squid.port, echo_server.port, scheme="NTLM", context=_ntlm(USER, password))
    try:
        # leg 1: negotiate -> 407 with the challenge; leg 2: authenticate -> 200, all on this one connection
        assert result.statuses == [407, 200]
        assert echo_through(result, b"after NTLM") == b"echo:after NTLM"
    finally:
        result.close()
    mine = logged(lambda: [e for e in ntlm_squid.access_entries() if e.client_port == result.local_port], 2)
    assert [(e.http_status, e.user) for e in mine] == [(407, None), (200, USER)]


def test_squid_ntlm_refuses_a_wrong_password(ntlm_squid: SquidProxy, echo_server: EchoServer,
                                             password: str) -> None:
    before = len(echo_server.connections)
    result = connect_with_auth(ntlm_squid.port, echo_server.port, scheme="NTLM",
                               context=_ntlm(USER, "not-" + password))
    assert result.statuses == [407, 407]
    assert len(echo_server.connections) == before  # nothing reached the target


def test_squid_ntlm_refuses_an_unknown_user(ntlm_squid: SquidProxy, echo_server: EchoServer,
                                            password: str) -> None:
    result = connect_with_auth(ntlm_squid.port, echo_server.port, scheme="NTLM",
                               context=_ntlm("someone-else", password))
    assert result.statuses == [407, 407]


# ------------------------------------------------------------------------------------------ the helper itself
def test_ntlm_helper_run_directly_speaks_squids_protocol_and_checks_the_password(
        tmp_path: pathlib.Path, password: str) -> None:
    """The helper as Squid runs it when the lab is not root: the venv python on stdin/stdout."""
    from tests.lab import _proxy_auth_helpers as helpers

    store = tmp_path / "users"
    helpers.write_ntlm_store(store, {USER: password})
    assert store.stat().st_mode & 0o777 == 0o600
    assert password not in store.read_text()

    def run(pw: str) -> list[str]:
        ctx = _ntlm(USER, pw)
        proc = subprocess.Popen([sys.executable, helpers.__file__, "ntlm", "--users", str(store)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin and proc.stdout
        replies = []
        line = f"YR {base64.b64encode(ctx.step()).decode()}\n"
        for _ in range(3):
            proc.stdin.write(line)
            proc.stdin.flush()
            reply = proc.stdout.readline().strip()
            replies.append(reply.split(" ")[0])
            if not reply.startswith("TT "):
                break
            line = f"KK {base64.b64encode(ctx.step(base64.b64decode(reply[3:]))).decode()}\n"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        return replies

    assert run(password) == ["TT", "OK"]
    assert run(password + "!") == ["TT", "ERR"]


# ------------------------------------------------------------------------------------------ pinning
class _NtlmHost(http.server.BaseHTTPRequestHandler):
    """A host that authenticates NTLM per TCP connection, as Windows does (context lives on the connection)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.ntlm = spnego.server(protocol="ntlm")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.seen.append((self.client_address[1], self.headers.get("Authorization", "")[:12]))  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization", "")
        status, header = 401, "NTLM"
        if auth.startswith("NTLM "):
            try:
                out = self.ntlm.step(base64.b64decode(auth[5:]))
            except spnego.exceptions.SpnegoError:
                out = None
            if self.ntlm.complete:
                status, header = 200, ""
            elif out:
                header = f"NTLM {base64.b64encode(out).decode()}"
        self.send_response(status)
        if header:
            self.send_header("WWW-Authenticate", header)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def ntlm_host(tmp_path: pathlib.Path, password: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[http.server.HTTPServer]:
    from tests.lab import _proxy_auth_helpers as helpers

    store = tmp_path / "host-users"
    helpers.write_ntlm_store(store, {"host-user": password})
    monkeypatch.setenv("NTLM_USER_FILE", str(store))  # a path: pyspnego's acceptor reads the hashes from it
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NtlmHost)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_squid_pins_a_clients_ntlm_handshake_to_one_host_connection_while_others_use_the_proxy(
        open_squid: SquidProxy, ntlm_host: http.server.HTTPServer, password: str) -> None:
    url = f"http://127.0.0.1:{ntlm_host.server_address[1]}/wsman"
    ctx = _ntlm("host-user", password)
    with requests.Session() as a, requests.Session() as b:
        a.proxies = b.proxies = {"http": open_squid.url}
        leg1 = a.get(url, headers={"Authorization": f"NTLM {base64.b64encode(ctx.step()).decode()}"}, timeout=10)
        assert leg1.status_code == 401
        # another client's request while A's handshake is half done must not take A's host connection
        assert b.get(url, timeout=10).status_code == 401
        challenge = base64.b64decode(leg1.headers["WWW-Authenticate"].split(" ", 1)[1])
        leg2 = a.get(url, headers={"Authorization": f"NTLM {base64.b64encode(ctx.step(challenge)).decode()}"},
                     timeout=10)
        assert leg2.status_code == 200  # the host found A's context: same TCP connection
    seen = ntlm_host.seen  # type: ignore[attr-defined]
    a_ports = [port for port, auth in seen if auth.startswith("NTLM")]
    b_ports = [port for port, auth in seen if not auth]
    assert len(a_ports) == 2 and a_ports[0] == a_ports[1]
    assert b_ports and b_ports[0] != a_ports[0]
