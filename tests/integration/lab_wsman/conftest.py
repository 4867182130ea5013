"""Fixtures running unmodified pypsrp client code against WSManService in-process.

pypsrp's WSMan builds and parses every envelope; only its HTTP transport is replaced by
one whose ``send`` hands the bytes to ``WSManService.handle`` (no HTTP, no auth).
"""

from __future__ import annotations

import pathlib
import threading
import time
import typing as t
from types import SimpleNamespace

import pytest
from pypsrp.exceptions import WinRMTransportError
from pypsrp.wsman import WSMan

from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService


# Gates hold a stand-in command until the test opens them, so a test knows a command is still running
# instead of hoping a sleep lasts long enough. Every gate opens when its test ends.
GATE_TIMEOUT_S = 60.0
_GATES: dict[str, threading.Event] = {}
_GATES_LOCK = threading.Lock()


def gate(name: str) -> threading.Event:
    """The gate called name (created closed on first use); .set() opens it."""
    with _GATES_LOCK:
        return _GATES.setdefault(name, threading.Event())


@pytest.fixture
def gates() -> t.Callable[[str], threading.Event]:
    """gate() of this module: the one the stand-in engine waits on (a test importing this file may get a copy)."""
    return gate


@pytest.fixture(autouse=True)
def _open_every_gate() -> t.Iterator[None]:
    yield
    with _GATES_LOCK:
        gates = list(_GATES.values())
        _GATES.clear()
    for event in gates:
        event.set()


def wait_until(predicate: t.Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll for a state the service reaches by itself; the bound only stops a broken service from hanging."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class InProcessTransport:
    """Stands in for pypsrp's _TransportHTTP: same send() contract, answered by the service."""

    def __init__(self, service: WSManService, user: str, endpoint: str) -> None:
        self.service = service
        self.user = user
        self.endpoint = endpoint
        self.sent: list[bytes] = []

    def send(self, message: bytes, *, retries_on_read_timeout: int = 0, timeout: t.Any = None) -> bytes:
        self.sent.append(message)
        status, body = self.service.handle(self.user, message)
        if status != 200:
            raise WinRMTransportError("http", status, body.decode("utf-8"))
        return body

    def close(self) -> None:
        pass


class StandInEngine:
    """A trivial engine for these tests only (the real one lives in tests/lab/_engine.py).

    PowerShell: each script line is `out <text>`, `err <text>`, `warn <text>`, `host <text>`,
    `exit <n>`, `echo-input` (copies pipeline input to output), `args` (outputs the arguments),
    `sleep <s>`, `gate <name>` (waits until the test opens gate(name)), `fail <text>` (terminating error),
    `count-input` (outputs the characters of all input), `lift-input-cap` (sets the command's
    MaximumAllowedMemory to None). cmd: `echo <text>`, `type` (stdin to stdout), `exit <n>`, `gate <name>`,
    anything else writes "not recognized" to stderr and exits 9009.
    """

    def __init__(self, root: pathlib.Path | None, computer_name: str, user: str) -> None:
        self.computer_name = computer_name
        self.user = user

    def run_powershell(self, script: str, arguments: list[object], input: t.Iterable[object], streams: t.Any, *, is_command: bool = False) -> None:
        import time

        for line in script.splitlines():
            verb, _, rest = line.strip().partition(" ")
            if verb == "out":
                streams.output(rest)
            elif verb == "err":
                streams.error(SimpleNamespace(message=rest, category="InvalidOperation", fq_error_id="Lab.Err", target=None, command_name="err", position=None))
            elif verb == "warn":
                streams.warning(rest)
            elif verb == "host":
                streams.host_write(rest)
            elif verb == "exit":
                streams.set_should_exit(int(rest))
                return
            elif verb == "echo-input":
                for item in input:
                    streams.output(item)
            elif verb == "args":
                for a in arguments:
                    streams.output(a)
            elif verb == "sleep":
                time.sleep(float(rest))
            elif verb == "gate":
                gate(rest).wait(GATE_TIMEOUT_S)
            elif verb == "fail":  # a terminating error, as the real engine reports one (not an exception of the lab's)
                streams.terminating_error(SimpleNamespace(message=rest, category="NotSpecified", fq_error_id="Lab.Fail",
                                                          target=None, command_name="fail", position=None))
                return
            elif verb == "object":
                streams.output({"Name": rest, "Length": len(rest)})
            elif verb == "count-input":
                streams.output(sum(len(str(item)) for item in input))
            elif verb == "lift-input-cap":
                # what ansible's psrp_put_file.ps1 does by reflection on $Host (see _psrp_streams.PipelineStreams)
                streams.maximum_allowed_memory = None

    def run_cmd(self, command: str, arguments: list[str], stdin: t.Iterable[bytes], stdout: t.Callable[[bytes], None], stderr: t.Callable[[bytes], None]) -> int:
        words = [command, *arguments]
        if words[:2] == ["cmd.exe", "/c"]:
            words = words[2:]
        if not words:
            return 0
        if words[0] == "echo":
            stdout((" ".join(words[1:]) + "\r\n").encode())
            return 0
        if words[0] == "type":
            for chunk in stdin:
                stdout(chunk)
            return 0
        if words[0] == "exit":
            return int(words[1])
        if words[0] == "sleep":
            import time

            time.sleep(float(words[1]))
            return 0
        if words[0] == "gate":
            gate(words[1]).wait(GATE_TIMEOUT_S)
            return 0
        stderr(f"'{words[0]}' is not recognized as an internal or external command,\r\n".encode())
        return 9009


@pytest.fixture
def host_config(tmp_path: pathlib.Path) -> HostConfig:
    return HostConfig(name="WIN-LAB1", users={"alice": "pw-a", "bob": "pw-b"}, root=tmp_path)


@pytest.fixture
def counters() -> Counters:
    return Counters()


@pytest.fixture
def faults() -> Faults:
    return Faults()


class HostClock:
    """The service's idle clock, frozen: it moves only by what a test skips with advance() (no sleeping), so a
    bound such as "alive 59 s into a 60 s idle timeout" holds however slowly the machine runs the test."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HostClock:
    return HostClock()


@pytest.fixture
def service(host_config: HostConfig, counters: Counters, faults: Faults, clock: HostClock) -> t.Iterator[WSManService]:
    svc = WSManService(
        host_config, counters, faults, engine_factory=lambda cfg, user: StandInEngine(cfg.root, cfg.name, user),
        clock=clock,
    )
    yield svc
    svc.close()


@pytest.fixture
def connect(service: WSManService) -> t.Callable[..., WSMan]:
    """connect(user="alice", **wsman_kwargs) -> a pypsrp WSMan whose transport is the service."""

    def _connect(user: str = "alice", **kwargs: t.Any) -> WSMan:
        kwargs.setdefault("operation_timeout", 5)
        wsman = WSMan("127.0.0.1", username=user, password="unused", ssl=False, auth="basic", encryption="never", **kwargs)
        wsman.transport = InProcessTransport(service, user, wsman.transport.endpoint)  # type: ignore[assignment]
        return wsman

    return _connect


def run_in_thread(fn: t.Callable[[], t.Any]) -> tuple[threading.Thread, list[t.Any]]:
    result: list[t.Any] = []

    def target() -> None:
        try:
            result.append(fn())
        except Exception as e:  # surfaced to the test through the result list
            result.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result
