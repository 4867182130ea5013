"""Reflection on the types scripts name: `[T].Name`, `[T].Assembly`, `[T].GetField(...)`, assemblies' GetType and
GetTypes, `[System.Reflection.Assembly]::GetAssembly`, and PowerShell's TypeAccelerators class.

The lab has no .NET internals, so reflection finds only what a registered type declares: a non-public
field it lists in `fields` (Console's `_outputEncoding`), the types a compiled C# source defined, and the
`System.Management.Automation.TypeAccelerators` class through which AddType.psm1 registers accelerators
(process-wide, like the C# types they name). GetProperty/GetMethod of anything else find nothing (null),
as on a type without that member.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.dotnet_types import DotNetType, lookup, MemberNotFound, register, registered, SimpleType
from tests.lab.pwsh.errors import no_method
from tests.lab.pwsh.values import to_str, TypeRef

# Where Windows PowerShell 5.1 loads its engine assembly from (the GAC, MSIL, v4.0 runtime).
SMA_LOCATION = ("C:\\Windows\\Microsoft.Net\\assembly\\GAC_MSIL\\System.Management.Automation\\"
                "v4.0_3.0.0.0__31bf3856ad364e35\\System.Management.Automation.dll")
MSCORLIB_LOCATION = "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\mscorlib.dll"


class AssemblyObj:
    """A loaded assembly: its location and the types reflection can find in it."""

    ps_type = "System.Reflection.RuntimeAssembly"

    def __init__(self, rt: Any, full_name: str, location: str, types: list[TypeRef] | None = None) -> None:
        self.rt = rt
        self.FullName = full_name
        self.Location = location
        self.types = types or []

    def ps_tostring(self) -> str:
        return self.FullName

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "gettypes" or low == "getexportedtypes":
            return list(self.types)
        if low == "gettype":
            wanted = to_str(args[0])
            for t in self.types:
                if t.canon.lower() == wanted.lower():
                    return t
            found = lookup(self.rt, wanted)
            if found is None:
                return None
            full, dotnet = found
            return TypeRef(full, canon=full, dotnet=dotnet)
        raise no_method(self, name)


def assembly_of(rt: Any, t: TypeRef) -> AssemblyObj:
    compiled = getattr(t.dotnet, "assembly", None)
    if compiled is not None:
        return compiled  # type: ignore[no-any-return]
    if t.canon.lower().startswith("system.management.automation"):
        return AssemblyObj(rt, "System.Management.Automation, Version=3.0.0.0, Culture=neutral, "
                               "PublicKeyToken=31bf3856ad364e35", SMA_LOCATION)
    return AssemblyObj(rt, "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089",
                       MSCORLIB_LOCATION)


def type_property(rt: Any, t: TypeRef, name: str) -> object:
    """`[T].Property`: the reflection properties of System.Type; KeyError for anything else (a static member)."""
    low = name.lower()
    full = t.canon
    if low == "name":
        return full.rsplit(".", 1)[-1]
    if low == "fullname":
        return full
    if low == "namespace":
        return full.rsplit(".", 1)[0] if "." in full else ""
    if low == "assembly":
        return assembly_of(rt, t)
    if low == "isenum":
        return type(t.dotnet).__name__ == "EnumType"
    if low == "underlyingsystemtype":
        return t
    raise KeyError(name)


def type_method(rt: Any, t: TypeRef, name: str, args: list[object]) -> object:
    """`[T].Method(...)`: GetField finds the non-public statics a registered type declares; the rest find nothing."""
    low = name.lower()
    if low == "getfield":
        fields = getattr(t.dotnet, "fields", {})
        field = fields.get(to_str(args[0]).lower()) if args else None
        return field.bind(rt) if field is not None else None
    if low in ("getproperty", "getmethod", "getconstructor", "getevent"):
        return None
    if low == "tostring":
        return t.canon
    if low == "gettype":
        return TypeRef("System.RuntimeType")
    if low == "isassignablefrom":
        other = args[0]
        return isinstance(other, TypeRef) and (other.canon.lower() == t.canon.lower() or t.canon.lower() in [
            b.lower() for b in getattr(other.dotnet, "base_names", ())])
    if low == "getenumnames":
        members = getattr(t.dotnet, "members", None)
        if members is not None:
            return list(members)
    raise no_method(TypeRef("System.RuntimeType"), name)


class _TypeAccelerators(DotNetType):
    """System.Management.Automation.TypeAccelerators: Add(name, type) and Get, process-wide."""

    full_name = "System.Management.Automation.TypeAccelerators"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        proc = rt.host.process
        if low == "add":
            target = args[1]
            full = target.canon if isinstance(target, TypeRef) else to_str(target)
            proc.accelerators[to_str(args[0]).lower()] = full
            return None
        if low == "remove":
            return proc.accelerators.pop(to_str(args[0]).lower(), None) is not None
        raise MemberNotFound(name)

    def get_static(self, rt: Any, name: str) -> object:
        if name.lower() == "get":
            return dict(rt.host.process.accelerators)
        raise MemberNotFound(name)


register(_TypeAccelerators())
register(SimpleType("System.Reflection.Assembly",
                    methods={"getassembly": lambda rt, a: assembly_of(rt, a[0]) if isinstance(a[0], TypeRef) else None}))
register(SimpleType("System.Type", cast=lambda rt, v: v if isinstance(v, TypeRef) else _type_from_name(rt, v),
                    instance=lambda v: isinstance(v, TypeRef)), "type")


def _type_from_name(rt: Any, v: object) -> TypeRef:
    found = lookup(rt, to_str(v))
    if found is None:
        raise ValueError(v)
    return TypeRef(found[0], canon=found[0], dotnet=found[1])


def is_registered(full_name: str) -> bool:
    return registered(full_name) is not None
