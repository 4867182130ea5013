"""Replay recorded real-Windows WinRM conversations against WSManService and compare structure.

What is compared (ids, times, process ids and payload text differ by nature):
- every exchange that is not a Receive: the answer's wsa:Action, HTTP status, the fault
  subcode and WSManFault Code, and the set of element names in the body;
- Receive answers, per target (the pool, or one command): the PSRP message types in order
  across all Receives, the rsp:Stream names, the final CommandState and exit code, and the
  fault a recorded Receive ended with. Windows splits a stream over Receives by timing, so a
  recorded Receive is replayed only while the lab has delivered less than the recording did.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import pathlib
import re
import struct
import typing as t
import xml.etree.ElementTree as ET

import yaml

from tests.lab._config import SessionConfiguration
from tests.lab._soap import NS

REPOSITORY = pathlib.Path(__file__).resolve().parents[3]
# The recordings are committed beside this module (transcripts/, MIT-licensed, see its README);
# LAB_WINDOWS_TRANSCRIPTS names another directory of recordings to replay instead.
TRANSCRIPTS_ENV = "LAB_WINDOWS_TRANSCRIPTS"
COMMITTED_TRANSCRIPTS = pathlib.Path(__file__).resolve().parent / "transcripts"
# Where the same recordings are kept next to the repository; the committed copy must not drift from them.
SHARED_TRANSCRIPTS = REPOSITORY.parent / "shared" / "windows-transcripts"


def transcripts_dir() -> pathlib.Path:
    """Where the recordings to replay are: the override, else the committed copy."""
    override = os.environ.get(TRANSCRIPTS_ENV, "").strip()
    return pathlib.Path(override).expanduser() if override else COMMITTED_TRANSCRIPTS


_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
RECEIVE_TIMEOUT = "PT1S"
# A lab Receive answers with whatever output exists when it is asked, as Windows does, so how many it
# takes to deliver one recorded Receive's messages depends on how fast the engine runs: only answers that
# bring nothing (w:TimedOut, or no stream and no state), in a row, count against a limit; all answers
# together are bounded too.
MAX_IDLE_RECEIVES = 3
MAX_LAB_RECEIVES = 1000


PROGRESS_RECORD = 0x41010
# Windows PowerShell reports building its module analysis cache as a progress record the first time a
# process auto-loads modules. Whether a recording has it depends on that host's cache, not on the
# exchange (New-Item/Get-Service pipelines recorded without it, Write-Output ones with it), so it is
# left out of the comparison rather than faked.
MODULE_CACHE_PROGRESS = b"Preparing modules for first use."


def psrp_types(b64: str | None) -> list[int]:
    """PSRP message types of the messages starting in one base64 rsp:Stream/creationXml value.

    A message split over fragments is read from its start fragment only; the module-cache progress
    record is skipped (see MODULE_CACHE_PROGRESS).
    """
    data = base64.b64decode(b64 or "")
    types = []
    while len(data) >= 21:
        _oid, fid, flags, length = struct.unpack(">QQBI", data[:21])
        blob = data[21 : 21 + length]
        if flags & 0x1 and len(blob) >= 8:
            kind = struct.unpack("<I", blob[4:8])[0]
            if not (kind == PROGRESS_RECORD and MODULE_CACHE_PROGRESS in blob):
                types.append(kind)
        data = data[21 + length :]
    return types


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclasses.dataclass
class Answer:
    status: int
    action: str
    fault: tuple[str, str] | None
    elements: frozenset[str]
    streams: list[tuple[str | None, str, list[int]]]  # (command id, stream name, psrp types)
    state: tuple[str | None, str, str | None] | None  # (command id, state, exit code)
    root: ET.Element | None


def parse_answer(status: int, text: str) -> Answer:
    if not text:
        return Answer(status, "", None, frozenset(), [], None, None)
    root = ET.fromstring(text)
    action = (root.findtext("s:Header/wsa:Action", default="", namespaces=NS) or "").rsplit("/", 1)[-1]
    body = root.find("s:Body", NS)
    fault = None
    f = body.find("s:Fault", NS) if body is not None else None
    if f is not None:
        sub = f.findtext("s:Code/s:Subcode/s:Value", default="", namespaces=NS) or ""
        wf = f.find("s:Detail/f:WSManFault", NS)
        fault = (sub, wf.attrib.get("Code", "") if wf is not None else "")
    elements = frozenset(local(e.tag) for e in body.iter()) - {"Body"} if body is not None else frozenset()
    streams = []
    for s in body.iter(f"{{{NS['rsp']}}}Stream") if body is not None else []:
        cid = s.attrib.get("CommandId")
        streams.append((cid.upper() if cid else None, s.attrib.get("Name", ""), psrp_types(s.text)))
    state = None
    cs = body.find(".//rsp:CommandState", NS) if body is not None else None
    if cs is not None:
        state = (cs.attrib.get("CommandId", "").upper(), cs.attrib.get("State", "").rsplit("/", 1)[-1], cs.findtext("rsp:ExitCode", namespaces=NS))
    return Answer(status, action, fault, elements, streams, state, root)


def request_action(text: str) -> str:
    m = re.search(r"<wsa:Action[^>]*>([^<]*)<", text)
    return m.group(1).rsplit("/", 1)[-1] if m else ""


def configurations(messages: list[dict[str, t.Any]]) -> set[str]:
    names = set()
    for m in messages:
        for uri in re.findall(r"http://schemas.microsoft.com/powershell/([^<\s\"]+)", m["request"]):
            names.add(uri)
    return names - {"Microsoft.PowerShell"}


# Seconds the client that made a recording waited before a message, where its test says so: the host's
# idle clock must pass them too. pypsrp's test_psrp_is_alive_invalid_selectors: "This test is pretending
# 60+ seconds has passed ... we need to wait a bit more for the WSMan service to actually reap the shell
# ... time.sleep(120)" between its two is_alive() calls (messages #3 and #4).
RECORDED_PAUSES: dict[str, dict[int, float]] = {
    "test_psrp_is_alive_invalid_selectors": {4: 120.0},
}


# What the recording's host held before the exchange, as the test that recorded it says it was made
# (pypsrp's tests/tests_pypsrp/test_client.py comments "file was created with ..."); the replay runs the
# same PowerShell on the lab host first.
RECORDED_SETUP: dict[str, str] = {
    "test_client_fetch_file_expand_vars": 'Set-Content -Path "$env:TEMP\\file.txt" -Value ("abc`r`n")',
    "test_client_fetch_file_hash_mismatch": (
        "New-Item -ItemType Directory -Path C:\\temp -Force | Out-Null\n"
        'Set-Content -Path C:\\temp\\file.txt -Value ("abc`r`n" * 5)'
    ),
}


# Session configurations the recording hosts had registered, as the recording project defines them:
# pypsrp's build_helpers/JEARoleSettings.pssc (SessionType RestrictedRemoteServer, role JEARole) and
# JEARole.psrc (VisibleCmdlets Get-Item, VisibleProviders WSMan).
RECORDED_CONFIGURATIONS: dict[str, SessionConfiguration] = {
    "jearole": SessionConfiguration("RestrictedRemoteServer", visible_cmdlets=("Get-Item",), visible_providers=("WSMan",)),
}


@dataclasses.dataclass
class Result:
    name: str
    match: bool
    exchanges: int
    mismatches: list[str]


class _TargetLog:
    """Per Receive target: the PSRP types and stream/state facts seen, recorded vs lab."""

    def __init__(self) -> None:
        self.psrp = False  # WinRS stdout is raw bytes, not PSRP fragments
        self.recorded_types: list[int] = []
        self.lab_types: list[int] = []
        self.recorded_streams: set[str] = set()
        self.lab_streams: set[str] = set()
        self.recorded_state: tuple[str, str | None] | None = None
        self.lab_state: tuple[str, str | None] | None = None
        self.recorded_elements: set[str] = set()
        self.lab_elements: set[str] = set()
        self.recorded_timeouts: list[tuple[str, str]] = []  # the w:TimedOut faults Windows answered
        self.lab_timeouts: list[tuple[str, str]] = []


TIMED_OUT = "w:TimedOut"


def _operation_timeout(request: str) -> str:
    m = re.search(r"<wsman:OperationTimeout>([^<]*)<", request)
    return m.group(1) if m else "PT20S"


def _replay_receive(
    index: int,
    req_text: str,
    lab_req: str,
    recorded: Answer,
    log: _TargetLog,
    key: str | None,
    handle: t.Callable[[bytes], tuple[int, bytes]],
    absorb: t.Callable[[Answer, _TargetLog, bool], None],
    mismatches: list[str],
) -> None:
    """Replays one recorded Receive: as many lab Receives as it takes to deliver what Windows had delivered.

    When a Receive's answer comes depends on timing (Windows splits streams over Receives as output
    arrives, and answers w:TimedOut when nothing came within the request's OperationTimeout), so:
    - a Receive Windows answered with data is asked with a short timeout while the lab has delivered less;
      a lab w:TimedOut there means "not yet" and is asked again with the recording's own OperationTimeout;
    - a Receive Windows answered with w:TimedOut is asked once with the recording's OperationTimeout;
      the lab must time out too unless its command already produced output (it ran faster than the
      recorded host); every target whose recording timed out must see the lab time out at least once;
    - any other recorded fault must be answered with the same fault.
    """
    absorb(recorded, log, True)
    recorded_timeout = _operation_timeout(req_text)
    if recorded.fault is not None:
        if recorded.fault[0] == TIMED_OUT:
            log.recorded_timeouts.append(recorded.fault)
            lab_done = log.lab_state is not None and log.lab_state[0] == "Done"
            if lab_done:
                return  # the lab finished earlier than Windows did: nothing left to time out on
            timeout = recorded_timeout
        else:
            timeout = RECEIVE_TIMEOUT
        request = re.sub(r"<wsman:OperationTimeout>[^<]*<", f"<wsman:OperationTimeout>{timeout}<", lab_req)
        status, body = handle(request.encode())
        lab = parse_answer(status, body.decode())
        if lab.fault is not None and lab.fault[0] == TIMED_OUT:
            log.lab_timeouts.append(lab.fault)
        if (recorded.fault, recorded.status) == (lab.fault, lab.status):
            return
        if recorded.fault[0] == TIMED_OUT and lab.fault is None:
            absorb(lab, log, False)  # the lab had output where Windows was still waiting: timing, not structure
            return
        mismatches.append(f"#{index} Receive: fault {recorded.fault} != lab {lab.fault or lab.status}")
        return
    timeout = RECEIVE_TIMEOUT
    idle = 0
    for _attempt in range(MAX_LAB_RECEIVES):
        # Once the lab said Done for a command nothing more will come: stop asking. A Running state
        # only says the command had not finished when that Receive was answered.
        lab_done = log.lab_state is not None and log.lab_state[0] == "Done"
        recorded_done = log.recorded_state is not None and log.recorded_state[0] == "Done"
        behind = (not lab_done or key is None) and (
            len(log.lab_types) < len(log.recorded_types)
            or (recorded_done and not lab_done)
            or not (log.recorded_streams <= log.lab_streams)
        )
        if not behind:
            return
        request = re.sub(r"<wsman:OperationTimeout>[^<]*<", f"<wsman:OperationTimeout>{timeout}<", lab_req)
        status, body = handle(request.encode())
        lab = parse_answer(status, body.decode())
        timed_out = lab.fault is not None and lab.fault[0] == TIMED_OUT
        if lab.fault is not None and not timed_out:
            mismatches.append(f"#{index} Receive: no fault recorded != lab {lab.fault}")
            return
        if timed_out:
            log.lab_timeouts.append(lab.fault)
            if key is not None:
                timeout = recorded_timeout  # the command still runs: wait as long as the recorded client did
        else:
            absorb(lab, log, False)
        # Any stream is progress (WinRS stdout bytes are not compared); a timeout or an answer with no stream
        # and no state is not, and only such answers in a row end the asking.
        idle = idle + 1 if timed_out or (not lab.streams and lab.state is None) else 0
        if idle >= MAX_IDLE_RECEIVES:
            return  # nothing more comes: the comparison after the replay names what is missing
    else:
        mismatches.append(f"#{index} Receive: the lab was still behind after {MAX_LAB_RECEIVES} Receives")


def replay(
    path: pathlib.Path,
    handle: t.Callable[[bytes], tuple[int, bytes]],
    pause: t.Callable[[int], None] | None = None,
) -> Result:
    """Replay one transcript through handle(request bytes) -> (status, body).

    pause(index), if given, runs before message `index` is sent: it lets the host's clock pass the time the
    recording's client waited there (see RECORDED_PAUSES).
    """
    messages = yaml.safe_load(path.read_text())["messages"]
    ids: dict[str, str] = {}
    mismatches: list[str] = []
    skipped: list[int] = []
    targets: dict[str | None, _TargetLog] = {}

    def rewrite(text: str) -> str:
        return _ID.sub(lambda m: ids.get(m.group(0).upper(), m.group(0)), text)

    def learn(recorded: Answer, lab: Answer) -> None:
        # Server-chosen ids (WinRS ShellId and CommandId) map recorded -> lab by position.
        for tag in ("ShellId", "CommandId"):
            rec = [e.text for e in recorded.root.iter() if local(e.tag) == tag] if recorded.root is not None else []
            got = [e.text for e in lab.root.iter() if local(e.tag) == tag] if lab.root is not None else []
            for r, g in zip(rec, got):
                if r and g and r.upper() != g.upper():
                    ids[r.upper()] = g.upper()

    def target_of(req: str) -> str | None:
        m = re.search(r'DesiredStream CommandId="([^"]+)"', req)
        return m.group(1).upper() if m else None

    def absorb(answer: Answer, log: _TargetLog, recorded: bool) -> None:
        types = log.recorded_types if recorded else log.lab_types
        names = log.recorded_streams if recorded else log.lab_streams
        elements = log.recorded_elements if recorded else log.lab_elements
        if answer.fault is not None:
            return  # faults are compared where they happen, not folded into the stream
        for _cid, name, ptypes in answer.streams:
            if log.psrp:
                types.extend(ptypes)
            names.add(name)
        elements.update(answer.elements - {"Stream"})
        if answer.state is not None:
            value = (answer.state[1], answer.state[2])
            if recorded:
                log.recorded_state = value
            else:
                log.lab_state = value

    for index, message in enumerate(messages):
        if pause is not None:
            pause(index)
        req_text = message["request"]
        action = request_action(req_text)
        if message.get("http_error") is not None or "response" not in message:
            skipped.append(index)  # the recording has no answer from Windows to compare with
            continue
        rec_status = message.get("transport_error", {}).get("code", 200) if message.get("transport_error") else 200
        if rec_status == 200 and "<s:Fault" in (message.get("response") or ""):
            # Windows sends every WS-Management fault with HTTP 500 (all other recorded faults carry it); one
            # hand-assembled recording (psrp_long_running_cmdlet #4) left the status out.
            rec_status = 500
        recorded = parse_answer(rec_status, message.get("response", ""))
        lab_req = rewrite(req_text)
        if action == "Receive":
            key = target_of(lab_req)
            log = targets.setdefault(key, _TargetLog())
            log.psrp = "schemas.microsoft.com/powershell/" in req_text
            _replay_receive(index, req_text, lab_req, recorded, log, key, handle, absorb, mismatches)
            continue
        status, body = handle(lab_req.encode())
        lab = parse_answer(status, body.decode())
        if action in ("Create", "Command"):
            learn(recorded, lab)  # only these answers carry ids the server chose; Enumerate lists known ones
        if (recorded.status, recorded.action, recorded.fault) != (lab.status, lab.action, lab.fault):
            mismatches.append(
                f"#{index} {action}: recorded {recorded.status} {recorded.action} {recorded.fault} != "
                f"lab {lab.status} {lab.action} {lab.fault}"
            )
        elif recorded.elements != lab.elements:
            missing = sorted(recorded.elements - lab.elements)
            extra = sorted(lab.elements - recorded.elements)
            mismatches.append(f"#{index} {action}: body elements missing {missing} extra {extra}")
        if action == "Create":
            m = re.search(r"<creationXml[^>]*>([^<]*)<", req_text)
            if m is None:
                continue
    for key, log in targets.items():
        name = key or "pool"
        if log.recorded_timeouts and not set(log.recorded_timeouts) & set(log.lab_timeouts):
            mismatches.append(
                f"Receive[{name}]: Windows answered {sorted(set(log.recorded_timeouts))}, the lab {sorted(set(log.lab_timeouts))}"
            )
        if log.recorded_types != log.lab_types:
            mismatches.append(
                f"Receive[{name}]: PSRP types {[hex(x) for x in log.recorded_types]} != lab {[hex(x) for x in log.lab_types]}"
            )
        if log.recorded_streams != log.lab_streams:
            mismatches.append(f"Receive[{name}]: streams {sorted(log.recorded_streams)} != lab {sorted(log.lab_streams)}")
        if log.recorded_state != log.lab_state:
            mismatches.append(f"Receive[{name}]: CommandState {log.recorded_state} != lab {log.lab_state}")
        if log.recorded_elements != log.lab_elements:
            mismatches.append(
                f"Receive[{name}]: elements missing {sorted(log.recorded_elements - log.lab_elements)} "
                f"extra {sorted(log.lab_elements - log.recorded_elements)}"
            )
    return Result(path.stem, not mismatches, len(messages), mismatches)
