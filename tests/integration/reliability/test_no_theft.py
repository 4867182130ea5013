"""No session theft and no secret in logs, argument lists or environments.

- A run with the wrong password for a host whose session is pinned gets its own (failed) handshake at
  the host, never the pinned session; the pinned session stays usable for the right credentials.
- Another local uid cannot reach the daemon's socket (the daemon's own tests check SO_PEERCRED; this
  checks the real daemon an ansible-playbook run started, from a process of another uid).
- At -vvvvv, the host and proxy passwords appear in no output of ansible-playbook and not in the daemon's
  log; while a run is in progress, in no process argument list on the machine and not in the daemon's
  environment.
"""

from __future__ import annotations

import os
import pathlib
import socket
import threading
import time

import pytest

from tests.integration.e2e.conftest import E2E, delta

from . import report
from ._helpers import children_of, daemon_log, daemon_pid, host_password, leaks, raw, squid_ntlm, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


@report.row("No session theft", "run with a wrong password against a host whose session is pinned",
            "task unreachable as the host's refusal; the host counts exactly one new connection and one "
            "failed handshake (no retry: account lockout); no task ran; the pinned session still serves the right password with no new handshake",
            report.LEAK)
def test_wrong_password_gets_its_own_failed_handshake_never_the_pinned_session(e2e: E2E, check) -> None:
    row = check()
    group = squid_ntlm(e2e)
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output pinned")])
    e2e.run(group, playbook=one, name="warm").assert_ok()
    before = e2e.counters()
    bad = e2e.run(group, playbook=one, host_overrides={"ansible_password": "Wrong-Pw-For-Theft-1"}, name="thief")
    mid = e2e.counters()
    good = e2e.run(group, playbook=one, name="owner")
    after = e2e.counters()
    result = bad.task_results(HOST)[0]
    row.see(f"thief: {result['status']}, host +{delta(mid, before, 'tcp_connections')} connection, "
            f"+{delta(mid, before, 'auth_failures')} failed handshake(s), +{delta(mid, before, 'wsman.Command')} commands; "
            f"owner afterwards: rc {good.rc}, +{delta(after, mid, 'auth_handshakes')} handshakes")
    # the thief's run never rode the pinned session: it ran nothing, and the owner's needs no new handshake
    assert not row.leak_verdict(delta(mid, before, "wsman.Command") != 0 or delta(after, mid, "auth_handshakes") != 0)
    assert result["status"] == "unreachable", result
    assert "rejected the credentials" in result["msg"] or "401" in result["msg"], result["msg"]
    # exactly one attempt: a second failed logon per run would lock accounts twice as fast
    assert delta(mid, before, "tcp_connections") == 1
    assert delta(mid, before, "auth_failures") == 1
    good.assert_ok()


@report.row("No session theft", "another local uid (nobody) connects to the running daemon's socket",
            "refused (permission denied on the private directory, or the daemon's peer-uid check closes it)",
            report.LEAK)
