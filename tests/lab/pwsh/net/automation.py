"""Types of System.Management.Automation and the exceptions scripts build and throw: ErrorRecord's helpers
(ErrorCategory, ErrorDetails), exception classes, PSScriptMethod, NullString, SystemPolicy and PSSerializer.

An exception object is an ExceptionObj over the ErrorRecord PowerShell would make of it: `throw
[InvalidOperationException]"m"` fails with message m and that exception type, and `$_.Exception` is the
object that was thrown (with its InnerException). SystemPolicy answers the process's lockdown policy,
`None` unless the lab host enforces one (no WDAC/AppLocker policy: scripts run in FullLanguage).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from tests.lab.pwsh.dotnet_objects import ExceptionObj
from tests.lab.pwsh.dotnet_types import EnumType, register, register_generic, SimpleType
from tests.lab.pwsh.errors import ErrorRecord
from tests.lab.pwsh.values import ScriptBlock, to_str

ERROR_CATEGORIES = (
    "NotSpecified", "OpenError", "CloseError", "DeviceError", "DeadlockDetected", "InvalidArgument", "InvalidData",
    "InvalidOperation", "InvalidResult", "InvalidType", "MetadataError", "NotImplemented", "NotInstalled",
    "ObjectNotFound", "OperationStopped", "OperationTimeout", "SyntaxError", "ParserError", "PermissionDenied",
    "ResourceBusy", "ResourceExists", "ResourceUnavailable", "ReadError", "WriteError", "FromStdErr",
    "SecurityError", "ProtocolError", "ConnectionError", "AuthenticationError", "LimitsExceeded", "QuotaExceeded",
    "NotEnabled")
register(EnumType("System.Management.Automation.ErrorCategory", {n: i for i, n in enumerate(ERROR_CATEGORIES)}))

# Exception classes scripts construct or catch, with the base classes `catch [Base]` matches on.
EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "System.Exception": (),
    "System.SystemException": ("System.Exception",),
    "System.ArgumentException": ("System.SystemException", "System.Exception"),
    "System.ArgumentNullException": ("System.ArgumentException", "System.SystemException", "System.Exception"),
    "System.ArgumentOutOfRangeException": ("System.ArgumentException", "System.SystemException", "System.Exception"),
    "System.InvalidOperationException": ("System.SystemException", "System.Exception"),
    "System.NotImplementedException": ("System.SystemException", "System.Exception"),
    "System.NotSupportedException": ("System.SystemException", "System.Exception"),
    "System.FormatException": ("System.SystemException", "System.Exception"),
    "System.TimeoutException": ("System.SystemException", "System.Exception"),
    "System.UnauthorizedAccessException": ("System.SystemException", "System.Exception"),
    "System.IO.IOException": ("System.SystemException", "System.Exception"),
    "System.IO.FileNotFoundException": ("System.IO.IOException", "System.SystemException", "System.Exception"),
    "System.IO.DirectoryNotFoundException": ("System.IO.IOException", "System.SystemException", "System.Exception"),
    "System.ComponentModel.Win32Exception": ("System.Runtime.InteropServices.ExternalException",
                                             "System.SystemException", "System.Exception"),
    "System.Management.Automation.RuntimeException": ("System.SystemException", "System.Exception"),
    "System.Management.Automation.PSInvalidOperationException": (
        "System.Management.Automation.RuntimeException", "System.InvalidOperationException", "System.Exception"),
    "System.Management.Automation.ItemNotFoundException": (
        "System.Management.Automation.SessionStateException", "System.Management.Automation.RuntimeException",
        "System.Exception"),
    "System.Management.Automation.CommandNotFoundException": (
        "System.Management.Automation.RuntimeException", "System.Exception"),
    "System.Management.Automation.MethodInvocationException": (
        "System.Management.Automation.MethodException", "System.Management.Automation.RuntimeException",
        "System.Exception"),
}


def make_exception(type_name: str, message: str | None, inner: object = None) -> ExceptionObj:
    """An exception object of a .NET exception class, as `[T]::new(message[, inner])` builds it."""
    text = message if message is not None else f"Exception of type '{type_name}' was thrown."
    rec = ErrorRecord(text, category="NotSpecified", fq_error_id=type_name.rsplit(".", 1)[-1],
                      exception_type=type_name)
    exc = ExceptionObj(rec)
    exc.InnerException = inner
    exc.ps_bases = EXCEPTIONS.get(type_name, ("System.Exception",))  # type: ignore[attr-defined]
    rec.exception = exc  # type: ignore[attr-defined]
    return exc


def _exception_ctor(type_name: str) -> Any:
    def ctor(rt: Any, args: list[object]) -> ExceptionObj:
        if type_name == "System.ComponentModel.Win32Exception" and args and isinstance(args[0], int):
            exc = make_exception(type_name, to_str(args[1]) if len(args) > 1 else f"Win32 error {args[0]}")
            exc.NativeErrorCode = args[0]  # type: ignore[attr-defined]
            return exc
        return make_exception(type_name, to_str(args[0]) if args else None, args[1] if len(args) > 1 else None)
    return ctor


for _name, _bases in EXCEPTIONS.items():
    register(SimpleType(_name, ctor=_exception_ctor(_name), bases=_bases,
                        instance=lambda v, n=_name: isinstance(v, ExceptionObj) and (
                            getattr(v, "ps_type", "").lower() == n.lower() or n.lower() in
                            [b.lower() for b in getattr(v, "ps_bases", ())])),
             *(("exception",) if _name == "System.Exception" else ()))


class ErrorDetailsObj:
    ps_type = "System.Management.Automation.ErrorDetails"

    def __init__(self, message: str) -> None:
        self.Message = message
        self.RecommendedAction = None

    def ps_tostring(self) -> str:
        return self.Message


register(SimpleType("System.Management.Automation.ErrorDetails",
                    ctor=lambda rt, a: ErrorDetailsObj(to_str(a[0]) if a else "")))


class ScriptMethodObj:
    """[PSScriptMethod]::new(name, script): a method added to an object with .PSObject.Members.Add."""

    ps_type = "System.Management.Automation.PSScriptMethod"

    def __init__(self, name: str, script: ScriptBlock) -> None:
        self.Name = name
        self.Script = script
        self.MemberType = "ScriptMethod"


register(SimpleType("System.Management.Automation.PSScriptMethod",
                    ctor=lambda rt, a: ScriptMethodObj(to_str(a[0]), a[1])))  # type: ignore[arg-type]
# [NullString]::Value: a null that stays null when passed to a .NET string parameter.
register(SimpleType("System.Management.Automation.Language.NullString", statics={"value": lambda rt: None}),
         "nullstring")
register(EnumType("System.Management.Automation.Security.SystemEnforcementMode",
                  {"None": 0, "Audit": 1, "Enforce": 2}))


def _lockdown(rt: Any, args: list[object]) -> object:
    """Enforce on a host locked down to ConstrainedLanguage (a WDAC/AppLocker policy), else None."""
    from tests.lab.pwsh.dotnet_types import registered
    mode = registered("System.Management.Automation.Security.SystemEnforcementMode")
    locked = getattr(rt.host, "language_mode", "FullLanguage") == "ConstrainedLanguage"
    return mode.by_name("Enforce" if locked else "None")  # type: ignore[union-attr]


register(SimpleType("System.Management.Automation.Security.SystemPolicy",
                    methods={"getsystemlockdownpolicy": _lockdown}))
register(EnumType("System.Management.Automation.PSLanguageMode",
                  {"FullLanguage": 0, "RestrictedLanguage": 1, "NoLanguage": 2, "ConstrainedLanguage": 3}))


def deserialize_clixml(text: str) -> list[object]:
    """[PSSerializer]::Deserialize for what Windows PowerShell writes to stderr: the strings of an <Objs> document."""
    root = ET.fromstring(text)
    out: list[object] = []
    for el in root:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "S":
            out.append(re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), el.text or ""))
        else:
            out.append(el.text)
    return out


register(SimpleType("System.Management.Automation.PSSerializer",
                    methods={"deserialize": lambda rt, a: deserialize_clixml(to_str(a[0]))}))


def method_failed(method: str, nargs: int, inner: ExceptionObj) -> Exception:
    """A .NET method threw `inner`: PowerShell's MethodInvocationException around it (as $_.Exception.InnerException)."""
    from tests.lab.pwsh.errors import PSError
    rec = ErrorRecord(f'Exception calling "{method}" with "{nargs}" argument(s): "{inner.Message}"',
                      category="NotSpecified", fq_error_id=inner.ps_type.rsplit(".", 1)[-1],
                      exception_type="System.Management.Automation.MethodInvocationException")
    outer = make_exception("System.Management.Automation.MethodInvocationException", rec.message, inner)
    rec.exception = outer
    outer.ErrorRecord = rec
    return PSError(rec)


