"""Instance members: $obj.Property, $obj.Property = value and $obj.Method(args) on every value the subset has.

Python-backed values (strings, lists, hashtables, dates, numbers) are dispatched here by type; lab
objects answer through their own `ps_get`/`ps_call`; [Type]::Static members go to statics.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from tests.lab.pwsh.conversions import format_date, format_one
from tests.lab.pwsh.dotnet_objects import CategoryInfoObj, ExceptionObj, TimeSpanValue, TypeObject
from tests.lab.pwsh.errors import ErrorRecord, method_exception, no_method, PSError, runtime_error, type_name_of
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.language import check_method, check_property_set
from tests.lab.pwsh.net.collections import NOT_HANDLED
from tests.lab.pwsh.net.reflection import type_method, type_property
from tests.lab.pwsh.operators import compare
from tests.lab.pwsh.parser import Node
from tests.lab.pwsh.stages import InvocationInfo, run_stage, ScriptCommand
from tests.lab.pwsh.statics import static_member
from tests.lab.pwsh.steppable import SteppablePipeline
from tests.lab.pwsh.values import Hashtable, PSEnumerator, PSObject, Ref, ScriptBlock, to_str, TypeRef, Version


class PropertyEntry:
    ps_type = "System.Management.Automation.PSNoteProperty"

    def __init__(self, name: object, value: object) -> None:
        self.Name = name
        self.Value = value
        self.MemberType = "NoteProperty"


class PSObjectView:
    """$x.PSObject: Properties and TypeNames."""

    def __init__(self, target: object) -> None:
        self.target = target

    def ps_get(self, name: str) -> object:
        low = name.lower()
        t = self.target
        if low == "properties":
            if isinstance(t, PSObject):
                return [PropertyEntry(k, v) for k, v in t.props.items()]
            if isinstance(t, dict):
                return [PropertyEntry(n, v) for n, v in (("Count", len(t)), ("Keys", list(t.keys())))]
            return []
        if low == "typenames":
            return [type_name_of(t), "System.Object"]
        if low == "baseobject":
            return t
        if low == "members":
            return MemberCollection(t)
        if low == "methods":
            return list(t.methods.values()) if isinstance(t, PSObject) else []
        raise KeyError(name)


class MemberCollection:
    """$obj.PSObject.Members: Add(a PSScriptMethod or PSNoteProperty) extends a PSCustomObject."""

    ps_type = "System.Management.Automation.PSMemberInfoIntegratingCollection`1"

    def __init__(self, target: object) -> None:
        self.target = target

    def ps_call(self, name: str, args: list[object]) -> object:
        t = self.target
        if name.lower() == "add" and isinstance(t, PSObject):
            member = args[0]
            member_name = to_str(getattr(member, "Name", ""))
            if getattr(member, "MemberType", "") == "ScriptMethod":
                t.methods[member_name] = member
            else:
                t.props[member_name] = getattr(member, "Value", None)
            return None
        raise no_method(self, name)


def invoke_script_method(rt: Interpreter, obj: object, method: object, args: list[object]) -> object:
    """Runs a script method with $this set to the object; its output is the method's return value."""
    out: list[object] = []
    cmd = ScriptCommand(rt, method.Script, method.Name, list(args), {})  # type: ignore[attr-defined]
    cmd.extra_vars["this"] = obj
    cmd.sink = out.append
    run_stage(cmd, None)
    return None if not out else out[0] if len(out) == 1 else out


class ScriptBlockAst:
    ps_type = "System.Management.Automation.Language.ScriptBlockAst"

    def __init__(self, sb: ScriptBlock) -> None:
        self.sb = sb
        self.Extent = str(sb)

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "getscriptblock":
            return ScriptBlock(self.sb.body, self.sb.src, self.sb.file_name, self.sb.usings)
        raise no_method(self, name)


class MethodRef:
    """`$obj.Method` without parentheses: PowerShell's PSMethod, a (truthy) reference to the method."""

    ps_type = "System.Management.Automation.PSMethod"

    def __init__(self, obj: object, name: str) -> None:
        self.obj = obj
        self.Name = name

    def ps_tostring(self) -> str:
        return f"{self.Name}()"