def test_another_local_user_cannot_reach_the_daemon(e2e: E2E, check) -> None:
    row = check()
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another uid")
    e2e.run(squid_ntlm(e2e), playbook=write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output x")])).assert_ok()
    sockets = list((e2e.workdir / "pc").glob("pinned-winrm-*/*.sock"))
    assert sockets, "no daemon socket"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, try to talk to the daemon
        os.close(read)
        outcome = b"?"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(str(sockets[0]))
                s.sendall(b"J\x00\x00\x00\x0f" + b'{"op":"list"}  ')
                data = s.recv(100)
                outcome = b"answered:" + data[:40] if data else b"closed by the daemon"
            except PermissionError:
                outcome = b"permission denied"
            except OSError as e:
                outcome = f"refused: {e.strerror}".encode()
        finally:
            os.write(write, outcome)
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    outcome = os.read(read, 200).decode(errors="replace")
    os.close(read)
    row.see(f"{outcome} (socket {sockets[0].name}, directory mode {oct(sockets[0].parent.stat().st_mode & 0o777)})")
    assert not row.leak_verdict(outcome.startswith("answered")), outcome


@report.row("No session theft", "ansible-playbook -vvvvv output and the daemon's log, run through Squid (NTLM) "
            "with a failing task too", "no host or proxy password in any form", report.LEAK, key="logs")
@report.row("No session theft", "every process argument list on the machine (/proc/*/cmdline), sampled during the run",
            "no host or proxy password in any form", report.LEAK, key="argv")
@report.row("No session theft", "the daemon's and its children's environment (/proc/<pid>/environ)",
            "no host or proxy password, no *_PROXY variables", report.LEAK, key="environ")
def test_secrets_appear_in_no_log_argument_list_or_environment(e2e: E2E, check) -> None:
    logs = check("logs")
    argv = check("argv")
    environ = check("environ")
    group = squid_ntlm(e2e)
    secrets_ = {"host password": host_password(e2e), "proxy password": group["ansible_psrp_proxy_password"]}
    playbook = write_playbook(e2e.workdir / "verbose.yml", [
        raw("slow", "Start-Sleep -Seconds 3; Write-Output done"),
        raw("fails", "Write-Error 'deliberate'; exit 3", ignore_errors=True),
    ])
    samples: list[bytes] = []
    env_blobs: list[bytes] = []
    stop = threading.Event()

    def sample() -> None:
        for _ in range(400):
            if stop.is_set():
                break
            blob = b""
            for proc in pathlib.Path("/proc").glob("[0-9]*"):
                try:
                    blob += (proc / "cmdline").read_bytes() + b"\n"
                except OSError:
                    continue
            samples.append(blob)
            pid = daemon_pid(e2e) if len(samples) % 5 == 0 else None
            if pid:
                for p in [pid, *children_of(pid)]:
                    try:
                        env_blobs.append(pathlib.Path(f"/proc/{p}/environ").read_bytes())
                    except OSError:
                        pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = e2e.run(group, playbook=playbook, extra_args=["-vvvvv"], env={"ANSIBLE_DEBUG": "0"}, name="verbose")
    pid = daemon_pid(e2e)
    if pid:
        env_blobs.append(pathlib.Path(f"/proc/{pid}/environ").read_bytes())
    stop.set()
    sampler.join(60)
    text = (run.stdout + run.stderr).encode()
    dlog = daemon_log(e2e).encode()
    found_logs = leaks(text, secrets_) + [f"daemon log: {n}" for n in leaks(dlog, secrets_)]
    found_argv = sorted({n for blob in samples for n in leaks(blob, secrets_)})
    found_env = sorted({n for blob in env_blobs for n in leaks(blob, secrets_)})
    proxy_vars = sorted({v.split(b"=")[0].decode() for blob in env_blobs for v in blob.split(b"\0")
                         if v.split(b"=")[0].upper().endswith(b"_PROXY")})
    logs.see(f"rc {run.rc}; {len(text)} bytes of -vvvvv output ({'PSRP' in run.stdout and 'includes engine lines' or 'no engine lines'}), "
             f"{len(dlog)} bytes of daemon log; found: {found_logs or 'nothing'}")
    argv.see(f"{len(samples)} samples of every /proc/*/cmdline; found: {found_argv or 'nothing'}")
    environ.see(f"{len(env_blobs)} environments read; found: {found_env or 'nothing'}; proxy variables: {proxy_vars or 'none'}")
    # each row's own verdict first, so a leak in one does not make the others errors
    found = [logs.leak_verdict(found_logs), argv.leak_verdict(found_argv), environ.leak_verdict(found_env or proxy_vars)]
    assert not any(found), (found_logs, found_argv, found_env, proxy_vars)
    run.assert_ok()
    assert len(dlog) > 0 and len(samples) >= 5 and env_blobs
