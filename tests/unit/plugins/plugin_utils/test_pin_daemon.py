"""The pin daemon, through a REAL daemon process started by PinClient.

The session behind it is the in-memory stand-in of _pin_fakes (named by an env var the daemon
honours only under pytest), so these tests prove the daemon's own behaviour: start, reuse by pin
key, pools, expiry, exit, crashes, peer checks and secrets.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _pin_fakes import HERE, REPO, open_gate, pid_alive, pin_env, read_journal, wait_until  # noqa: F401
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError, PoolBusyError, TransportError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import DAEMON_DIED, PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = pytest.mark.timeout(60)

PASSWORD = "Pin-Test-Password-7f3a9"
PROXY_PASSWORD = "Pin-Proxy-Secret-41c2"


def make_spec(user: str = "alice", password: str = PASSWORD, host: str = "win1", **extra):
    return build_spec({"remote_addr": host, "remote_user": user, "remote_password": password, "auth": "ntlm", **extra})


def run(client: PinClient, spec, script: str = "whoami", *, idle: float = 30, max_age: float = 600, **kw):
    result, info = client.exec(spec, script, idle_timeout=idle, max_age=max_age, **kw)
    return result, info


def whoami(client: PinClient, spec, **kw) -> tuple[dict, dict]:
    result, info = run(client, spec, "whoami", **kw)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout), info


def opens(journal: str) -> list[dict]:
    return [r for r in read_journal(journal) if r["event"] == "open"]


def closes(journal: str) -> list[dict]:
    return [r for r in read_journal(journal) if r["event"] == "close"]


def gate_runs(journal: str, passed: bool = False) -> list[dict]:
    """Tasks that reached a `gate` (or, with passed, went through it)."""
    if passed:
        return [r for r in read_journal(journal) if r["event"] == "gate-passed"]
    return [r for r in read_journal(journal) if r["event"] == "run" and r["script"] == "gate"]


def daemon_log(client: PinClient) -> str:
    try:
        with open(client.paths.log, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


# Bounds on waits for something the daemon does by itself: they only stop a broken daemon from hanging a test.
SETTLE_S = 20


# -- reuse -----------------------------------------------------------------------------


def test_first_task_opens_a_session_and_the_next_task_reuses_it(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    first, info1 = whoami(client, spec)
    second, info2 = whoami(client, spec)
    assert info1["session"] == "opened"
    assert info2["session"] == "reused"
    assert first["id"] == second["id"]
    assert first["pid"] == info1["daemon_pid"] == info2["daemon_pid"] != os.getpid()
    assert len(opens(pin_env.journal)) == 1


def test_back_to_back_tasks_all_ride_one_session(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    ids = {whoami(client, spec)[0]["id"] for _ in range(30)}
    assert len(ids) == 1
    assert len(opens(pin_env.journal)) == 1


def test_a_second_client_process_reuses_the_session_like_a_second_playbook_run(pin_env):
    client = PinClient(pin_env.root)
    first, _ = whoami(client, make_spec())
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{HERE!r}]
        import _pin_fakes
        from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
        from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
        spec = build_spec({{"remote_addr": "win1", "remote_user": "alice", "remote_password": sys.stdin.readline().strip(),
                            "auth": "ntlm"}})
        result, info = PinClient({pin_env.root!r}).exec(spec, "whoami", idle_timeout=30, max_age=600)
        print(json.dumps({{"who": json.loads(result.stdout), "session": info["session"]}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], input=PASSWORD + "\n", capture_output=True, text=True,
                         timeout=30, check=True).stdout
    second = json.loads(out)
    assert second["session"] == "reused"
    assert second["who"]["id"] == first["id"]
    assert len(opens(pin_env.journal)) == 1


def test_a_different_password_gets_its_own_session_and_the_same_credentials_share_one(pin_env):
    client = PinClient(pin_env.root)
    a1, _ = whoami(client, make_spec(password="one-password"))
    b1, info_b = whoami(client, make_spec(password="another-password"))
    a2, info_a2 = whoami(client, make_spec(password="one-password"))
    assert info_b["session"] == "opened"
    assert b1["id"] != a1["id"]
    assert info_a2["session"] == "reused" and a2["id"] == a1["id"]
    assert len(opens(pin_env.journal)) == 2


def test_another_proxy_or_auth_also_gets_its_own_session(pin_env):
    client = PinClient(pin_env.root)
    base, _ = whoami(client, make_spec())
    via_proxy, _ = whoami(client, make_spec(proxy="https://127.0.0.1:3129", proxy_user="p", proxy_password="pp"))
    negotiate, _ = whoami(client, make_spec(auth="negotiate"))
    assert len({base["id"], via_proxy["id"], negotiate["id"]}) == 3


def test_input_lines_are_streamed_to_the_session_in_order(pin_env):
    client = PinClient(pin_env.root)
    lines = [f"line {i} \u00e9\u4e2d" for i in range(2000)] + ["x" * 300_000]
    result, info = run(client, make_spec(), "echo-input", input_lines=iter(lines))
    assert result.stdout.decode("utf-8").split("\n") == lines
    assert result.stderr == b"2001 lines"


def test_rc_stdout_stderr_and_arguments_come_back_as_the_session_produced_them(pin_env):
    client = PinClient(pin_env.root)
    result, _ = run(client, make_spec(), "exit 3")
    assert result.rc == 3
    assert result.stderr == "failed on purpose \u00e9".encode("utf-8")
    who, _ = whoami(client, make_spec(), arguments=["a", 1, True])
    assert who["arguments"] == ["a", 1, True]


# -- errors ----------------------------------------------------------------------------


def test_a_transport_error_is_raised_as_the_same_class_and_the_broken_session_is_replaced(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    first, _ = whoami(client, spec)
    with pytest.raises(TransportError, match="the lab reset the connection"):
        run(client, spec, "fail-transport")
    assert [c["id"] for c in closes(pin_env.journal)] == [first["id"]]
    second, info = whoami(client, spec)
    assert info["session"] == "opened"
    assert second["id"] != first["id"]


def test_a_host_fault_is_raised_as_host_error_and_the_session_is_kept(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    first, _ = whoami(client, spec)
    with pytest.raises(HostError, match="WS-Management fault"):
        run(client, spec, "fail-host")
    second, info = whoami(client, spec)
    assert info["session"] == "reused" and second["id"] == first["id"]
    assert closes(pin_env.journal) == []


def test_reauthentications_during_a_task_are_counted_and_their_reason_reported(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    whoami(client, spec)
    _, info = run(client, spec, "reauth")
    assert info["reauths"] == 1 and info["reauths_total"] == 1
    assert info["reauth_reasons"] == {"proxy closed keep-alive": 1}
    assert ["reauth", "the proxy closed the keep-alive connection; re-authenticated"] in info["events"]
    _, info = whoami(client, spec)
    assert info["reauths"] == 0 and info["reauths_total"] == 1 and info["events"] == []
    assert info["reauth_reasons"] == {}
    assert client.list_sessions()[0]["reauths"] == 1


# -- lifetime ----------------------------------------------------------------------------


def test_an_idle_session_is_closed_after_its_idle_timeout(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    who, _ = whoami(client, spec, idle=0.6)
    assert wait_until(lambda: closes(pin_env.journal), SETTLE_S)
    closed = closes(pin_env.journal)[0]
    assert closed["id"] == who["id"]
    # Both stamps from the daemon's clock: the task's last step ran before the session was released as idle.
    finished = [r for r in read_journal(pin_env.journal) if r["event"] == "finish" and r["id"] == who["id"]][-1]
    assert closed["t"] - finished["t"] >= 0.6
    _, info = whoami(client, spec, idle=30)
    assert info["session"] == "opened"


def test_a_session_older_than_max_age_is_replaced_even_when_busy_all_along(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    asked = time.time()  # before the daemon created the session: a lower bound of its birth, same system clock
    first, info = whoami(client, spec, max_age=0.8)
    ids = [first["id"]]
    # Back-to-back tasks (never idle near the 30 s idle timeout) until the daemon replaces the session.
    deadline = time.monotonic() + SETTLE_S
    while ids[-1] == first["id"] and time.monotonic() < deadline:
        who, _ = whoami(client, spec, max_age=0.8)
        ids.append(who["id"])
    assert ids[-1] != first["id"], "never replaced"
    assert ids == [first["id"]] * (len(ids) - 1) + [ids[-1]]
    closed = next(r for r in read_journal(pin_env.journal) if r["event"] == "close" and r["id"] == first["id"])
    assert closed["t"] - asked >= 0.8  # not replaced before its age
    assert f"closing session {info['session_id']} " in daemon_log(client)
    assert "older than the maximum session age (0.8s)" in daemon_log(client)


def test_a_later_run_with_longer_lifetimes_never_extends_a_pinned_session(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    first, _ = whoami(client, spec, idle=30, max_age=600)
    second, info = whoami(client, spec, idle=300, max_age=3600)
    assert info["session"] == "reused" and second["id"] == first["id"]
    [row] = client.list_sessions()
    assert (row["idle_timeout"], row["max_age"]) == (30, 600)  # the shorter of both runs wins


def test_a_later_run_with_a_shorter_idle_timeout_applies_it_to_the_pinned_session(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    first, _ = whoami(client, spec, idle=30)
    # idle 0: the pinned session has been idle longer than this run allows, so it is not reused
    second, info = whoami(client, spec, idle=0)
    assert info["session"] == "opened" and second["id"] != first["id"]
    assert first["id"] in [c["id"] for c in closes(pin_env.journal)]


def test_the_daemon_exits_when_it_holds_no_session_and_the_next_task_starts_a_new_one(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    _, info = whoami(client, spec, idle=0.3)
    pid = info["daemon_pid"]
    assert wait_until(lambda: not pid_alive(pid), SETTLE_S)
    assert not os.path.exists(client.paths.socket)
    assert client.hello() is None
    _, info2 = whoami(client, spec)
    assert info2["session"] == "opened" and info2["daemon_pid"] != pid


def test_a_busy_session_is_not_expired_under_a_running_task(pin_env):
    client = PinClient(pin_env.root)
    outcome: list = []
    held = threading.Thread(target=lambda: outcome.append(run(client, make_spec(), "gate busy", idle=0.3)))
    held.start()
    try:
        assert wait_until(lambda: gate_runs(pin_env.journal), SETTLE_S)
        # A witness: another pin with the same idle timeout, last used after the held task began. Once the
        # reaper has closed it, the reaper has also seen the held session idle for longer, had it been idle.
        whoami(PinClient(pin_env.root), make_spec(user="bob"), idle=0.3)
        assert wait_until(lambda: any(c["user"] == "bob" for c in closes(pin_env.journal)), SETTLE_S)
        assert [c for c in closes(pin_env.journal) if c["user"] == "alice"] == []
    finally:
        open_gate(pin_env.journal, "busy")
        held.join(SETTLE_S)
    assert outcome and outcome[0][0].stdout == b"passed"


# -- concurrency ---------------------------------------------------------------------------


def _in_threads(count: int, work, while_running=lambda: None) -> list:
    """Run work(i) in count threads; while_running() runs meanwhile (it opens the gates the work waits at)."""
    results: list = [None] * count

    def target(i: int) -> None:
        try:
            results[i] = work(i)
        except Exception as exc:  # reported to the test
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for th in threads:
        th.start()
    try:
        while_running()
    finally:
        for th in threads:
            th.join(30)
    return results


def test_two_tasks_on_one_host_at_once_run_side_by_side_on_two_sessions(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    whoami(client, spec)  # warm: the daemon runs
    both_inside: list[bool] = []

    def meanwhile() -> None:
        try:
            # Both tasks are inside their sessions at the same time: neither can leave before the gate opens.
            both_inside.append(wait_until(lambda: len(gate_runs(pin_env.journal)) == 2, SETTLE_S))
        finally:
            open_gate(pin_env.journal, "side")

    results = _in_threads(2, lambda i: run(client, spec, "gate side"), meanwhile)
    assert all(not isinstance(r, Exception) and r[0].stdout == b"passed" for r in results), results
    assert both_inside == [True]
    assert len({r[1]["session_id"] for r in results}) == 2
    assert len(opens(pin_env.journal)) == 2


def test_a_third_concurrent_task_waits_for_a_free_session_instead_of_opening_more_than_pool_max(pin_env):
    client = PinClient(pin_env.root, pool_max=2)
    spec = make_spec()
    seen: list[tuple[bool, int]] = []

    def meanwhile() -> None:
        try:
            # Two tasks hold both sessions; the third says in the daemon's log that it waits for one.
            queued = wait_until(lambda: len(gate_runs(pin_env.journal)) == 2
                                and "are busy (pool size 2)" in daemon_log(client), SETTLE_S)
            seen.append((queued, len(gate_runs(pin_env.journal))))
        finally:
            open_gate(pin_env.journal, "three")

    results = _in_threads(3, lambda i: run(client, spec, "gate three"), meanwhile)
    assert all(not isinstance(r, Exception) for r in results), results
    assert seen == [(True, 2)]  # queued while both sessions were held: no third session was opened for it
    assert len(gate_runs(pin_env.journal)) == 3
    assert len(opens(pin_env.journal)) == 2


def test_waiting_for_a_busy_pool_is_bounded_by_the_command_timeout(pin_env):
    spec = make_spec()
    busy = PinClient(pin_env.root, pool_max=1)
    whoami(busy, spec)
    holder = threading.Thread(target=lambda: run(busy, spec, "gate hold"))
    holder.start()
    try:
        assert wait_until(lambda: gate_runs(pin_env.journal), SETTLE_S)  # the only session is busy now
        impatient = PinClient(pin_env.root, pool_max=1, command_timeout=0.5)
        with pytest.raises(PoolBusyError, match=r"stayed busy for 0\.5s"):
            whoami(impatient, spec)
        # The wait ended on the command timeout: the session it waited for is still held.
        assert gate_runs(pin_env.journal, passed=True) == []
    finally:
        open_gate(pin_env.journal, "hold")
        holder.join(SETTLE_S)


def test_eight_clients_starting_at_once_start_exactly_one_daemon(pin_env):
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{HERE!r}]
        import _pin_fakes
        from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
        from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
        spec = build_spec({{"remote_addr": "win1", "remote_user": "alice", "remote_password": "pw", "auth": "ntlm"}})
        client = PinClient({pin_env.root!r})
        print("ready", flush=True)
        sys.stdin.readline()  # the start line: every process is loaded and waits here
        result, info = client.exec(spec, "gate eight", idle_timeout=30, max_age=600)
        print(json.dumps({{"pid": info["daemon_pid"], "session": info["session"]}}))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    client = PinClient(pin_env.root, autostart=False)
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        # 8 tasks on one host at once: pool_max (2) sessions held at the gate, the others queued behind them
        assert wait_until(lambda: len(gate_runs(pin_env.journal)) == 2 and "are busy (pool size 2)" in daemon_log(client),
                          SETTLE_S)
    finally:
        open_gate(pin_env.journal, "eight")
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    assert len({o["pid"] for o in outs}) == 1
    assert sum("serving" in line for line in daemon_log(client).splitlines()) == 1
    assert len(opens(pin_env.journal)) == 2
    assert len(gate_runs(pin_env.journal, passed=True)) == 8


# -- crashes ------------------------------------------------------------------------------


def test_a_daemon_killed_between_tasks_is_replaced_by_the_next_task(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    _, info = whoami(client, spec)
    os.kill(info["daemon_pid"], signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(info["daemon_pid"]), SETTLE_S)
    assert os.path.exists(client.paths.socket)  # stale socket left behind
    _, info2 = whoami(client, spec)
    assert info2["session"] == "opened"
    assert info2["daemon_pid"] != info["daemon_pid"] and pid_alive(info2["daemon_pid"])


def test_a_daemon_killed_during_a_task_fails_that_task_cleanly_and_the_next_task_succeeds(pin_env):
    client = PinClient(pin_env.root)
    spec = make_spec()
    _, info = whoami(client, spec)
    outcome: dict = {}

    def long_task() -> None:
        try:
            run(client, spec, "gate never")  # nobody opens it: only the daemon's death can end this task
            outcome["result"] = "finished"
        except Exception as exc:
            outcome["error"] = exc

    th = threading.Thread(target=long_task)
    th.start()
    assert wait_until(lambda: gate_runs(pin_env.journal), SETTLE_S)
    os.kill(info["daemon_pid"], signal.SIGKILL)
    th.join(SETTLE_S)
    assert not th.is_alive(), "the task outlived its daemon"
    assert isinstance(outcome.get("error"), TransportError), outcome
    assert DAEMON_DIED in str(outcome["error"])
    assert len(gate_runs(pin_env.journal)) == 1  # never silently re-run
    _, info2 = whoami(client, spec)
    assert info2["session"] == "opened" and info2["daemon_pid"] != info["daemon_pid"]


# -- interrupted tasks (T2) --------------------------------------------------------------------------


def _client_process(root: str, script: str, pool_max: int = 1) -> subprocess.Popen:
    """A separate client process running one task (a worker Ansible may kill); the password on stdin."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{HERE!r}]
        import _pin_fakes
        from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
        from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
        spec = build_spec({{"remote_addr": "win1", "remote_user": "alice", "remote_password": sys.stdin.readline().strip(),
                            "auth": "ntlm"}})
        PinClient({root!r}, pool_max={pool_max}).exec(spec, {script!r}, idle_timeout=30, max_age=600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None
    proc.stdin.write(PASSWORD + "\n")
    proc.stdin.close()
    return proc


def test_a_killed_client_has_its_task_stopped_and_the_session_serves_the_next_task(pin_env):
    spec = make_spec()
    first, _ = whoami(PinClient(pin_env.root, pool_max=1), spec)
    worker = _client_process(pin_env.root, "sleep 300")
    assert wait_until(lambda: any(r.get("script") == "sleep" for r in read_journal(pin_env.journal)), 20)
    worker.kill()  # a killed worker (SIGKILL): the socket closes, nothing is said
    worker.wait(10)
    # pool of one: the next task gets the session only once the daemon stopped the task and gave it back
    after, info = whoami(PinClient(pin_env.root, pool_max=1), spec)
    assert info["session"] == "reused" and after["id"] == first["id"]
    assert [r["script"] for r in read_journal(pin_env.journal) if r["event"] == "interrupted"] == ["sleep"]
    assert len(opens(pin_env.journal)) == 1 and closes(pin_env.journal) == []


def test_a_client_that_leaves_while_waiting_for_a_busy_pool_stops_waiting(pin_env):
    spec = make_spec()
    whoami(PinClient(pin_env.root, pool_max=1), spec)
    holder = _client_process(pin_env.root, "sleep 300")
    assert wait_until(lambda: any(r.get("script") == "sleep" for r in read_journal(pin_env.journal)), 20)
    waiter = _client_process(pin_env.root, "whoami")
    # queued behind the holder: the daemon serves the holder, the waiter and this hello
    assert wait_until(lambda: PinClient(pin_env.root).hello()["clients"] == 3, 20)
    waiter.kill()
    # the daemon notices while the holder still runs, and drops the waiter's request (no 300 s wait for nobody)
    assert wait_until(lambda: PinClient(pin_env.root).hello()["clients"] == 2, 20)
    assert holder.poll() is None
    holder.kill()
    holder.wait(10)
    waiter.wait(10)
    _, info = whoami(PinClient(pin_env.root, pool_max=1), spec)
    assert info["session"] == "reused"
    runs = [r["script"] for r in read_journal(pin_env.journal) if r["event"] == "run"]
    assert runs == ["whoami", "sleep", "whoami"]  # the waiter's whoami never ran


# -- who may connect, and secrets ---------------------------------------------------------------


@pytest.fixture
def other_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as a second local user")
    name = "pinwrmpeer"
    created = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, timeout=30)
        created = True
    yield pwd.getpwnam(name)
    if created:
        subprocess.run(["userdel", name], check=False, timeout=30)


