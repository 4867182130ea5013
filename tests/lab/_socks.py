"""microsocks in front of the lab hosts: a real SOCKS5 server (RFC 1928), with or without a password (RFC 1929).

microsocks 1.0 (Debian's package) relays one TCP stream per client connection and logs each stream it
opens, after the client passed authentication, as ``client[<fd>] <client ip>: connected to <target>:<port>``
on stderr; the target is the address the client sent, or the name for a client that asked the proxy to
resolve it (socks5h). A client that fails authentication gets RFC 1929's failure status and no log line.
The counts tests read come from that log. microsocks blanks its ``-u``/``-P`` arguments in its own argv at
start, so the lab proxy's password is not left in the process list.
"""

from __future__ import annotations

import logging
import pathlib
import re
import shutil

from tests.lab import _procs

log = logging.getLogger(__name__)

MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"
_CONNECTED = re.compile(r"^client\[\d+\] (?P<client>\S+): connected to (?P<target>.+):(?P<port>\d+)$")


class MicroSocks(_procs.ProxyDaemon):
    """One microsocks on a free loopback port; `username`/`password` turn on RFC 1929 authentication."""

    name = "microsocks"
    daemon_log = "microsocks.log"
    run_dir_name = None

    def __init__(self, workdir: pathlib.Path, *, username: str | None = None, password: str | None = None) -> None:
        super().__init__(workdir)
        if bool(username) != bool(password):
            raise ValueError("microsocks authentication needs both a user name and a password")
        self.username = username
        self.password = password

    @property
    def url(self) -> str:
        """socks5://127.0.0.1:PORT"""
        return f"socks5://{self.host}:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self._rundir() / self.daemon_log

    def connections(self) -> list[dict[str, str]]:
        """Every stream microsocks relayed ({"client", "target", "port"}), oldest first, from its log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [m.groupdict() for m in map(_CONNECTED.match, lines) if m]

    def access_log(self) -> list[str]:
        """The log lines of relayed streams."""
        return [f"{c['client']} -> {c['target']}:{c['port']}" for c in self.connections()]

    def counters(self) -> dict[str, object]:
        """Relayed streams in all ("requests", as the other proxies' counters name what they served) and by target."""
        by_target: dict[str, int] = {}
        for c in self.connections():
            key = f"{c['target']}:{c['port']}"
            by_target[key] = by_target.get(key, 0) + 1
        total = sum(by_target.values())
        return {"connections": total, "requests": total, "by_target": by_target}

    def describe(self) -> dict[str, object]:
        return {"url": self.url, "socks5h_url": f"socks5h://{self.host}:{self.port}",
                "auth": "password" if self.username else None, "username": self.username, "password": self.password}

    def _prepare(self, run: pathlib.Path) -> list[str]:
        argv = [MICROSOCKS, "-i", self.host, "-p", str(self.port)]
        if self.username and self.password:
            argv += ["-u", self.username, "-P", self.password]  # microsocks blanks both in its argv at start
        return argv

    def _started_message(self) -> str:
        return f"microsocks on {self.url}{' (user name and password)' if self.username else ''}"
