"""tinyproxy in front of the lab hosts: a real forward proxy that keeps no connection affinity.

What tinyproxy 1.11 does with a forwarded (non-CONNECT) request, measured by
tests/integration/lab_proxies: it opens a new upstream connection for the
request, sends it with ``Connection: close``, relays the response and then
closes the client connection too. A client's next request therefore arrives on
a new upstream TCP connection, so a connection-bound NTLM/Negotiate context on
the host is lost after the handshake's first leg: the failure Microsoft's
WinRM proxy guidance describes. CONNECT tunnels are plain byte relays and keep
one upstream connection for the tunnel's life.
"""

from __future__ import annotations

import grp
import logging
import pathlib
import pwd
import re
import shutil
import weakref

from tests.lab import _procs

log = logging.getLogger(__name__)

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
_ACCOUNTS = ("tinyproxy", "nobody")  # Debian's package creates "tinyproxy"
_LOG_LINE = re.compile(r"^(?P<level>\w+)\s+(?P<date>\w+ \d+ [\d:.]+) \[(?P<pid>\d+)\]: (?P<message>.*)$")


def _drop_account() -> pwd.struct_passwd | None:
    for name in _ACCOUNTS:
        try:
            return _procs.unprivileged_account(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root, tinyproxy needs one of the accounts {_ACCOUNTS} to drop to")


class TinyProxy:
    """One tinyproxy on a free loopback port, no authentication (tinyproxy's Basic auth is not used by the lab)."""

    def __init__(self, workdir: pathlib.Path, *, allowed_connect_ports: list[int] | None = None) -> None:
        self.workdir = pathlib.Path(workdir)
        self.allowed_connect_ports = list(allowed_connect_ports) if allowed_connect_ports is not None else None
        self.host = "127.0.0.1"
        self.port = 0
        self._account = _drop_account()
        self._run: pathlib.Path | None = None
        self._proc: _procs.Daemon | None = None
        self._finalizer: weakref.finalize | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def log_path(self) -> pathlib.Path:
        return self._rundir() / "tinyproxy.log"

    def start(self) -> None:
        """Write tinyproxy.conf and start tinyproxy in the foreground; returns once its port accepts."""
        if self.running:
            return
        run = self._rundir()
        if not self.port:
            self.port = _procs.free_port(self.host)
        conf = run / "tinyproxy.conf"
        conf.write_text(self._conf(run))
        _procs.give_to(conf, self._account, 0o600)
        self.log_path.touch()
        _procs.give_to(self.log_path, self._account, 0o600)
        self._log_offset = self.log_path.stat().st_size
        self._proc = _procs.Daemon(f"tinyproxy:{self.port}", [TINYPROXY, "-d", "-c", str(conf)],
                                   log_path=run / "tinyproxy.stderr", cwd=run)
        self._proc.start(self._ready, extra_logs=[self.log_path])
        log.info("tinyproxy on %s", self.url)

    def stop(self) -> None:
        """Stop tinyproxy (SIGTERM, then SIGKILL after a bounded wait)."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def access_log(self) -> list[str]:
        """tinyproxy's log lines that record a request or a connection (its 'Connect'/'Request' lines)."""
        out = []
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            m = _LOG_LINE.match(line)
            if m and m["message"].startswith(("Request (file descriptor", "Connect (file descriptor",
                                              "Established connection to host")):
                out.append(line)
        return out

    def counters(self) -> dict[str, int]:
        """Counts derived from the log: client connections, requests, upstream connections established."""
        lines = self.access_log()
        return {
            "client_connections": sum("Connect (file descriptor" in ln for ln in lines),
            "requests": sum("Request (file descriptor" in ln for ln in lines),
            "upstream_connections": sum("Established connection to host" in ln for ln in lines),
        }

    def describe(self) -> dict[str, str]:
        return {"url": self.url}

    def __enter__(self) -> TinyProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _rundir(self) -> pathlib.Path:
        if self._run is None:
            self._run = _procs.runtime_dir(self.workdir, "tinyproxy-run", self._account)
            if not self._run.is_relative_to(self.workdir):
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._run, True)
        return self._run

    def _ready(self) -> bool:
        # its own "main loop" line (logged after it listens), not a probe that would show as a client
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)  # after a restart, only this run's lines count
                return b"Starting main loop" in f.read()
        except FileNotFoundError:
            return False

    def _conf(self, run: pathlib.Path) -> str:
        lines = [
            "# generated by tests/lab/_tinyproxy.py for one lab instance",
            f"Port {self.port}",
            f"Listen {self.host}",
            "Timeout 60",
            f"LogFile \"{run / 'tinyproxy.log'}\"",
            "LogLevel Info",  # Info logs each connection and request line, which the tests read
            f"PidFile \"{run / 'tinyproxy.pid'}\"",
            "MaxClients 50",
            "Allow 127.0.0.0/8",
            "DisableViaHeader Yes",
        ]
        if self._account is not None:
            lines += [f"User {self._account.pw_name}", f"Group {grp.getgrgid(self._account.pw_gid).gr_name}"]
        for port in self.allowed_connect_ports or []:
            lines.append(f"ConnectPort {port}")  # with no ConnectPort line tinyproxy allows CONNECT anywhere
        return "\n".join(lines) + "\n"
