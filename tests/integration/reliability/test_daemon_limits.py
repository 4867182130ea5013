"""The pin daemon's own limits: what a slow host, a runaway client or a malformed request can cost it.

- Expired sessions are closed on closing workers: a host that never answers the close does not stall the
  reaper (the daemon's main thread, which also handles signals) or the expiry of any other host's session.
- Requests served at once are bounded; beyond the bound a client gets an error, not a thread.
- A frame header claiming 64 MiB allocates nothing until the bytes arrive; deeply nested JSON is a
  protocol error, not a RecursionError.
- The daemon checks the spec it receives as the client does: a spec breaking R3 (built by hand, sent over
  the socket) is refused before a byte reaches the proxy (the lab's inspecting proxy counts them).
- Scale (review point 10): sessions open and serve tasks when the process already holds more than 1,024
  descriptors (select() could not watch them), and the daemon lifts its soft open-files limit to the hard
  one. The real 2,000-session soak is test_soak.py's, behind the soak marker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import select
import shutil
import socket
import struct
import tempfile
import threading
import tracemalloc
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils import _pin_protocol as proto
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import ConfigError, PinnedError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_daemon import PinServer, SecretRedactor, SessionTable
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_paths import PROTOCOL_VERSION, PinPaths
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

from tests.integration.positive_marker import recorded_before_marker

from . import report

pytestmark = pytest.mark.timeout(120)
MIB = 1024 * 1024


class HangingCloseSession:
    """A session whose close() blocks until the test lets it go (a host that never answers the close)."""

    def __init__(self, spec: t.Any, *, events: t.Any = None) -> None:
        self.spec = spec
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed_on: str | None = None

    def ensure_ready(self) -> str:
        return "opened"

    def close(self) -> None:
        self.closed_on = threading.current_thread().name
        self.entered.set()
        if self.spec.host == "hangs.example":
            self.release.wait(30)


@report.row("Faults", "an expired session whose host never answers the close, and another host's session "
            "expiring at the same time", "the reaper returns at once; both closes run on closing workers (never "
            "the daemon's main thread); the other host's session is closed while the first close still hangs",
            report.FAULT)
def test_a_host_that_never_answers_the_close_stalls_no_expiry(check) -> None:
    row = check()
    table = SessionTable(HangingCloseSession, SecretRedactor())
    slots = []
    for host in ("hangs.example", "other.example"):
        spec = build_spec({"remote_addr": host, "remote_user": "u", "remote_password": "pw-1", "auth": "ntlm"})
        slot, _ = table.acquire(spec, idle_timeout=0, max_age=600, pool_max=1, wait=5)
        table.release(slot)
        slots.append(slot)
    hanging, other = (s.session for s in slots)
    try:
        table.reap()  # on this (the "main") thread, as the daemon's idle loop calls it
        returned_while_hanging = not hanging.release.is_set()
        other_closed = other.entered.wait(10)
        hanging_entered = hanging.entered.wait(10)
        row.see(f"reap returned with the first close still hanging: {returned_while_hanging}; other host closed: "
                f"{other_closed} (on {other.closed_on}); hanging close on {hanging.closed_on}")
    finally:
        hanging.release.set()
        table.shutdown()
    assert returned_while_hanging and other_closed and hanging_entered
    assert threading.current_thread().name not in (hanging.closed_on, other.closed_on)


@pytest.fixture
def daemon_dir() -> t.Iterator[PinPaths]:
    root = tempfile.mkdtemp(prefix="pinl", dir="/tmp")
    paths = PinPaths(root)
    paths.ensure_dir()
    yield paths
    shutil.rmtree(root, ignore_errors=True)


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def _wait_until_closed_by_peer(sock: socket.socket) -> bool:
    """Block (up to 10 s) until the peer has closed its end; the peer's answer stays unread in our queue."""
    poller = select.poll()
    poller.register(sock, select.POLLHUP)
    return any(event & select.POLLHUP for _, event in poller.poll(10_000))


