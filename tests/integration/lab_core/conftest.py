"""Helpers for the lab-core tests: run `python -m tests.lab up` as a subprocess and watch what it started."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import typing as t

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain reaches pid (daemons in their own sessions included)."""
    parents: dict[int, int] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    for _ in range(20):  # process trees of a lab are a few levels deep
        children = {p for p, pp in parents.items() if pp in frontier and p not in found}
        if not children:
            break
        found |= children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class LabProcess:
    """`python -m tests.lab up --json ...` in a subprocess; reads its one JSON line with a deadline."""

    def __init__(self, *args: str, start_timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lab", "up", "--json", *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.stderr_lines: list[bytes] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(start_timeout)
        if not line or not line[0]:
            self.terminate()
            raise AssertionError(f"the lab printed no JSON line within {start_timeout} s; stderr:\n{self.stderr}")
        self.first_line = line[0]
        self.description: dict[str, t.Any] = json.loads(line[0])

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr_lines.append(raw)

    @property
    def stderr(self) -> str:
        return b"".join(self.stderr_lines).decode(errors="replace")

    def terminate(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"the lab did not stop within {timeout} s of {sig.name}; stderr:\n{self.stderr}")

    def rest_of_stdout(self) -> bytes:
        assert self.proc.stdout is not None and self.proc.poll() is not None
        return self.proc.stdout.read()


@pytest.fixture
def lab_process() -> t.Iterator[t.Callable[..., LabProcess]]:
    started: list[LabProcess] = []

    def start(*args: str) -> LabProcess:
        lp = LabProcess(*args)
        started.append(lp)
        return lp

    yield start
    for lp in started:
        if lp.proc.poll() is None:
            lp.terminate()
