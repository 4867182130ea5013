"""Variable and function scopes: a child scope sees its parents' names and writes its own (about_Scopes)."""

from __future__ import annotations


class Scope:
    """One scope: its variables and functions (names lower-cased), and the scope it was created in."""

    def __init__(self, parent: "Scope | None") -> None:
        self.parent = parent
        self.vars: dict[str, object] = {}
        self.funcs: dict[str, object] = {}
        self.aliases: dict[str, str] = {}      # New-Alias: lower-case name -> the command it names
        self.strict_version: int | None = None  # Set-StrictMode -Version in this scope (0: -Off)

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

    def find_alias(self, name: str) -> str | None:
        s: Scope | None = self
        while s is not None:
            if name in s.aliases:
                return s.aliases[name]
            s = s.parent
        return None

    def strict_mode(self) -> int:
        """The strict mode version in effect here (0: off), set by the nearest Set-StrictMode."""
        s: Scope | None = self
        while s is not None:
            if s.strict_version is not None:
                return s.strict_version
            s = s.parent
        return 0
