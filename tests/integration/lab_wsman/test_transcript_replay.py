"""Replay every recorded real-Windows exchange against the lab's WS-Management service.

Reports how many transcripts match structurally (printed and written to
tests/output/wsman_transcript_replay.json) and fails, naming it, on any recording that mismatches outside
KNOWN_MISMATCHES. Each known mismatch and its reason is listed in docs/lab-wsman.md.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import re
import time

import pytest
import yaml

from tests.integration.lab_wsman import _replay
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._engine import Engine
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService

# The recordings the lab does not match yet, each with its reason in docs/lab-wsman.md; any other mismatch fails,
# named. Take a name out as the lab grows to match it.
KNOWN_MISMATCHES = frozenset({
    "test_client_copy_file_warning", "test_client_execute_ps_environment", "test_psrp_get_command_metadata",
    "test_psrp_multiple_commands", "test_psrp_pshost_raw_ui_mocked_methods", "test_psrp_pshost_ui_mocked_methods",
})
REPLAY_WORKERS = 4
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "output" / "wsman_transcript_replay.json"


def _engine_factory():
    """The lab's real engine: it runs the recorded PowerShell and cmd."""
    return "lab", lambda cfg, user: Engine(cfg.root, cfg.name, user)


def _transcripts() -> pathlib.Path:
    """The recordings' directory; a missing or empty one fails (a replay of nothing proves nothing)."""
    where = _replay.transcripts_dir()
    if not where.is_dir() or not any(where.glob("*.yml")):
        pytest.fail(
            f"no recorded Windows transcripts in {where}: unset {_replay.TRANSCRIPTS_ENV} to replay the committed "
            f"copy ({_replay.COMMITTED_TRANSCRIPTS}) or set it to a directory of *.yml recordings"
        )
    return where


class _ReplayClock:
    """The host's idle clock: real time plus the pauses the recorded clients took (_replay.RECORDED_PAUSES)."""

    def __init__(self) -> None:
        self._skipped = 0.0

    def advance(self, seconds: float) -> None:
        self._skipped += seconds

    def __call__(self) -> float:
        return time.monotonic() + self._skipped


class _SetupStreams:
    """Collects what the setup script writes; any error fails the replay's setup loudly."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def output(self, value: object) -> None: ...
    def warning(self, message: str) -> None: ...
    def verbose(self, message: str) -> None: ...
    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None: ...
    def set_should_exit(self, code: int) -> None: ...

    def error(self, record: object) -> None:
        self.errors.append(str(getattr(record, "message", record)))

    terminating_error = error


def _prepare_host(engine, script: str) -> None:
    """Puts the host in the state the recording's host was in, with the PowerShell its test names."""
    streams = _SetupStreams()
    engine.run_powershell(script, [], iter(()), streams)
    assert not streams.errors, f"replay setup failed on the lab host: {streams.errors}"


def _replay_one(path: pathlib.Path, root: pathlib.Path, factory) -> _replay.Result:
    """One recording against a fresh host configured as the recorded one was."""
    messages = yaml.safe_load(path.read_text())["messages"]
    root.mkdir()
    # The recorded hosts had the session configurations their clients asked for (e.g. JEA ones).
    # The recording's user, where its paths name one (C:\Users\<user>\...): the lab's profile is that user's.
    found = re.search(r"C:\\Users\\([A-Za-z0-9_.-]+)\\", path.read_text())
    user = found.group(1) if found else "vagrant"
    config = HostConfig(
        name="WIN-LAB1",
        users={user: "vagrant"},
        root=root,
        extra_configurations=tuple(sorted(_replay.configurations(messages))) or ("Lab.Restricted",),
        session_configurations=dict(_replay.RECORDED_CONFIGURATIONS),
    )
    setup = _replay.RECORDED_SETUP.get(path.stem)
    if setup:
        _prepare_host(factory(config, user), setup)
    clock = _ReplayClock()
    service = WSManService(config, Counters(), Faults(), engine_factory=factory, clock=clock)
    pauses = _replay.RECORDED_PAUSES.get(path.stem, {})
    try:
        return _replay.replay(path, lambda body: service.handle(user, body), lambda i: clock.advance(pauses.get(i, 0.0)))
    finally:
        service.close()