PEER_PROBE = r"""
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": type(exc).__name__})); sys.exit()
body = json.dumps({"v": 1, "op": "list"}).encode()
try:
    s.sendall(struct.pack("!cI", b"J", len(body)) + body)
    data = s.recv(65536)
except OSError as exc:
    print(json.dumps({"connect": "ok", "reply": type(exc).__name__})); sys.exit()
print(json.dumps({"connect": "ok", "reply": data.decode("latin-1")}))
"""


def test_another_uid_cannot_use_the_daemon_even_when_it_reaches_the_socket(pin_env, other_user):
    client = PinClient(pin_env.root)
    whoami(client, make_spec())

    def probe() -> dict:
        out = subprocess.run(["/usr/bin/python3", "-I", "-c", PEER_PROBE, client.paths.socket], user=other_user.pw_uid,
                             group=other_user.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=20,
                             cwd="/")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    # The directory (0700) keeps the other user out entirely.
    assert probe() == {"connect": "PermissionError"}
    # Open the directory and the socket on purpose: the daemon's SO_PEERCRED check still drops the peer.
    os.chmod(pin_env.root, 0o711)
    os.chmod(client.paths.dir, 0o711)
    os.chmod(client.paths.socket, 0o666)
    try:
        answer = probe()
    finally:
        os.chmod(client.paths.socket, 0o600)
        os.chmod(client.paths.dir, 0o700)
        os.chmod(pin_env.root, 0o700)
    assert answer["connect"] == "ok"
    assert answer.get("reply") in ("", "ConnectionResetError", "BrokenPipeError")  # closed without a byte of reply
    with open(client.paths.log) as fh:
        assert f"refused a connection from uid {other_user.pw_uid}" in fh.read()
    # ...and the daemon still serves its own user.
    _, info = whoami(client, make_spec())
    assert info["session"] == "reused"