class _SendsAfterTheDaemonClosed(PinClient):
    """A PinClient held between connecting and sending until the daemon has closed the connection."""

    def _connect(self, start: bool) -> socket.socket | None:
        sock = super()._connect(start)
        if sock is not None:
            # not a PinnedError: a hold that did not happen fails the test instead of passing for an outcome
            assert _wait_until_closed_by_peer(sock), "the daemon did not close the connection within 10 s"
        return sock


@report.row("Bad input", "a client holds 2 connections open without a request, on a daemon bounded to 2 "
            "requests at once; a third connection asks hello, and a PinClient asks hello and runs a task, each "
            "sending only after the daemon has closed its connection", "each gets the error naming the bound (no "
            "thread started for it), though its send finds the socket closed; once the two close, hello is "
            "answered again", report.BAD_INPUT)
def test_requests_beyond_the_bound_get_an_error_not_a_thread(check, daemon_dir: PinPaths) -> None:
    row = check()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(daemon_dir.socket)
    listener.listen(16)
    server = PinServer(listener, SessionTable(HangingCloseSession, SecretRedactor()), daemon_dir, max_clients=2)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    holders: list[socket.socket] = []
    try:
        holders = [_connect(daemon_dir.socket) for _ in range(2)]
        third = _connect(daemon_dir.socket)
        # The daemon refuses from its accepting thread without reading the request. Hold the worst order: the
        # client sends only after the daemon has written its refusal and closed, so the send itself fails.
        closed_first = _wait_until_closed_by_peer(third)
        with pytest.raises(proto.PeerClosed):
            proto.send_json(third, {"v": PROTOCOL_VERSION, "op": "hello"})
        refused = proto.send_request(third, {"v": PROTOCOL_VERSION, "op": "hello"})
        third.close()
        client = _SendsAfterTheDaemonClosed(daemon_dir.root, autostart=False)
        try:  # the client as a task uses it, held at the same worst order: the user reads the bound
            client.hello()
            client_outcome = "answered"
        except PinnedError as exc:
            client_outcome = f"{type(exc).__name__}: {exc}"
        try:  # and a task's request (exec), which reads its first answer on another path
            spec = build_spec({"remote_addr": "127.0.0.1", "remote_user": "u", "remote_password": "pw-1",
                               "auth": "ntlm"})
            client.exec(spec, "Write-Output never-sent")
            exec_outcome = "answered"
        except PinnedError as exc:
            exec_outcome = f"{type(exc).__name__}: {exc}"
        for sock in holders:
            sock.close()
        holders = []
        # the two handlers end when their clients close; then the bound has room again
        answered: dict[str, t.Any] = {}
        for _ in range(100):
            with _connect(daemon_dir.socket) as again:
                proto.send_json(again, {"v": PROTOCOL_VERSION, "op": "hello"})
                answered = proto.recv_json(again)
            if answered.get("ok"):
                break
            threading.Event().wait(0.05)  # the handlers of the closed connections are finishing
        row.see(f"third connection (daemon closed first: {closed_first}): {json.dumps(refused)[:200]}; "
                f"PinClient: {client_outcome[:120]}; its exec: {exec_outcome[:60]}; after the two closed: "
                f"{'hello answered' if answered.get('ok') else json.dumps(answered)[:100]}")
    finally:
        for sock in holders:
            sock.close()
        server.shutdown()
        server.server_close()
    assert closed_first
    assert refused is not None and "already serves 2 requests" in refused["error"]["message"]
    assert client_outcome.startswith("TransportError: the pin daemon already serves 2 requests"), client_outcome
    assert exec_outcome.startswith("TransportError: the pin daemon already serves 2 requests"), exec_outcome
    assert answered.get("ok")