# Methods every .NET object has (System.Object), and the ones hashtables, lists and strings add.
_OBJECT_METHODS = {"gettype", "tostring", "equals", "gethashcode"}
_KNOWN_METHODS = {
    dict: _OBJECT_METHODS | {"add", "clear", "clone", "contains", "containskey", "containsvalue", "copyto",
                             "getenumerator", "remove"},
    list: _OBJECT_METHODS | {"add", "clear", "contains", "indexof", "insert", "remove", "removeat", "toarray",
                             "getenumerator", "clone", "copyto"},
    str: _OBJECT_METHODS | {"contains", "endswith", "indexof", "insert", "lastindexof", "padleft", "padright",
                            "remove", "replace", "split", "startswith", "substring", "tochararray", "tolower",
                            "toupper", "trim", "trimend", "trimstart"},
}


def method_ref(obj: object, name: str) -> MethodRef | None:
    """A PSMethod when `name` is a method of the object's type, else None."""
    low = name.lower()
    for kind, names in _KNOWN_METHODS.items():
        if isinstance(obj, kind):
            return MethodRef(obj, name) if low in names else None
    return MethodRef(obj, name) if low in _OBJECT_METHODS else None


def get_member(rt: Interpreter, obj: object, name: str) -> object:
    low = name.lower()
    if obj is None:
        return None
    if low == "psobject":
        return PSObjectView(obj)
    if isinstance(obj, PSObject):
        if name in obj.props:
            return obj.props[name]
        if name in obj.methods:
            return obj.methods[name]
        if low in _OBJECT_METHODS:
            return MethodRef(obj, name)
        if rt.scope.strict_mode() >= 2:
            raise runtime_error(f"The property '{name}' cannot be found on this object. Verify that the property "
                                f"exists.", "PropertyNotFoundStrict", "NotSpecified", target=name)
        return None
    if isinstance(obj, Hashtable) or isinstance(obj, dict):
        if low in ("count",) and name not in obj:
            return len(obj)
        if low == "keys" and name not in obj:
            return list(obj.keys())
        if low == "values" and name not in obj:
            return list(obj.values())
        if name not in obj:
            return method_ref(obj, name)  # a key wins over a member of the same name, as for IDictionary
        return obj[name] if isinstance(obj, Hashtable) else obj.get(name)
    if isinstance(obj, str):
        if low == "length":
            return len(obj)
        return None
    if isinstance(obj, (list, tuple, bytes, bytearray)):
        if low in ("count", "length"):
            return len(obj)
        if low == "rank":
            return 1
        # member enumeration
        out = [get_member(rt, x, name) for x in obj]
        out = [x for x in out if x is not None]
        return out[0] if len(out) == 1 else (out or None)
    if isinstance(obj, PSEnumerator):
        if low == "current":
            return obj.current
        return None
    if isinstance(obj, ErrorRecord):
        return errorrecord_member(rt, obj, low)
    if isinstance(obj, Version):
        idx = {"major": 0, "minor": 1, "build": 2, "revision": 3}.get(low)
        if idx is not None:
            return obj.parts[idx] if idx < len(obj.parts) else -1
        return None
    if isinstance(obj, dt.datetime):
        attr = {"year": obj.year, "month": obj.month, "day": obj.day, "hour": obj.hour, "minute": obj.minute,
                "second": obj.second, "millisecond": obj.microsecond // 1000, "dayofweek": obj.strftime("%A"),
                "ticks": int((obj.replace(tzinfo=None) - dt.datetime(1, 1, 1)).total_seconds() * 10**7),
                "date": obj.replace(hour=0, minute=0, second=0, microsecond=0), "dayofyear": obj.timetuple().tm_yday,
                "kind": "Utc" if obj.utcoffset() == dt.timedelta(0) else "Local" if obj.tzinfo else "Unspecified",
                "timeofday": TimeSpanValue(obj.hour * 3600 + obj.minute * 60 + obj.second + obj.microsecond / 1e6)}
        return attr.get(low)
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return None
    if isinstance(obj, ScriptBlock):
        if low == "file":
            return obj.file_name
        if low == "ast":  # ScriptBlockAst: GetScriptBlock() gives the block back
            return ScriptBlockAst(obj)
        return None
    if isinstance(obj, TypeRef):
        try:
            return type_property(rt, obj, name)
        except KeyError:
            return static_member(rt, obj, name)
    getter = getattr(obj, "ps_get", None)
    if getter is not None:
        try:
            return getter(name)
        except KeyError:
            pass
    for attr in dir(obj):
        if attr.lower() == low and not attr.startswith("_") and attr[0].isupper():
            return getattr(obj, attr)
    return None


