"""Small .NET objects the subset hands to scripts: Guid, Encoding, StringBuilder, Type, Exception, SecureString.

Each answers members through `ps_get`/`ps_call` (tests/lab/pwsh/members.py) and names its .NET type
in `ps_type`; anything a real script calls that is not here fails with PowerShell's MethodNotFound.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from tests.lab.pwsh import limits
from tests.lab.pwsh.errors import ErrorRecord, method_exception, no_method
from tests.lab.pwsh.values import as_list, to_str


class EncodingObj:
    ps_type = "System.Text.Encoding"

    def __init__(self, codec: str, name: str, bom: bool = False) -> None:
        self.codec = codec
        self.EncodingName = name
        self.WebName = codec
        self.bom = bom

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getstring":
            data = args[0]
            if not isinstance(data, (bytes, bytearray)):
                data = bytes(int(x) & 0xFF for x in as_list(data))  # type: ignore[call-overload]
            if len(args) == 3:
                data = data[int(args[1]):int(args[1]) + int(args[2])]  # type: ignore[call-overload]
            return bytes(data).decode(self.codec, errors="replace")
        if low == "getbytes":
            return bytearray(to_str(args[0]).encode(self.codec, errors="replace" if self.codec == "ascii" else "surrogatepass"))
        if low == "getpreamble":
            return bytearray(b"\xef\xbb\xbf" if self.bom and self.codec == "utf-8" else
                             b"\xff\xfe" if self.codec == "utf-16-le" else b"")
        if low == "getbytecount":
            return len(to_str(args[0]).encode(self.codec, errors="replace"))
        raise no_method(self, name)


class GuidValue:
    ps_type = "System.Guid"

    def __init__(self, u: uuid.UUID) -> None:
        self.u = u

    def ps_tostring(self) -> str:
        return str(self.u)

    def ps_get(self, name: str) -> object:
        if name.lower() == "guid":
            return str(self.u)
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "tostring":
            fmt = to_str(args[0]) if args else "D"
            s = str(self.u)
            return {"N": s.replace("-", ""), "B": "{" + s + "}", "P": "(" + s + ")"}.get(fmt.upper(), s)
        raise no_method(self, name)


# An internal member the lab models for reflection: (getter, setter) on the object that has it.
InternalMember = tuple[Callable[[], object], Callable[[object], None] | None]


class MemberInfo:
    """A PropertyInfo or FieldInfo that reflection found: GetValue/SetValue reach the modelled member."""

    def __init__(self, kind: str, name: str, member: InternalMember) -> None:
        self.Name = name
        self.ps_type = "System.Reflection.RuntimePropertyInfo" if kind == "property" else "System.Reflection.RtFieldInfo"
        self.MemberType = "Property" if kind == "property" else "Field"
        self._get, self._set = member

    def ps_tostring(self) -> str:
        return self.Name

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getvalue":
            return self._get()
        if low == "setvalue":
            if self._set is None:
                raise no_method(self, name)
            self._set(args[1] if len(args) > 1 else None)
            return None
        raise no_method(self, name)


class TypeObject:
    """What .GetType() returns: names, and reflection that finds only the internal members the lab models.

    `internals` maps ("property" | "field", exact name) to the member; reflection finds one only when the
    binding flags include NonPublic, and names match case-sensitively as .NET reflection's do.
    """

    ps_type = "System.RuntimeType"

    def __init__(self, full: str, internals: Mapping[tuple[str, str], InternalMember] | None = None) -> None:
        self.FullName = full
        self.Name = full.rsplit(".", 1)[-1]
        self.Namespace = full.rsplit(".", 1)[0] if "." in full else ""
        self._internals = dict(internals or {})

    def ps_tostring(self) -> str:
        return self.FullName

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("getproperty", "getfield"):
            kind = "property" if low == "getproperty" else "field"
            flags = to_str(args[1]).lower() if len(args) > 1 else ""
            member = self._internals.get((kind, to_str(args[0]) if args else ""))
            if member is None or "nonpublic" not in flags:
                return None  # no such member, or a public-only lookup of an internal one
            return MemberInfo(kind, to_str(args[0]), member)
        if low == "getmethod":
            return None
        if low == "tostring":
            return self.FullName
        raise no_method(self, name)


class ExceptionObj:
    def __init__(self, rec: ErrorRecord) -> None:
        self.rec = rec
        self.Message = rec.message
        self.ps_type = rec.exception_type
        self.InnerException: object = None
        if rec.inner is not None:  # the exception a .NET method threw, inside PowerShell's MethodInvocationException
            inner_type, inner_message = rec.inner
            self.InnerException = ExceptionObj(ErrorRecord(inner_message, exception_type=inner_type,
                                                           fq_error_id=inner_type.rsplit(".", 1)[-1]))
        self.StackTrace = None
        self.ErrorRecord = rec
        self.WasThrownFromThrowStatement = rec.thrown_object is not None

    def ps_tostring(self) -> str:
        return f"{self.rec.exception_type}: {self.rec.message}"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "gettype":
            return TypeObject(self.rec.exception_type)
        if name.lower() == "tostring":
            return self.ps_tostring()
        raise no_method(self, name)


class CategoryInfoObj:
    ps_type = "System.Management.Automation.ErrorCategoryInfo"

    def __init__(self, rec: ErrorRecord) -> None:
        self.rec = rec
        self.Category = rec.category
        self.Reason = rec.reason
        self.TargetName = "" if rec.target is None else to_str(rec.target)
        self.Activity = rec.command_name or ""

    def ps_tostring(self) -> str:
        return self.rec.category_info()


class StringBuilderObj:
    ps_type = "System.Text.StringBuilder"

    def __init__(self, s: str) -> None:
        self.parts = [s]

    def ps_get(self, name: str) -> object:
        if name.lower() == "length":
            return len("".join(self.parts))
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("append", "appendline"):
            self.parts.append((to_str(args[0]) if args else "") + ("\r\n" if low == "appendline" else ""))
            if sum(len(p) for p in self.parts) > limits.MAX_STRING_CHARS:
                raise method_exception(name, len(args), "The lab engine's string size bound was reached.")
            return self
        if low == "tostring":
            return "".join(self.parts)
        raise no_method(self, name)

    def ps_tostring(self) -> str:
        return "".join(self.parts)


class SecureStringValue:
    ps_type = "System.Security.SecureString"

    def __init__(self, value: str) -> None:
        self.value = value
        self.Length = len(value)

    def ps_tostring(self) -> str:
        return "System.Security.SecureString"


class TimeSpanValue:
    ps_type = "System.TimeSpan"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def ps_get(self, name: str) -> object:
        low = name.lower()
        s = self.seconds
        parts = {"totalseconds": s, "totalmilliseconds": s * 1000, "totalminutes": s / 60, "totalhours": s / 3600,
                 "totaldays": s / 86400, "ticks": int(s * 10**7), "days": int(s // 86400),
                 "hours": int(s % 86400 // 3600), "minutes": int(s % 3600 // 60), "seconds": int(s % 60),
                 "milliseconds": int(s * 1000 % 1000)}
        if low in parts:
            return parts[low]
        raise KeyError(name)

    def ps_number(self) -> float:
        return self.seconds

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "tostring":
            return format_timespan(self.seconds, to_str(args[0])) if args else self.ps_tostring()
        raise no_method(self, name)

    def ps_tostring(self) -> str:
        s = abs(self.seconds)
        days, rest = divmod(int(s), 86400)
        text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
        frac = s - int(s)
        if frac:
            text += f".{int(round(frac * 10**7)):07d}"
        return ("-" if self.seconds < 0 else "") + (f"{days}." if days else "") + text




def format_timespan(seconds: float, fmt: str) -> str:
    """TimeSpan.ToString(custom format): d, h, hh, m, mm, s, ss, f..fffffff, and backslash-escaped literals."""
    if fmt in ("c", "g", "G", ""):
        return TimeSpanValue(seconds).ps_tostring()
    total = abs(seconds)
    parts = {"d": int(total // 86400), "h": int(total % 86400 // 3600), "m": int(total % 3600 // 60),
             "s": int(total % 60)}
    frac = total - int(total)
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt):
            out.append(fmt[i + 1])
            i += 2
            continue
        if c in "'\"":
            end = fmt.find(c, i + 1)
            end = len(fmt) if end < 0 else end
            out.append(fmt[i + 1:end])
            i = end + 1
            continue
        j = i
        while j < len(fmt) and fmt[j] == c:
            j += 1
        width = j - i
        if c in "dhms":
            out.append(str(parts[c]).zfill(width))
        elif c in "fF":
            digits = f"{int(frac * 10**7):07d}"[:width]
            out.append(digits.rstrip("0") if c == "F" else digits)
        else:
            out.append(fmt[i:j])
        i = j
    return "".join(out)
