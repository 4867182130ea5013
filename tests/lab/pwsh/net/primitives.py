"""Small BCL value types and helpers scripts reach for: IntPtr/UIntPtr (a 64-bit process), Char, Regex objects
with their matches and groups, TimeSpan, the DateTime statics for FILETIME and kinds, Array.IndexOf,
CultureInfo.InvariantCulture and TimeZoneInfo.Local.

[regex] objects translate .NET's syntax where it differs from Python's (named groups) with the same
helper the -match operator uses.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from tests.lab.pwsh.dotnet_objects import TimeSpanValue
from tests.lab.pwsh.dotnet_types import EnumType, register, SimpleType
from tests.lab.pwsh.errors import method_exception, no_method
from tests.lab.pwsh.values import as_list, to_str

FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)


class IntPtrValue:
    """A native-sized integer (IntPtr/UIntPtr): 8 bytes in the lab's 64-bit wsmprovhost.exe/powershell.exe."""

    def __init__(self, value: int, kind: str = "System.IntPtr") -> None:
        self.value = value
        self.ps_type = kind

    def ps_number(self) -> int:
        return self.value

    def ps_tostring(self) -> str:
        return str(self.value)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("toint64", "toint32", "touint64", "touint32"):
            return self.value
        if low == "tostring":
            return str(self.value)
        raise no_method(self, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IntPtrValue):
            return self.value == other.value
        if isinstance(other, int):
            return self.value == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


def _ptr_type(name: str) -> SimpleType:
    def cast(rt: Any, v: object) -> IntPtrValue:
        return IntPtrValue(rt.to_int(v), name)
    return SimpleType(name, statics={"size": lambda rt: 8, "zero": lambda rt: IntPtrValue(0, name)},
                      ctor=lambda rt, a: cast(rt, a[0]), cast=cast,
                      instance=lambda v: isinstance(v, IntPtrValue) and v.ps_type == name)


register(_ptr_type("System.IntPtr"), "intptr")
register(_ptr_type("System.UIntPtr"), "uintptr")


def _char_test(fn: Any) -> Any:
    return lambda rt, a: bool(to_str(a[0])) and fn(to_str(a[0])[rt.to_int(a[1]) if len(a) > 1 else 0])


register(SimpleType("System.Char", methods={
    "iswhitespace": _char_test(str.isspace), "isdigit": _char_test(str.isdigit),
    "isletter": _char_test(str.isalpha), "isletterordigit": _char_test(str.isalnum),
    "isupper": _char_test(str.isupper), "islower": _char_test(str.islower),
    "toupper": lambda rt, a: to_str(a[0]).upper(), "tolower": lambda rt, a: to_str(a[0]).lower()},
    cast=lambda rt, v: chr(v) if isinstance(v, int) else to_str(v)[0], instance=lambda v: isinstance(v, str)
    and len(v) == 1), "char")

# ---- regular expressions ------------------------------------------------------------------------------------------

register(EnumType("System.Text.RegularExpressions.RegexOptions", {
    "None": 0, "IgnoreCase": 1, "Multiline": 2, "ExplicitCapture": 4, "Compiled": 8, "Singleline": 16,
    "IgnorePatternWhitespace": 32, "RightToLeft": 64, "ECMAScript": 256, "CultureInvariant": 512}, flags=True))


def _python_flags(options: object) -> int:
    value = getattr(options, "value", options if isinstance(options, int) else 0)
    flags = 0
    if value & 1:
        flags |= re.I
    if value & 2:
        flags |= re.M
    if value & 16:
        flags |= re.S
    if value & 32:
        flags |= re.X
    return flags


def _translate(pattern: str) -> str:
    return re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)


class GroupObj:
    ps_type = "System.Text.RegularExpressions.Group"

    def __init__(self, m: re.Match[str] | None, key: int | str) -> None:
        value = m.group(key) if m is not None else None
        self.Success = value is not None
        self.Value = value or ""
        self.Index = m.start(key) if m is not None and value is not None else 0
        self.Length = len(self.Value)
        self.Name = str(key)

    def ps_tostring(self) -> str:
        return self.Value


