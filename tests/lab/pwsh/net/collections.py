"""System.Collections.Generic and friends: List`1, HashSet`1, Dictionary`2, ArrayList, StringComparer,
StringComparison and the System.Linq.Enumerable set operations scripts call directly.

Lists are Python lists (a generic List's Add returns nothing, an ArrayList's returns the index, as in
.NET); a HashSet and a Dictionary keep the comparer they were built with (StringComparer.OrdinalIgnoreCase
makes their string keys case-insensitive). Member calls reach `ps_call_first` before the list and
dictionary methods every list or hashtable has (tests/lab/pwsh/members.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound, register, register_generic, SimpleType
from tests.lab.pwsh.values import as_list, Hashtable, PSEnumerator, to_str

NOT_HANDLED = object()  # ps_call_first's answer for a method the plain list/dict handling covers


class StringComparerObj:
    """StringComparer.Ordinal / OrdinalIgnoreCase / InvariantCultureIgnoreCase / CurrentCultureIgnoreCase."""

    ps_type = "System.StringComparer"

    def __init__(self, name: str, ignore_case: bool) -> None:
        self.name = name
        self.ignore_case = ignore_case

    def key(self, value: object) -> object:
        return to_str(value).lower() if self.ignore_case and isinstance(value, str) else value

    def ps_tostring(self) -> str:
        return f"System.{self.name}Comparer"

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "equals" and len(args) == 2:
            return self.key(args[0]) == self.key(args[1])
        if low == "compare":
            a, b = self.key(to_str(args[0])), self.key(to_str(args[1]))
            return (a > b) - (a < b)  # type: ignore[operator]
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


_COMPARERS = {n.lower(): StringComparerObj(n, n.endswith("IgnoreCase"))
              for n in ("Ordinal", "OrdinalIgnoreCase", "InvariantCulture", "InvariantCultureIgnoreCase",
                        "CurrentCulture", "CurrentCultureIgnoreCase")}
register(SimpleType("System.StringComparer", statics={k: (lambda rt, c=c: c) for k, c in _COMPARERS.items()},
                    instance=lambda v: isinstance(v, StringComparerObj)))
register(EnumType("System.StringComparison", {"CurrentCulture": 0, "CurrentCultureIgnoreCase": 1,
                                              "InvariantCulture": 2, "InvariantCultureIgnoreCase": 3, "Ordinal": 4,
                                              "OrdinalIgnoreCase": 5}))


def _type_label(arg: DotNetType | str) -> str:
    return arg.full_name if isinstance(arg, DotNetType) else to_str(arg)


class GenericList(list):  # type: ignore[type-arg]
    """A System.Collections.Generic.List`1: Add returns nothing (void in .NET)."""

    ps_type = "System.Collections.Generic.List`1"

    def ps_call_first(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "add":
            self.append(args[0])
            return None
        if low == "addrange":
            self.extend(as_list(args[0]))
            return None
        if low == "removeall":
            return NOT_HANDLED
        return NOT_HANDLED


class HashSetObj(list):  # type: ignore[type-arg]
    """A System.Collections.Generic.HashSet`1: unique items under its comparer; Add answers whether it added."""

    ps_type = "System.Collections.Generic.HashSet`1"

    def __init__(self, items: Iterable[object] = (), comparer: StringComparerObj | None = None) -> None:
        super().__init__()
        self.comparer = comparer
        for item in items:
            self.add(item)

    def _key(self, v: object) -> object:
        return self.comparer.key(v) if self.comparer is not None else v

    def contains(self, v: object) -> bool:
        k = self._key(v)
        return any(self._key(x) == k for x in self)

    def add(self, v: object) -> bool:
        if self.contains(v):
            return False
        self.append(v)
        return True

    def ps_call_first(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "add":
            return self.add(args[0])
        if low == "contains":
            return self.contains(args[0])
        if low == "remove":
            k = self._key(args[0])
            for i, x in enumerate(self):
                if self._key(x) == k:
                    del self[i]
                    return True
            return False
        if low == "unionwith":
            for x in as_list(args[0]):
                self.add(x)
            return None
        if low == "exceptwith":
            drop = HashSetObj(as_list(args[0]), self.comparer)
            self[:] = [x for x in self if not drop.contains(x)]
            return None
        if low == "intersectwith":
            keep = HashSetObj(as_list(args[0]), self.comparer)
            self[:] = [x for x in self if keep.contains(x)]
            return None
        return NOT_HANDLED


class DictionaryObj(Hashtable):
    """A System.Collections.Generic.Dictionary`2: keys compared ordinally unless built with a comparer."""

    ps_type = "System.Collections.Generic.Dictionary`2"

    def __init__(self, comparer: StringComparerObj | None = None) -> None:
        super().__init__()
        self.comparer = comparer

    def _k(self, key: object) -> object:
        if self.comparer is not None and self.comparer.ignore_case:
            return super()._k(key)
        return key


def _list_type(args: list[DotNetType | str]) -> DotNetType:
    def ctor(rt: Any, a: list[object]) -> object:
        if a and not isinstance(a[0], int):
            return GenericList(as_list(a[0]))
        return GenericList()
    return SimpleType(f"System.Collections.Generic.List`1[{_type_label(args[0])}]", ctor=ctor,
                      cast=lambda rt, v: GenericList(as_list(v)), instance=lambda v: isinstance(v, GenericList))


def _hashset_type(args: list[DotNetType | str]) -> DotNetType:
    def ctor(rt: Any, a: list[object]) -> object:
        comparer = next((x for x in a if isinstance(x, StringComparerObj)), None)
        items = next((x for x in a if not isinstance(x, (StringComparerObj, int))), None)
        return HashSetObj(as_list(items) if items is not None else (), comparer)
    return SimpleType(f"System.Collections.Generic.HashSet`1[{_type_label(args[0])}]", ctor=ctor,
                      cast=lambda rt, v: HashSetObj(as_list(v)), instance=lambda v: isinstance(v, HashSetObj))


def _dictionary_type(args: list[DotNetType | str]) -> DotNetType:
    def ctor(rt: Any, a: list[object]) -> object:
        comparer = next((x for x in a if isinstance(x, StringComparerObj)), None)
        d = DictionaryObj(comparer)
        source = next((x for x in a if isinstance(x, dict)), None)
        for k, v in (source or {}).items():
            d[k] = v
        return d
    label = ",".join(_type_label(x) for x in args)
    return SimpleType(f"System.Collections.Generic.Dictionary`2[{label}]", ctor=ctor,
                      instance=lambda v: isinstance(v, DictionaryObj))


register_generic("System.Collections.Generic.List`1", _list_type)
register_generic("System.Collections.Generic.HashSet`1", _hashset_type)
register_generic("System.Collections.Generic.Dictionary`2", _dictionary_type)
register(SimpleType("System.Collections.ArrayList", ctor=lambda rt, a: list(as_list(a[0])) if a and not isinstance(
    a[0], int) else [], cast=lambda rt, v: list(as_list(v)), instance=lambda v: isinstance(v, list)), "arraylist")


def _enumerable(rt: Any, name: str, args: list[object]) -> object:
    low = name.lower()
    comparer = args[2] if len(args) > 2 and isinstance(args[2], StringComparerObj) else None
    first = HashSetObj(as_list(args[0]) if args else [], comparer)
    if low in ("except", "intersect", "union"):
        other = HashSetObj(as_list(args[1]), comparer)
        if low == "except":
            return PSEnumerator([x for x in first if not other.contains(x)])
        if low == "intersect":
            return PSEnumerator([x for x in first if other.contains(x)])
        return PSEnumerator(list(HashSetObj([*first, *other], comparer)))
    if low == "distinct":
        return PSEnumerator(list(first))
    if low == "toarray":
        return as_list(args[0])
    raise MemberNotFound(name)


class _EnumerableType(DotNetType):
    full_name = "System.Linq.Enumerable"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        return _enumerable(rt, name, args)


register(_EnumerableType())
