"""Conversion cmdlets: ConvertTo-Json (Windows PowerShell 5.1's layout), ConvertFrom-Json, ConvertTo-SecureString."""

from __future__ import annotations

import datetime as dt
import json

from tests.lab.pwsh import limits
from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet
from tests.lab.pwsh.dotnet_objects import SecureStringValue
from tests.lab.pwsh.values import EnumValue, NO_INPUT, PSObject, SwitchValue, to_str


@cmdlet("ConvertTo-Json", positional=("InputObject",), params=("Depth",),
        switches=("Compress", "AsArray", "EnumsAsStrings"))
class ConvertToJson(Cmdlet):
    def begin(self) -> None:
        self.items: list[object] = []

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" in self.p:
                self.items.append(self.p["InputObject"])
                self.direct = True
            return
        self.items.append(item)

    def end(self) -> None:
        if not self.items:
            return
        depth = self.rt.to_int(self.p.get("Depth", 2))
        value = self.items[0] if len(self.items) == 1 else self.items
        data = to_jsonable(value, depth)
        if self.p.get("Compress"):
            self.emit(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        else:
            self.emit(json_51(data))


def to_jsonable(v: object, depth: int, level: int = 0) -> object:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if level > depth:
        return to_str(v)
    if isinstance(v, (list, tuple, bytearray, bytes)):
        return [to_jsonable(x, depth, level + 1) for x in v]
    if isinstance(v, dict):
        return {to_str(k): to_jsonable(x, depth, level + 1) for k, x in v.items()}
    if isinstance(v, PSObject):
        return {to_str(k): to_jsonable(x, depth, level + 1) for k, x in v.props.items()}
    if isinstance(v, dt.datetime):
        return "/Date(" + str(int(v.timestamp() * 1000)) + ")/"
    if isinstance(v, SwitchValue):
        return {"IsPresent": v.present}
    if isinstance(v, EnumValue):
        return v.name
    return to_str(v)


def json_51(v: object, indent: int = 0) -> str:
    """ConvertTo-Json's Windows PowerShell 5.1 layout ("key":  value, arrays aligned under the key)."""
    pad = " " * indent
    if isinstance(v, dict):
        if not v:
            return "{\r\n\r\n" + pad + "}"
        lines = []
        for k, x in v.items():
            key = json.dumps(k, ensure_ascii=False)
            lines.append(pad + "    " + key + ":  " + json_51(x, indent + 4 + len(key) + 3))
        return "{\r\n" + ",\r\n".join(lines) + "\r\n" + pad + "}"
    if isinstance(v, list):
        if not v:
            return "[\r\n\r\n" + pad + "]"
        inner = [pad + "    " + json_51(x, indent + 4) for x in v]
        return "[\r\n" + ",\r\n".join(inner) + "\r\n" + pad + "]"
    return json.dumps(v, ensure_ascii=False)


def from_json(v: object) -> object:
    if isinstance(v, dict):
        return PSObject({k: from_json(x) for k, x in v.items()})
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


@cmdlet("ConvertFrom-Json", positional=("InputObject",), switches=("AsHashtable", "NoEnumerate"))
class ConvertFromJson(Cmdlet):
    def begin(self) -> None:
        self.parts: list[str] = []

    def process(self, item: object) -> None:
        v = self.input_or(item, "InputObject")
        if item is NO_INPUT and "InputObject" not in self.p:
            return
        self.parts.append(to_str(v))
        if sum(len(p) for p in self.parts) > limits.MAX_STRING_CHARS:
            raise self.terminate("The JSON input is larger than the lab engine accepts.", "LabJsonTooLarge")

    def end(self) -> None:
        text = "\n".join(self.parts)
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except ValueError as e:
            raise self.terminate(f"Invalid JSON primitive: {text.strip()[:40]}.", "System.ArgumentException",
                                 "NotSpecified", "System.ArgumentException") from e
        self.emit(from_json(data))


@cmdlet("ConvertTo-SecureString", positional=("String",), switches=("AsPlainText", "Force"))
class ConvertToSecureString(Cmdlet):
    def process(self, item: object) -> None:
        self.emit(SecureStringValue(to_str(self.input_or(item, "String"))))