def set_member(rt: Interpreter, obj: object, name: str, value: object) -> None:
    check_property_set(rt, obj)
    if isinstance(obj, PSObject):
        if name not in obj.props:
            raise runtime_error(f"The property '{name}' cannot be found on this object. Verify that the property "
                                f"exists and can be set.", "PropertyAssignmentException")
        obj.props[name] = value
        return
    if isinstance(obj, dict):
        obj[name] = value
        return
    if isinstance(obj, Ref) and name.lower() == "value":
        obj.Value = value
        return
    setter = getattr(obj, "ps_set", None)  # objects whose properties have setters with effects (SCManager.Service)
    if setter is not None and setter(name, value):
        return
    for attr in dir(obj):
        if attr.lower() == name.lower() and attr[0].isupper():
            setattr(obj, attr, value)
            return
    if obj is None:
        raise runtime_error(f"The property '{name}' cannot be found on this object. Verify that the property exists "
                            f"and can be set.", "PropertyNotFound")
    raise runtime_error(f"'{name}' is a ReadOnly property.", "PropertyAssignmentException")


def errorrecord_member(rt: Interpreter, rec: ErrorRecord, low: str) -> object:
    if low == "exception":
        return rec.exception if rec.exception is not None else ExceptionObj(rec)
    if low == "fullyqualifiederrorid":
        return rec.fq_error_id
    if low == "categoryinfo":
        return CategoryInfoObj(rec)
    if low == "targetobject":
        return rec.target
    if low == "invocationinfo":
        info = InvocationInfo(rec.command_name or "", [], Hashtable(), False, ScriptBlock(Node("body", 0), ""))
        info.PositionMessage = rec.position or ""
        info.ScriptLineNumber = rec.line  # type: ignore[attr-defined]
        return info
    if low == "scriptstacktrace":
        return f"at <ScriptBlock>, <No file>: line {rec.line or 1}"
    if low == "errordetails":
        return rec.ErrorDetails
    return None


