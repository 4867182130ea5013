"""PSRP Runspace Pools of the simulated Windows host, on psrpcore's server side.

psrpcore does the PSRP state machine, (de)serialisation and fragmentation; this module moves
its payloads in and out of WS-Management Create/Command/Send/Receive/Signal and runs each
pipeline's commands on the lab engine in a thread of its own, fed by a queue of input.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import queue
import struct
import threading
import time
import typing as t
import uuid

import psrpcore
import psrpcore._payload
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSCustomObject,
    PSInvocationState,
    PSRPMessageType,
    RunspacePoolState,
)

from tests.lab import _internal, _soap
from tests.lab._psrp_streams import PipelineFailed, PipelineStopped, PipelineStreams, _from_ps, merged_streams
from tests.lab._soap import NS, el
from tests.lab._winrs import (
    COMMAND_STATE_DONE,
    RECEIVE_OVERHEAD,
    SIGNAL_CTRL_C,
    SIGNAL_PS_CRTL_C,
    SIGNAL_PS_CTRL_C,
    SIGNAL_TERMINATE,
    Shell,
)

log = logging.getLogger(__name__)

_END = object()
# Unread pipeline input past which a Send waits for the script to read (see send()); and how long it waits for any
# progress before answering anyway, as it must for a script that reads its input late or never.
_INPUT_BACKLOG_BYTES = 64 << 20
_INPUT_PROGRESS_S = 5.0
# ... and before its script has read anything: this interpreter can take seconds to reach the line that reads
# (ansible-core's exec_wrapper runs first), where .NET takes milliseconds.
_INPUT_FIRST_READ_S = 30.0
_START_FRAGMENT = 0x1  # PSRP fragment header flags (MS-PSRP 2.2.4)
_END_FRAGMENT = 0x2


def _split_fragments(data: bytes) -> list[bytes]:
    """A psrpcore payload may carry several fragments; Windows sends one per rsp:Stream element."""
    out = []
    while data:
        (length,) = struct.unpack(">I", data[17:21])
        out.append(data[: 21 + length])
        data = data[21 + length :]
    return out


def _ci(event: t.Any) -> int:
    """The call id of a runspace-availability request; pypsrp spells the property CI, MS-PSRP says ci."""
    obj = event._ps_object
    return int(getattr(obj, "ci", None) if hasattr(obj, "ci") else getattr(obj, "CI"))


class _LabRunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server pool, reading the call id of availability requests in either spelling."""

    def _process_GetAvailableRunspaces(self, event: t.Any) -> None:
        self._ci_events[_ci(event)] = event
        self._ci_handlers[_ci(event)] = None

    def _process_ResetRunspaceState(self, event: t.Any) -> None:
        self._ci_events[_ci(event)] = event
        self._ci_handlers[_ci(event)] = None

    def _process_SetMaxRunspaces(self, event: t.Any) -> None:
        count = int(event._ps_object.MaxRunspaces)
        self._ci_events[_ci(event)] = event
        self._ci_handlers[_ci(event)] = lambda e: setattr(self, "_max_runspaces", count)

    def _process_SetMinRunspaces(self, event: t.Any) -> None:
        count = int(event._ps_object.MinRunspaces)
        self._ci_events[_ci(event)] = event
        self._ci_handlers[_ci(event)] = lambda e: setattr(self, "_min_runspaces", count)

    # A new client connecting to a disconnected pool (MS-PSRP 3.1.4.10.1) gets SESSION_CAPABILITY and
    # RUNSPACEPOOL_INIT_DATA in the Connect answer, then APPLICATION_PRIVATE_DATA and no RUNSPACEPOOL_STATE
    # (recorded: test_psrp_disconnected_commands #13/#14); psrpcore sends no capability and a state there.
    def _process_SessionCapability(self, event: t.Any) -> None:
        connecting = self.state == RunspacePoolState.Connecting
        super()._process_SessionCapability(event)
        if connecting:
            self.prepare_message(self.our_capability)

    def _process_ConnectRunspacePool(self, event: t.Any) -> None:
        self._max_runspaces = event.max_runspaces or self.max_runspaces
        self._min_runspaces = event.min_runspaces or self.min_runspaces
        self.prepare_message(
            psrpcore.types.RunspacePoolInitData(MinRunspaces=self.min_runspaces, MaxRunspaces=self.max_runspaces)
        )
        self.prepare_message(
            psrpcore.types.ApplicationPrivateData(ApplicationPrivateData=self.application_private_data)
        )
        self._change_state(RunspacePoolState.Opened, emit=False)


