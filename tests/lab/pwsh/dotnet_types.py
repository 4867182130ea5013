"""The .NET type registry: types the engine's newer rooms implement, looked up as PowerShell resolves a type name.

PowerShell resolves `[Name]` through type accelerators, the `using namespace` lines of the script, and
`System.` (about_Type_Accelerators, about_Using). A generic type is written `List[string]` or
``List`1[[System.String]]``; its definition is looked up by its arity (``System.Collections.Generic.List`1``).

A registered `DotNetType` answers its static members, constructors, casts and type tests; rooms register
their types on import. C# compiled at run time lives in the process (ProcessState.types), not here.
Types the older rooms dispatch by name (statics.py, conversions.py) are announced with `add_known_names`
so resolution finds them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class MemberNotFound(Exception):
    """A type has no such static member, method or constructor (callers turn it into PowerShell's error)."""


class DotNetType:
    """One .NET type: what `[T]::Member`, `[T]::Method()`, `[T]::new()`, `[T]$value` and `-is [T]` do with it."""

    full_name = ""
    base_names: tuple[str, ...] = ()     # full names of base classes and interfaces, for -is and catch

    def __init__(self, full_name: str | None = None) -> None:
        if full_name is not None:
            self.full_name = full_name

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1].split("`", 1)[0]

    def get_static(self, rt: Any, name: str) -> object:
        raise MemberNotFound(name)

    def set_static(self, rt: Any, name: str, value: object) -> None:
        raise MemberNotFound(name)

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        raise MemberNotFound(name)

    def new(self, rt: Any, args: list[object]) -> object:
        raise MemberNotFound("new")

    def cast(self, rt: Any, value: object) -> object:
        """[T]$value; the default is the one-argument constructor, as PowerShell tries it."""
        return self.new(rt, [value])

    def is_instance(self, value: object) -> bool:
        names = {self.full_name.lower()}
        own = getattr(value, "ps_type", None)
        bases = getattr(value, "ps_bases", ())
        return own is not None and (own.lower() in names or any(b.lower() in names for b in bases))