@pytest.mark.timeout(600)
def test_recorded_windows_exchanges_replay_with_the_same_structure(tmp_path):
    engine_name, factory = _engine_factory()
    paths = sorted(_transcripts().glob("*.yml"))
    # Recordings are independent hosts; a few replay at once so the ones that wait out a recorded
    # OperationTimeout (a 30 s sleep in winrs_operation_timeout) do not add up.
    with concurrent.futures.ThreadPoolExecutor(max_workers=REPLAY_WORKERS) as pool:
        results = list(pool.map(lambda p: _replay_one(p, tmp_path / p.stem, factory), paths))
    matched = [r for r in results if r.match]
    summary = {
        "engine": engine_name,
        "transcripts": len(results),
        "matched": len(matched),
        "known_mismatches": sorted(KNOWN_MISMATCHES),
        "results": [{"name": r.name, "match": r.match, "mismatches": r.mismatches} for r in results],
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(summary, indent=2))
    print(f"\nWS-Management transcript replay ({engine_name} engine): {len(matched)}/{len(results)} match")
    for r in results:
        if not r.match:
            print(f"  MISMATCH {r.name}: {r.mismatches[0][:200]}")
    assert len(results) > 0
    names = {r.name for r in results}
    assert KNOWN_MISMATCHES <= names, f"known mismatches with no recording: {sorted(KNOWN_MISMATCHES - names)}"
    new = {r.name: r.mismatches for r in results if not r.match and r.name not in KNOWN_MISMATCHES}
    assert not new, f"recordings that no longer match: {new}"
    now_matching = sorted(KNOWN_MISMATCHES & {r.name for r in matched})
    if now_matching:
        print(f"  now matching, take them out of KNOWN_MISMATCHES: {now_matching}")


def test_the_committed_recordings_are_replayed_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(_replay.TRANSCRIPTS_ENV, raising=False)
    committed = pathlib.Path(__file__).resolve().parent / "transcripts"
    assert _replay.transcripts_dir() == committed
    assert len(list(committed.glob("test_*.yml"))) == 51
    monkeypatch.setenv(_replay.TRANSCRIPTS_ENV, str(tmp_path))
    assert _replay.transcripts_dir() == tmp_path


def test_a_missing_or_empty_transcript_directory_fails_rather_than_skipping(monkeypatch, tmp_path):
    monkeypatch.setenv(_replay.TRANSCRIPTS_ENV, str(tmp_path / "absent"))
    with pytest.raises(pytest.fail.Exception, match=f"unset {_replay.TRANSCRIPTS_ENV}"):
        _transcripts()
    monkeypatch.setenv(_replay.TRANSCRIPTS_ENV, str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="no recorded Windows transcripts"):
        _transcripts()


