"""Commands: how a pipeline element becomes the stage that runs it.

A command name resolves as PowerShell resolves it (about_Command_Precedence, within the subset):
a function in scope, a cmdlet, a native command the host has, then a .ps1 path. Arguments are
bound in the order written; a `-Name` takes the next argument unless the command declares it a switch.
"""

from __future__ import annotations

from tests.lab.pwsh.cmdlets import lookup_cmdlet
from tests.lab.pwsh.errors import CMD_NOT_FOUND, ErrorRecord, PSError
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.natives import NativeCommand
from tests.lab.pwsh.parser import Node, parse
from tests.lab.pwsh.stages import CommandInfo, is_switch_param, ScriptCommand, Stage
from tests.lab.pwsh.values import as_list, ScriptBlock, SWITCH_PRESENT, to_str


def make_stage(rt: Interpreter, cn: Node) -> Stage:
    """A pipeline element (command node) as the stage that runs it, its arguments bound in the order written."""
    if cn.k == "expr":
        raise PSError(rt.fill(ErrorRecord(
            "Expressions are only allowed as the first element of a pipeline.", category="ParserError",
            fq_error_id="ExpressionsMustBeFirstInPipeline",
            exception_type="System.Management.Automation.ParseException")))
    name_node = cn.name
    positional: list[object] = []
    named: dict[str, object] = {}
    order: list[tuple[str | None, object]] = []
    for a in cn.args:
        if a.k == "param_arg":
            if a.value is None:
                order.append((a.name, SWITCH_PRESENT))
            else:
                order.append((a.name, rt.eval(a.value)))
        elif a.k == "splat":
            sv = rt.get_var(a.name)
            if isinstance(sv, dict):
                for k2, v2 in sv.items():
                    order.append((str(k2), v2))
            else:
                for v2 in as_list(sv):
                    order.append((None, v2))
        else:
            order.append((None, rt.eval(a)))
    target: object = name_node
    if not isinstance(name_node, str):
        target = rt.eval(name_node)
        if isinstance(target, CommandInfo):
            target = target.Name
        elif not isinstance(target, ScriptBlock):
            target = to_str(target)
    if isinstance(target, str) and _is_native(rt, dealias(rt, target)) and rt.host.command_visible(
            dealias(rt, target).lower().removesuffix(".exe")):
        target = dealias(rt, target)
        # An executable gets its arguments in the order written; "-Name" is just text to it.
        argv: list[object] = []
        for name, value in order:
            if name is None:
                argv.extend(as_list(value) if isinstance(value, (list, tuple)) else [value])
            else:
                argv.append(f"-{name}" if value is SWITCH_PRESENT else f"-{name}:{to_str(value)}")
        stage = NativeCommand(rt, target.lower().removesuffix(".exe"), argv, {})
        stage.where = (cn.pos, cn.end)
        return stage
    if isinstance(target, str):
        target = dealias(rt, target)
    switches = switch_names(rt, target)
    # a parameter name takes the next argument as its value unless the command declares it a switch
    pending: str | None = None
    for name, value in order:
        if name is not None:
            if pending is not None:
                named[pending] = SWITCH_PRESENT
                pending = None
            if value is SWITCH_PRESENT and not is_switch(name, switches):
                pending = name
            else:
                named[name] = value
        elif pending is not None:
            named[pending] = value
            pending = None
        else:
            positional.append(value)
    if pending is not None:
        named[pending] = SWITCH_PRESENT
    where = (cn.pos, cn.end)
    if isinstance(target, ScriptBlock):
        stage: Stage = ScriptCommand(rt, target, "", positional, named, new_scope=cn.invoke != ".")
    else:
        stage = resolve_command(rt, str(target), positional, named, cn)
    stage.where = where
    return stage


def switch_names(rt: Interpreter, target: object) -> set[str] | None:
    """Names of the switch parameters of the command about to run (None: any name may be a switch)."""
    sb = target if isinstance(target, ScriptBlock) else None
    if isinstance(target, str):
        target = dealias(rt, target)
        fn = find_function(rt, target.lower())
        if isinstance(fn, ScriptBlock):
            sb = fn
        else:
            cls = lookup_cmdlet(target)
            if cls is not None:
                return {x.lower() for x in cls.switches} | {"verbose", "debug", "whatif", "confirm", "vb"}
            return None
    if sb is None:
        return None
    params = sb.body.params or []
    if not params:
        return None
    return {p.name.lower() for p in params if is_switch_param(p)} | {"verbose", "debug", "whatif", "confirm"}


def is_switch(name: str, switches: set[str] | None) -> bool:
    if switches is None:
        return True
    low = name.lower()
    return low in switches or any(sw.startswith(low) for sw in switches) and len(low) >= 2 and \
        sum(1 for sw in switches if sw.startswith(low)) == 1


def _is_native(rt: Interpreter, name: str) -> bool:
    low = name.lower()
    return (rt.host.native_command(low) is not None and not isinstance(find_function(rt, low), ScriptBlock)
            and lookup_cmdlet(low) is None)


def find_function(rt: Interpreter, name: str) -> object:
    """The function a name calls: one defined in scope, else one an imported module exports."""
    fn = rt.scope.find_func(name)
    return fn if isinstance(fn, ScriptBlock) else rt.runspace.find_module_function(name)


def dealias(rt: Interpreter, name: str) -> str:
    """The command an alias the session defined (Set-Alias) stands for; aliases come first (about_Command_Precedence)."""
    seen: set[str] = set()
    while (target := rt.scope.find_alias(name.lower())) is not None and name.lower() not in seen:
        seen.add(name.lower())
        name = target
    return name


def resolve_command(rt: Interpreter, name: str, positional: list[object], named: dict[str, object],
                    cn: Node) -> Stage:
    """A command name as PowerShell resolves it: alias, function, cmdlet, native command, then a .ps1 path."""
    name = dealias(rt, name)
    low = name.lower()
    if not rt.host.command_visible(low):
        raise _not_found(rt, name)  # a JEA endpoint shows only its role's commands
    fn = find_function(rt, low)
    if isinstance(fn, ScriptBlock):
        return ScriptCommand(rt, fn, name, positional, named, new_scope=cn.invoke != ".")
    cls = lookup_cmdlet(low)
    if cls is not None:
        return cls(rt, name, positional, named)
    native = rt.host.native_command(low)
    if native is not None:
        return NativeCommand(rt, low.removesuffix(".exe"), positional, named)
    if ("\\" in name or "/" in name) and name.lower().endswith(".ps1"):
        try:
            text = rt.host.fs.read_text(name, rt.cwd)
        except (OSError, PathOutsideRoot):
            text = None
        if text is not None:
            return ScriptCommand(rt, ScriptBlock(parse(text), text, name), name, positional, named,
                                 new_scope=cn.invoke != ".", is_script=True)
    raise _not_found(rt, name)


def _not_found(rt: Interpreter, name: str) -> PSError:
    return PSError(rt.fill(ErrorRecord(
        CMD_NOT_FOUND.format(name), category="ObjectNotFound", fq_error_id="CommandNotFoundException",
        exception_type="System.Management.Automation.CommandNotFoundException", target=name,
        reason="CommandNotFoundException")))