def call_method(rt: Interpreter, obj: object, name: str, args: list[object]) -> object:
    low = name.lower()
    if obj is None:
        raise runtime_error("You cannot call a method on a null-valued expression.", "InvokeMethodOnNull",
                            "InvalidOperation")
    check_method(rt, obj, name)
    first = getattr(obj, "ps_call_first", None)  # .NET collections that are Python lists/dicts (net/collections.py)
    if first is not None:
        answer = first(name, args)
        if answer is not NOT_HANDLED:
            return answer
    if isinstance(obj, TypeRef):
        return type_method(rt, obj, name, args)
    if low == "gettype" and not args:
        internals = getattr(obj, "ps_internals", None)
        return TypeObject(type_name_of(obj), internals() if callable(internals) else None)
    if low == "tostring" and not args and not hasattr(obj, "ps_call"):
        return to_str(obj)
    if low == "equals" and len(args) == 1:
        return compare(rt, "eq", obj, args[0], True) if not isinstance(obj, str) else obj == to_str(args[0])
    if isinstance(obj, str):
        return string_method(rt, obj, name, args)
    if isinstance(obj, ScriptBlock):
        if low == "invoke":
            out: list[object] = []
            cmd = ScriptCommand(rt, obj, "", list(args), {})
            cmd.sink = out.append
            run_stage(cmd, None)
            return out
        if low == "getnewclosure":
            return obj
        if low == "getsteppablepipeline":
            return SteppablePipeline(rt, obj)
        raise no_method(obj, name)
    if isinstance(obj, (list, bytearray)):
        if low == "add":
            obj.append(args[0])  # type: ignore[arg-type]
            return len(obj) - 1
        if low == "contains":
            return any(compare(rt, "eq", x, args[0], True) for x in obj)
        if low == "indexof":
            for i, x in enumerate(obj):
                if compare(rt, "eq", x, args[0], True):
                    return i
            return -1
        if low == "remove":
            for i, x in enumerate(obj):
                if compare(rt, "eq", x, args[0], True):
                    del obj[i]
                    break
            return None
        if low == "clear":
            obj.clear()
            return None
        if low == "toarray":
            return list(obj)
        if low == "getenumerator":
            return PSEnumerator(list(obj))
        if low == "insert":
            obj.insert(rt.to_int(args[0]), args[1])  # type: ignore[arg-type]
            return None
        if low == "removeat":
            del obj[rt.to_int(args[0])]
            return None
        raise no_method(obj, name)
    if isinstance(obj, dict):
        if low == "containskey" or low == "contains":
            return args[0] in obj
        if low == "containsvalue":
            return any(compare(rt, "eq", v, args[0], True) for v in obj.values())
        if low == "add":
            if args[0] in obj:
                raise method_exception(name, 2, f"Item has already been added. Key in dictionary: '{to_str(args[0])}'"
                                                f"  Key being added: '{to_str(args[0])}'")
            obj[args[0]] = args[1]
            return None
        if low == "remove":
            if isinstance(obj, Hashtable):
                obj.remove(args[0])
            else:
                obj.pop(args[0], None)
            return None
        if low == "getenumerator":
            return PSEnumerator([PropertyEntryKV(k, v) for k, v in obj.items()])
        if low == "clone":
            h = Hashtable()
            for k, v in obj.items():
                h[k] = v
            return h
        if low == "clear":
            obj.clear()
            return None
        raise no_method(obj, name)
    if isinstance(obj, PSEnumerator):
        if low == "movenext":
            try:
                obj.current = next(obj.it)
                return True
            except StopIteration:
                return False
        if low == "getenumerator":
            return obj
        if low in ("reset", "dispose"):
            return None
        raise no_method(obj, name)
    if isinstance(obj, Ref):
        raise no_method(obj, name)
    if isinstance(obj, dt.datetime):
        if low == "tostring":
            return format_date(obj, to_str(args[0])) if args else obj.strftime("%m/%d/%Y %H:%M:%S").lstrip("0")
        if low in ("adddays", "addhours", "addminutes", "addseconds", "addmilliseconds"):
            unit = low[3:]
            return obj + dt.timedelta(**{unit if unit != "milliseconds" else "milliseconds": rt.to_num(args[0])})
        if low == "touniversaltime":
            return obj.astimezone(dt.timezone.utc)
        if low == "tolocaltime":
            return obj.astimezone()
        if low in ("addyears", "addmonths"):
            months = rt.to_int(args[0]) * (12 if low == "addyears" else 1) + obj.month - 1
            year, month = obj.year + months // 12, months % 12 + 1
            return obj.replace(year=year, month=month, day=min(obj.day, 28 if month == 2 else 30 if month in (
                4, 6, 9, 11) else 31))
        if low == "addticks":
            return obj + dt.timedelta(microseconds=rt.to_num(args[0]) / 10)
        if low in ("add", "subtract") and isinstance(args[0], TimeSpanValue):
            delta = dt.timedelta(seconds=args[0].seconds)
            return obj + delta if low == "add" else obj - delta
        if low == "tofiletime" or low == "tofiletimeutc":
            return int((obj.timestamp() + 11644473600) * 10**7)
        raise no_method(obj, name)
    if isinstance(obj, Version) and low == "tostring":
        return str(obj)
    if isinstance(obj, PSObject) and name in obj.methods:
        return invoke_script_method(rt, obj, obj.methods[name], args)
    if isinstance(obj, ErrorRecord) and low == "tostring":
        return obj.message
    caller = getattr(obj, "ps_call", None)
    if caller is not None:
        if low == "tostring" and not args:
            try:
                return caller(name, args)
            except PSError:
                return to_str(obj)  # Object.ToString(): every .NET object has one (its type's name by default)
        return caller(name, args)
    if isinstance(obj, (int, float)):
        if low == "tostring":
            return format_one(rt, obj, to_str(args[0])) if args else to_str(obj)
        if low == "compareto":
            return (obj > rt.to_num(args[0])) - (obj < rt.to_num(args[0]))
    raise no_method(obj, name)


