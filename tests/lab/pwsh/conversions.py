"""Casts and type names: [type]value conversions, -is/-as type tests, the -f format operator and .NET
format strings, and which .NET types the subset knows (so an unknown one fails as PowerShell says).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

from tests.lab.pwsh.dotnet_objects import GuidValue
from tests.lab.pwsh.dotnet_types import add_known_names, DotNetType, lookup, MemberNotFound
from tests.lab.pwsh.errors import ErrorRecord, method_exception, PSError, runtime_error, type_name_of
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.values import (
    as_list, canonical_type, EnumValue, Hashtable, parse_number, PSObject, ScriptBlock, SwitchValue, to_bool, to_str,
    TYPE_ALIASES, TypeRef, Version,
)


def is_instance(v: object, canon: str) -> bool:
    c = canon.lower()
    if c == "system.object":
        return v is not None
    if c == "system.string":
        return isinstance(v, str)
    if c in ("system.int32", "system.int64"):
        return isinstance(v, int) and not isinstance(v, bool)
    if c == "system.double":
        return isinstance(v, float)
    if c == "system.boolean":
        return isinstance(v, bool)
    if c in ("system.array", "system.object[]"):
        return isinstance(v, (list, tuple, bytearray))
    if c == "system.byte[]":
        return isinstance(v, (bytes, bytearray))
    if c in ("system.collections.hashtable", "system.collections.idictionary"):
        return isinstance(v, dict)
    if c == "system.management.automation.pscustomobject" or c == "system.management.automation.psobject":
        return isinstance(v, PSObject) or (c.endswith("psobject") and v is not None)
    if c == "system.management.automation.scriptblock":
        return isinstance(v, ScriptBlock)
    if c == "system.management.automation.errorrecord":
        return isinstance(v, ErrorRecord)
    if c == "system.version":
        return isinstance(v, Version)
    return type_name_of(v).lower() == c


def convert_value(rt: Interpreter, v: object, type_name: str) -> object:
    found = lookup(rt, type_name) if not type_name.endswith("[]") else None
    if found is not None and found[1] is not None:
        return cast_to(rt, found[1], v)
    if found is not None:
        type_name = found[0]
    canon = canonical_type(type_name)
    c = canon.lower()

    def fail(detail: str = "") -> PSError:
        extra = f' Error: "{detail}"' if detail else ""
        return runtime_error(f'Cannot convert value "{to_str(v)}" to type "{canon}".{extra}',
                             "InvalidCastParseTargetInvocation" if isinstance(v, str) else "ConvertToFinalInvalidCastException",
                             "InvalidArgument", target=v)

    if c == "system.string":
        if v is None:
            return ""
        return rt.interp_str(v)
    if c in ("system.int32", "system.int64", "system.byte", "system.int16", "system.uint32", "system.uint64"):
        if isinstance(v, list) and len(v) == 1:
            v = v[0]
        if isinstance(v, str):
            n = parse_number(v)
            if n is None:
                raise fail("Input string was not in a correct format.")
            v = n
        try:
            n2 = rt.to_num(v)
        except PSError:
            raise fail() from None
        n2 = int(round(n2)) if isinstance(n2, float) else n2
        if c == "system.byte" and not 0 <= n2 <= 255:
            raise fail("Value was either too large or too small for an unsigned byte.")
        if c == "system.int32" and not -2**31 <= n2 < 2**31:
            raise fail("Value was either too large or too small for an Int32.")
        return n2
    if c in ("system.double", "system.single", "system.decimal"):
        if isinstance(v, str):
            n = parse_number(v)
            if n is None:
                raise fail("Input string was not in a correct format.")
            return float(n)
        return float(rt.to_num(v))
    if c == "system.boolean":
        return to_bool(v)
    if c == "system.char":
        if isinstance(v, int):
            return chr(v)
        s = to_str(v)
        if len(s) != 1:
            raise fail("String must be exactly one character long.")
        return s
    if c == "system.object" or c == "system.management.automation.psobject":
        return v
    if c == "system.management.automation.switchparameter":
        return SwitchValue(to_bool(v))
    if c == "system.version":
        if isinstance(v, Version):
            return v
        try:
            return Version(to_str(v))
        except ValueError:
            raise fail() from None
    if c == "system.byte[]":
        if isinstance(v, (bytes, bytearray)):
            return bytearray(v)
        return bytearray(rt.to_int(x) & 0xFF if 0 <= rt.to_int(x) <= 255 else fail() for x in as_list(v))  # type: ignore[misc]
    if c.endswith("[]"):
        inner = canon[:-2]
        return [convert_value(rt, x, inner) for x in as_list(v)]
    if c in ("system.array", "system.object[]"):
        return as_list(v)
    if c in ("system.collections.hashtable", "system.collections.idictionary"):
        if isinstance(v, dict):
            return v
        if isinstance(v, PSObject):
            h = Hashtable()
            for k, val in v.props.items():
                h[k] = val
            return h
        raise fail()
    if c == "system.management.automation.scriptblock":
        if isinstance(v, ScriptBlock):
            return v
        raise fail()
    if c == "system.guid":
        try:
            return GuidValue(uuid.UUID(to_str(v)))
        except ValueError:
            raise fail("Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).") from None
    if c == "system.datetime":
        if isinstance(v, dt.datetime):
            return v
        try:
            return dt.datetime.fromisoformat(to_str(v))
        except ValueError:
            raise fail() from None
    if c == "system.management.automation.errorrecord":
        if isinstance(v, ErrorRecord):
            return v
        raise fail()
    if c in ENUM_TYPES:
        names = ENUM_TYPES[c]
        parts = [p.strip() for p in to_str(v).split(",")]
        for p in parts:
            if p.lower() not in {n.lower() for n in names}:
                raise runtime_error(f'Cannot convert value "{to_str(v)}" to type "{canon}". Error: "Unable to match '
                                    f'the identifier name {p} to a valid enumerator name. Specify one of the following '
                                    f'enumerator names and try again:\n{", ".join(names)}"',
                                    "RuntimeException", "InvalidArgument")
        canon_names = [next(n for n in names if n.lower() == p.lower()) for p in parts]
        return EnumValue(canon, ", ".join(canon_names))
    if c in ("system.security.securestring",):
        return v
    if c == "system.text.regularexpressions.regex":
        return to_str(v)
    raise runtime_error(f'Unable to find type [{type_name}].', "TypeNotFound", "InvalidOperation",
                        target=type_name)


def cast_to(rt: Interpreter, t: DotNetType, v: object) -> object:
    """[T]$v for a registered type: its own conversion, failing as PowerShell's cast fails."""
    if t.is_instance(v):
        return v
    try:
        return t.cast(rt, v)
    except (MemberNotFound, ValueError, KeyError, TypeError):
        raise runtime_error(f'Cannot convert value "{to_str(v)}" to type "{t.full_name}".',
                            "ConvertToFinalInvalidCastException", "InvalidArgument", target=v) from None