class SimpleType(DotNetType):
    """A type declared by tables: static properties, static methods, a constructor, a cast and an instance test.

    statics: lower-case name -> fn(rt); setters: lower-case name -> fn(rt, value); methods: lower-case name ->
    fn(rt, args); ctor: fn(rt, args); instance: fn(value) -> bool (default: the value's ps_type names this type).
    """

    def __init__(self, full_name: str, *, statics: Mapping[str, Callable[[Any], object]] | None = None,
                 setters: Mapping[str, Callable[[Any, object], None]] | None = None,
                 methods: Mapping[str, Callable[[Any, list[object]], object]] | None = None,
                 ctor: Callable[[Any, list[object]], object] | None = None,
                 cast: Callable[[Any, object], object] | None = None,
                 instance: Callable[[object], bool] | None = None, bases: tuple[str, ...] = (),
                 fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(full_name)
        self.statics = dict(statics or {})
        self.setters = dict(setters or {})
        self.methods = dict(methods or {})
        self.ctor = ctor
        self._cast = cast
        self._instance = instance
        self.base_names = bases
        self.fields = dict(fields or {})  # non-public static fields reflection may find (GetField)

    def get_static(self, rt: Any, name: str) -> object:
        fn = self.statics.get(name.lower())
        if fn is None:
            raise MemberNotFound(name)
        return fn(rt)

    def set_static(self, rt: Any, name: str, value: object) -> None:
        fn = self.setters.get(name.lower())
        if fn is None:
            raise MemberNotFound(name)
        fn(rt, value)

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        fn = self.methods.get(name.lower())
        if fn is None:
            raise MemberNotFound(name)
        return fn(rt, args)

    def new(self, rt: Any, args: list[object]) -> object:
        if self.ctor is None:
            raise MemberNotFound("new")
        return self.ctor(rt, args)

    def cast(self, rt: Any, value: object) -> object:
        if self._cast is not None:
            return self._cast(rt, value)
        return self.new(rt, [value])

    def is_instance(self, value: object) -> bool:
        if self._instance is not None:
            return self._instance(value)
        return super().is_instance(value)


class EnumType(DotNetType):
    """A .NET enum: named values, [Flags] combinations written "A, B", casts from names and numbers."""

    def __init__(self, full_name: str, members: Mapping[str, int], flags: bool = False) -> None:
        super().__init__(full_name)
        self.members = dict(members)
        self.flags = flags

    def value(self, value: int) -> EnumMember:
        return EnumMember(self, value)

    def by_name(self, name: str) -> EnumMember:
        for k, v in self.members.items():
            if k.lower() == name.strip().lower():
                return EnumMember(self, v)
        raise ValueError(name)

    def get_static(self, rt: Any, name: str) -> object:
        try:
            return self.by_name(name)
        except ValueError:
            raise MemberNotFound(name) from None

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getnames":
            return list(self.members)
        if low == "getvalues":
            return [EnumMember(self, v) for v in self.members.values()]
        if low == "parse":
            return self.cast(rt, args[-2] if len(args) == 3 else args[-1])
        raise MemberNotFound(name)

    def cast(self, rt: Any, value: object) -> object:
        if isinstance(value, EnumMember):
            return EnumMember(self, value.value)
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            return EnumMember(self, value)
        total = 0
        for part in str(value).split(","):
            part = part.strip()
            if re.fullmatch(r"-?\d+", part):
                total |= int(part)
                continue
            total |= self.by_name(part).value
        return EnumMember(self, total)

    def is_instance(self, value: object) -> bool:
        return isinstance(value, EnumMember) and value.enum is self


class EnumMember:
    """A value of a registered enum: compares, converts and prints as .NET does (names, or a flag list)."""

    def __init__(self, enum: EnumType, value: int) -> None:
        self.enum = enum
        self.value = value
        self.ps_type = enum.full_name

    @property
    def name(self) -> str:
        return self.ps_tostring()

    def ps_tostring(self) -> str:
        for k, v in self.enum.members.items():
            if v == self.value:
                return k
        if self.enum.flags and self.value:
            names = [k for k, v in self.enum.members.items() if v and self.value & v == v]
            covered = 0
            for k in names:
                covered |= self.enum.members[k]
            if covered == self.value:
                return ", ".join(names)
        return str(self.value)

    def ps_number(self) -> int:
        return self.value

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "hasflag":
            other = args[0].value if isinstance(args[0], EnumMember) else int(args[0])  # type: ignore[call-overload]
            return self.value & other == other
        if low == "tostring":
            return self.ps_tostring()
        if low == "value__":
            return self.value
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EnumMember):
            return self.value == other.value
        if isinstance(other, int) and not isinstance(other, bool):
            return self.value == other
        if isinstance(other, str):
            try:
                return self.enum.cast(None, other).value == self.value  # type: ignore[attr-defined]
            except (ValueError, KeyError):
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


_TYPES: dict[str, DotNetType] = {}
_GENERICS: dict[str, Callable[[list[DotNetType | str]], DotNetType]] = {}
_ACCELERATORS: dict[str, str] = {}
_KNOWN: set[str] = set()


def register(t: DotNetType, *accelerators: str) -> DotNetType:
    """Adds a type (and its accelerator names, e.g. "hashtable") to the registry; returns it."""
    _TYPES[t.full_name.lower()] = t
    for a in accelerators:
        _ACCELERATORS[a.lower()] = t.full_name
    return t


def register_generic(full_name: str, factory: Callable[[list[DotNetType | str]], DotNetType],
                     *accelerators: str) -> None:
    """A generic type definition (full name with its arity, e.g. ``System.Collections.Generic.List`1``)."""
    _GENERICS[full_name.lower()] = factory
    for a in accelerators:
        _ACCELERATORS[a.lower()] = full_name


