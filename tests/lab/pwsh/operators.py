"""PowerShell's operators: comparison (case-insensitive unless c-prefixed, arrays filter), arithmetic
and string operators following the left operand's type, -like/-match/-replace/-split with .NET regex
and wildcard translation (about_Operators, about_Comparison_Operators).
"""

from __future__ import annotations

import datetime as dt
import math
import re

from tests.lab.pwsh import limits
from tests.lab.pwsh.conversions import cast_to, convert_value, format_string, is_instance
from tests.lab.pwsh.dotnet_objects import TimeSpanValue
from tests.lab.pwsh.dotnet_types import type_ref
from tests.lab.pwsh.errors import PSError, runtime_error
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.parser import COMPARISON_OPS
from tests.lab.pwsh.values import (
    as_list, EnumValue, Hashtable, is_number, parse_number, to_bool, to_str, TypeRef, Version,
)


def _cmp_key(rt: Interpreter, left: object, right: object, case: bool) -> tuple[object, object]:
    """Converts `right` to `left`'s type as PowerShell's comparison operators do."""
    if isinstance(left, str):
        r = to_str(right)
        return (left, r) if case else (left.lower(), r.lower())
    if isinstance(left, bool):
        return left, to_bool(right)
    if is_number(left):
        if isinstance(right, str):
            n = parse_number(right)
            if n is None:
                return to_str(left).lower(), right.lower()
            return left, n
        if right is None:
            return left, None
        return left, rt.to_num(right) if (is_number(right) or isinstance(right, bool)) else right
    if isinstance(left, Version):
        r = right if isinstance(right, Version) else Version(to_str(right))
        return left.key(), r.key()
    if isinstance(left, dt.datetime) and isinstance(right, dt.datetime):
        return left, right
    if isinstance(left, EnumValue):
        return left.name.lower(), to_str(right).lower()
    return left, right


def compare(rt: Interpreter, op: str, left: object, right: object, case: bool) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        if left is None:
            left = "" if isinstance(right, str) else 0
        if right is None:
            if op in ("gt", "ge"):
                return True if op == "gt" else True
            return False
    a, b = _cmp_key(rt, left, right, case)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    try:
        if op == "gt":
            return a > b  # type: ignore[operator]
        if op == "ge":
            return a >= b  # type: ignore[operator]
        if op == "lt":
            return a < b  # type: ignore[operator]
        if op == "le":
            return a <= b  # type: ignore[operator]
    except TypeError:
        raise runtime_error(f'Cannot compare "{to_str(left)}" to "{to_str(right)}".', "ComparisonFailure") from None
    raise AssertionError(op)


def wildcard_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i)
            if end > i:
                out.append("[" + pattern[i + 1:end].replace("\\", "\\\\") + "]")
                i = end + 1
                continue
            out.append(re.escape(c))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def dotnet_regex(pattern: str) -> str:
    """Translates the .NET regex syntax differences that matter here (named groups)."""
    return re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)


def dotnet_replacement(rep: str) -> str:
    rep = rep.replace("\\", "\\\\")
    rep = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", r"\\g<\1>", rep)
    rep = re.sub(r"\$(\d+)", r"\\g<\1>", rep)
    rep = rep.replace("$&", r"\g<0>").replace("$$", "$")
    return rep


