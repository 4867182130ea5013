"""[System.Console] and the text writers scripts hand it: Console.Out and SetOut, the console encodings,
and System.IO.StringWriter over a StringBuilder.

The console belongs to the process (tests/lab/pwsh/process.py). powershell.exe has one; wsmprovhost.exe,
which runs PSRP pipelines, has none, so setting Console.InputEncoding there fails with "The handle is
invalid." (IOException), and exec_wrapper.ps1 falls back to Console's private `_outputEncoding` field,
which .NET Framework 4.x declares (referencesource: mscorlib/system/console.cs) and reflection finds.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.dotnet_objects import EncodingObj, StringBuilderObj
from tests.lab.pwsh.dotnet_types import register, SimpleType
from tests.lab.pwsh.errors import ErrorRecord, PSError
from tests.lab.pwsh.process import TextWriterObj
from tests.lab.pwsh.values import to_str

_ENCODINGS = {"IBM437": ("cp437", "OEM United States"), "utf-8": ("utf-8", "Unicode (UTF-8)")}


def _encoding(name: str) -> EncodingObj:
    codec, label = _ENCODINGS.get(name, ("utf-8", "Unicode (UTF-8)"))
    return EncodingObj(codec, label)


def _name_of(enc: object) -> str:
    codec = getattr(enc, "codec", "utf-8")
    return "IBM437" if codec == "cp437" else "utf-8"


def _set_encoding(which: str) -> Any:
    def setter(rt: Any, value: object) -> None:
        proc = rt.host.process
        if not proc.has_console:
            raise PSError(rt.fill(ErrorRecord(
                f'Exception setting "{which}": "The handle is invalid.\r\n"', category="NotSpecified",
                fq_error_id="ExceptionWhenSetting",
                exception_type="System.Management.Automation.SetValueInvocationException")))
        setattr(proc, "input_encoding" if which == "InputEncoding" else "output_encoding", _name_of(value))
    return setter


class PrivateStaticField:
    """A FieldInfo for one non-public static field: what SetValue(null, value) changes in the process."""

    ps_type = "System.Reflection.RtFieldInfo"

    def __init__(self, name: str, attribute: str) -> None:
        self.Name = name
        self.attribute = attribute
        self.rt: Any = None

    def bind(self, rt: Any) -> PrivateStaticField:
        self.rt = rt
        return self

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        proc = self.rt.host.process
        if low == "setvalue":
            setattr(proc, self.attribute, _name_of(args[1]))
            return None
        if low == "getvalue":
            return _encoding(getattr(proc, self.attribute))
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


def _write(rt: Any, args: list[object], newline: bool) -> None:
    text = to_str(args[0]) if args else ""
    rt.host.process.console_out.write(text + ("\r\n" if newline else ""))


def _set_out(rt: Any, args: list[object]) -> None:
    writer = args[0]
    if not isinstance(writer, TextWriterObj):
        from tests.lab.pwsh.errors import method_exception
        raise method_exception("SetOut", 1, "Value cannot be null.\r\nParameter name: newOut")
    rt.host.process.console_out = writer
    return None


register(SimpleType(
    "System.Console",
    statics={"out": lambda rt: rt.host.process.console_out,
             "inputencoding": lambda rt: _encoding(rt.host.process.input_encoding),
             "outputencoding": lambda rt: _encoding(rt.host.process.output_encoding)},
    setters={"inputencoding": _set_encoding("InputEncoding"), "outputencoding": _set_encoding("OutputEncoding")},
    methods={"setout": _set_out, "writeline": lambda rt, a: _write(rt, a, True),
             "write": lambda rt, a: _write(rt, a, False)},
    fields={"_outputencoding": PrivateStaticField("_outputEncoding", "output_encoding"),
            "_inputencoding": PrivateStaticField("_inputEncoding", "input_encoding")}), "console")


def _string_writer(rt: Any, args: list[object]) -> TextWriterObj:
    sb = args[0] if args and isinstance(args[0], StringBuilderObj) else StringBuilderObj("")
    writer = TextWriterObj(lambda text: sb.parts.append(text), "System.IO.StringWriter")
    writer.builder = sb  # type: ignore[attr-defined]
    return writer


register(SimpleType("System.IO.StringWriter", ctor=_string_writer,
                    instance=lambda v: getattr(v, "ps_type", "") == "System.IO.StringWriter",
                    bases=("System.IO.TextWriter",)))
register(SimpleType("System.IO.TextWriter", statics={"null": lambda rt: TextWriterObj(None)},
                    instance=lambda v: isinstance(v, TextWriterObj)))
register(SimpleType("System.Text.StringBuilder",
                    ctor=lambda rt, a: StringBuilderObj(to_str(a[0]) if a and not isinstance(a[0], int) else ""),
                    instance=lambda v: isinstance(v, StringBuilderObj)))
