"""Variable, function, alias and drive scopes: a child scope sees its parents' names and writes its own (about_Scopes)."""

from __future__ import annotations


class Scope:
    """One scope: its variables, functions, aliases and PS drives (names lower-cased), and the scope it was created in."""

    def __init__(self, parent: "Scope | None") -> None:
        self.parent = parent
        self.vars: dict[str, object] = {}
        # a variable's ScopedItemOptions other than None, "ReadOnly" or "Constant" (Set-Variable -Option)
        self.options: dict[str, str] = {}
        self.funcs: dict[str, object] = {}
        self.aliases: dict[str, str] = {}  # alias -> the command name it stands for
        self.drives: dict[str, str] = {}  # drive name -> its root, a C:\ path (FileSystem drives only)
        self.strict_version: int | None = None  # Set-StrictMode -Version in this scope (0: -Off)

    def protected(self, name: str, force: bool) -> bool:
        """Whether a variable's options refuse a change: Constant always, ReadOnly unless forced (-Force)."""
        option = self.options.get(name)
        return option == "Constant" or (option == "ReadOnly" and not force)

    def chain(self) -> "list[Scope]":
        """This scope and its parents, innermost first."""
        out: list[Scope] = []
        s: Scope | None = self
        while s is not None:
            out.append(s)
            s = s.parent
        return out

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
        for s in self.chain():
            if name in s.aliases:
                return s.aliases[name]
        return None

    def find_drive(self, name: str) -> str | None:
        for s in self.chain():
            if name in s.drives:
                return s.drives[name]
        return None

    def strict_mode(self) -> int:
        """The strict mode version in effect here (0: off), set by the nearest Set-StrictMode."""
        for s in self.chain():
            if s.strict_version is not None:
                return s.strict_version
        return 0
