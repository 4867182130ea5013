"""What a PSRP pipeline writes: the engine's Streams protocol on one psrpcore ServerPipeline.

Records are shaped as Windows PowerShell 5.1 sends them (error records with their invocation info,
informational records with their message as ToString, Write-Host as a PSHOST information record or a
host call), a command's stream merges are applied (MergeMyResult, MergeError, ...), and the command's
deserializer quota is offered to the engine as `maximum_allowed_memory`.
"""

from __future__ import annotations

import types
import typing as t

import psrpcore
from psrpcore.types import (
    CommandOrigin,
    CommandTypes,
    DebugRecord,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    HostMethodIdentifier,
    InformationRecord,
    InformationRecordMsg,
    InvocationInfo,
    NETException,
    PipelineResultTypes,
    PSCustomObject,
    PSDict,
    PSList,
    PSRPMessageType,
    ProgressRecordType,
    SessionStateEntryVisibility,
    VerboseRecord,
    WarningRecord,
)

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


_MERGEABLE = ("error", "warning", "verbose", "debug", "information")
# The note property PowerShell adds to a record it merged into the output stream (recorded in
# test_psrp_merge_commands: <B N="WriteDebugStream">true</B>, <B N="writeErrorStream">true</B>).
_MERGED_FLAG = {
    "error": "writeErrorStream",
    "warning": "WriteWarningStream",
    "verbose": "WriteVerboseStream",
    "debug": "WriteDebugStream",
    "information": "WriteInformationStream",
}


def merged_streams(command: t.Any) -> set[str]:
    """The streams a command merges into its output (MS-PSRP 2.2.3.12 Command: MergeMyResult, MergeError, ...).

    Protocol 2.1 clients say "error to output" with MergeMyResult=Error + MergeToResult=Output; newer
    ones also set MergeError/MergeWarning/MergeVerbose/MergeDebug/MergeInformation. Output is the only
    target the lab merges into (the one PSRP clients offer).
    """
    merged: set[str] = set()
    if command.merge_my == PipelineResultTypes.Error and command.merge_to == PipelineResultTypes.Output:
        merged.add("error")
    for name in _MERGEABLE:
        if getattr(command, f"merge_{name}", PipelineResultTypes.none) == PipelineResultTypes.Output:
            merged.add(name)
    return merged


class PipelineStreams:
    """The engine's Streams protocol, writing into one psrpcore ServerPipeline."""

    def __init__(
        self,
        pool: t.Any,  # the PSRPPool (tests/lab/_psrp_server.py): its cond, flush, names
        pipeline: t.Any,  # its _Pipeline: server, stopped, host_null, quota
        capture: list[object] | None,
        merge: set[str] | None = None,
    ) -> None:
        self._pool = pool
        self._pipe = pipeline
        self._capture = capture  # output of a command that feeds the next one in the statement
        self.raw_output = capture is not None  # the engine hands such output over as its own objects
        self._merge = merge or set()  # streams this command merges into its output

    def _merged(self, stream: str, record: t.Any) -> bool:
        """Sends a record of a merged stream to the output (flagged as PowerShell flags it); True if merged."""
        if stream not in self._merge:
            return False
        psrpcore.types.add_note_property(record, _MERGED_FLAG[stream], True, force=True)
        self.output(record)
        return True

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
        if self._merged("error", value):
            return
        self._write(lambda: self._pipe.server.prepare_message(value, message_type=PSRPMessageType.ErrorRecord))

    def terminating_error(self, record: t.Any) -> None:
        """An uncaught error: Windows fails the pipeline and sends the record in PIPELINE_STATE, not the error stream."""
        raise PipelineFailed(error_record(record))

    def _informational(self, record_type: type, message_type: t.Any, message: str) -> None:
        # PowerShell serialises these records with their message as ToString, which clients print.
        value = record_type(Message=message, InvocationInfo=None, PipelineIterationInfo=None)
        value.PSObject.to_string = message
        stream = {WarningRecord: "warning", DebugRecord: "debug", VerboseRecord: "verbose"}[record_type]
        if self._merged(stream, value):
            return
        self._write(lambda: self._pipe.server.prepare_message(value, message_type=message_type))

    def warning(self, message: str) -> None:
        self._informational(WarningRecord, PSRPMessageType.WarningRecord, message)

    def debug(self, message: str) -> None:
        self._informational(DebugRecord, PSRPMessageType.DebugRecord, message)

    def information(self, message_data: object, tags: list[str], source: str = "Write-Information") -> None:
        record = InformationRecord.create(
            message_data=_to_ps(message_data), source=source, tags=tags, computer=self._pool.computer_name,
            user=self._pool.owner,
        )
        if "information" in self._merge:
            record.PSObject.to_string = str(message_data)  # as recorded: <ToString>information stream</ToString>
            self._merged("information", record)
            return
        # Written as psrpcore's write_information writes it, but for every client: PowerShell's server sends
        # information records whatever protocol version the client announced (ServerPowerShellDriver
        # forwards Streams.Information unconditionally), where psrpcore refuses below 2.3.
        message = InformationRecordMsg(
            MessageData=record.MessageData, Source=record.Source, TimeGenerated=record.TimeGenerated,
            Tags=record.Tags, User=record.User, Computer=record.Computer, ProcessId=record.ProcessId,
            NativeThreadId=record.NativeThreadId, ManagedThreadId=record.ManagedThreadId,
        )
        self._write(lambda: self._pipe.server.prepare_message(message, message_type=PSRPMessageType.InformationRecord))

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
            self.information(text, ["PSHOST"], source="Write-Host")
            return
        if to_stderr:
            method, params = HostMethodIdentifier.WriteErrorLine, [text]
        elif newline:
            method, params = HostMethodIdentifier.WriteLine2, [text]
        else:
            method, params = HostMethodIdentifier.Write1, [text]
        self._write(lambda: self._pipe.server.host_call(method, params))

    # The deserializer quota of this command's transport manager, as a script reaches it on Windows through
    # $Host.ExternalHost._transportManager.Fragmentor.DeserializationContext.MaximumAllowedMemory (the
    # reflection in ansible-core's psrp_put_file.ps1 and pypsrp's copy.ps1): None lifts it.
    @property
    def maximum_allowed_memory(self) -> int | None:
        with self._pool.cond:
            return self._pipe.quota.maximum_allowed_memory

    @maximum_allowed_memory.setter
    def maximum_allowed_memory(self, value: int | None) -> None:
        with self._pool.cond:
            self._pipe.quota.maximum_allowed_memory = value

    def set_should_exit(self, code: int) -> None:
        if self._pipe.host_null:
            return
        self._write(lambda: self._pipe.server.host_call(HostMethodIdentifier.SetShouldExit, [int(code)]))
