"""PSRP Runspace Pools of the simulated Windows host, on psrpcore's server side.

psrpcore does the PSRP state machine, (de)serialisation and fragmentation; this module moves
its payloads in and out of WS-Management Create/Command/Send/Receive/Signal and runs each
pipeline's commands on the lab engine in a thread of its own, fed by a queue of input.
"""

from __future__ import annotations

import base64
import logging
import queue
import struct
import threading
import types
import typing as t
import uuid

import psrpcore
import psrpcore._payload
from psrpcore.types import (
    CommandOrigin,
    CommandTypes,
    DebugRecord,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    HostMethodIdentifier,
    InvocationInfo,
    NETException,
    PSCustomObject,
    PSDict,
    PSInvocationState,
    PSList,
    PSRPMessageType,
    ProgressRecordType,
    RunspacePoolState,
    SessionStateEntryVisibility,
    VerboseRecord,
    WarningRecord,
)

from tests.lab import _soap
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


class PipelineStopped(Exception):
    """Raised into the engine's thread when the client stopped the pipeline."""


class PipelineFailed(Exception):
    """A terminating error ends the pipeline: its record goes to the final PIPELINE_STATE (Failed)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(str(record.Exception.Message))
        self.record = record


def error_record(record: t.Any) -> ErrorRecord:
    """The engine's ErrorInfo as the ErrorRecord PowerShell serialises (exception type, category, invocation)."""
    category = getattr(record, "category", None)
    try:
        cat = ErrorCategory[category] if isinstance(category, str) else ErrorCategory(int(category or 0))
    except (KeyError, ValueError):
        cat = ErrorCategory.NotSpecified
    message = str(getattr(record, "message", record))
    exception_type = getattr(record, "exception_type", None) or "System.Management.Automation.RuntimeException"
    exception = NETException(Message=message)
    # The client reads the .NET type of the exception from its type names, most derived first.
    exception.PSObject.type_names = [exception_type, *[n for n in exception.PSTypeNames if n != exception_type]]
    target = getattr(record, "target", None)
    command_name = getattr(record, "command_name", None) or ""
    position = getattr(record, "position", None)
    info = ErrorCategoryInfo(
        Category=cat,
        Activity=command_name,
        Reason=getattr(record, "reason", None) or exception_type.rsplit(".", 1)[-1],
        TargetName=str(target or ""),
        TargetType="String" if target else "",
    )
    invocation = None
    if command_name or position:
        invocation = InvocationInfo(
            BoundParameters=PSDict(), CommandOrigin=CommandOrigin.Internal, ExpectingInput=False,
            HistoryId=1, InvocationName=command_name, Line="", OffsetInLine=0, PipelineLength=0,
            PipelinePosition=0, PositionMessage=position or "", PSCommandPath="", PSScriptRoot="",
            ScriptLineNumber=0, ScriptName="", UnboundArguments=PSList(),
            # psrpcore serialises MyCommand from these four attributes only.
            MyCommand=types.SimpleNamespace(CommandType=CommandTypes.Cmdlet, Name=command_name, Definition="",
                                            Visibility=SessionStateEntryVisibility.Public) if command_name else None,
        )
    value = ErrorRecord(
        Exception=exception,
        CategoryInfo=info,
        TargetObject=target,
        FullyQualifiedErrorId=getattr(record, "fq_error_id", None) or "NotSpecified",
        InvocationInfo=invocation,
    )
    value.serialize_extended_info = invocation is not None
    return value


