"""Test support for the pin daemon tests: an in-memory Session stand-in and fixtures.

The stand-in runs inside the REAL daemon process (named by PINNED_WINRM_TEST_SESSION_FACTORY,
which the daemon honours only under pytest). It records what it is asked to do in a journal
file so tests can see opens and closes from outside; its "host" is the local file system.
Scripts are tiny commands: whoami, sleep S, gate NAME, echo-input, exit N, fail-transport, fail-host,
reauth, log-secret. `gate NAME` holds the task (journal "run", then "gate-passed") until the test
creates the file gate_path(journal, NAME): tests hold a task as long as they need instead of sleeping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
import typing as t

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
COLLECTIONS = os.path.join(REPO, "build", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if REPO not in sys.path:  # this module is also loaded inside the daemon, whose path has only HERE
    sys.path.append(REPO)

from tests._procfs import pid_alive, wait_until  # noqa: E402,F401  (re-exported for the daemon tests)

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import (  # noqa: E402
    HostError,
    TaskInterrupted,
    TransportError,
)

JOURNAL_ENV = "PINNED_WINRM_TEST_JOURNAL"
FACTORY = "_pin_fakes:FakeSession"
# A gate nobody opens fails its task after this long, so a broken test cannot hang the daemon.
GATE_TIMEOUT_S = 60.0
log = logging.getLogger("fake.session")


def gate_path(journal: str, name: str) -> str:
    """The file whose creation opens `gate NAME` (next to the journal, in the test's private root)."""
    return os.path.join(os.path.dirname(journal), f"gate-{name}")


def open_gate(journal: str, name: str) -> None:
    with open(gate_path(journal, name), "w"):
        pass


class FakeResult(t.NamedTuple):
    rc: int
    stdout: bytes
    stderr: bytes


class FakeSession:
    """Records calls; behaves like Session for the daemon (ensure_ready/run/put/fetch/finish/close)."""

    CHUNK = 96 * 1024

    def __init__(self, spec: t.Any, *, events: t.Callable[[str, str], None] | None = None) -> None:
        self.spec = spec
        self.id = os.urandom(6).hex()
        self.events = events or (lambda kind, detail: None)
        self.opened = False
        self.transport = types.SimpleNamespace(stats={"reauths": {}})  # {reason: count}, as the real transport
        self.stats: dict[str, t.Any] = {"tasks": 0, "pool_opens": 0, "pool_rebuilds": 0, "rebuild_reasons": []}
        self._lock = threading.Lock()

    def _journal(self, event: str, **extra: t.Any) -> None:
        path = os.environ.get(JOURNAL_ENV)
        if path:
            row = {"event": event, "id": self.id, "user": self.spec.username, "host": self.spec.host,
                   "pid": os.getpid(), "t": time.time(), **extra}
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def open(self) -> None:
        self.opened = True
        self.stats["pool_opens"] += 1
        self._journal("open")

    def ensure_ready(self) -> str:
        with self._lock:
            if not self.opened:
                self.open()
                return "opened"
            return "reused"

    def run(self, script: str, *, arguments: t.Any = None, input_data: t.Any = None, verbose_errors: bool = False,
            should_stop: t.Callable[[], bool] | None = None, output: t.Any = None,
            max_output: int | None = None) -> FakeResult:
        result = self._run(script, arguments, input_data, should_stop)
        if output is None:
            return result
        # like Session with a sink: the text goes to it (stdout first), the result carries the rc
        if result.stdout:
            output("stdout", result.stdout)
        if result.stderr:
            output("stderr", result.stderr)
        return FakeResult(result.rc, b"", b"")

    def _run(self, script: str, arguments: t.Any, input_data: t.Any,
             should_stop: t.Callable[[], bool] | None) -> FakeResult:
        with self._lock:
            self.stats["tasks"] += 1
            word, _, rest = script.partition(" ")
            self._journal("run", script=word)
            if word == "whoami":
                body = {"id": self.id, "user": self.spec.username, "tasks": self.stats["tasks"], "pid": os.getpid(),
                        "arguments": arguments}
                return FakeResult(0, json.dumps(body).encode(), b"")
            if word == "sleep":
                # like Session: between Receives (here every 50 ms) ask whether the client went away
                deadline = time.monotonic() + float(rest)
                while time.monotonic() < deadline:
                    if should_stop is not None and should_stop():
                        self._journal("interrupted", script=word)
                        raise TaskInterrupted("the task's client went away")
                    time.sleep(0.05)
                return FakeResult(0, b"slept", b"")
            if word == "gate":
                path = gate_path(os.environ.get(JOURNAL_ENV, ""), rest)
                deadline = time.monotonic() + GATE_TIMEOUT_S
                while not os.path.exists(path):
                    if time.monotonic() > deadline:
                        return FakeResult(1, b"", f"gate {rest} was never opened".encode())
                    time.sleep(0.01)
                self._journal("gate-passed", gate=rest)
                return FakeResult(0, b"passed", b"")
            if word == "echo-input":
                lines = list(input_data or [])
                return FakeResult(0, "\n".join(lines).encode("utf-8"), f"{len(lines)} lines".encode())
            if word == "exit":
                return FakeResult(int(rest), b"", "failed on purpose \u00e9".encode("utf-8"))
            if word == "fail-transport":
                raise TransportError("the lab reset the connection")
            if word == "fail-host":
                raise HostError("the host answered with WS-Management fault 0x80338012: not a real one")
            if word == "reauth":
                reauths = self.transport.stats["reauths"]
                reauths["proxy closed keep-alive"] = reauths.get("proxy closed keep-alive", 0) + 1
                self.events("reauth", "the proxy closed the keep-alive connection; re-authenticated")
                return FakeResult(0, b"", b"")
            if word == "log-secret":
                log.warning("debugging the password %s and proxy password %s", self.spec.password,
                            self.spec.proxy.password if self.spec.proxy else None)
                return FakeResult(0, b"", b"")
            return FakeResult(1, b"", f"unknown fake command {word!r}".encode())

    def put_chunk_size(self) -> int:
        return self.CHUNK

    def put_file(self, chunks: t.Iterable[bytes], out_path: str, *, should_stop: t.Any = None) -> str:
        with self._lock:
            self.stats["tasks"] += 1
            digest = hashlib.sha1()
            biggest = 0
            with open(out_path, "wb") as out:
                for chunk in chunks:
                    if len(chunk) > self.CHUNK:
                        raise HostError(f"chunk of {len(chunk)} bytes exceeds the envelope ({self.CHUNK})")
                    biggest = max(biggest, len(chunk))
                    digest.update(chunk)
                    out.write(chunk)
            self._journal("put", path=out_path, biggest_chunk=biggest)
            return digest.hexdigest()

    def fetch_file(self, in_path: str, sink: t.Callable[[bytes], None], *, should_stop: t.Any = None) -> str:
        with self._lock:
            self.stats["tasks"] += 1
            self._journal("fetch", path=in_path)
            if os.path.isdir(in_path):
                return "dir"
            if not os.path.exists(in_path):
                raise HostError(f"fetch_file: '{in_path}' does not exist on the host")
            slow = in_path.endswith(".slow")
            with open(in_path, "rb") as src:
                while chunk := src.read(64 * 1024):
                    sink(chunk)
                    if slow:
                        time.sleep(0.05)
            return "file"

    def finish_pending(self) -> None:
        self._journal("finish")

    def close(self) -> None:
        self._journal("close")


# -- fixtures ----------------------------------------------------------------------


def read_journal(path: str) -> list[dict[str, t.Any]]:
    try:
        with open(path) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


class PinEnv(t.NamedTuple):
    root: str
    journal: str


@pytest.fixture
def pin_env(monkeypatch: pytest.MonkeyPatch) -> t.Iterator[PinEnv]:
    """A private persist root (short path: UNIX socket paths are limited), the fake factory, and cleanup."""
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

    root = tempfile.mkdtemp(prefix="pin", dir="/tmp")
    journal = os.path.join(root, "journal.jsonl")
    monkeypatch.setenv("PINNED_WINRM_TEST_SESSION_FACTORY", FACTORY)
    monkeypatch.setenv(JOURNAL_ENV, journal)
    monkeypatch.setenv("PYTHONPATH", HERE + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    yield PinEnv(root, journal)
    client = PinClient(root, autostart=False, connect_timeout=2)
    pids = {row.get("pid") for row in read_journal(journal)}
    try:
        client.shutdown()
    except Exception:
        pass
    for pid in pids:
        if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(root, ignore_errors=True)
