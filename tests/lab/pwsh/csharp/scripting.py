"""What emulated C# does through PowerShell: `ScriptBlock.Create(text).Invoke(args)` in the calling runspace, and
the .NET `ToString()` of a value (which differs from PowerShell's string conversion for arrays and dictionaries).
"""

from __future__ import annotations

import re
from typing import Any

from tests.lab.pwsh.errors import type_name_of
from tests.lab.pwsh.parser import parse
from tests.lab.pwsh.stages import run_stage, ScriptCommand
from tests.lab.pwsh.values import PSObject, ScriptBlock, to_str


def invoke_script(rt: Any, text: str, *args: object) -> list[object]:
    """ScriptBlock.Create(text).Invoke(args...): runs in a child scope of the running one; returns the output."""
    out: list[object] = []
    cmd = ScriptCommand(rt, ScriptBlock(parse(text), text), "", list(args), {})
    cmd.sink = out.append
    run_stage(cmd, None)
    return out


def dotnet_str(value: object) -> str:
    """Object.ToString() as C# calls it: collections give their type name, not their items."""
    if isinstance(value, (list, tuple)):
        kind = getattr(value, "ps_type", None)
        return "System.Collections.Generic.List`1[System.Object]" if kind == "System.Collections.Generic.List`1" \
            else "System.Object[]"
    if isinstance(value, dict):
        kind = getattr(value, "ps_type", None)
        return "System.Collections.Generic.Dictionary`2[System.String,System.Object]" if kind else \
            "System.Collections.Hashtable"
    if isinstance(value, PSObject):
        return to_str(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text.replace("e+", "E+").replace("e-", "E-")
    return to_str(value)


def dotnet_type(value: object) -> str:
    """GetType().FullName of a value as emulated C# reports it in messages."""
    kind = getattr(value, "ps_type", None)
    if kind == "System.Collections.Generic.List`1":
        return "System.Collections.Generic.List`1[System.Object]"
    if kind == "System.Collections.Generic.Dictionary`2":
        return "System.Collections.Generic.Dictionary`2[System.String,System.Object]"
    return type_name_of(value)


def expand_env(rt: Any, text: str) -> str:
    """Environment.ExpandEnvironmentVariables: %NAME% of a defined variable is replaced, others stay."""
    return re.sub(r"%([^%]+)%", lambda m: rt.host.env_get(m.group(1)) if rt.host.env_get(m.group(1)) is not None
                  else m.group(0), text)