_CONNECT_ANSWER = (PSRPMessageType.SessionCapability.value, PSRPMessageType.RunspacePoolInitData.value)


def _fragment_message_type(fragment: bytes) -> int | None:
    """The PSRP message type a start fragment carries (None for a continuation fragment)."""
    if len(fragment) < 21 + 8 or not fragment[16] & _START_FRAGMENT:
        return None
    return int(struct.unpack("<I", fragment[25:29])[0])


def _input_size(value: object) -> int:
    """What one deserialized input object costs the process: strings are UTF-16 in .NET."""
    if isinstance(value, str):
        return 24 + 2 * len(value)
    if isinstance(value, (bytes, bytearray)):
        return 24 + len(value)
    return 64


def _history_line(commands: list[t.Any]) -> str:
    """A pipeline's line in Get-History: its commands as written, statements joined by '; '."""
    statements: list[list[str]] = [[]]
    for cmd in commands:
        statements[-1].append(cmd.command_text)
        if cmd.end_of_statement:
            statements.append([])
    return "; ".join(" | ".join(s) for s in statements if s)


def _message_pid(data: bytes) -> uuid.UUID | None:
    """The pipeline id in the first PSRP message of a payload, as psrpcore will read it."""
    if len(data) < 21 + 40:
        return None
    message = psrpcore._payload.unpack_message(bytearray(data[21:]))
    return message.pid


class InputQuota:
    """What Windows counts of the data one command receives, and the fault it answers past a quota.

    PowerShell's server-side PriorityReceiveDataCollection of the command's transport manager: every raw
    chunk it is handed (the CREATE_PIPELINE in the Command's Arguments, each Send's stream, fragment headers
    included) counts against the deserializer's MaximumAllowedMemory (MaximumReceivedDataSizePerCommandMB)
    before it is processed, and each object's fragments against MaximumReceivedObjectSizeMB as they come.
    The deserializer's small extra accounting (type-name clones, XmlDocument values) is not modelled.
    """

    def __init__(self, configuration: str, data_cap: int | None, object_cap: int | None) -> None:
        self.configuration = configuration
        self.maximum_allowed_memory = data_cap  # None once lifted (or never set)
        self.received = 0
        self.object_cap = object_cap
        self.object_size = 0

    def account(self, data: bytes) -> None:
        """Counts one chunk of raw data; raises the plugin's fault when it goes past a quota."""
        cap = self.maximum_allowed_memory
        if cap is not None:
            if len(data) > cap - self.received:
                raise _soap.received_data_exceeded(self.configuration, cap)
            self.received += len(data)
        if self.object_cap is None:
            return
        offset = 0
        while offset + 21 <= len(data):
            _oid, _fid, flags, length = struct.unpack(">QQBI", data[offset : offset + 21])
            if flags & _START_FRAGMENT:
                self.object_size = 0
            total = self.object_size + 21 + length
            if total > self.object_cap:
                self.object_size = 0
                raise _soap.received_object_exceeded(self.configuration, total, self.object_cap)
            self.object_size = 0 if flags & _END_FRAGMENT else total
            offset += 21 + length


class _Pipeline:
    def __init__(self, server: psrpcore.ServerPipeline, command_id: str, quota: InputQuota,
                 consumed: t.Callable[[int], None] = lambda n: None) -> None:
        self.server = server
        self.command_id = command_id
        self.quota = quota
        self.consumed = consumed  # the input's bytes leave the process' memory once its script read them
        self.input: queue.Queue[object] = queue.Queue()
        self.stopped = False
        self.finished = False  # final PIPELINE_STATE queued
        self.held = False  # a fault switch holds it Running until stopped or the shell closes
        self.unpaced = False  # its script stopped reading for _INPUT_PROGRESS_S: its Sends no longer wait
        self.read_any = False  # its script has read input (the pacing's first wait is longer until then)
        self.host_null = True
        self.thread: threading.Thread | None = None
        # The fault that closed this command (an input quota): Windows answers every later Send and
        # Receive of the command with it (WSManPluginServerSession reports lastErrorReported once closed).
        self.closed_by: _soap.WSManFault | None = None

    def input_iter(self) -> t.Iterator[object]:
        while True:
            item = self.input.get()
            if item is _END:
                return
            data, size = t.cast(tuple[object, int], item)
            self.read_any = True
            self.consumed(size)
            yield _from_ps(data)