def test_socket_and_log_are_private_to_the_user(pin_env):
    client = PinClient(pin_env.root)
    whoami(client, make_spec())
    assert stat.S_IMODE(os.stat(client.paths.dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(client.paths.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(client.paths.log).st_mode) == 0o600


def test_secrets_never_reach_the_log_the_daemon_command_line_or_its_environment(pin_env, monkeypatch):
    monkeypatch.setenv("ANSIBLE_PSRP_PASSWORD", PASSWORD)
    monkeypatch.setenv("HTTPS_PROXY", f"http://u:{PROXY_PASSWORD}@127.0.0.1:3128")
    client = PinClient(pin_env.root, log_level="DEBUG")
    spec = make_spec(proxy="https://127.0.0.1:3129", proxy_user="puser", proxy_password=PROXY_PASSWORD)
    _, info = whoami(client, spec)
    run(client, spec, "log-secret")  # the session itself logs the secrets: the daemon must redact them
    with pytest.raises(TransportError):
        run(client, spec, "fail-transport")
    whoami(client, spec)
    pid = info["daemon_pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        cmdline = fh.read()
    with open(f"/proc/{pid}/environ", "rb") as fh:
        environ = fh.read()
    with open(client.paths.log, "rb") as fh:
        log = fh.read()
    assert b"debugging the password ******** and proxy password ********" in log  # the log was written
    for secret in (PASSWORD.encode(), PROXY_PASSWORD.encode()):
        assert secret not in log
        assert secret not in cmdline
        assert secret not in environ
    assert b"ANSIBLE_PSRP_PASSWORD" not in environ and b"HTTPS_PROXY" not in environ


# -- reset, close, list and the command line --------------------------------------------------


def test_reset_closes_only_the_sessions_of_that_pin_key(pin_env):
    client = PinClient(pin_env.root)
    a, b = make_spec(user="alice"), make_spec(user="bob")
    who_a, _ = whoami(client, a)
    who_b, _ = whoami(client, b)
    assert client.reset(a) == 1
    assert [c["id"] for c in closes(pin_env.journal)] == [who_a["id"]]
    assert whoami(client, b)[1]["session"] == "reused"
    assert whoami(client, a)[1]["session"] == "opened"


def test_close_by_host_and_close_all(pin_env):
    client = PinClient(pin_env.root)
    whoami(client, make_spec(host="win1"))
    whoami(client, make_spec(host="win1", user="bob"))
    whoami(client, make_spec(host="win2"))
    assert client.close("WIN1") == 2
    assert [r["host"] for r in client.list_sessions()] == ["win2"]
    assert client.close(None) == 1
    assert client.list_sessions() == []


def test_list_without_a_daemon_starts_none(pin_env):
    client = PinClient(pin_env.root)
    assert client.list_sessions() == []
    assert client.close(None) == 0
    assert client.hello() is None
    assert not os.path.exists(client.paths.socket)


def _cli(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "bin", "pinned-winrm-sessions"), "--dir", root, *args],
                          capture_output=True, text=True, timeout=30)


def test_the_command_line_checks_lists_and_closes_sessions(pin_env):
    assert _cli(pin_env.root, "check").returncode == 1
    client = PinClient(pin_env.root)
    spec = make_spec(proxy="https://127.0.0.1:3129", proxy_user="puser", proxy_password=PROXY_PASSWORD)
    whoami(client, spec)
    run(client, spec, "reauth")
    whoami(client, make_spec(host="win2"))
    check = _cli(pin_env.root, "check")
    assert check.returncode == 0 and "pin daemon running" in check.stdout
    listed = json.loads(_cli(pin_env.root, "--json", "list").stdout)
    rows = {r["host"]: r for r in listed["sessions"]}
    assert rows["win1"]["user"] == "alice" and rows["win1"]["proxy"] == "https://127.0.0.1:3129"
    assert rows["win1"]["tasks"] == 2 and rows["win1"]["reauths"] == 1
    assert rows["win1"]["age"] >= rows["win1"]["idle"] >= 0
    text = _cli(pin_env.root, "list").stdout
    assert "puser@https://127.0.0.1:3129" in text and PROXY_PASSWORD not in text
    assert json.loads(_cli(pin_env.root, "--json", "close", "win1").stdout) == {"closed": 1}
    assert _cli(pin_env.root, "close", "--all").stdout.strip() == "closed 1 session"
    # A daemon holding no session exits by itself after its grace time, which a slow CLI start may outlast:
    # pin a session again, so `stop` finds a daemon whatever the machine's speed.
    whoami(client, make_spec(host="win3"))
    assert "stopped pin daemon" in _cli(pin_env.root, "stop").stdout
    assert wait_until(lambda: _cli(pin_env.root, "check").returncode == 1, SETTLE_S)


# -- the daemon's environment (review point 2) ---------------------------------------------


def test_the_daemon_environment_is_built_from_an_allow_list():
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import daemon_env

    base = {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C", "SSL_CERT_FILE": "/ca.pem",
            "KRB5_CONFIG": "/etc/krb5-corp.conf", "NTLM_USER_FILE": "/home/u/.ntlm",
            "SSHPASS": "ssh-secret", "ANSIBLE_BECOME_PASS": "become-secret", "VAULT_ADDR": "https://vault",
            "KRB5CCNAME": "FILE:/tmp/svc.cc", "SSLKEYLOGFILE": "/tmp/keys", "HTTPS_PROXY": "http://p:3128",
            "PYTHONPATH": "/opt/lib", "SOME_APP_SETTING": "x"}
    env = daemon_env(base, "/collections")
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C",
                   "SSL_CERT_FILE": "/ca.pem", "KRB5_CONFIG": "/etc/krb5-corp.conf", "NTLM_USER_FILE": "/home/u/.ntlm",
                   "PYTHONPATH": "/collections:/opt/lib"}