def _frame_after_close(header: bytes, payload: bytes) -> BaseException:
    """Send a frame (then EOF) over a socket pair; what recv_frame raises."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(header + payload)
        theirs.close()
        try:
            proto.recv_frame(ours)
        except BaseException as exc:  # noqa: BLE001 - the test reports what escaped
            return exc
    raise AssertionError("recv_frame returned a frame")


@report.row("Bad input", "a frame header claiming a 64 MiB JSON frame, followed by 10 bytes and EOF",
            "a protocol error (peer closed inside a frame); peak allocation well under 1 MiB", report.BAD_INPUT)
def test_a_frame_header_claiming_64_mib_allocates_nothing_before_the_bytes(check) -> None:
    row = check()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        error = _frame_after_close(struct.pack("!cI", proto.KIND_JSON, proto.MAX_JSON_FRAME), b"{" * 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    row.see(f"{type(error).__name__}: {error}; peak Python allocation {peak / 1024:.0f} KiB")
    assert isinstance(error, proto.PeerClosed)
    assert peak < MIB


@report.row("Bad input", "a JSON frame of 100,000 nested arrays", "a protocol error (the handler logs and drops "
            "it), never a RecursionError", report.BAD_INPUT)
def test_deeply_nested_json_is_a_protocol_error(check) -> None:
    row = check()
    payload = b"[" * 100_000 + b"]" * 100_000
    error = _frame_after_close(struct.pack("!cI", proto.KIND_JSON, len(payload)), payload)
    row.see(f"{type(error).__name__}: {str(error)[:80]}")
    assert isinstance(error, proto.ProtocolError)


@report.row("Hostile proxy", "a spec built by hand to break R3 (basic auth, no message encryption, http:// through "
            "the inspecting proxy), sent to the real daemon over its socket", "refused by the daemon naming R3; "
            "zero bytes reach the proxy (up to a marker sent through it afterwards)", report.LEAK)
def test_the_daemon_refuses_a_spec_that_breaks_r3_sent_over_its_socket(check, lab_description, lab) -> None:
    row = check()
    mitm = lab_description["proxies"]["mitm"]
    host = lab_description["hosts"][0]
    user = next(u for u in host["users"] if u["username"] == "ansible")
    good = build_spec({"remote_addr": host["address"], "port": host["http_port"], "protocol": "http", "auth": "ntlm",
                       "remote_user": user["username"], "remote_password": user["password"], "proxy": mitm["url"]})
    bad = dataclasses.replace(good, auth="basic", message_encryption="never")  # build_spec would refuse this
    root = tempfile.mkdtemp(prefix="pinr", dir="/tmp")
    client = PinClient(root)
    before = len(lab.proxy_recorded("mitm"))
    try:
        client.exec(bad, "Write-Output should-not-run", idle_timeout=30, max_age=600)
        outcome: BaseException | None = None
    except PinnedError as exc:
        outcome = exc
    finally:
        try:
            client.shutdown()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    sent = recorded_before_marker(lab, "mitm", before)
    row.see(f"{type(outcome).__name__}: {str(outcome)[:160]}; {len(sent)} bytes reached the proxy")
    assert not row.leak_verdict(sent), sent[:200]
    assert isinstance(outcome, ConfigError) and "R3" in str(outcome)
    assert os.environ.get("PINNED_WINRM_TEST_SESSION_FACTORY") is None  # the real Session served (or would have)


FD_FLOOR = 1100  # past select()'s FD_SETSIZE (1024)


@pytest.fixture
def fds_past_1024() -> t.Iterator[int]:
    """Hold dummy descriptors until the next one opened is numbered above FD_FLOOR; yields the count held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = FD_FLOOR + 400
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the hard open-files limit ({hard}) is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    held: list[int] = []
    try:
        for _ in range(needed):  # bounded
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= FD_FLOOR:
                break
        yield len(held)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("path", ["direct", "forward proxy"])
@report.row("Load", "the process already holds more than 1,024 descriptors (dummies up to fd 1,024), then "
            "opens a session to the lab host ({path}) and runs two tasks on it",
            "the session authenticates once and both tasks succeed (its sockets are numbered above 1,024)",
            report.LOAD)
