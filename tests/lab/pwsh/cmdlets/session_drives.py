"""The Function: and Alias: drives: a session's functions and aliases as items, as PowerShell's FunctionProvider
and AliasProvider show them (both SessionStateProviderBase): Get-ChildItem lists what the current scope can see
(inner scopes hide outer ones; an imported module's functions are in the session's function table), and
Remove-Item removes the one the name finds; a -Path with wildcards removes every item the listing matches
(globbing, as for any provider; -LiteralPath takes the name as written). Built-in aliases (the cmdlets' own)
are listed; removing one is outside the lab's subset.
"""

from __future__ import annotations

from tests.lab.pwsh.cmdlets.base import Cmdlet, CMDLETS
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.stages import CommandInfo
from tests.lab.pwsh.values import PSObject, ScriptBlock

_PREFIXES = {"function": "Function", "alias": "Alias"}


def session_drive(path: str) -> tuple[str, str] | None:
    """("function" or "alias", the item name or "") for a Function:/Alias: path, else None."""
    drive, sep, rest = path.partition(":")
    if not sep or drive.lower() not in _PREFIXES:
        return None
    return drive.lower(), rest.lstrip("\\/")


def functions(rt: Interpreter) -> dict[str, CommandInfo]:
    """The functions the current scope can see, as FunctionInfo items (lower-case name -> item)."""
    found: dict[str, CommandInfo] = {}
    for module in rt.runspace.modules.values():
        for name, fn in module.functions.items():
            found[name] = CommandInfo(name, "Function", fn, source=module.Name)
    for scope in reversed(rt.scope.chain()):  # outermost first, so an inner scope's function wins
        for name, fn in scope.funcs.items():
            if isinstance(fn, ScriptBlock):
                found[name] = CommandInfo(name, "Function", fn)
    return found


def aliases(rt: Interpreter) -> dict[str, str]:
    """The aliases the current scope can see: the cmdlets' built-in ones, then the session's (name -> command)."""
    found: dict[str, str] = {}
    for cls in {id(c): c for c in CMDLETS.values()}.values():
        for alias in cls.names[1:]:
            found.setdefault(alias.lower(), cls.names[0])
    for scope in reversed(rt.scope.chain()):
        found.update(scope.aliases)
    return found


def list_items(cmd: Cmdlet, kind: str, pattern: str) -> None:
    """Get-ChildItem Function: / Alias: (sorted by name; `pattern` may hold wildcards)."""
    from tests.lab.pwsh.cmdlets.state import _matches

    if kind == "function":
        for name, info in sorted(functions(cmd.rt).items()):
            if not pattern or _matches(pattern, name):
                cmd.emit(info)
        return
    for name, definition in sorted(aliases(cmd.rt).items()):
        if not pattern or _matches(pattern, name):
            cmd.emit(PSObject({"Name": name, "Definition": definition, "CommandType": "Alias",
                               "DisplayName": f"{name} -> {definition}"}))


def _has_wildcards(pattern: str) -> bool:
    """Whether a path has an unescaped *, ? or [ (WildcardPattern.ContainsWildcardCharacters)."""
    escaped = False
    for c in pattern:
        if escaped:
            escaped = False
        elif c == "`":
            escaped = True
        elif c in "*?[":
            return True
    return False


def remove_items(cmd: Cmdlet, kind: str, name: str, literal: bool) -> None:
    """Remove-Item Function:\\pattern / Alias:\\pattern: with wildcards (and -Path), every item the current scope
    sees whose name matches (none matching is no error, as globbing gives); else the one the name finds."""
    from tests.lab.pwsh.cmdlets.state import _matches

    if literal or not _has_wildcards(name):
        remove_item(cmd, kind, name)
        return
    names = functions(cmd.rt) if kind == "function" else aliases(cmd.rt)
    for match in sorted(n for n in names if _matches(name, n)):
        remove_item(cmd, kind, match)


def remove_item(cmd: Cmdlet, kind: str, name: str) -> None:
    """Remove-Item Function:\\name / Alias:\\name: the one the name finds from the current scope."""
    low = name.lower()
    rt = cmd.rt
    table = "funcs" if kind == "function" else "aliases"
    for scope in rt.scope.chain():
        if low in getattr(scope, table):
            del getattr(scope, table)[low]
            return
    if kind == "function":
        for module in rt.runspace.modules.values():
            if low in module.functions:
                del module.functions[low]
                return
    elif low in aliases(rt):
        raise cmd.terminate(f"The lab engine does not model removing the built-in alias '{name}'.",
                            "LabBuiltinAliasRemoval", category="NotImplemented")
    path = f"{_PREFIXES[kind]}:\\{name}"
    cmd.error(f"Cannot find path '{path}' because it does not exist.", "PathNotFound", target=path)
