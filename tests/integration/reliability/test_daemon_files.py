"""The pin daemon's files and process: nothing another user (or a planted link) can turn against you.

- A persist root another user owns (``/tmp/ansible`` pre-created by them) or one that others can write
  without the sticky bit is refused before anything is created in it.
- A symbolic link planted where the daemon's log goes is refused: the daemon would otherwise chmod the
  link's target to 0600 and append its log to it.

Each test starts a real daemon the way a task does (PinClient, then a request); no session is needed for
what is checked, so the request names a host that is never contacted.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import PinnedError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_paths import SOCKET_GLOB_PREFIX, PinPaths

from . import report

pytestmark = pytest.mark.timeout(120)
NOBODY = 65534


@pytest.fixture
def persist_root() -> t.Iterator[pathlib.Path]:
    """A short private directory (UNIX socket paths are limited) for the persist root."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="pinf", dir="/tmp"))
    yield path
    for client in [PinClient(str(path / "root"), autostart=False, connect_timeout=2)]:
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the test may have refused the directory
            pass
    shutil.rmtree(path, ignore_errors=True)


def _start(root: pathlib.Path) -> str:
    """Make the client start a daemon (list asks nothing of a host); the outcome as text."""
    client = PinClient(str(root), connect_timeout=10)
    try:
        reply = client._simple({"op": "hello"}, start=True)
    except PinnedError as exc:
        return f"refused: {exc}"
    return f"daemon {reply['pid']} started" if reply else "no daemon"


@report.row("No session theft", "a symbolic link planted as the daemon's log, pointing at a file of yours "
            "(mode 0644)", "the daemon refuses to start, naming the link; the target's mode and content are "
            "unchanged", report.LEAK)
def test_a_planted_log_link_is_refused_and_its_target_untouched(check, persist_root) -> None:
    row = check()
    root = persist_root / "root"
    paths = PinPaths(str(root))
    paths.ensure_dir()
    victim = persist_root / "precious.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    os.symlink(victim, paths.log)
    outcome = _start(root)
    mode, text = victim.stat().st_mode & 0o777, victim.read_text()
    row.see(f"{outcome[:200]}; target mode {mode:04o}, {len(text)} bytes")
    assert not row.leak_verdict(mode != 0o644 or text != "precious\n"), (oct(mode), text)
    assert outcome.startswith("refused") and "symbolic link" in outcome


@pytest.mark.parametrize("owner, mode, who", [(NOBODY, 0o755, "another user (nobody)"),
                                             (0, 0o777, "root, mode 0777 without the sticky bit")],
                         ids=["another user's", "world-writable"])
@report.row("No session theft", "the persist root pre-created by {who}, as /tmp/ansible could be",
            "refused naming ansible_psrp_persist_dir; nothing created in it", report.LEAK)
def test_a_persist_root_others_control_is_refused(check, persist_root, owner: int, mode: int, who: str) -> None:
    row = check()
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another uid")
    root = persist_root / "root"
    root.mkdir()
    os.chown(root, owner, owner)
    root.chmod(mode)
    outcome = _start(root)
    created = sorted(p.name for p in root.iterdir())
    row.see(f"{outcome[:220]}; created in it: {created or 'nothing'}")
    assert not row.leak_verdict(created), created
    assert outcome.startswith("refused") and "ansible_psrp_persist_dir" in outcome


@report.row("No session theft", "the daemon's core-dump settings, read from /proc while it serves (started as an "
            "unprivileged user: nobody when the suite runs as root)", "core file size limit 0 (soft and hard) and "
            "not dumpable: its /proc entries belong to root, so no core-dump pipe, ptrace or /proc/<pid>/mem of "
            "the same user reads the passwords it holds", report.LEAK)
def test_the_daemon_cannot_dump_core_or_be_read_by_a_same_user_debugger(check, persist_root) -> None:
    row = check()
    import subprocess

    from tests.integration.reliability._helpers import wait_for

    persist_root.chmod(0o711)  # let the unprivileged daemon reach its own directory below
    root = persist_root / "nobody"
    root.mkdir()
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    os.chown(root, uid, uid)
    # the system Python: the suite's own interpreter may live where an unprivileged user cannot run it
    collections = pathlib.Path(__file__).resolve().parents[3] / "build" / "collections"
    argv = ["/usr/bin/python3", "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_daemon",
            "--dir", str(root), "--foreground", "--exit-grace", "60"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(collections)}
    extra = {"user": uid, "group": uid, "extra_groups": []} if uid != os.geteuid() else {}
    proc = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **extra)
    try:
        assert wait_for(lambda: any((root / f"pinned-winrm-{uid}").glob(f"{SOCKET_GLOB_PREFIX}*.sock")) or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        limits = pathlib.Path(f"/proc/{proc.pid}/limits").read_text()
        core = next(line.split()[-3:-1] for line in limits.splitlines() if line.startswith("Max core file size"))
        owner = os.stat(f"/proc/{proc.pid}/mem").st_uid  # root-owned when the process is not dumpable
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    row.see(f"daemon uid {uid}: core file size soft/hard {core[0]}/{core[1]}; /proc/{proc.pid}/mem owned by uid {owner}")
    assert not row.leak_verdict(core != ["0", "0"] or owner != 0), (core, owner)
    assert owner != uid


@report.row("No session theft", "the first open of a session fails with an error whose text carries the password "
            "(a stand-in session in the real daemon)", "the task's error and the daemon's log show ******** in "
            "its place", report.LEAK)
def test_a_failed_first_open_logs_and_answers_its_error_with_the_password_redacted(check, persist_root,
                                                                                 monkeypatch) -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

    row = check()
    password = "First-Open-Secret-9c1"
    here = pathlib.Path(__file__).parent
    monkeypatch.setenv("PINNED_WINRM_TEST_SESSION_FACTORY", "_failing_session:FailingOpenSession")
    monkeypatch.setenv("PYTHONPATH", f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    root = persist_root / "root"
    client = PinClient(str(root))
    spec = build_spec({"remote_addr": "win01", "remote_user": "alice", "remote_password": password, "auth": "ntlm"})
    try:
        client.exec(spec, "Write-Output x", idle_timeout=30, max_age=600)
        message = "no error"
    except PinnedError as exc:
        message = str(exc)
    log_text = pathlib.Path(client.paths.log).read_text()
    row.see(f"task error: {message[:150]}; password in the error: {password in message}; in the daemon log: "
            f"{password in log_text} ({len(log_text)} bytes)")
    assert not row.leak_verdict(password in message or password in log_text), "the password is shown"
    assert "********" in message
    assert "alice" in log_text
