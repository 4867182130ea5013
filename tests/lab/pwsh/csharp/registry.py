"""The table of emulated C# sources by SHA-256, and loading a source's types into a process (see __init__.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

from tests.lab.pwsh.dotnet_types import DotNetType


@dataclasses.dataclass(frozen=True)
class CSharpEmulation:
    """One C# source the lab emulates: where it comes from and the types it defines in a process."""

    sha256: str
    origin: str                                  # the file (and version) the source is
    define: Callable[[], list[DotNetType]]       # fresh types, with their own static state, for one process


EMULATIONS: dict[str, CSharpEmulation] = {}


def emulates(sha256: str, origin: str) -> Callable[[Callable[[], list[DotNetType]]], Callable[[], list[DotNetType]]]:
    """Registers the function that defines the emulated types of the C# source with that SHA-256."""
    def register(define: Callable[[], list[DotNetType]]) -> Callable[[], list[DotNetType]]:
        EMULATIONS[sha256] = CSharpEmulation(sha256, origin, define)
        return define
    return register


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()


def namespace_of(source: str) -> str:
    m = re.search(r"^\s*namespace\s+([\w.]+)", source, re.M)
    return m.group(1) if m else "(none)"


class UnknownSource(Exception):
    """A C# source the lab has no emulation for; the message names its namespace and hash."""


def compile_sources(process: Any, sources: list[str]) -> list[DotNetType]:
    """Loads the emulated types of each source into the process; UnknownSource for a source not in the table.

    A source compiled again in the same process gives the types already loaded (the first assembly to
    define a type name is the one PowerShell's type resolution finds).
    """
    found: list[tuple[str, CSharpEmulation]] = []
    for source in sources:
        digest = source_hash(source)
        emulation = EMULATIONS.get(digest)
        if emulation is None:
            raise UnknownSource(f"The lab engine cannot compile C#: it has no emulation for the source declaring "
                                f"namespace '{namespace_of(source)}' (sha256 {digest}).")
        found.append((digest, emulation))
    types: list[DotNetType] = []
    for digest, emulation in found:
        loaded = process.compiled_sources.get(digest)
        if loaded is None:
            loaded = emulation.define()
            for t in loaded:
                process.types.setdefault(t.full_name.lower(), t)
            process.compiled_sources[digest] = loaded
        types.extend(loaded)
    return types