def test_sessions_open_and_serve_tasks_past_1024_open_descriptors(check, lab_description, fds_past_1024: int,
                                                                  path: str) -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session

    row = check()
    host = lab_description["hosts"][0]
    user = next(u for u in host["users"] if u["username"] == "ansible")
    options = {"remote_addr": host["address"], "remote_user": user["username"], "remote_password": user["password"],
               "auth": "ntlm", "read_timeout": 30, "operation_timeout": 10, "connection_timeout": 10}
    if path == "direct":
        options.update(port=host["https_port"], protocol="https", ca_cert=lab_description["ca_cert"])
    else:  # forward proxying: a false "closed" here was reported as lost affinity
        options.update(port=host["http_port"], protocol="http", proxy=lab_description["proxies"]["squid_noauth"]["url"])
    session = Session(build_spec(options))
    outputs: list[str] = []
    error: BaseException | None = None
    socket_fd, handshakes = -1, 0
    try:
        for n in range(2):
            outputs.append(session.run(f"Write-Output task{n}").stdout.decode().strip())
            socket_fd = session.transport._sockets[0].sock.fileno()
    except PinnedError as exc:
        error = exc
    finally:
        if session.transport is not None:
            handshakes = session.transport.stats["host_handshakes"]
        session.close()
    row.see(f"outputs {outputs}; error: {error!s:.160}; socket fd {socket_fd}; host handshakes {handshakes}")
    assert error is None and outputs == ["task0", "task1"]
    assert socket_fd > 1024 and handshakes == 1


@report.row("Load", "the daemon is started by a process whose soft open-files limit is 1024",
            "the daemon's soft limit equals its hard limit (room for thousands of sessions)", report.LOAD)
def test_the_daemon_lifts_its_soft_open_files_limit(check) -> None:
    row = check()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard open-files limit is {hard}: nothing to lift")
    root = tempfile.mkdtemp(prefix="pinn", dir="/tmp")
    client = PinClient(root)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        try:
            hello = client._simple({"op": "hello"}, start=True)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert hello is not None
        limits = open(f"/proc/{hello['pid']}/limits").read()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        daemon_soft, daemon_hard = line.split()[3:5]
    finally:
        client.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    row.see(f"started with soft 1024 / hard {hard}; the daemon runs with soft {daemon_soft} / hard {daemon_hard}")
    assert daemon_soft == daemon_hard != "1024"


@pytest.mark.parametrize("persist, session", [(True, "pinned session"), (False, "persistence off")],
                         ids=["pinned", "persistence off"])
@report.row("Faults", "a task that would run 10 s, with ansible_psrp_persist_command_timeout 3 ({session})", "the task is unreachable, naming the "
            "setting and saying its outcome is unknown; its pipeline is stopped (a Signal reaches the host); the "
            "next task runs on a new session", report.FAULT)
def test_a_task_past_the_command_timeout_is_stopped_and_reported(e2e, check, persist: bool, session: str) -> None:
    from tests.integration.e2e.conftest import delta

    from ._helpers import raw, write_playbook

    row = check()
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_persist": persist, "ansible_psrp_persist_command_timeout": 3}
    playbook = write_playbook(e2e.workdir / "slow.yml", [
        # short: the lab's Start-Sleep runs on after the stop, and must not hold the host into later tests
        raw("slow", "Start-Sleep -Seconds 10; Write-Output late", ignore_unreachable=True),
        raw("next", "Write-Output next"),
    ])
    before = e2e.counters()
    run = e2e.run(group, playbook=playbook, name="deadline")
    slow, nxt = run.task_results("win-lab1")
    after = e2e.counters()
    row.see(f"slow: {slow['status']}: {str(slow.get('msg', ''))[-160:]}; host +{delta(after, before, 'wsman.Signal')} "
            f"Signal(s); next: {nxt['status']} {nxt.get('stdout', '').strip()!r}")
    assert slow["status"] == "unreachable", slow
    assert "ansible_psrp_persist_command_timeout (3s)" in slow["msg"] and "outcome" in slow["msg"]
    assert delta(after, before, "wsman.Signal") >= 1
    assert nxt["status"] == "ok" and nxt["stdout"].strip() == "next"
