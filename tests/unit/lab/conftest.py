"""Fixtures for the lab engine's tests: an Engine on a temporary C:\\ and a recording Streams."""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

import pytest

from tests.lab._engine import Engine, ErrorInfo
from tests.lab._machine import Machine


@dataclasses.dataclass
class RecordingStreams:
    """A Streams that keeps everything it receives, in order."""

    out: list[object] = dataclasses.field(default_factory=list)
    errors: list[ErrorInfo] = dataclasses.field(default_factory=list)
    terminating: list[ErrorInfo] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    verbose_messages: list[str] = dataclasses.field(default_factory=list)
    host: list[tuple[str, bool, bool]] = dataclasses.field(default_factory=list)
    debug_messages: list[str] = dataclasses.field(default_factory=list)
    information_records: list[tuple[object, list[str]]] = dataclasses.field(default_factory=list)
    progress_records: list[dict[str, object]] = dataclasses.field(default_factory=list)
    exit_code: int | None = None

    def output(self, value: object) -> None:
        self.out.append(value)

    def error(self, record: ErrorInfo) -> None:
        self.errors.append(record)

    def terminating_error(self, record: ErrorInfo) -> None:
        self.terminating.append(record)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def verbose(self, message: str) -> None:
        self.verbose_messages.append(message)

    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None:
        self.host.append((text, newline, to_stderr))

    def set_should_exit(self, code: int) -> None:
        self.exit_code = code

    def debug(self, message: str) -> None:
        self.debug_messages.append(message)

    def information(self, message_data: object, tags: list[str]) -> None:
        self.information_records.append((message_data, tags))

    def progress(self, **record: object) -> None:
        self.progress_records.append(record)

    @property
    def all_errors(self) -> list[ErrorInfo]:
        return self.errors + self.terminating


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "C"


@pytest.fixture
def engine(root: pathlib.Path) -> t.Iterator[Engine]:
    """An Engine on its own machine state (services, accounts, machine environment), as a lab host has."""
    root.mkdir()
    engine = Engine(root, "WIN-LAB1", "vagrant")
    machine = Machine("WIN-LAB1", {"vagrant": "vagrant"}, admins=("vagrant",), reboot_down_s=0)
    engine.attach_machine(machine)
    yield engine
    machine.close()


@pytest.fixture
def ps(engine: Engine):  # type: ignore[no-untyped-def]
    """Runs a script and returns its RecordingStreams."""
    def run(script: str, *args: object, input: list[object] | None = None) -> RecordingStreams:
        streams = RecordingStreams()
        engine.run_powershell(script, list(args), iter(input or []), streams)
        return streams
    return run


@pytest.fixture
def cmd(engine: Engine):  # type: ignore[no-untyped-def]
    """Runs a WinRS command line and returns (rc, stdout bytes, stderr bytes)."""
    def run(command: str, *arguments: str, stdin: list[bytes] | None = None) -> tuple[int, bytes, bytes]:
        out: list[bytes] = []
        err: list[bytes] = []
        rc = engine.run_cmd(command, list(arguments), iter(stdin or []), out.append, err.append)
        return rc, b"".join(out), b"".join(err)
    return run
