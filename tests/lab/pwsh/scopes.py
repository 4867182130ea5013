"""Variable and function scopes: a child scope sees its parents' names and writes its own (about_Scopes)."""

from __future__ import annotations


class Scope:
    """One scope: its variables and functions (names lower-cased), and the scope it was created in."""

    def __init__(self, parent: "Scope | None") -> None:
        self.parent = parent
        self.vars: dict[str, object] = {}
        self.funcs: dict[str, object] = {}

    def find(self, name: str) -> "Scope | None":
        s: Scope | None = self
        while s is not None:
            if name in s.vars:
                return s
            s = s.parent
        return None

    def find_func(self, name: str) -> object:
        s: Scope | None = self
        while s is not None:
            if name in s.funcs:
                return s.funcs[name]
            s = s.parent
        return None