class GroupCollection:
    ps_type = "System.Text.RegularExpressions.GroupCollection"

    def __init__(self, m: re.Match[str]) -> None:
        self.m = m
        self.Count = (m.re.groups or 0) + 1

    def ps_index(self, key: object) -> GroupObj:
        if isinstance(key, int):
            if key > (self.m.re.groups or 0):
                return GroupObj(None, 0)
            return GroupObj(self.m, key)
        name = to_str(key)
        if name not in self.m.re.groupindex:
            return GroupObj(None, 0)
        return GroupObj(self.m, name)


class MatchObj(GroupObj):
    ps_type = "System.Text.RegularExpressions.Match"

    def __init__(self, m: re.Match[str] | None) -> None:
        super().__init__(m, 0)
        self.m = m
        self.Groups = GroupCollection(m) if m is not None else None

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "tostring":
            return self.Value
        raise no_method(self, name)


class RegexObj:
    ps_type = "System.Text.RegularExpressions.Regex"

    def __init__(self, pattern: str, options: object = 0) -> None:
        self.pattern = pattern
        self.Options = options
        try:
            self.rx = re.compile(_translate(pattern), _python_flags(options))
        except re.error as e:
            raise method_exception(".ctor", 1, f"parsing \"{pattern}\" - {e}.") from None

    def ps_tostring(self) -> str:
        return self.pattern

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        text = to_str(args[0]) if args else ""
        if low == "matches":
            return [MatchObj(m) for m in self.rx.finditer(text)]
        if low == "match":
            return MatchObj(self.rx.search(text))
        if low == "ismatch":
            return self.rx.search(text) is not None
        if low == "replace":
            from tests.lab.pwsh.operators import dotnet_replacement
            return self.rx.sub(dotnet_replacement(to_str(args[1])), text)
        if low == "split":
            return self.rx.split(text)
        if low == "tostring":
            return self.pattern
        raise no_method(self, name)


register(SimpleType("System.Text.RegularExpressions.Regex",
                    ctor=lambda rt, a: RegexObj(to_str(a[0]), a[1] if len(a) > 1 else 0),
                    cast=lambda rt, v: v if isinstance(v, RegexObj) else RegexObj(to_str(v)),
                    instance=lambda v: isinstance(v, RegexObj)), "regex")

# ---- time ---------------------------------------------------------------------------------------------------------


def _timespan(rt: Any, a: list[object]) -> TimeSpanValue:
    nums = [rt.to_num(x) for x in a]
    if len(nums) == 1:
        return TimeSpanValue(nums[0] / 10**7)
    if len(nums) == 3:
        return TimeSpanValue(nums[0] * 3600 + nums[1] * 60 + nums[2])
    if len(nums) >= 4:
        return TimeSpanValue(nums[0] * 86400 + nums[1] * 3600 + nums[2] * 60 + nums[3]
                             + (nums[4] / 1000 if len(nums) > 4 else 0))
    return TimeSpanValue(0)


register(SimpleType("System.TimeSpan", ctor=_timespan, statics={"zero": lambda rt: TimeSpanValue(0)},
                    methods={"fromseconds": lambda rt, a: TimeSpanValue(rt.to_num(a[0])),
                             "frommilliseconds": lambda rt, a: TimeSpanValue(rt.to_num(a[0]) / 1000),
                             "fromminutes": lambda rt, a: TimeSpanValue(rt.to_num(a[0]) * 60),
                             "fromhours": lambda rt, a: TimeSpanValue(rt.to_num(a[0]) * 3600),
                             "fromdays": lambda rt, a: TimeSpanValue(rt.to_num(a[0]) * 86400),
                             "fromticks": lambda rt, a: TimeSpanValue(rt.to_num(a[0]) / 10**7)},
                    instance=lambda v: isinstance(v, TimeSpanValue)), "timespan")

register(EnumType("System.DateTimeKind", {"Unspecified": 0, "Utc": 1, "Local": 2}))