def add_known_names(names: Iterable[str]) -> None:
    """Full names of types the older rooms implement by name dispatch, so resolution finds them."""
    _KNOWN.update(n.lower() for n in names)


def add_accelerators(mapping: Mapping[str, str]) -> None:
    _ACCELERATORS.update({k.lower(): v for k, v in mapping.items()})


def split_generic(name: str) -> tuple[str, list[str]] | None:
    """``Dictionary`2[[String],[Int32]]`` or ``Dictionary[string,int]`` -> ("Dictionary`2", ["String", "Int32"])."""
    n = name.strip()
    if not n.endswith("]") or "[" not in n:
        return None
    idx = n.index("[")
    base, inner = n[:idx].strip(), n[idx + 1:-1].strip()
    if not base or not inner or inner == "":
        return None
    args: list[str] = []
    depth, cur = 0, []
    for ch in inner:
        if ch == "[":
            depth += 1
            if depth == 1:
                continue
        elif ch == "]":
            depth -= 1
            if depth == 0:
                continue
        if ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    args.append("".join(cur).strip())
    args = [a.split(",", 1)[0].strip() for a in args]  # assembly-qualified names: keep the type name
    if any(not a for a in args):
        return None
    if "`" not in base:
        base = f"{base}`{len(args)}"
    return base, args


def _candidates(name: str, usings: Iterable[str]) -> list[str]:
    low = name.lower()
    out = [name]
    if low in _ACCELERATORS:
        out.insert(0, _ACCELERATORS[low])
    if not low.startswith("system."):
        out.append("System." + name)
    for ns in usings:
        out.append(f"{ns}.{name}")
    return out


def resolve(name: str, usings: Iterable[str] = (), process_types: Mapping[str, DotNetType] | None = None,
            process_accelerators: Mapping[str, str] | None = None) -> tuple[str, DotNetType | None] | None:
    """The full name a type name resolves to, with its registered type (None for a name-dispatched one)."""
    usings = list(usings)
    n = name.strip()
    if process_accelerators and n.lower() in process_accelerators:
        n = process_accelerators[n.lower()]
    generic = split_generic(n)
    if generic is not None and not n.endswith("[]"):
        base, args = generic
        for cand in _candidates(base, usings):
            factory = _GENERICS.get(cand.lower())
            if factory is None:
                continue
            resolved_args: list[DotNetType | str] = []
            for a in args:
                r = resolve(a, usings, process_types, process_accelerators)
                resolved_args.append(r[1] if r and r[1] is not None else (r[0] if r else a))
            t = factory(resolved_args)
            return t.full_name, t
        return None
    for cand in _candidates(n, usings):
        low = cand.lower()
        if process_types and low in process_types:
            return process_types[low].full_name, process_types[low]
        if low in _TYPES:
            return _TYPES[low].full_name, _TYPES[low]
        if low in _KNOWN:
            return cand, None
    return None


def registered(full_name: str) -> DotNetType | None:
    """The registered type of an exact full name (any case), or None."""
    return _TYPES.get(full_name.lower())


def lookup(rt: Any, name: str) -> tuple[str, DotNetType | None] | None:
    """`resolve` as the running script sees a name: its `using namespace` lines and its process's C# types."""
    proc = getattr(rt.host, "process", None)
    return resolve(name, getattr(rt, "usings", ()) or (), getattr(proc, "types", None),
                   getattr(proc, "accelerators", None))


def type_ref(rt: Any, name: str) -> Any:
    """The TypeRef a `[Name]` literal evaluates to in the running script."""
    from tests.lab.pwsh.values import canonical_type, TypeRef
    n = name.strip()
    if n.endswith("[]") and split_generic(n[:-2] + "[x]") is not None:
        inner = type_ref(rt, n[:-2])
        return TypeRef(name, canon=inner.canon + "[]")
    found = lookup(rt, n)
    if found is None:
        return TypeRef(name)
    full, t = found
    return TypeRef(name, canon=full if t is not None else canonical_type(full), dotnet=t)
