"""Start the lab the benchmarks measure against, as a subprocess (`python -m tests.lab up --json`)."""

from __future__ import annotations

import json
import logging
import pathlib
import signal
import subprocess
import sys
import typing as t

from tests.lab._control import LabClient

log = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parents[1]
_START_TIMEOUT_S = 180.0


class BenchLab:
    """A lab process with N hosts, latency relays (RTT changed live), the Basic and the NTLM Squid."""

    def __init__(self, hosts: int, *, max_seconds: int = 7200) -> None:
        self.hosts = hosts
        self.max_seconds = max_seconds
        self.proc: subprocess.Popen[str] | None = None
        self.desc: dict[str, t.Any] = {}
        self.client: LabClient | None = None

    def __enter__(self) -> BenchLab:
        cmd = [sys.executable, "-m", "tests.lab", "up", "--json", "--hosts", str(self.hosts),
               "--squid-auth", "basic,ntlm", "--squid-https", "--relays", "--no-tinyproxy", "--max-seconds", str(self.max_seconds),
               "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     stdin=subprocess.DEVNULL)
        import selectors

        with selectors.DefaultSelector() as sel:
            assert self.proc.stdout is not None
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(_START_TIMEOUT_S):
                self.__exit__(None, None, None)
                raise RuntimeError(f"the lab did not start within {_START_TIMEOUT_S:.0f} s")
            line = self.proc.stdout.readline()
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError("the lab exited before describing itself (run `python -m tests.lab up` to see why)")
        self.desc = json.loads(line)
        self.client = LabClient(self.desc["control_url"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