def test_the_committed_recordings_carry_their_origin_and_license():
    committed = _replay.COMMITTED_TRANSCRIPTS
    readme = (committed / "README.md").read_text(encoding="utf-8")
    for origin in ("pypsrp", "tests/tests_pypsrp/responses", "MIT License", "Copyright (c) 2018 Jordan Borean, Red Hat"):
        assert origin in readme, origin
    license_text = (committed / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "Copyright (c) 2018 Jordan Borean, Red Hat" in license_text


def test_the_committed_recordings_are_the_shared_ones_unchanged():
    shared = _replay.SHARED_TRANSCRIPTS
    if not shared.is_dir():
        pytest.skip(f"no shared recordings at {shared} to compare the committed copy with")
    committed = {p.name: p.read_bytes() for p in _replay.COMMITTED_TRANSCRIPTS.glob("*.yml")}
    kept = {p.name: p.read_bytes() for p in shared.glob("*.yml")}
    assert sorted(committed) == sorted(kept), "the committed recordings and ../shared/windows-transcripts list different files"
    changed = sorted(name for name in kept if committed[name] != kept[name])
    assert not changed, f"committed recordings differ from ../shared/windows-transcripts: {changed}"


def _recorded_answers(name: str) -> tuple[pathlib.Path, list[dict]]:
    path = _replay.COMMITTED_TRANSCRIPTS / f"{name}.yml"
    return path, yaml.safe_load(path.read_text())["messages"]


_STREAM = re.compile(r"<rsp:Stream [^>]*>[^<]*</rsp:Stream>")
_STATE = re.compile(r"<rsp:CommandState .*</rsp:CommandState>")


def _one_message_per_answer(response: str) -> list[str]:
    """Windows' one ReceiveResponse cut into one answer per rsp:Stream, the CommandState on the last:
    how a host that sends each message as soon as it exists delivers the same output."""
    streams = _STREAM.findall(response)
    state = _STATE.search(response).group(0)
    head, tail = response.split("<rsp:ReceiveResponse>")[0], response.split("</rsp:ReceiveResponse>")[1]
    return [
        f"{head}<rsp:ReceiveResponse>{stream}{state if i == len(streams) - 1 else ''}</rsp:ReceiveResponse>{tail}"
        for i, stream in enumerate(streams)
    ]


def _serving(answers: list[tuple[int, str]], asked: list[str]):
    """A host answering each request with the next of `answers` (status, body); `asked` lists the actions."""
    queue = list(answers)

    def handle(body: bytes) -> tuple[int, bytes]:
        asked.append(_replay.request_action(body.decode()))
        status, text = queue.pop(0)
        return status, text.encode()

    return handle


def _command_receive(messages: list[dict]) -> int:
    return next(
        i for i, m in enumerate(messages) if _replay.request_action(m["request"]) == "Receive" and "CommandId" in m["request"]
    )


def _replay_answering_the_command_receive_with(middle: list[tuple[int, str]]):
    """psrp_merge_commands replayed against Windows' own answers, its command's one Receive answered by
    `middle` instead: (result, the actions asked, the actions asked before that Receive)."""
    path, messages = _recorded_answers("test_psrp_merge_commands")
    receive = _command_receive(messages)
    answers = [(200, m["response"]) for m in messages[:receive]] + middle
    answers += [(200, m["response"]) for m in messages[receive + 1 :]]
    asked: list[str] = []
    result = _replay.replay(path, _serving(answers, asked))
    return result, asked, [_replay.request_action(m["request"]) for m in messages[:receive]]


def test_a_receive_windows_answered_at_once_matches_a_host_that_answers_it_message_by_message():
    # How many Receives a host takes to deliver one command's output depends on how fast it runs; the
    # replay compares what arrived, so a host answering one message per Receive (14 of them here, for
    # the one Receive Windows answered) matches, and is asked exactly until it said Done.
    _, messages = _recorded_answers("test_psrp_merge_commands")
    split = _one_message_per_answer(messages[_command_receive(messages)]["response"])
    assert len(split) > 10
    result, asked, before = _replay_answering_the_command_receive_with([(200, a) for a in split])
    assert result.mismatches == []
    assert asked == before + ["Receive"] * len(split) + ["Delete"]


def test_a_host_that_stops_answering_is_asked_a_bounded_number_of_times_and_named():
    _, timeouts = _recorded_answers("test_psrp_long_running_cmdlet")
    timed_out = next(m["response"] for m in timeouts if "w:TimedOut" in (m.get("response") or ""))
    stalled = [(500, timed_out)] * _replay.MAX_IDLE_RECEIVES
    result, asked, before = _replay_answering_the_command_receive_with(stalled)
    assert asked == before + ["Receive"] * _replay.MAX_IDLE_RECEIVES + ["Delete"]
    assert any("CommandState ('Done', '0') != lab None" in m for m in result.mismatches), result.mismatches