def win32_exception(code: int, message: str, text: str) -> ExceptionObj:
    """A Win32Exception as ansible's C# utils build it: "<message> (<text>, Win32ErrorCode <n> - 0x<n:X8>)"."""
    exc = make_exception("System.ComponentModel.Win32Exception",
                         f"{message} ({text}, Win32ErrorCode {code} - 0x{code:08X})")
    exc.NativeErrorCode = code  # type: ignore[attr-defined]
    return exc


class DelegateObj:
    """A delegate made from a script block ([Func[[Object], [String]]]{ ... }): Invoke runs the block with the
    arguments as $args, as PowerShell's ScriptBlock-to-delegate conversion does."""

    ps_type = "System.Func`2"

    def __init__(self, rt: object, block: ScriptBlock, type_name: str) -> None:
        self.rt = rt
        self.block = block
        self.ps_type = type_name

    def invoke(self, *args: object) -> object:
        from tests.lab.pwsh.stages import run_stage, ScriptCommand
        out: list[object] = []
        cmd = ScriptCommand(self.rt, self.block, "", list(args), {})  # type: ignore[arg-type]
        cmd.sink = out.append
        run_stage(cmd, None)
        return None if not out else out[0] if len(out) == 1 else out

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() in ("invoke", "dynamicinvoke"):
            return self.invoke(*args)
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


def _delegate_type(arity: int) -> object:
    def factory(args: list[object]) -> SimpleType:
        label = ",".join(getattr(a, "full_name", None) or to_str(a) for a in args)
        name = f"System.Func`{arity}[{label}]"

        def cast(rt: object, value: object) -> DelegateObj:
            if isinstance(value, DelegateObj):
                return value
            if not isinstance(value, ScriptBlock):
                raise ValueError(value)
            return DelegateObj(rt, value, name)
        return SimpleType(name, cast=cast, instance=lambda v: isinstance(v, DelegateObj))
    return factory


for _arity in range(1, 5):
    register_generic(f"System.Func`{_arity}", _delegate_type(_arity))  # type: ignore[arg-type]