ENUM_TYPES = {
    "system.io.filemode": ["CreateNew", "Create", "Open", "OpenOrCreate", "Truncate", "Append"],
    "system.io.fileaccess": ["Read", "Write", "ReadWrite"],
    "system.io.fileshare": ["None", "Read", "Write", "ReadWrite", "Delete", "Inheritable"],
    "system.io.seekorigin": ["Begin", "Current", "End"],
    "system.reflection.bindingflags": ["Default", "IgnoreCase", "DeclaredOnly", "Instance", "Static", "Public",
                                       "NonPublic", "FlattenHierarchy"],
    "system.management.automation.actionpreference": ["SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore",
                                                      "Suspend"],
}


_FMT_RE = re.compile(r"\{\{|\}\}|\{(\d+)(?:,(-?\d+))?(?::([^}]*))?\}")


def format_string(rt: Interpreter, fmt: str, args: list[object]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        idx = int(m.group(1))
        if idx >= len(args):
            raise runtime_error('Error formatting a string: Index (zero based) must be greater than or equal to zero '
                                'and less than the size of the argument list..', "FormatError")
        v = args[idx]
        spec = m.group(3) or ""
        text = format_one(rt, v, spec)
        if m.group(2):
            w = int(m.group(2))
            text = text.rjust(w) if w > 0 else text.ljust(-w)
        return text
    return _FMT_RE.sub(one, fmt)


def format_one(rt: Interpreter, v: object, spec: str) -> str:
    if not spec:
        return to_str(v)
    kind, digits = spec[0], spec[1:]
    if isinstance(v, dt.datetime):
        return format_date(v, spec)
    try:
        if kind in "xX":
            return format(rt.to_int(v), kind).zfill(int(digits or 0)) if kind == "x" else format(rt.to_int(v), "X").zfill(int(digits or 0))
        if kind in "dD":
            return str(rt.to_int(v)).zfill(int(digits or 0))
        if kind in "nN":
            return f"{rt.to_num(v):,.{int(digits) if digits else 2}f}"
        if kind in "fF":
            return f"{rt.to_num(v):.{int(digits) if digits else 2}f}"
        if kind in "pP":
            return f"{rt.to_num(v) * 100:.{int(digits) if digits else 2}f} %"
    except ValueError:
        pass
    if re.fullmatch(r"0+(\.0+)?", spec):
        dec = len(spec.split(".")[1]) if "." in spec else 0
        return f"{rt.to_num(v):0{len(spec.split('.')[0])}.{dec}f}"
    return to_str(v)


def format_date(d: dt.datetime, fmt: str) -> str:
    if fmt in ("o", "O"):
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}0" + (d.strftime("%z")[:3] + ":" +
                                                                             d.strftime("%z")[3:] if d.tzinfo else "")
    if fmt == "s":
        return d.strftime("%Y-%m-%dT%H:%M:%S")
    if fmt == "u":
        return d.strftime("%Y-%m-%d %H:%M:%SZ")
    tokens = [("yyyy", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"), ("dddd", "%A"),
              ("ddd", "%a"), ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("tt", "%p"),
              ("fffffff", "F7"), ("ffffff", "F6"), ("fffff", "F5"), ("ffff", "F4"), ("fff", "FFF"), ("ff", "FF"),
              ("zzzz", "ZZZ"), ("zzz", "ZZZ"), ("zz", "ZZ"), ("z", "Z1"), ("K", "%z")]
    out = []
    i = 0
    while i < len(fmt):
        for tok, rep in tokens:
            if fmt.startswith(tok, i):
                if rep in ("ZZZ", "ZZ", "Z1"):
                    offset = d.utcoffset() if d.tzinfo is not None else dt.datetime.now().astimezone().utcoffset()
                    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
                    sign = "-" if minutes < 0 else "+"
                    hh, mm = divmod(abs(minutes), 60)
                    out.append(f"{sign}{hh:02d}:{mm:02d}" if rep == "ZZZ" else f"{sign}{hh:02d}" if rep == "ZZ"
                               else f"{sign}{hh}")
                elif rep.startswith("F") and rep[1:].isdigit():
                    out.append(f"{d.microsecond:06d}0"[:int(rep[1:])])
                elif rep == "FFF":
                    out.append(f"{d.microsecond // 1000:03d}")
                elif rep == "FF":
                    out.append(f"{d.microsecond // 10000:02d}")
                else:
                    out.append(d.strftime(rep))
                i += len(tok)
                break
        else:
            ch = fmt[i]
            if ch == "\\" and i + 1 < len(fmt):
                out.append(fmt[i + 1])
                i += 2
                continue
            if ch in "'\"":
                end = fmt.find(ch, i + 1)
                end = len(fmt) if end < 0 else end
                out.append(fmt[i + 1:end])
                i = end + 1
                continue
            out.append({"M": str(d.month), "d": str(d.day), "H": str(d.hour), "h": str(d.hour % 12 or 12),
                        "m": str(d.minute), "s": str(d.second)}.get(ch, ch))
            i += 1
    return "".join(out)


def bytes_arg(rt: Interpreter, v: object, method: str, n: int) -> bytearray:
    if isinstance(v, (bytes, bytearray)):
        return bytearray(v)
    if v is None:
        raise method_exception(method, n, "Value cannot be null.\r\nParameter name: inArray")
    return bytearray(rt.to_int(x) & 0xFF for x in as_list(v))


def no_static_method(obj: TypeRef, name: str) -> PSError:
    if obj.canon.lower() not in KNOWN_TYPES:
        return runtime_error(f"Unable to find type [{obj.name}].", "TypeNotFound", "InvalidOperation",
                             target=obj.name)
    return runtime_error(f"Method invocation failed because [{obj.canon}] does not contain a method named "
                         f"'{name}'.", "MethodNotFound", "InvalidOperation")


KNOWN_TYPES = {v.lower() for v in TYPE_ALIASES.values()} | set(ENUM_TYPES) | {
    "system.threading.thread", "system.io.directoryinfo", "system.security.cryptography.md5"}
add_known_names(KNOWN_TYPES)
