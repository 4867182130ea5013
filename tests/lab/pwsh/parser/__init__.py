"""Parser of the lab engine's PowerShell subset: source text -> a small AST of `Node`s.

Hand-written because no Python library parses PowerShell; PowerShell's grammar switches between
command mode and expression mode, so the parser reads characters directly instead of a token stream.
One recursive-descent `Parser`, in parts: `scanner` (characters, `Node`, `ParseError`), `statements`,
`pipelines` (command mode) and `expressions` (expression mode, strings).
"""

from __future__ import annotations

from tests.lab.pwsh.parser.expressions import ExpressionParser
from tests.lab.pwsh.parser.pipelines import PipelineParser
from tests.lab.pwsh.parser.scanner import (
    BITWISE_OPS, CASE_PREFIXED, COMPARISON_OPS, LOGICAL_OPS, Node, ParseError,
)
from tests.lab.pwsh.parser.statements import StatementParser

__all__ = ["BITWISE_OPS", "CASE_PREFIXED", "COMPARISON_OPS", "LOGICAL_OPS", "Node", "ParseError", "Parser", "parse",
           "position_message"]


class Parser(StatementParser, PipelineParser, ExpressionParser):
    """Recursive-descent parser over the raw source string."""


# PowerShell keeps the script blocks it compiled from a text (ScriptBlock.Create -> TryGetCachedScriptBlock,
# CompiledScriptBlock.cs: up to 1024, then cleared): a script sent again is not parsed again. The lab's trees
# are never changed once parsed, so it keeps them the same way.
_CACHE: dict[str, Node] = {}
_CACHE_MAX = 1024
_CACHE_MIN_LENGTH = 512  # short texts parse faster than they hash into a big table


def parse(src: str) -> Node:
    """Parses a whole script; raises ParseError."""
    if len(src) < _CACHE_MIN_LENGTH:
        return Parser(src).parse_script()
    tree = _CACHE.get(src)
    if tree is None:
        tree = Parser(src).parse_script()
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[src] = tree
    return tree


def position_message(src: str, start: int, end: int | None = None) -> str:
    """PowerShell's InvocationInfo.PositionMessage for a source span."""
    text = src.replace("\r\n", "\n").replace("\r", "\n")
    start = max(0, min(start, len(text)))
    line_no = text.count("\n", 0, start) + 1
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    if line_end < 0:
        line_end = len(text)
    line = text[line_start:line_end]
    col = start - line_start
    stop = line_end if end is None else min(max(end, start + 1), line_end)
    width = max(1, stop - start)
    shown = line
    if len(shown) > 72:
        shown = shown[:69] + " ..."
        width = min(width, max(1, 72 - col))
    return f"At line:{line_no} char:{col + 1}\n+ {shown}\n+ {' ' * col}{'~' * width}"