def from_filetime(value: int, utc: bool) -> dt.datetime:
    moment = FILETIME_EPOCH + dt.timedelta(microseconds=value // 10)
    return moment if utc else moment.astimezone()


def _specify_kind(rt: Any, a: list[object]) -> dt.datetime:
    moment = a[0]
    kind = to_str(a[1]).lower()
    if not isinstance(moment, dt.datetime):
        raise method_exception("SpecifyKind", 2, "Invalid DateTime.")
    naive = moment.replace(tzinfo=None)
    if kind == "utc":
        return naive.replace(tzinfo=dt.timezone.utc)
    if kind == "local":
        return naive.replace(tzinfo=dt.datetime.now().astimezone().tzinfo)
    return naive


# Extends the name-dispatched [datetime] (statics.py) with the members that type does not answer.
register(SimpleType("System.DateTime", methods={
    "fromfiletimeutc": lambda rt, a: from_filetime(rt.to_int(a[0]), True),
    "fromfiletime": lambda rt, a: from_filetime(rt.to_int(a[0]), False),
    "specifykind": _specify_kind,
    "daysinmonth": lambda rt, a: [31, 29 if rt.to_int(a[0]) % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                  31][rt.to_int(a[1]) - 1]},
    statics={"minvalue": lambda rt: dt.datetime(1, 1, 1), "maxvalue": lambda rt: dt.datetime(9999, 12, 31, 23, 59, 59)},
    ctor=lambda rt, a: _new_datetime(rt, a), cast=lambda rt, v: _to_datetime(rt, v),
    instance=lambda v: isinstance(v, dt.datetime)), "datetime")


def _to_datetime(rt: Any, v: object) -> dt.datetime:
    """[datetime]$v: ISO 8601 text or the en-US general format (M/d/yyyy h:mm:ss tt), as PowerShell parses it."""
    if isinstance(v, dt.datetime):
        return v
    text = to_str(v).strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(text)


def _new_datetime(rt: Any, a: list[object]) -> dt.datetime:
    nums = [rt.to_int(x) for x in a if not isinstance(x, str)]
    if len(nums) == 1:
        return dt.datetime(1, 1, 1) + dt.timedelta(microseconds=nums[0] // 10)
    return dt.datetime(*nums[:6])


class CultureObj:
    ps_type = "System.Globalization.CultureInfo"

    def __init__(self, name: str) -> None:
        self.Name = name
        self.DisplayName = "Invariant Language (Invariant Country)" if not name else "English (United States)"
        self.LCID = 127 if not name else 1033

    def ps_tostring(self) -> str:
        return self.Name


register(SimpleType("System.Globalization.CultureInfo",
                    statics={"invariantculture": lambda rt: CultureObj(""),
                             "currentculture": lambda rt: CultureObj("en-US"),
                             "currentuiculture": lambda rt: CultureObj("en-US")},
                    ctor=lambda rt, a: CultureObj(to_str(a[0]))))


class TimeZoneObj:
    ps_type = "System.TimeZoneInfo"

    def __init__(self) -> None:
        offset = time.localtime().tm_gmtoff
        self.BaseUtcOffset = TimeSpanValue(offset)
        self.Id = "UTC" if offset == 0 else "Local"
        self.StandardName = "Coordinated Universal Time" if offset == 0 else time.tzname[0]
        self.DisplayName = "(UTC) Coordinated Universal Time" if offset == 0 else f"(UTC{offset / 3600:+g}) {self.Id}"
        self.SupportsDaylightSavingTime = bool(time.daylight)

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "isdaylightsavingtime":
            return bool(time.localtime().tm_isdst)
        raise no_method(self, name)


register(SimpleType("System.TimeZoneInfo", statics={"local": lambda rt: TimeZoneObj(), "utc": lambda rt: TimeZoneObj()}))


def _index_of(rt: Any, a: list[object]) -> int:
    from tests.lab.pwsh.operators import compare
    for i, x in enumerate(as_list(a[0])):
        if compare(rt, "eq", x, a[1], True):
            return i
    return -1


register(SimpleType("System.Array", methods={"indexof": _index_of,
                                             "reverse": lambda rt, a: a[0].reverse() if isinstance(a[0], list) else None,
                                             "sort": lambda rt, a: a[0].sort(key=to_str) if isinstance(a[0], list)
                                             else None},
                    cast=lambda rt, v: as_list(v), instance=lambda v: isinstance(v, (list, tuple, bytearray))), "array")
