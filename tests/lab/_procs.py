"""Run one lab daemon (squid, tinyproxy, mitmdump, an auth helper server) with bounded start and stop.

The daemon gets its own process group, its stdout/stderr go to a log file, its
environment carries no proxy variables, and start() returns only once it is ready
(or raises with the log tail after a bounded wait). ProxyDaemon is the shape the
lab's proxies share: a free loopback port, a run directory, start/stop/restart.
"""

from __future__ import annotations

import logging
import os
import pathlib
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
# Proxy variables would send a daemon's own traffic somewhere else; lab daemons never want them.
_PROXY_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


class DaemonStartError(RuntimeError):
    """A lab daemon did not come up in time; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on host right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: pathlib.Path, lines: int = 30) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxy variables, plus extra (paths only, never secrets)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_ENV}
    env.update(extra or {})
    return env


def user_can_traverse(path: pathlib.Path, uid: int, gids: set[int]) -> bool:
    """True if a process with uid/gids may enter path and every parent (checks mode bits only)."""
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def unprivileged_account(name: str) -> pwd.struct_passwd | None:
    """The account a daemon started as root drops to, or None when we are not root (no drop happens)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(name)


def runtime_dir(workdir: pathlib.Path, name: str, account: pwd.struct_passwd | None) -> pathlib.Path:
    """A directory for a daemon's conf, logs and pid that the daemon's (dropped) user owns.

    Under workdir when that user can reach it; otherwise (root's 0700 pytest
    tmp dirs) a fresh directory in the system temp dir, which the caller removes.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if account is None:
        path = workdir / name
        path.mkdir(mode=0o700, exist_ok=True)
        return path
    gids = {account.pw_gid, *os.getgrouplist(account.pw_name, account.pw_gid)}
    if user_can_traverse(workdir, account.pw_uid, gids):
        path = workdir / name
        path.mkdir(mode=0o700, exist_ok=True)
    else:
        path = pathlib.Path(tempfile.mkdtemp(prefix=f"lab-{name}-"))
        link = workdir / name
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(path)  # so a person debugging finds the daemon's files from the workdir
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o700)
    return path


def give_to(path: pathlib.Path, account: pwd.struct_passwd | None, mode: int = 0o600) -> None:
    """Make a file the daemon's user's own, readable by it alone."""
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, mode)


class Daemon:
    """One daemon process: its own process group, its output in log_path, a bounded start and stop."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: pathlib.Path,
                 cwd: pathlib.Path | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env if env is not None else clean_env()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, ready: Callable[[], bool], *, timeout: float = START_TIMEOUT_S,
              extra_logs: Sequence[pathlib.Path] = ()) -> None:
        """Start the process and poll ready() until it is true; raise DaemonStartError after timeout."""
        if self.running:
            return
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.cwd, env=self.env, start_new_session=True,
            )
        # its own session outlives us: stop it when this object goes away or the interpreter exits
        self._reaper = weakref.finalize(self, _reap, self._proc, self.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                log.debug("%s started (pid %d)", self.name, self._proc.pid)
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        code = self._proc.poll()
        self.stop()
        tails = "\n".join(f"--- {p}:\n{log_tail(p)}" for p in [self.log_path, *extra_logs])
        state = f"exited with {code}" if code is not None else f"not ready after {timeout:.0f} s"
        raise DaemonStartError(f"{self.name} {state}: {' '.join(self.argv)}\n{tails}")

    def wait_for_port(self, host: str, port: int, *, timeout: float = START_TIMEOUT_S,
                      extra_logs: Sequence[pathlib.Path] = ()) -> None:
        """start() with readiness meaning 'host:port accepts a TCP connection'."""
        self.start(lambda: port_accepts(host, port), timeout=timeout, extra_logs=extra_logs)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the process group, SIGKILL it after timeout; return the exit code."""
        proc, self._proc = self._proc, None
        if self._reaper is not None:
            self._reaper.detach()
            self._reaper = None
        if proc is None:
            return None
        return _reap(proc, self.name, timeout)


def _reap(proc: subprocess.Popen[bytes], name: str, timeout: float = STOP_TIMEOUT_S) -> int | None:
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s of SIGTERM; killing it", name, timeout)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # helpers the daemon forked may outlive it in its group; they have no business left
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ProxyDaemon:
    """A proxy the lab runs as one daemon on a free loopback port: start, stop, restart, readiness and its files.

    A subclass says what is particular to its proxy: `_prepare(run)` writes its configuration into the
    run directory and returns the daemon's command line; `_ready()` says when it serves (from its own
    log, see `_logged_since_start`, rather than a probe connection that would show in the counts);
    `_extra_logs()` are shown when it fails to start; `_after_stop()` stops what `_prepare` started
    besides the daemon. Class attributes name the daemon and its files.
    """

    name = "proxy"                   # "name:PORT" in logs and errors
    daemon_log = "daemon.log"        # the daemon's stdout and stderr, in the run directory
    run_dir_name: str | None = None  # a run directory the daemon's account owns; None: the workdir itself

    def __init__(self, workdir: pathlib.Path, *, account: pwd.struct_passwd | None = None) -> None:
        self.workdir = pathlib.Path(workdir)
        self.host = "127.0.0.1"
        self.port = 0
        self._account = account  # the unprivileged account a daemon started as root drops to
        self._run: pathlib.Path | None = None
        self._daemon: Daemon | None = None
        self._finalizer: weakref.finalize | None = None
        self._log_offsets: dict[pathlib.Path, int] = {}

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._daemon is not None and self._daemon.running

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs."""
        return self._daemon.pid if self._daemon is not None else None

    def start(self) -> None:
        """Prepare the run directory and start the daemon; returns once it is ready (bounded wait)."""
        if self.running:
            return
        run = self._rundir()
        if not self.port:
            self.port = free_port(self.host)
        try:
            argv = self._prepare(run)
            self._daemon = Daemon(f"{self.name}:{self.port}", argv, log_path=run / self.daemon_log, cwd=run)
            self._daemon.start(self._ready, extra_logs=self._extra_logs())
        except BaseException:
            self._daemon = None
            self._after_stop()
            raise
        log.info("%s", self._started_message())

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after a bounded wait) and what was started with it."""
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None
        self._after_stop()

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> ProxyDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what a subclass provides -------------------------------------------------------------------
    def _prepare(self, run: pathlib.Path) -> list[str]:
        """Write the daemon's files into `run`; return its command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the daemon serves."""
        return port_accepts(self.host, self.port)

    def _extra_logs(self) -> list[pathlib.Path]:
        return []

    def _after_stop(self) -> None:
        """Stop anything `_prepare` started besides the daemon (also after a failed start)."""

    def _started_message(self) -> str:
        return f"{self.name} on {self.url}"

    # ---- helpers -------------------------------------------------------------------------------------
    def _rundir(self) -> pathlib.Path:
        if self._run is None:
            if self.run_dir_name is None:
                self.workdir.mkdir(parents=True, exist_ok=True)
                self._run = self.workdir
            else:
                self._run = runtime_dir(self.workdir, self.run_dir_name, self._account)
                if not self._run.is_relative_to(self.workdir):
                    # outside the workdir (root's tmp dirs are closed to the daemon's account): remove it with us
                    self._finalizer = weakref.finalize(self, shutil.rmtree, self._run, True)
        return self._run

    def _own_file(self, path: pathlib.Path, mode: int = 0o600) -> pathlib.Path:
        """Create path if needed and make it the daemon account's own."""
        path.touch()
        give_to(path, self._account, mode)
        return path

    def _watch_log(self, path: pathlib.Path) -> None:
        """From now on `_logged_since_start(path)` reads only what this run of the daemon writes there."""
        self._own_file(path)
        self._log_offsets[path] = path.stat().st_size

    def _logged_since_start(self, path: pathlib.Path) -> bytes:
        """What the daemon wrote to a watched log since this start (b"" before it creates the file)."""
        try:
            with open(path, "rb") as f:
                f.seek(self._log_offsets.get(path, 0))  # after a restart, only this run's lines count
                return f.read()
        except FileNotFoundError:
            return b""
