"""Object pipeline cmdlets: Select-, ForEach-, Where-, Measure- and Sort-Object, New-Object and New-Guid."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.dotnet_objects import GuidValue
from tests.lab.pwsh.errors import StopUpstream
from tests.lab.pwsh.members import call_method, get_member
from tests.lab.pwsh.operators import binary_op, compare
from tests.lab.pwsh.stages import run_filter_block
from tests.lab.pwsh.language import check_create
from tests.lab.pwsh.statics import new_object
from tests.lab.pwsh.values import (
    as_list, canonical_type, enumerate_value, is_number, NO_INPUT, PSObject, ScriptBlock, to_bool, to_str,
)


@cmdlet("New-Guid")
class NewGuid(Cmdlet):
    def process(self, item: object) -> None:
        self.emit(GuidValue(uuid.uuid4()))


@cmdlet("New-Object", positional=("TypeName", "ArgumentList"), params=("Property", "ComObject"),
        aliases={"args": "ArgumentList"})
class NewObject(Cmdlet):
    def process(self, item: object) -> None:
        if "ComObject" in self.p:
            raise self.terminate("COM objects are outside the lab engine's subset.", "LabUnsupportedComObject")
        tname = to_str(self.p.get("TypeName"))
        args = self.p.get("ArgumentList")
        arglist = args if isinstance(args, list) else ([] if args is None else [args])
        if canonical_type(tname).lower() in ("system.management.automation.psobject", "psobject",
                                             "system.management.automation.pscustomobject"):
            obj: object = PSObject(self.p.get("Property") if isinstance(self.p.get("Property"), dict) else None)
        else:
            check_create(self.rt, tname, "NewObjectCommand")
            obj = new_object(self.rt, tname, arglist)
        self.emit(obj)


@cmdlet("Select-Object", "select", positional=("Property",),
        params=("First", "Last", "Skip", "ExpandProperty", "Index", "InputObject"), switches=("Unique",))
class SelectObject(Cmdlet):
    def begin(self) -> None:
        self.count = 0
        self.skipped = 0
        self.buf: list[object] = []
        self.seen: list[object] = []

    def shape(self, v: object) -> object:
        rt = self.rt
        if "ExpandProperty" in self.p:
            return get_member(rt, v, to_str(self.p["ExpandProperty"]))
        if "Property" in self.p:
            props = as_list(self.p["Property"])
            if props == ["*"]:
                return v
            out = PSObject()
            for p in props:
                if isinstance(p, dict):  # a calculated property: @{ Name|N|Label|L = ...; Expression|E = {...} }
                    label = next((p[k] for k in ("Name", "N", "Label", "L") if k in p), None)
                    expr = next((p[k] for k in ("Expression", "E") if k in p), None)
                    if isinstance(expr, ScriptBlock):
                        found: list[object] = []
                        run_filter_block(rt, expr, v, found.append)
                        value = found[0] if len(found) == 1 else (found or None)
                    else:
                        value = get_member(rt, v, to_str(expr))
                    out.props[to_str(label if label is not None else expr)] = value
                else:
                    out.props[to_str(p)] = get_member(rt, v, to_str(p))
            return out
        return v

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" not in self.p:
                return
            item = self.p["InputObject"]
        if self.skipped < self.rt.to_int(self.p.get("Skip", 0)):
            self.skipped += 1
            return
        if "Last" in self.p:
            self.buf.append(item)
            return
        if self.p.get("Unique"):
            if any(compare(self.rt, "eq", s, item, True) for s in self.seen):
                return
            self.seen.append(item)
        if "First" in self.p:
            if self.count >= self.rt.to_int(self.p["First"]):
                raise StopUpstream()
        self.count += 1
        out = self.shape(item)
        for x in enumerate_value(out) if "ExpandProperty" in self.p else [out]:
            self.emit(x)

    def feed(self, source: Iterable[object]) -> None:
        try:
            super().feed(source)
        except StopUpstream:
            pass

    def end(self) -> None:
        if "Last" in self.p:
            n = self.rt.to_int(self.p["Last"])
            for item in self.buf[-n:] if n else []:
                self.emit(self.shape(item))


@cmdlet("ForEach-Object", "foreach", "%", positional=("*",),
        params=("Process", "Begin", "End", "MemberName", "ArgumentList", "InputObject"))
class ForEachObject(Cmdlet):
    def begin(self) -> None:
        rest = self.p.get("*", [])
        blocks = [x for x in rest if isinstance(x, ScriptBlock)] if isinstance(rest, list) else []
        if "Process" not in self.p and blocks:
            if len(blocks) == 1:
                self.p["Process"] = blocks[0]
            else:
                self.p["Begin"], self.p["Process"] = blocks[0], blocks[1]
                if len(blocks) > 2:
                    self.p["End"] = blocks[2]
        if "Process" not in self.p and rest and isinstance(rest, list) and isinstance(rest[0], str):
            self.p["MemberName"] = rest[0]
        if isinstance(self.p.get("Begin"), ScriptBlock):
            run_filter_block(self.rt, self.p["Begin"], None, self.sink)  # type: ignore[arg-type]

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" not in self.p:
                return
            item = self.p["InputObject"]
        sb = self.p.get("Process")
        if isinstance(sb, ScriptBlock):
            run_filter_block(self.rt, sb, item, self.sink)
        elif "MemberName" in self.p:
            name = to_str(self.p["MemberName"])
            if isinstance(item, str) or get_member(self.rt, item, name) is not None or not hasattr(item, "ps_call"):
                v = get_member(self.rt, item, name)
                if v is None and isinstance(item, str):
                    v = call_method(self.rt, item, name, as_list(self.p.get("ArgumentList")))
                for x in enumerate_value(v):
                    self.emit(x)
            else:
                self.emit(call_method(self.rt, item, name, as_list(self.p.get("ArgumentList"))))

    def end(self) -> None:
        if isinstance(self.p.get("End"), ScriptBlock):
            run_filter_block(self.rt, self.p["End"], None, self.sink)  # type: ignore[arg-type]


@cmdlet("Where-Object", "where", "?", positional=("FilterScript", "Value"),
        params=("Property", "InputObject", "EQ", "NE", "Like", "Match", "GT", "LT"))
class WhereObject(Cmdlet):
    def process(self, item: object) -> None:
        if item is NO_INPUT:
            return
        sb = self.p.get("FilterScript")
        if isinstance(sb, ScriptBlock):
            out: list[object] = []
            run_filter_block(self.rt, sb, item, out.append)
            if to_bool(out[0] if len(out) == 1 else out):
                self.emit(item)
            return
        prop = to_str(sb if sb is not None else self.p.get("Property"))
        v = get_member(self.rt, item, prop)
        for op in ("EQ", "NE", "Like", "Match", "GT", "LT"):
            if op in self.p:
                if to_bool(binary_op(self.rt, op.lower(), v, self.p[op])):
                    self.emit(item)
                return
        if to_bool(v):
            self.emit(item)


@cmdlet("Measure-Object", "measure", positional=("Property",), params=("InputObject",),
        switches=("Sum", "Average", "Maximum", "Minimum", "Line", "Word", "Character"))
class MeasureObject(Cmdlet):
    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(get_member(self.rt, item, to_str(self.p["Property"])) if "Property" in self.p else item)

    def end(self) -> None:
        rt = self.rt
        nums = [rt.to_num(v) for v in self.values] if any(self.p.get(k) for k in ("Sum", "Average", "Maximum", "Minimum")) else []
        out = {"Count": len(self.values),
               "Average": (sum(nums) / len(nums) if nums else None) if self.p.get("Average") else None,
               "Sum": sum(nums) if self.p.get("Sum") else None,
               "Maximum": (max(nums) if nums else None) if self.p.get("Maximum") else None,
               "Minimum": (min(nums) if nums else None) if self.p.get("Minimum") else None,
               "Property": to_str(self.p["Property"]) if "Property" in self.p else None}
        self.emit(PSObject(out))


@cmdlet("Sort-Object", "sort", positional=("Property",), switches=("Descending", "Unique"))
class SortObject(Cmdlet):
    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(item)

    def end(self) -> None:
        rt = self.rt

        def key(v: object) -> tuple[int, object]:
            x = get_member(rt, v, to_str(self.p["Property"])) if "Property" in self.p else v
            return (0, x) if is_number(x) else (1, to_str(x).lower())
        vals = sorted(self.values, key=key, reverse=bool(self.p.get("Descending")))
        for v in vals:
            self.emit(v)