def _to_ps(value: object) -> object:
    """Engine values -> what psrpcore serialises: dict is a PSCustomObject, lists recurse."""
    if isinstance(value, dict):
        return PSCustomObject(**{str(k): _to_ps(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return [_to_ps(v) for v in value]
    return value


def _from_ps(value: object) -> object:
    """Deserialised input -> plain Python for the engine (PSObjects keep their adapted value)."""
    if isinstance(value, PSCustomObject):
        return {k: _from_ps(getattr(value, k)) for k in value.PSObject.extended_properties}  # type: ignore[attr-defined]
    return value


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


def _message_pid(data: bytes) -> uuid.UUID | None:
    """The pipeline id in the first PSRP message of a payload, as psrpcore will read it."""
    if len(data) < 21 + 40:
        return None
    message = psrpcore._payload.unpack_message(bytearray(data[21:]))
    return message.pid


class _Streams:
    """The engine's Streams protocol, writing into one psrpcore ServerPipeline."""

    def __init__(self, pool: PSRPPool, pipeline: _Pipeline, capture: list[object] | None) -> None:
        self._pool = pool
        self._pipe = pipeline
        self._capture = capture  # output of a command that feeds the next one in the statement

    def _write(self, fn: t.Callable[[], None]) -> None:
        with self._pool.cond:
            if self._pipe.stopped or self._pool.closed:
                raise PipelineStopped()
            fn()
            self._pool.flush()

    def output(self, value: object) -> None:
        if self._capture is not None:
            if self._pipe.stopped:
                raise PipelineStopped()
            self._capture.append(value)
            return
        self._write(lambda: self._pipe.server.write_output(_to_ps(value)))

    def error(self, record: t.Any) -> None:
        value = error_record(record)
        self._write(lambda: self._pipe.server.prepare_message(value, message_type=PSRPMessageType.ErrorRecord))

    def terminating_error(self, record: t.Any) -> None:
        """An uncaught error: Windows fails the pipeline and sends the record in PIPELINE_STATE, not the error stream."""
        raise PipelineFailed(error_record(record))

    def _informational(self, record_type: type, message_type: t.Any, message: str) -> None:
        # PowerShell serialises these records with their message as ToString, which clients print.
        value = record_type(Message=message, InvocationInfo=None, PipelineIterationInfo=None)
        value.PSObject.to_string = message
        self._write(lambda: self._pipe.server.prepare_message(value, message_type=message_type))

    def warning(self, message: str) -> None:
        self._informational(WarningRecord, PSRPMessageType.WarningRecord, message)

    def debug(self, message: str) -> None:
        self._informational(DebugRecord, PSRPMessageType.DebugRecord, message)

    def information(self, message_data: object, tags: list[str]) -> None:
        self._write(
            lambda: self._pipe.server.write_information(
                _to_ps(message_data), "Write-Information", tags=tags, computer=self._pool.computer_name,
                user=self._pool.owner,
            )
        )

    def progress(self, *, activity: str, status: str, activity_id: int = 0, percent_complete: int = -1,
                 seconds_remaining: int = -1, parent_id: int = -1, current_operation: str | None = None,
                 completed: bool = False) -> None:
        record_type = ProgressRecordType.Completed if completed else ProgressRecordType.Processing
        self._write(
            lambda: self._pipe.server.write_progress(
                activity, activity_id, status, current_operation=current_operation, parent_activity_id=parent_id,
                percent_complete=percent_complete, record_type=record_type, seconds_remaining=seconds_remaining,
            )
        )

    def verbose(self, message: str) -> None:
        self._informational(VerboseRecord, PSRPMessageType.VerboseRecord, message)

    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None:
        if self._pipe.host_null:
            # Without a client host PowerShell 5.1 sends Write-Host as an information record tagged PSHOST.
            data = text if not newline else text
            self._write(
                lambda: self._pipe.server.write_information(
                    data, "Write-Host", tags=["PSHOST"], computer=self._pool.computer_name, user=self._pool.owner
                )
            )
            return
        if to_stderr:
            method, params = HostMethodIdentifier.WriteErrorLine, [text]
        elif newline:
            method, params = HostMethodIdentifier.WriteLine2, [text]
        else:
            method, params = HostMethodIdentifier.Write1, [text]
        self._write(lambda: self._pipe.server.host_call(method, params))

    def set_should_exit(self, code: int) -> None:
        if self._pipe.host_null:
            return
        self._write(lambda: self._pipe.server.host_call(HostMethodIdentifier.SetShouldExit, [int(code)]))


class _Pipeline:
    def __init__(self, server: psrpcore.ServerPipeline, command_id: str) -> None:
        self.server = server
        self.command_id = command_id
        self.input: queue.Queue[object] = queue.Queue()
        self.stopped = False
        self.finished = False  # final PIPELINE_STATE queued
        self.held = False  # a fault switch holds it Running until stopped or the shell closes
        self.host_null = True
        self.thread: threading.Thread | None = None

    def input_iter(self) -> t.Iterator[object]:
        while True:
            item = self.input.get()
            if item is _END:
                return
            yield _from_ps(item)


class PSRPPool(Shell):
    """One Runspace Pool: a shell whose resource URI is http://schemas.microsoft.com/powershell/<name>."""

    kind = "psrp"

    def __init__(
        self,
        *args: t.Any,
        engine: t.Any,
        computer_name: str,
        max_envelope_size: int,
        counters: t.Any = None,
        holds: t.Callable[[str], bool] | None = None,
        **kwargs: t.Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engine = engine
        self.counters = counters
        self.holds = holds
        self.computer_name = computer_name
        # Fragments are cut so one fits in a Receive answer of the size the client negotiated.
        self.fragment_size = max(64, (max_envelope_size - RECEIVE_OVERHEAD) * 3 // 4 - 64)
        self.server = _LabRunspacePool(
            application_private_data={"PSVersionTable": {"PSVersion": psrpcore.types.PSVersion("5.1.17763.1")}}
        )
        self.pipelines: dict[str, _Pipeline] = {}
        self.out: dict[str | None, list[bytes]] = {None: []}
        self.pid_to_command: dict[uuid.UUID, str] = {}

    # -- psrpcore plumbing (all under self.cond) -------------------------------------------------
    def flush(self) -> None:
        """Move every queued psrpcore payload into the per-target outgoing fragment queues."""
        while True:
            payload = self.server.data_to_send(self.fragment_size)
            if payload is None:
                break
            key = self._command_of(payload.pipeline_id)
            self.out.setdefault(key, []).extend(_split_fragments(payload.data))
        self.cond.notify_all()

    def _command_of(self, pipeline_id: uuid.UUID | None) -> str | None:
        if pipeline_id is None:
            return None
        return self.pid_to_command.get(pipeline_id, str(pipeline_id).upper())

    def _feed(self, data: bytes, pipeline_id: uuid.UUID | None, stream: str = "stdin") -> None:
        stream_type = psrpcore.StreamType.prompt_response if stream == "pr" else psrpcore.StreamType.default
        self.server.receive_data(psrpcore.PSRPPayload(data, stream_type, pipeline_id))
        while True:
            event = self.server.next_event()
            if event is None:
                break
            self._on_event(event)
        self.flush()

    def _on_event(self, event: t.Any) -> None:
        name = type(event).__name__
        if name in ("SetMaxRunspacesEvent", "SetMinRunspacesEvent", "ResetRunspaceStateEvent"):
            self.server.runspace_availability_response(_ci(event), True)
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
                pipe.input.put(event.data)
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
            + el("rsp:State", "Connected")
        )

    def command(self, req: _soap.Request) -> str:
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise _soap.invalid_parameter()
        command_id = (line.attrib.get("CommandId") or _soap.new_id()).upper()
        data = base64.b64decode(line.findtext("rsp:Arguments", default="", namespaces=NS) or "")
        # The PID inside the PSRP message names the pipeline for psrpcore; older clients encode it with a
        # different GUID byte order than the CommandId, and Windows accepts both, so take it from the message.
        pipeline_id = _message_pid(data) or uuid.UUID(command_id)
        with self.cond:
            server_pipe = psrpcore.ServerPipeline(self.server, pipeline_id)
            self.pipelines[command_id] = _Pipeline(server_pipe, command_id)
            self.pid_to_command[pipeline_id] = command_id
            self.out.setdefault(command_id, [])
            self._feed(data, pipeline_id)
        return el("rsp:CommandResponse", children=el("rsp:CommandId", command_id))

    def send(self, req: _soap.Request) -> str:
        for stream in req.body.findall("rsp:Send/rsp:Stream", NS):
            command_id = (stream.attrib.get("CommandId") or "").upper() or None
            if command_id and command_id not in self.pipelines:
                raise _soap.command_not_found()
            data = base64.b64decode(stream.text or "")
            with self.cond:
                pid = self.pipelines[command_id].server.pipeline_id if command_id else None
                self._feed(data, pid, stream.attrib.get("Name", "stdin"))
        return el("rsp:SendResponse")

    def receive(self, req: _soap.Request, timeout_s: float) -> str:
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = (desired.attrib.get("CommandId") or "").upper() or None if desired is not None else None
        if command_id is not None and command_id not in self.pipelines:
            raise _soap.command_not_found()
        pipe = self.pipelines.get(command_id) if command_id else None
        queue_ = self.out.setdefault(command_id, [])
        if not self.wait(lambda: bool(queue_), timeout_s):
            if self.closed:
                raise _soap.shell_not_found(self.id)
            raise _soap.timed_out()
        budget = max(1024, (req.max_envelope_size or 153600) - RECEIVE_OVERHEAD)
        attrs = {"Name": "stdout"} | ({"CommandId": command_id} if command_id else {})
        parts: list[str] = []
        with self.cond:
            while queue_:
                encoded = base64.b64encode(queue_[0]).decode()
                if parts and len(encoded) + 120 > budget:
                    break
                queue_.pop(0)
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
        if self.holds is not None and any(self.holds(str(cmd.command_text)) for cmd in metadata.commands):
            pipe.held = True
            self._count("pipelines_held")
        # Windows sends no Running state: the client learns only the final PIPELINE_STATE.
        pipe.server._change_state(PSInvocationState.Running, emit=False)
        pipe.thread = threading.Thread(
            target=self._run, args=(pipe, metadata.commands), name=f"psrp-{command_id[:8]}", daemon=True
        )
        pipe.thread.start()

    def _command_metadata(self, event: t.Any) -> None:
        # The engine has no command table to describe: answer as a host with no matching command.
        pipe = self.pipelines[self._command_of(event.pipeline_id) or ""]
        pipe.server._change_state(PSInvocationState.Running, emit=False)
        pipe.server.write_output(PSCustomObject(PSTypeName="Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo", Count=0))
        pipe.server.complete()
        pipe.finished = True

    def _run(self, pipe: _Pipeline, commands: list[t.Any]) -> None:
        failure: ErrorRecord | None = None
        if pipe.held:
            # a command that runs until the client stops it: nothing is sent, the pipeline stays Running
            self.wait(lambda: pipe.stopped, timeout_s=86400.0)
            return
        try:
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
                    streams = _Streams(self, pipe, captured)
                    # Named parameters as (name, value) tuples: a positional "-Name" string stays positional.
                    arguments: list[object] = [
                        (name, _from_ps(value)) if name else _from_ps(value) for name, value in cmd.parameters
                    ]
                    self.engine.run_powershell(
                        cmd.command_text, arguments, feed, streams, is_command=not cmd.is_script
                    )
                    feed = iter(captured or [])
        except PipelineStopped:
            return
        except PipelineFailed as e:
            failure = e.record
        except Exception as e:  # a terminating error: the pipeline fails as PowerShell's would
            log.debug("pipeline %s failed: %s", pipe.command_id, e)
            failure = ErrorRecord(
                Exception=NETException(Message=str(e)),
                CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotSpecified, Reason=type(e).__name__),
                FullyQualifiedErrorId=getattr(e, "fq_error_id", None) or type(e).__name__,
            )
        with self.cond:
            if pipe.stopped or pipe.finished or self.closed:
                return
            if failure is None:
                pipe.server.complete()
            else:
                pipe.server._change_state(PSInvocationState.Failed, error=failure)
            pipe.finished = True
            self.flush()

    @property
    def state(self) -> RunspacePoolState:
        return self.server.state