def test_runs_with_other_trust_or_identity_settings_reach_another_daemon(pin_env, monkeypatch, tmp_path):
    spec = make_spec()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "corp-ca.pem"))
    first, info1 = whoami(PinClient(pin_env.root), spec)
    same, info2 = whoami(PinClient(pin_env.root), spec)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other-ca.pem"))
    other, info3 = whoami(PinClient(pin_env.root), spec)
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("KRB5_CONFIG", str(tmp_path / "krb5-other.conf"))
    krb, info4 = whoami(PinClient(pin_env.root), spec)
    assert info2["daemon_pid"] == info1["daemon_pid"] and same["id"] == first["id"]
    assert len({info1["daemon_pid"], info3["daemon_pid"], info4["daemon_pid"]}) == 3
    assert info3["session"] == info4["session"] == "opened"  # (pin_env stops every daemon its journal names)


def test_the_redactor_keeps_a_secret_while_any_owner_holds_it():
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_daemon import SecretRedactor

    redactor = SecretRedactor()
    redactor.register("pin-a", {"shared-secret"})
    redactor.register("request:1", {"shared-secret", "request-only"})
    assert redactor.redact("shared-secret request-only") == "******** ********"
    redactor.forget("request:1")
    assert redactor.redact("shared-secret request-only") == "******** request-only"
    redactor.forget("pin-a")
    assert redactor.redact("shared-secret") == "shared-secret"
