"""Errors and control flow inside the interpreter: ErrorRecord, the terminating PSError, and the signals
that unwind break/continue/return/exit through Python frames.

Messages, FullyQualifiedErrorIds and categories are PowerShell's own (docs/lab-engine.md cites them);
`to_info()` is what leaves the engine through Streams.
"""

from __future__ import annotations

from tests.lab.pwsh.parser import ParseError, position_message
from tests.lab.pwsh.streams import ErrorInfo
from tests.lab.pwsh.values import EnumValue, Hashtable, PSObject, ScriptBlock, to_str, TypeRef, Version


CMD_NOT_FOUND = ("The term '{0}' is not recognized as the name of a cmdlet, function, script file, or operable "
                 "program. Check the spelling of the name, or if a path was included, verify that the path is "
                 "correct and try again.")


class ErrorRecord:
    """An ErrorRecord inside the interpreter ($_ in catch, $Error)."""

    def __init__(self, message: str, *, category: str = "NotSpecified",
                 fq_error_id: str = "Microsoft.PowerShell.Commands.WriteErrorException",
                 exception_type: str = "Microsoft.PowerShell.Commands.WriteErrorException",
                 target: object = None, command_name: str | None = None, position: str | None = None,
                 reason: str | None = None, thrown_object: object = None) -> None:
        self.message = message
        self.category = category
        self.fq_error_id = fq_error_id
        self.exception_type = exception_type
        self.target = target
        self.command_name = command_name
        self.position = position
        self.reason = reason or exception_type.rsplit(".", 1)[-1]
        self.thrown_object = thrown_object
        self.line = 0
        self.exception: object = None     # the exception object it was made from, when a script built or threw one
        self.inner: tuple[str, str] | None = None  # (type, message) of the exception a .NET method threw
        self.ErrorDetails: object = None  # noqa: N815 (the .NET property, settable: $_.ErrorDetails = ...)

    def ps_tostring(self) -> str:
        details = getattr(self.ErrorDetails, "Message", None)
        return details if details else self.message

    def category_info(self) -> str:
        target = "" if self.target is None else to_str(self.target)
        if len(target) > 40:
            target = target[:15] + "..." + target[-15:]
        ttype = "" if self.target is None else type_name_of(self.target).rsplit(".", 1)[-1]
        tpart = f"{target}:{ttype}" if self.target is not None else ":"
        return f"{self.category}: ({tpart}) [{self.command_name or ''}], {self.reason}"

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(message=self.message, category=self.category, fq_error_id=self.fq_error_id,
                         target=None if self.target is None else to_str(self.target),
                         command_name=self.command_name, position=self.position,
                         exception_type=self.exception_type)


class PSError(Exception):
    """A terminating error."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


class BreakSignal(Exception):
    """`break`: leaves the innermost loop or switch."""


class ContinueSignal(Exception):
    """`continue`: goes on with the next iteration of the innermost loop or switch."""


class ReturnSignal(Exception):
    """`return`: leaves the running script block."""


class ExitScript(Exception):
    """`exit N` or [Environment]::Exit(N): ends the run with exit code N."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class StopUpstream(Exception):
    """Select-Object -First got what it needs: upstream stops producing."""


def runtime_error(message: str, fq: str, category: str = "InvalidOperation",
                  exc: str = "System.Management.Automation.RuntimeException", target: object = None) -> PSError:
    """A terminating RuntimeException-style error with PowerShell's message and FullyQualifiedErrorId."""
    return PSError(ErrorRecord(message, category=category, fq_error_id=fq, exception_type=exc, target=target))


UNAUTHORIZED = "System.Management.Automation.SessionStateUnauthorizedAccessException"
# PowerShell's SessionStateStrings.VariableNotWritable: an assignment, Set-Variable or Clear-Variable refused
VARIABLE_NOT_WRITABLE = "Cannot overwrite variable {} because it is read-only or constant."


def variable_not_writable(name: str) -> PSError:
    """An assignment to a ReadOnly or Constant variable, as the terminating error the language raises."""
    return runtime_error(VARIABLE_NOT_WRITABLE.format(name), "VariableNotWritable", "WriteError", UNAUTHORIZED,
                         target=name)


def method_exception(method: str, nargs: int, inner: str, exc: str = "MethodInvocationException",
                     inner_type: str = "System.Exception") -> PSError:
    """A .NET method that threw: "Exception calling "M" with "N" argument(s): ...", the exception it threw (its type
    `inner_type`) as the InnerException `catch [Type]` matches first."""
    rec = ErrorRecord(
        f'Exception calling "{method}" with "{nargs}" argument(s): "{inner}"', category="NotSpecified",
        fq_error_id=exc.rsplit(".", 1)[-1] if exc != "MethodInvocationException" else "DotNetMethodException",
        exception_type="System.Management.Automation.MethodInvocationException")
    rec.inner = (inner_type, inner)
    return PSError(rec)


def type_name_of(v: object) -> str:
    """The .NET type name PowerShell shows for a value (GetType().FullName)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "System.Boolean"
    if isinstance(v, int):
        return "System.Int32" if -2**31 <= v < 2**31 else "System.Int64"
    if isinstance(v, float):
        return "System.Double"
    if isinstance(v, str):
        return "System.String"
    if isinstance(v, (list, tuple)):
        return "System.Object[]"
    if isinstance(v, (bytes, bytearray)):
        return "System.Byte[]"
    if isinstance(v, Hashtable):
        return "System.Collections.Hashtable"
    if isinstance(v, PSObject):
        return "System.Management.Automation.PSCustomObject"
    if isinstance(v, ScriptBlock):
        return "System.Management.Automation.ScriptBlock"
    if isinstance(v, ErrorRecord):
        return "System.Management.Automation.ErrorRecord"
    if isinstance(v, Version):
        return "System.Version"
    if isinstance(v, TypeRef):
        return "System.RuntimeType"
    if isinstance(v, EnumValue):
        return v.type_name
    return getattr(v, "ps_type", "System.Object")


def no_method(obj: object, name: str) -> PSError:
    """The MethodNotFound error for a method the lab's object does not have."""
    return runtime_error(f"Method invocation failed because [{type_name_of(obj)}] does not contain a method named "
                         f"'{name}'.", "MethodNotFound", "InvalidOperation")


def parse_error_record(src: str, e: ParseError) -> ErrorRecord:
    """A ParseError as the ParseException record PowerShell reports for it."""
    return ErrorRecord(e.message, category="ParserError", fq_error_id=e.error_id,
                       exception_type="System.Management.Automation.ParseException",
                       position=position_message(src, e.offset), reason="ParseException")