class PropertyEntryKV:
    def __init__(self, k: object, v: object) -> None:
        self.Key = k
        self.Name = k
        self.Value = v


def string_method(rt: Interpreter, s: str, name: str, args: list[object]) -> object:
    low = name.lower()
    a = [to_str(x) if not isinstance(x, (int, float)) or isinstance(x, bool) else x for x in args]
    if low == "replace":
        return s.replace(to_str(a[0]), to_str(a[1]))
    if low in ("tolower", "tolowerinvariant"):
        return s.lower()
    if low in ("toupper", "toupperinvariant"):
        return s.upper()
    if low in ("trim", "trimstart", "trimend"):
        chars = "".join(to_str(x) for x in a) if a else None
        fn = {"trim": s.strip, "trimstart": s.lstrip, "trimend": s.rstrip}[low]
        return fn(chars) if chars else fn()
    if low == "split":
        seps = "".join(to_str(x) for x in a) if a else " "
        if not seps:
            return [s]
        return re.split("[" + re.escape(seps) + "]", s)
    if low == "substring":
        start = rt.to_int(a[0])
        if start > len(s) or start < 0:
            raise method_exception(name, len(a), "startIndex cannot be larger than length of string.\r\n"
                                                 "Parameter name: startIndex")
        if len(a) > 1:
            ln = rt.to_int(a[1])
            if start + ln > len(s):
                raise method_exception(name, 2, "Index and length must refer to a location within the string.\r\n"
                                                "Parameter name: length")
            return s[start:start + ln]
        return s[start:]
    if low == "startswith":
        return s.lower().startswith(to_str(a[0]).lower()) if len(a) > 1 else s.startswith(to_str(a[0]))
    if low == "endswith":
        return s.lower().endswith(to_str(a[0]).lower()) if len(a) > 1 else s.endswith(to_str(a[0]))
    if low == "contains":
        return to_str(a[0]) in s
    if low == "indexof":
        return s.find(to_str(a[0]), rt.to_int(a[1]) if len(a) > 1 else 0)
    if low == "lastindexof":
        return s.rfind(to_str(a[0]))
    if low == "padleft":
        return s.rjust(rt.to_int(a[0]), to_str(a[1]) if len(a) > 1 else " ")
    if low == "padright":
        return s.ljust(rt.to_int(a[0]), to_str(a[1]) if len(a) > 1 else " ")
    if low == "tochararray":
        return list(s)
    if low == "tostring":
        return s
    if low == "gethashcode":
        # .NET's value differs, but like it this is stable within one process, which is all it promises
        return int.from_bytes(hashlib.blake2b(s.encode("utf-16-le"), digest_size=4).digest(), "little", signed=True)
    if low == "insert":
        i = rt.to_int(a[0])
        return s[:i] + to_str(a[1]) + s[i:]
    if low == "remove":
        i = rt.to_int(a[0])
        return s[:i] + (s[i + rt.to_int(a[1]):] if len(a) > 1 else "")
    if low == "normalize":
        return s
    if low == "compareto":
        return (s > to_str(a[0])) - (s < to_str(a[0]))
    raise no_method(s, name)
