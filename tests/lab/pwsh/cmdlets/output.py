"""Output and stream cmdlets: what a script writes to the pipeline, the host and the other streams.

Write-Output/-Host/-Error/-Warning/-Verbose/-Debug/-Information/-Progress and Out-Null/-Host/-String.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.display import display_value, format_for_display
from tests.lab.pwsh.dotnet_objects import ExceptionObj
from tests.lab.pwsh.errors import ErrorRecord
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.stages import InvocationInfo
from tests.lab.pwsh.values import as_list, enumerate_value, NO_INPUT, SWITCH_PRESENT, to_bool, to_str


@cmdlet("Write-Output", "echo", "write", positional=("*",), params=("InputObject",), switches=("NoEnumerate",))
class WriteOutput(Cmdlet):
    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.emit(item)
            return
        values = self.p.get("*", [self.p["InputObject"]] if "InputObject" in self.p else [])
        vals = values if isinstance(values, list) else [values]
        for v in vals if len(vals) != 1 else [vals[0]]:
            if self.p.get("NoEnumerate"):
                self.emit(v)
            else:
                for x in enumerate_value(v) if isinstance(v, (list, tuple)) else [v]:
                    self.emit(x)


@cmdlet("Write-Host", positional=("*",), params=("Object", "Separator", "ForegroundColor", "BackgroundColor"),
        switches=("NoNewline",))
class WriteHost(Cmdlet):
    def process(self, item: object) -> None:
        objs = [item] if item is not NO_INPUT else self.p.get("*", [self.p["Object"]] if "Object" in self.p else [])
        sep = to_str(self.p.get("Separator", " "))
        text = sep.join(sep.join(to_str(x) for x in o) if isinstance(o, list) else to_str(o)
                        for o in objs)  # type: ignore[union-attr]
        self.rt.streams.host_write(text, newline=not self.p.get("NoNewline"))


@cmdlet("Write-Error", positional=("Message",),
        params=("Category", "ErrorId", "TargetObject", "Exception", "ErrorRecord", "RecommendedAction",
                "CategoryActivity", "CategoryReason", "CategoryTargetName", "CategoryTargetType"),
        aliases={"msg": "Message"})
class WriteError(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        if isinstance(self.p.get("ErrorRecord"), ErrorRecord):
            rt.write_error(self.p["ErrorRecord"], self.ea)  # type: ignore[arg-type]
            return
        msg = to_str(self.input_or(item, "Message"))
        exc = self.p.get("Exception")
        if isinstance(exc, ExceptionObj):
            msg = msg or exc.Message
        fn = rt.scope.vars.get("myinvocation")
        fn_name = fn.MyCommand.Name if isinstance(fn, InvocationInfo) and fn.MyCommand.Name else ""
        fq = to_str(self.p["ErrorId"]) if "ErrorId" in self.p else "Microsoft.PowerShell.Commands.WriteErrorException"
        if fn_name:
            fq = f"{fq},{fn_name}"
        rec = ErrorRecord(msg, category=to_str(self.p.get("Category", "NotSpecified")), fq_error_id=fq,
                          exception_type=exc.ps_type if isinstance(exc, ExceptionObj)
                          else "Microsoft.PowerShell.Commands.WriteErrorException",
                          target=self.p.get("TargetObject"), command_name=self.name)
        rt.write_error(rec, self.ea)


@cmdlet("Write-Warning", positional=("Message",))
class WriteWarning(Cmdlet):
    def process(self, item: object) -> None:
        self.rt.warn(to_str(self.input_or(item, "Message")), self.wa)


@cmdlet("Write-Verbose", positional=("Message",))
class WriteVerbose(Cmdlet):
    def process(self, item: object) -> None:
        pref = to_str(self.rt.get_var("VerbosePreference")).lower()
        if self.verbose or pref in ("continue", "inquire"):
            self.rt.streams.verbose(to_str(self.input_or(item, "Message")))


def _optional_stream(rt: Interpreter, name: str) -> Callable[..., None] | None:
    """Streams.debug/information/progress are optional: a host without them drops those records."""
    return getattr(rt.streams, name, None)


@cmdlet("Write-Debug", positional=("Message",))
class WriteDebug(Cmdlet):
    def __init__(self, rt: Interpreter, name: str, positional: list[object], named: dict[str, object]) -> None:
        # -Debug / -Debug:$false override $DebugPreference for this command only.
        switch = [v is SWITCH_PRESENT or to_bool(v) for k, v in named.items() if k.lower() in ("debug", "db")]
        self.debug_switch: bool | None = switch[-1] if switch else None
        super().__init__(rt, name, positional, named)

    def process(self, item: object) -> None:
        pref = to_str(self.rt.get_var("DebugPreference")).lower()
        write = _optional_stream(self.rt, "debug")
        shown = self.debug_switch if self.debug_switch is not None else pref in ("continue", "inquire", "stop")
        if write is not None and shown:
            write(to_str(self.input_or(item, "Message")))


@cmdlet("Write-Information", positional=("MessageData", "Tags"))
class WriteInformation(Cmdlet):
    def process(self, item: object) -> None:
        # Unlike debug and verbose, an information record reaches the stream whatever the preference
        # (SilentlyContinue only keeps the host from showing it); Ignore drops it.
        if to_str(self.rt.get_var("InformationPreference")).lower() == "ignore":
            return
        write = _optional_stream(self.rt, "information")
        if write is not None:
            tags = [to_str(t) for t in as_list(self.p.get("Tags"))] if self.p.get("Tags") is not None else []
            write(display_value(self.input_or(item, "MessageData")), tags)


@cmdlet("Write-Progress", positional=("Activity", "Status"),
        params=("PercentComplete", "Id", "CurrentOperation", "SecondsRemaining", "ParentId"), switches=("Completed",))
class WriteProgress(Cmdlet):
    def process(self, item: object) -> None:
        if to_str(self.rt.get_var("ProgressPreference")).lower() in ("silentlycontinue", "ignore"):
            return
        write = _optional_stream(self.rt, "progress")
        if write is None:
            return
        rt, p = self.rt, self.p
        write(activity=to_str(p.get("Activity", "")), status=to_str(p.get("Status", "Processing")),
              activity_id=rt.to_int(p.get("Id", 0)), percent_complete=rt.to_int(p.get("PercentComplete", -1)),
              seconds_remaining=rt.to_int(p.get("SecondsRemaining", -1)),
              parent_id=rt.to_int(p.get("ParentId", -1)),
              current_operation=None if p.get("CurrentOperation") is None else to_str(p["CurrentOperation"]),
              completed=bool(p.get("Completed")))


@cmdlet("Out-Null", params=("InputObject",))
class OutNull(Cmdlet):
    pass


@cmdlet("Out-Host", "Out-Default", params=("InputObject",), switches=("Paging",))
class OutHost(Cmdlet):
    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            for line in format_for_display([item]).split("\r\n"):
                self.rt.streams.host_write(line)


@cmdlet("Out-String", params=("InputObject", "Width"), switches=("Stream",))
class OutString(Cmdlet):
    def begin(self) -> None:
        self.items: list[object] = []

    def process(self, item: object) -> None:
        v = self.input_or(item, "InputObject")
        if item is NO_INPUT and "InputObject" not in self.p:
            return
        if self.p.get("Stream"):
            text = format_for_display([v])
            for line in text.split("\r\n"):
                self.emit(line)
        else:
            self.items.append(v)

    def end(self) -> None:
        if not self.p.get("Stream"):
            text = format_for_display(self.items)
            self.emit(text + "\r\n" if self.items else "")