class PSRPPool(Shell):
    """One Runspace Pool: a shell whose resource URI is http://schemas.microsoft.com/powershell/<name>."""

    kind = "psrp"

    def __init__(
        self,
        *args: t.Any,
        engine: t.Any,
        computer_name: str,
        max_envelope_size: int,
        configuration: str = "Microsoft.PowerShell",
        input_caps: t.Callable[[], tuple[int | None, int | None]] = lambda: (None, None),
        memory_limit: t.Callable[[], int | None] = lambda: None,
        on_killed: t.Callable[[], None] = lambda: None,
        counters: t.Any = None,
        holds: t.Callable[[str], bool] | None = None,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engine = engine
        self.counters = counters
        self.holds = holds
        self.computer_name = computer_name
        self.configuration = configuration
        # (MaximumReceivedDataSizePerCommand, MaximumReceivedObjectSize) in bytes, read when a command starts.
        self.input_caps = input_caps
        # MaxMemoryPerShellMB in bytes (None: no limit), read at each check; on_killed counts a killed process.
        self.memory_limit = memory_limit
        self.on_killed = on_killed
        self.killed_by: _soap.WSManFault | None = None  # the fault every request gets once the process died
        self.out_bytes = 0  # output fragments queued for the client
        self.input_bytes = 0  # pipeline input received and not yet read by its script
        self.input_peak = 0  # the most input_bytes was after a Send (the lab's pacing keeps it near 64 MiB)
        self._checked_at = 0  # out_bytes + input_bytes when memory was last weighed
        if callable(getattr(engine, "watch_memory", None)):
            engine.watch_memory(self._engine_grew)
        # Fragments are cut so one fits in a Receive answer of the size the client negotiated.
        self.fragment_size = max(64, (max_envelope_size - RECEIVE_OVERHEAD) * 3 // 4 - 64)
        self.server = _LabRunspacePool(
            application_private_data={"PSVersionTable": {"PSVersion": psrpcore.types.PSVersion("5.1.17763.1")}}
        )
        self.pipelines: dict[str, _Pipeline] = {}
        self.out: dict[str | None, list[bytes]] = {None: []}
        self.pid_to_command: dict[uuid.UUID, str] = {}
        self.disconnected = False
        self.client_session: str | None = None  # wsmv:SessionId of the client the pool is connected to
        self._runspaces: list[t.Any] = []  # every runspace this pool's process opened (engine Runspace objects)
        self._idle: list[t.Any] = []  # the available ones, the last released on top

    # -- psrpcore plumbing (all under self.cond) -------------------------------------------------
    def flush(self) -> None:
        """Move every queued psrpcore payload into the per-target outgoing fragment queues."""
        while True:
            payload = self.server.data_to_send(self.fragment_size)
            if payload is None:
                break
            key = self._command_of(payload.pipeline_id)
            self.out.setdefault(key, []).extend(_split_fragments(payload.data))
            self.out_bytes += len(payload.data)
        self.cond.notify_all()
        self._check_memory()

    def _command_of(self, pipeline_id: uuid.UUID | None) -> str | None:
        if pipeline_id is None:
            return None
        return self.pid_to_command.get(pipeline_id, str(pipeline_id).upper())

    def _feed(self, data: bytes, pipeline_id: uuid.UUID | None, stream: str = "stdin", flush: bool = True) -> None:
        stream_type = psrpcore.StreamType.prompt_response if stream == "pr" else psrpcore.StreamType.default
        self.server.receive_data(psrpcore.PSRPPayload(data, stream_type, pipeline_id))
        while True:
            event = self.server.next_event()
            if event is None:
                break
            self._on_event(event)
        if flush:
            self.flush()

    def _on_event(self, event: t.Any) -> None:
        name = type(event).__name__
        if name in ("SetMaxRunspacesEvent", "SetMinRunspacesEvent"):
            self.server.runspace_availability_response(_ci(event), True)
        elif name == "ResetRunspaceStateEvent":
            self.server.runspace_availability_response(_ci(event), self._reset_runspace_state())
        elif name == "GetAvailableRunspacesEvent":
            running = sum(1 for p in self.pipelines.values() if not p.finished)
            self.server.runspace_availability_response(_ci(event), max(0, self.server.max_runspaces - running))
        elif name == "CreatePipelineEvent":
            self._start_pipeline(event)
        elif name == "GetCommandMetadataEvent":
            self._command_metadata(event)
        elif name == "PipelineInputEvent":
            pipe = self.pipelines.get(self._command_of(event.pipeline_id) or "")
            if pipe is not None:
                size = _input_size(event.data)
                pipe.input.put((event.data, size))
                self.input_bytes += size
        elif name == "EndOfPipelineInputEvent":
            pipe = self.pipelines.get(self._command_of(event.pipeline_id) or "")
            if pipe is not None:
                pipe.input.put(_END)

    # -- WS-Management operations --------------------------------------------------------------
    def open(self, creation_xml: bytes) -> None:
        with self.cond:
            self._feed(creation_xml, None)

    def create_response_extra(self) -> str:
        return (
            el("rsp:ProcessId", str(threading.get_native_id()))
            + el("rsp:IdleTimeOut", _soap.format_duration(self.idle_timeout_s))
            + el("rsp:InputStreams", self.input_streams)
            + el("rsp:OutputStreams", self.output_streams)
            + el("rsp:MaxIdleTimeOut", "PT2147483.647S")
            + el("rsp:Locale", "en-US")
            + el("rsp:DataLocale", "en-US")
            + el("rsp:CompressionMode", "NoCompression")
            + el("rsp:ProfileLoaded", "Yes")
            + el("rsp:Encoding", "UTF8")
            + el("rsp:BufferMode", "Block")
            + el("rsp:State", "Disconnected" if self.disconnected else "Connected")
        )

    # -- Disconnect, Reconnect, Connect (MS-PSRP 3.1.4.9, 3.1.4.10; MS-WSMV 3.1.4.15, 3.1.4.16) ----------
    def disconnect(self, req: _soap.Request) -> str:
        """The pool and its pipelines go on running with their output held; the shell lives on for its
        IdleTimeOut (the Disconnect's own, if it names one) until a client reconnects or connects."""
        body = req.body.find("rsp:Disconnect", NS)
        idle = body.findtext("rsp:IdleTimeOut", default=None, namespaces=NS) if body is not None else None
        with self.cond:
            if idle and (seconds := _soap.parse_duration(idle)):
                self.idle_timeout_s = seconds
            self.disconnected = True
            self.server._change_state(RunspacePoolState.Disconnected)
        return ""

    def reconnect(self, req: _soap.Request) -> str:
        """The client that disconnected resumes (same wsmv:SessionId); a connected shell ignores its own
        client's Reconnect and refuses another's (MS-WSMV 3.1.4.16)."""
        with self.cond:
            if not self.disconnected:
                if req.session_id and self.client_session and req.session_id != self.client_session:
                    raise _soap.internal_error("The shell is connected to another client session. ")
                return ""
            self.disconnected = False
            self.client_session = req.session_id or self.client_session
            self.server._change_state(RunspacePoolState.Opened, emit=False)
        return ""

    def connect(self, req: _soap.Request) -> str:
        """A new client takes over the disconnected pool (connectXml), or one of its commands (CommandId)."""
        body = req.body.find("rsp:Connect", NS)
        command_id = (body.attrib.get("CommandId") or "").upper() if body is not None else ""
        if command_id:
            if command_id not in self.pipelines:
                raise _soap.command_not_found()
            return el("rsp:ConnectResponse")
        xml = body.find("pwsh:connectXml", NS) if body is not None else None
        if xml is None or not self.disconnected:
            raise _soap.internal_error(
                "Connect needs a disconnected Runspace Pool and its connectXml (MS-PSRP 3.1.5.3.17). "
            )
        with self.cond:
            self.server.connect()
            self._feed(base64.b64decode(xml.text or ""), None, flush=False)
            answer: list[bytes] = []
            while (payload := self.server.data_to_send(self.fragment_size)) is not None:
                for fragment in _split_fragments(payload.data):
                    kind = _fragment_message_type(fragment)
                    if payload.pipeline_id is None and kind in _CONNECT_ANSWER:
                        answer.append(fragment)
                    else:
                        self.out.setdefault(self._command_of(payload.pipeline_id), []).append(fragment)
            self.disconnected = False
            self.client_session = req.session_id
            self.cond.notify_all()
        return el(
            "rsp:ConnectResponse",
            children=el("rsp:InputStreams", self.input_streams)
            + el("rsp:OutputStreams", self.output_streams)
            + el("connectResponseXml", base64.b64encode(b"".join(answer)).decode(),
                 {"xmlns": "http://schemas.microsoft.com/powershell"}),
        )

    def commands_xml(self) -> str:
        """This pool's commands as a command Enumerate lists them (rsp:Command items; PSRP has no CommandLine)."""
        with self.cond:
            return "".join(
                el(
                    "rsp:Command",
                    attrs={"xmlns:rsp": NS["rsp"]},
                    children=el("rsp:CommandId", command_id)
                    + el("rsp:CommandLine", "")
                    + el("rsp:CommandState", "Done" if pipe.finished else "Running"),
                )
                for command_id, pipe in self.pipelines.items()
            )

    def _refuse_while_disconnected(self) -> None:
        if self.disconnected:
            raise _soap.internal_error(
                "The shell is disconnected: reconnect (or connect) to it before using it (MS-WSMV 3.1.4.15). "
            )

    def command(self, req: _soap.Request) -> str:
        self._refuse_while_disconnected()
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise _soap.invalid_parameter()
        command_id = (line.attrib.get("CommandId") or _soap.new_id()).upper()
        data = base64.b64decode(line.findtext("rsp:Arguments", default="", namespaces=NS) or "")
        # The PID inside the PSRP message names the pipeline for psrpcore; older clients encode it with a
        # different GUID byte order than the CommandId, and Windows accepts both, so take it from the message.
        pipeline_id = _message_pid(data) or uuid.UUID(command_id)
        quota = InputQuota(self.configuration, *self.input_caps())
        quota.account(data)  # the CREATE_PIPELINE counts as the command's first data, as on Windows
        with self.cond:
            server_pipe = psrpcore.ServerPipeline(self.server, pipeline_id)
            self.pipelines[command_id] = _Pipeline(server_pipe, command_id, quota, self._input_consumed)
            self.pid_to_command[pipeline_id] = command_id
            self.out.setdefault(command_id, [])
            self._feed(data, pipeline_id)
        return el("rsp:CommandResponse", children=el("rsp:CommandId", command_id))

    def send(self, req: _soap.Request) -> str:
        self._refuse_while_disconnected()
        for stream in req.body.findall("rsp:Send/rsp:Stream", NS):
            command_id = (stream.attrib.get("CommandId") or "").upper() or None
            if command_id and command_id not in self.pipelines:
                raise _soap.command_not_found()
            data = base64.b64decode(stream.text or "")
            with self.cond:
                pipe = self.pipelines[command_id] if command_id else None
                if pipe is not None:
                    if pipe.closed_by is not None:
                        raise pipe.closed_by
                    try:
                        pipe.quota.account(data)
                    except _soap.WSManFault as fault:
                        self._close_command(pipe, fault)
                        raise
                self._feed(data, pipe.server.pipeline_id if pipe else None, stream.attrib.get("Name", "stdin"))
                if pipe is not None:
                    self._keep_pace(pipe)
        return el("rsp:SendResponse")

    def _keep_pace(self, pipe: _Pipeline) -> None:
        """Answer a Send once the script has read most of what came before it (under self.cond).

        Windows buffers a pipeline's input without bound (the input PSDataCollection) and its process' memory
        counts it, but a .NET script writes a file faster than WinRM delivers it, so the backlog stays small.
        This interpreter reads far slower, and slower still on a loaded machine: without this wait, whether a
        large upload outgrows MaxMemoryPerShellMB would depend on the lab machine's load, not on what was sent.
        Timing only: nothing is refused, reordered or dropped, and a script that stops reading gets its input
        buffered (and weighed) as on Windows once no progress was made for _INPUT_PROGRESS_S (_INPUT_FIRST_READ_S
        before it read anything).
        """
        self.input_peak = max(self.input_peak, self.input_bytes)
        last = self.input_bytes
        deadline = time.monotonic() + (_INPUT_PROGRESS_S if pipe.read_any else _INPUT_FIRST_READ_S)
        while (self.input_bytes > _INPUT_BACKLOG_BYTES and not pipe.unpaced and not pipe.finished
               and self.killed_by is None):
            if self.input_bytes < last:
                last = self.input_bytes
                deadline = time.monotonic() + _INPUT_PROGRESS_S
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pipe.unpaced = True  # it reads late or never: later Sends are answered at once, as on Windows
                return
            self.cond.wait(min(remaining, 0.5))

    def _close_command(self, pipe: _Pipeline, fault: _soap.WSManFault) -> None:
        """A transport error closes the command (WSManPluginServerSession.Close): its pipeline stops."""
        pipe.closed_by = fault
        pipe.stopped = True
        pipe.finished = True
        pipe.input.put(_END)
        self.cond.notify_all()

    def receive(self, req: _soap.Request, timeout_s: float) -> str:
        self._refuse_while_disconnected()
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = (desired.attrib.get("CommandId") or "").upper() or None if desired is not None else None
        if command_id is not None and command_id not in self.pipelines:
            raise _soap.command_not_found()
        pipe = self.pipelines.get(command_id) if command_id else None
        if pipe is not None and pipe.closed_by is not None:
            raise pipe.closed_by
        queue_ = self.out.setdefault(command_id, [])
        if not self.wait(lambda: bool(queue_) or self.killed_by is not None
                         or (pipe is not None and pipe.closed_by is not None), timeout_s):
            if self.closed:
                raise _soap.shell_not_found(self.id)
            raise _soap.timed_out()
        if self.killed_by is not None:
            raise self.killed_by
        if pipe is not None and pipe.closed_by is not None:
            raise pipe.closed_by
        budget = max(1024, (req.max_envelope_size or 153600) - RECEIVE_OVERHEAD)
        attrs = {"Name": "stdout"} | ({"CommandId": command_id} if command_id else {})
        parts: list[str] = []
        with self.cond:
            while queue_:
                encoded = base64.b64encode(queue_[0]).decode()
                if parts and len(encoded) + 120 > budget:
                    break
                self.out_bytes -= len(queue_.pop(0))
                budget -= len(encoded) + 120
                parts.append(el("rsp:Stream", encoded, attrs))
            if pipe is not None and pipe.finished and not queue_:
                parts.append(
                    el(
                        "rsp:CommandState",
                        attrs={"CommandId": command_id or "", "State": COMMAND_STATE_DONE},
                        children=el("rsp:ExitCode", "0"),
                    )
                )
        return el("rsp:ReceiveResponse", children="".join(parts))

    def signal(self, req: _soap.Request) -> str:
        self._refuse_while_disconnected()
        sig = req.body.find("rsp:Signal", NS)
        command_id = (sig.attrib.get("CommandId") or "").upper() if sig is not None else ""
        code = (sig.findtext("rsp:Code", default="", namespaces=NS) if sig is not None else "").strip()
        pipe = self.pipelines.get(command_id)
        if pipe is None:
            raise _soap.command_not_found()
        with self.cond:
            if code in (SIGNAL_PS_CTRL_C, SIGNAL_PS_CRTL_C, SIGNAL_CTRL_C):
                self._stop(pipe)
            elif code.lower() == SIGNAL_TERMINATE.lower():
                self._stop(pipe, emit=False)
                pipe.server.runspace_pool.pipeline_table.pop(pipe.server.pipeline_id, None)
                self.pid_to_command.pop(pipe.server.pipeline_id, None)
                self.pipelines.pop(command_id, None)
                self.out.pop(command_id, None)
            self.flush()
        return el("rsp:SignalResponse")

    def close(self) -> None:
        with self.cond:
            for pipe in self.pipelines.values():
                pipe.stopped = True
                pipe.input.put(_END)
        super().close()

    # -- pipelines -------------------------------------------------------------------------------
    def running_pipelines(self, held_only: bool = False) -> int:
        """Pipelines still running (neither finished nor stopped): each holds a host operation."""
        with self.cond:
            return sum(1 for p in self.pipelines.values()
                       if not p.finished and not p.stopped and (p.held or not held_only))

    def ending_pipelines(self) -> int:
        """Pipelines stopped or ended whose script still runs on its thread (a stopped script's finally blocks)."""
        with self.cond:
            return sum(1 for p in self.pipelines.values()
                       if (p.finished or p.stopped) and p.thread is not None and p.thread.is_alive())

    def _count(self, name: str) -> None:
        if self.counters is not None:
            self.counters.incr(name)

    def _stop(self, pipe: _Pipeline, emit: bool = True) -> None:
        if pipe.finished:
            return
        pipe.stopped = True
        pipe.input.put(_END)
        self._count("pipelines_stopped")
        if emit and pipe.server.state == PSInvocationState.Running:
            pipe.server.stop()
            pipe.finished = True

    def _start_pipeline(self, event: t.Any) -> None:
        command_id = self._command_of(event.pipeline_id) or ""
        pipe = self.pipelines[command_id]
        metadata = event.pipeline
        host = metadata.host
        use_pool_host = bool(host and host.UseRunspaceHost)
        if use_pool_host:
            pool_host = self.server.host
            pipe.host_null = pool_host is None or bool(pool_host.IsHostNull)
        else:
            pipe.host_null = host is None or bool(host.IsHostNull)
        if metadata.no_input:
            pipe.input.put(_END)
        self._count("pipelines_started")  # the host runs the script: what "never run twice" counts
        if self.counters is not None:  # which script: a test counts the runs of one (its SHA-256, never its text)
            first = str(metadata.commands[0].command_text) if metadata.commands else ""
            self.counters.record(kind="pipeline", command=command_id,
                                 script_sha256=hashlib.sha256(first.encode("utf-8")).hexdigest())
        if self.holds is not None and any(self.holds(str(cmd.command_text)) for cmd in metadata.commands):
            pipe.held = True
            self._count("pipelines_held")
        # Windows sends no Running state: the client learns only the final PIPELINE_STATE.
        pipe.server._change_state(PSInvocationState.Running, emit=False)
        pipe.thread = threading.Thread(
            target=self._run, args=(pipe, metadata), name=f"psrp-{command_id[:8]}", daemon=True
        )
        pipe.thread.start()

    # -- MaxMemoryPerShellMB: what the process holds, and its end when that passes the quota -------------------
    def memory_bytes(self) -> int:
        """The process' memory: the engine's (PowerShell loaded, runspaces' variables, modules) plus the pipeline
        input received and not yet read and the output not yet received by the client."""
        engine = getattr(self.engine, "memory_bytes", None)
        return (engine() if callable(engine) else 0) + self.input_bytes + self.out_bytes

    def _input_consumed(self, size: int) -> None:
        with self.cond:
            self.input_bytes -= size
            self.cond.notify_all()  # a Send may be waiting for the script to keep pace (_keep_pace)

    def _engine_grew(self) -> None:
        """The engine's run took much more memory: weigh the process now; if it died, its run ends here."""
        with self.cond:
            self._check_memory(force=True)
            if self.killed_by is not None:
                raise PipelineStopped()

    def _check_memory(self, force: bool = False) -> None:
        """Ends the process once it holds more than MaxMemoryPerShellMB, as the job object WinRM puts a shell's
        processes in makes their allocations fail (under self.cond; cheap unless buffers grew by 8 MiB)."""
        buffered = self.out_bytes + self.input_bytes
        if self.killed_by is not None or (not force and abs(buffered - self._checked_at) < (8 << 20)):
            return
        self._checked_at = buffered
        limit = self.memory_limit()
        if limit is None or self.memory_bytes() <= limit:
            return
        log.info("pool %s holds %d MiB (unread input %d MiB, unreceived output %d MiB), over MaxMemoryPerShellMB: "
                 "its process ends", self.id, self.memory_bytes() >> 20, self.input_bytes >> 20, self.out_bytes >> 20)
        self.killed_by = _soap.provider_host_died()
        for pipe in self.pipelines.values():
            pipe.stopped = True
            pipe.finished = True
            pipe.input.put(_END)
        self.cond.notify_all()
        self.on_killed()

    def memory_used_mb(self) -> int:
        """rsp:MemoryUsed as Get and Enumerate report it."""
        with self.cond:
            return self.memory_bytes() >> 20

    # -- runspaces (RunspacePoolInternal: a stack of available runspaces, opened up to MaxRunspaces) --------
    def _acquire_runspace(self, pipe: _Pipeline, nested: bool) -> tuple[t.Any, bool]:
        """The runspace a pipeline runs in, and whether this pipeline holds it (a nested one joins a busy one).

        A pipeline waits while every runspace the pool may open is busy, as Windows queues it.
        """
        if not callable(getattr(self.engine, "new_runspace", None)):
            return None, False
        with self.cond:
            if nested:
                # a nested pipeline runs inside the running one (IsNested): give a pipeline that just arrived
                # ahead of it the moment to start running (bounded), then join its runspace
                def running() -> list[t.Any]:
                    return [rs for rs in self._runspaces if rs.busy and getattr(rs, "running", True)]

                deadline = time.monotonic() + 5
                while not running() and not (self.closed or pipe.stopped) and time.monotonic() < deadline:
                    self.cond.wait(0.02)  # the engine marks its run outside this lock: look again shortly
                if running():
                    return running()[-1], False
            while True:
                if pipe.stopped or self.closed:
                    raise PipelineStopped()
                if self._idle:
                    runspace = self._idle.pop()
                    break
                if len(self._runspaces) < max(1, int(self.server.max_runspaces or 1)):
                    runspace = self.engine.new_runspace()
                    self._runspaces.append(runspace)
                    break
                self.cond.wait()
            runspace.busy = True
            return runspace, True

    def _release_runspace(self, runspace: t.Any) -> None:
        with self.cond:
            runspace.busy = False
            self._idle.append(runspace)
            self.cond.notify_all()

    def _reset_runspace_state(self) -> bool:
        """RESET_RUNSPACE_STATE (protocol 2.3): ServerRunspacePoolDriver.ResetRunspaceState answers false for a
        pool of more than one runspace and when its runspace is busy (ConcurrentInvokeNotAllowed), else
        resets it (LocalRunspace.ResetRunspaceState; what that resets: tests/lab/pwsh/runspace.py)."""
        if int(self.server.max_runspaces or 1) > 1:
            return False
        if not callable(getattr(self.engine, "new_runspace", None)):
            return True
        if not self._runspaces:
            runspace = self.engine.new_runspace()
            self._runspaces.append(runspace)
            self._idle.append(runspace)
        runspace = self._runspaces[0]
        if runspace.busy:
            return False
        runspace.reset()
        return True

    def _command_metadata(self, event: t.Any) -> None:
        # The engine has no command table to describe: answer as a host with no matching command.
        pipe = self.pipelines[self._command_of(event.pipeline_id) or ""]
        pipe.server._change_state(PSInvocationState.Running, emit=False)
        pipe.server.write_output(PSCustomObject(PSTypeName="Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo", Count=0))
        pipe.server.complete()
        pipe.finished = True

    def _run(self, pipe: _Pipeline, metadata: t.Any) -> None:
        commands: list[t.Any] = metadata.commands
        failure: ErrorRecord | None = None
        if pipe.held:
            # a command that runs until the client stops it: nothing is sent, the pipeline stays Running
            self.wait(lambda: pipe.stopped, timeout_s=86400.0)
            return
        started = datetime.datetime.now()
        try:
            runspace, holds = self._acquire_runspace(pipe, bool(metadata.is_nested))
        except PipelineStopped:
            return
        status = "Stopped"
        try:
            self._run_statements(pipe, commands, runspace)
            status = "Completed"
        except PipelineStopped:
            return
        except PipelineFailed as e:
            failure = e.record
            status = "Failed"
        except Exception as e:  # the lab's own bug (PowerShell's errors are PSError, handled by the engine): counted,
            # and the pipeline fails as PowerShell's would on an internal error
            _internal.lab_bug(f"pipeline {pipe.command_id}", e, host=self.computer_name, counters=self.counters)
            status = "Failed"
            failure = ErrorRecord(
                Exception=NETException(Message=str(e)),
                CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotSpecified, Reason=type(e).__name__),
                FullyQualifiedErrorId=getattr(e, "fq_error_id", None) or type(e).__name__,
            )
        finally:
            if runspace is not None:
                if metadata.add_to_history:
                    runspace.add_history(_history_line(commands), status, started, datetime.datetime.now())
                if holds:
                    self._release_runspace(runspace)
        with self.cond:
            if pipe.stopped or pipe.finished or self.closed:
                return
            if failure is None:
                pipe.server.complete()
            else:
                pipe.server._change_state(PSInvocationState.Failed, error=failure)
            pipe.finished = True
            self.flush()

    def _run_statements(self, pipe: _Pipeline, commands: list[t.Any], runspace: t.Any) -> None:
        """Runs the pipeline's statements on the engine, each command's output feeding the next of its statement."""
        statements: list[list[t.Any]] = [[]]
        for cmd in commands:
            statements[-1].append(cmd)
            if cmd.end_of_statement:
                statements.append([])
        first = True
        for statement in (s for s in statements if s):
            feed: t.Iterable[object] = pipe.input_iter() if first else iter(())
            first = False
            for index, cmd in enumerate(statement):
                last = index == len(statement) - 1
                captured: list[object] | None = None if last else []
                streams = PipelineStreams(self, pipe, captured, merged_streams(cmd))
                # Named parameters as (name, value) tuples: a positional "-Name" string stays positional.
                arguments: list[object] = [
                    (name, _from_ps(value)) if name else _from_ps(value) for name, value in cmd.parameters
                ]
                if runspace is None:  # an engine without runspaces (the service tests' stand-in)
                    self.engine.run_powershell(
                        cmd.command_text, arguments, feed, streams, is_command=not cmd.is_script
                    )
                else:
                    self.engine.run_powershell(
                        cmd.command_text, arguments, feed, streams, is_command=not cmd.is_script,
                        runspace=runspace, local_scope=bool(cmd.use_local_scope),
                    )
                feed = iter(captured or [])

    @property
    def state(self) -> RunspacePoolState:
        return self.server.state