def binary_op(rt: Interpreter, op: str, left: object, right: object) -> object:
    case = False
    base = op
    if len(op) > 2 and op[0] in "ic" and op[1:] in COMPARISON_OPS:
        case = op[0] == "c"
        base = op[1:]
    if base in ("eq", "ne", "gt", "ge", "lt", "le"):
        if isinstance(left, (list, tuple)):
            return [x for x in left if compare(rt, base, x, right, case)]
        return compare(rt, base, left, right, case)
    if base in ("like", "notlike"):
        rx = re.compile("^" + wildcard_regex(to_str(right)) + "$", 0 if case else re.I | re.S)
        if isinstance(left, (list, tuple)):
            return [x for x in left if bool(rx.match(to_str(x))) == (base == "like")]
        return bool(rx.match(to_str(left))) == (base == "like")
    if base in ("match", "notmatch"):
        try:
            rx = re.compile(dotnet_regex(to_str(right)), 0 if case else re.I)
        except re.error as e:
            raise runtime_error(f"The regular expression pattern {to_str(right)} is not valid.", "InvalidRegularExpression",
                                "InvalidOperation") from e
        if isinstance(left, (list, tuple)):
            return [x for x in left if bool(rx.search(to_str(x))) == (base == "match")]
        m = rx.search(to_str(left))
        if m and base == "match":
            h = Hashtable()
            h[0] = m.group(0)
            named_idx = set(rx.groupindex.values())
            unnamed = [gi for gi in range(1, (rx.groups or 0) + 1) if gi not in named_idx]
            for n, gi in enumerate(unnamed, start=1):  # .NET numbers unnamed groups before named ones
                if m.group(gi) is not None:
                    h[n] = m.group(gi)
            for gn, g in m.groupdict().items():
                if g is not None:
                    h[gn] = g
            rt.set_var("Matches", h)
        return bool(m) == (base == "match")
    if base in ("contains", "notcontains"):
        found = any(compare(rt, "eq", x, right, case) for x in as_list(left))
        return found == (base == "contains")
    if base in ("in", "notin"):
        found = any(compare(rt, "eq", x, left, case) for x in as_list(right))
        return found == (base == "in")
    if base == "replace":
        parts = as_list(right)
        pattern = to_str(parts[0]) if parts else ""
        rep = to_str(parts[1]) if len(parts) > 1 else ""
        rx = re.compile(dotnet_regex(pattern), 0 if case else re.I)
        if isinstance(left, (list, tuple)):
            return [rx.sub(dotnet_replacement(rep), to_str(x)) for x in left]
        return rx.sub(dotnet_replacement(rep), to_str(left))
    if base == "split":
        parts = as_list(right)
        pattern = to_str(parts[0]) if parts else " "
        limit = rt.to_int(parts[1]) if len(parts) > 1 else 0
        out: list[object] = []
        for x in as_list(left):
            out.extend(re.split(dotnet_regex(pattern), to_str(x), maxsplit=max(0, limit - 1),
                                flags=0 if case else re.I))
        return out
    if base == "join":
        return to_str(right).join(to_str(x) for x in as_list(left))
    if base in ("is", "isnot"):
        t = right if isinstance(right, TypeRef) else type_ref(rt, to_str(right))
        found = t.dotnet.is_instance(left) if t.dotnet is not None else is_instance(left, t.canon)  # type: ignore[attr-defined]
        return found == (base == "is")
    if base == "as":
        t = right if isinstance(right, TypeRef) else type_ref(rt, to_str(right))
        try:
            if t.dotnet is not None:
                return cast_to(rt, t.dotnet, left)  # type: ignore[arg-type]
            return convert_value(rt, left, t.canon)
        except PSError:
            return None
    if op == "xor":
        return to_bool(left) != to_bool(right)
    if op in ("band", "bor", "bxor", "shl", "shr"):
        a, b = rt.to_int(left), rt.to_int(right)
        if op in ("shl", "shr"):
            b &= 63 if not -2**31 <= a < 2**31 else 31  # .NET masks the shift count by the operand's width
            return a << b if op == "shl" else a >> b
        return {"band": a & b, "bor": a | b, "bxor": a ^ b}[op]
    if op == "f":
        return format_string(rt, to_str(left), as_list(right) if isinstance(right, (list, tuple)) else [right])
    if op == "+":
        if isinstance(left, str):
            res = left + to_str(right)
            if len(res) > limits.MAX_STRING_CHARS:
                raise runtime_error("The string is longer than the lab engine allows.", "LabStringTooLong")
            return res
        if isinstance(left, (list, tuple)):
            return list(left) + as_list(right)
        if isinstance(left, (bytes, bytearray)):
            return list(left) + as_list(right)
        if isinstance(left, Hashtable) and isinstance(right, dict):
            h = Hashtable()
            for k, v in left.items():
                h[k] = v
            for k, v in right.items():
                if k in h:
                    raise runtime_error(f"Item has already been added. Key in dictionary: '{k}'  Key being added: "
                                        f"'{k}'", "DuplicateKeyInHashLiteral")
                h[k] = v
            return h
        if left is None:
            return right
        if isinstance(left, dt.datetime):
            return left + dt.timedelta(seconds=right.seconds) if isinstance(right, TimeSpanValue) else left
        return _arith(rt, "+", left, right)
    if op == "-" and isinstance(left, dt.datetime):  # DateTime - DateTime is a TimeSpan; - TimeSpan a DateTime
        if isinstance(right, dt.datetime):
            return TimeSpanValue((_aware(left) - _aware(right)).total_seconds())
        if isinstance(right, TimeSpanValue):
            return left - dt.timedelta(seconds=right.seconds)
    if op in ("-", "*", "/", "%"):
        if op == "*" and isinstance(left, str):
            n = rt.to_int(right)
            if n * len(left) > limits.MAX_STRING_CHARS:
                raise runtime_error("The string is longer than the lab engine allows.", "LabStringTooLong")
            return left * max(0, n)
        if op == "*" and isinstance(left, list):
            n = rt.to_int(right)
            if n * len(left) > limits.MAX_LOOP_ITERATIONS:
                raise rt.bound_error("array multiplication")
            return left * max(0, n)
        return _arith(rt, op, left, right)
    raise runtime_error(f"The operator '-{op}' is outside the lab engine's subset.", "LabUnsupportedOperator")


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.astimezone()


def _arith(rt: Interpreter, op: str, left: object, right: object) -> object:
    a = rt.to_num(left)
    b = rt.to_num(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise runtime_error("Attempted to divide by zero.", "RuntimeException", "NotSpecified",
                                "System.DivideByZeroException")
        r = a / b
        return int(r) if isinstance(a, int) and isinstance(b, int) and r.is_integer() else r
    if op == "%":
        if b == 0:
            raise runtime_error("Attempted to divide by zero.", "RuntimeException", "NotSpecified",
                                "System.DivideByZeroException")
        return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else int(math.fmod(a, b))
    raise AssertionError(op)
