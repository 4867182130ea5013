"""The parser's ground floor: the AST `Node`, `ParseError`, operator tables and character-level scanning.

The parser reads characters, not tokens (see tests/lab/pwsh/parser/__init__.py); `Scanner` holds the
position in the source and the primitives every part of the grammar uses: peek, skip blanks and
comments, keywords, bounded nesting.
"""

from __future__ import annotations

import re

from tests.lab.pwsh import limits

EOF = "\uffff"  # what peek() returns past the end; never a syntax character
KEYWORDS_UNSUPPORTED = {"trap", "class", "enum", "workflow", "parallel", "sequence",
                        "inlinescript", "configuration", "data", "dynamicparam"}
COMPARISON_OPS = {
    "eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch", "contains", "notcontains",
    "in", "notin", "replace", "split", "join", "is", "isnot", "as",
}
CASE_PREFIXED = {p + o for p in ("i", "c") for o in COMPARISON_OPS - {"is", "isnot", "as", "join"}}
LOGICAL_OPS = {"and", "or", "xor"}
BITWISE_OPS = {"band", "bor", "bxor", "shl", "shr"}


class ParseError(Exception):
    """A ParseException: `error_id` is PowerShell's ParseError.ErrorId; `offset` where it happened."""

    def __init__(self, error_id: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.offset = offset


class Node:
    """One AST node: `k` names the kind, other attributes depend on it; `pos` is the source offset."""

    def __init__(self, k: str, pos: int, **a: object) -> None:
        self.__dict__.update(a)
        self.k = k
        self.pos = pos
        self.end = pos

    @property
    def a(self) -> dict[str, object]:
        return self.__dict__

    def __repr__(self) -> str:
        return f"Node({self.k}, {self.__dict__})"


WORD_END = set(" \t\r\n|;(){},&`\"'") | {"\u00a0"}
NUM_RE = re.compile(r"(0x[0-9a-fA-F]+|(?:\d+(?:\.(?!\.)\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([lLdD]?)(kb|mb|gb|tb|pb)?", re.I)
VAR_NAME_RE = re.compile(r"(?:(global|script|local|private|env|using|variable):)?([A-Za-z0-9_?]+)", re.I)
SIMPLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


class Scanner:
    """The source text and a position in it; the grammar's parts (statements, pipelines, expressions) extend it."""

    def __init__(self, src: str) -> None:
        if len(src) > limits.MAX_SCRIPT_CHARS:
            raise ParseError("ScriptTooLong", "The script is longer than the lab engine accepts.", 0)
        self.s = src.replace("\r\n", "\n").replace("\r", "\n")
        self.i = 0
        self.n = len(self.s)
        self.depth = 0
        self.no_comma = False

    # ---- low level -------------------------------------------------------------------------------
    def err(self, error_id: str, message: str, at: int | None = None) -> ParseError:
        return ParseError(error_id, message, self.i if at is None else at)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < self.n else EOF

    def startswith(self, text: str) -> bool:
        return self.s.startswith(text, self.i)

    def skip_ws(self, newlines: bool = False) -> None:
        """Skips blanks, comments and line continuations (and newlines when asked)."""
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\f\u00a0\ufeff":
                self.i += 1
            elif c == "`" and self.peek(1) == "\n":
                self.i += 2
            elif c == "\n" and newlines:
                self.i += 1
            elif c == "#":
                while self.i < self.n and self.s[self.i] != "\n":
                    self.i += 1
            elif c == "<" and self.peek(1) == "#":
                end = self.s.find("#>", self.i + 2)
                if end < 0:
                    raise self.err("MissingEndOfBlockComment", "The string is missing the terminator: #>.")
                self.i = end + 2
            else:
                break

    def skip_terminators(self) -> None:
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == ";":
                self.i += 1
                continue
            break

    def expect(self, ch: str, error_id: str, message: str) -> None:
        if self.peek() != ch:
            raise self.err(error_id, message)
        self.i += 1

    def word_at(self) -> str:
        """The bare word at the cursor (letters, digits, - and _), without consuming it."""
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*").match(self.s, self.i)
        return m.group(0) if m else ""

    def keyword(self, kw: str) -> bool:
        """True (and consumed) if the case-insensitive keyword `kw` is at the cursor as a whole word."""
        end = self.i + len(kw)
        if self.s[self.i:end].lower() != kw:
            return False
        if end < self.n and (self.s[end].isalnum() or self.s[end] in "_-:."):
            return False
        self.i = end
        return True

    def enter(self) -> None:
        self.depth += 1
        if self.depth > limits.MAX_NESTING:
            raise self.err("NestingTooDeep", "The script nests deeper than the lab engine accepts.")

    def leave(self) -> None:
        self.depth -= 1
