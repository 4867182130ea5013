"""Pipeline stages: what runs between a pipeline's input and its output.

A stage has begin/process_item/end (a command's begin, process and end blocks). ScriptCommand runs a
script, function or script block with PowerShell's parameter binding ([Parameter()] attributes,
positions, aliases, switches, common parameters); cmdlets (tests/lab/pwsh/cmdlets/) and native
commands (tests/lab/pwsh/natives.py) are stages too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tests.lab.pwsh import limits
from tests.lab.pwsh.errors import ErrorRecord, no_method, PSError, ReturnSignal, runtime_error
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.parser import Node
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.should_process import should_process, what_if
from tests.lab.pwsh.values import (
    as_list, Hashtable, NO_INPUT, PSEnumerator, PSObject, ScriptBlock, SWITCH_PRESENT, SwitchValue, to_bool, to_str,
)


class Stage:
    """One command of a pipeline: `sink` receives its output; `where` is its span in the source."""

    where: tuple[int, int] = (0, 0)
    sink: Callable[[object], None]
    expecting_input = False

    def begin(self) -> None:
        pass

    def process_item(self, item: object) -> None:
        pass

    def end(self) -> None:
        pass

    def feed(self, source: Iterable[object]) -> None:
        for item in source:
            self.process_item(item)


def run_stage(stage: Stage, input_iter: Iterable[object] | None) -> None:
    """Runs one stage alone with an optional (streamed) input."""
    stage.expecting_input = input_iter is not None
    stage.begin()
    if input_iter is not None:
        stage.feed(input_iter)
    else:
        stage.process_item(NO_INPUT)
    stage.end()


class InvocationInfo:
    ps_type = "System.Management.Automation.InvocationInfo"

    def __init__(self, name: str, unbound: list[object], bound: Hashtable, expecting: bool, sb: ScriptBlock,
                 line: str = "") -> None:
        self.MyCommand = CommandInfo(name or "", "Function" if name else "Script", sb)
        self.UnboundArguments = unbound
        self.BoundParameters = bound
        self.ExpectingInput = expecting
        self.InvocationName = name
        self.ScriptName = ""
        self.PSCommandPath = None
        self.PSScriptRoot = ""
        self.Line = line
        self.PositionMessage = ""


class CommandInfo:
    ps_type = "System.Management.Automation.CommandInfo"

    def __init__(self, name: str, kind: str, sb: ScriptBlock | None = None, source: str = "") -> None:
        self.Name = name
        self.CommandType = kind
        self.ScriptBlock = sb
        self.Source = source
        self.Definition = str(sb) if sb is not None else name
        self.Path = source if kind == "Application" else None

    def ps_tostring(self) -> str:
        return self.Name


class ScriptCommand(Stage):
    """A script, function or scriptblock as a pipeline stage, with PowerShell's parameter binding."""

    def __init__(self, rt: Interpreter, sb: ScriptBlock, name: str, positional: list[object], named: dict[str, object],
                 new_scope: bool = True, is_script: bool = False) -> None:
        self.rt = rt
        self.sb = sb
        self.name = name
        self.positional = positional
        self.named = named
        self.new_scope = new_scope
        self.is_script = is_script
        self.body = sb.body
        self.blocks = sb.body.blocks
        self.params = sb.body.params or []
        self.pipeline_param: Node | None = None
        self.collected: list[object] | None = None
        self.lazy: Iterable[object] | None = None
        self.scope: Scope | None = None
        self.extra_vars: dict[str, object] = {}  # set in the command's scope before it runs ($this of a method)
        self.parameter_set = ALL_SETS

    def param_attr(self, p: Node, key: str) -> object:
        for a in p.attrs:
            if a.name == "parameter" and key in a.named:
                v = a.named[key]
                return True if v is None else self.rt.eval(v)
        return None

    def begin(self) -> None:
        rt = self.rt
        if rt.call_depth >= limits.MAX_CALL_DEPTH:
            raise runtime_error("The script failed due to call depth overflow.", "CallDepthOverflow",
                                "InvalidOperation", "System.Management.Automation.ScriptCallDepthException")
        self.saved_scope = rt.scope
        self.saved_src = rt.src
        self.saved_script_scope = rt.script_scope
        # a function of an imported module runs below the module's scope, not its caller's (about_Scopes)
        module_scope = getattr(self.sb.module, "scope", None)
        self.scope = Scope(module_scope or rt.scope) if self.new_scope else rt.scope
        if self.is_script:
            rt.script_scope = self.scope
        rt.call_depth += 1
        try:
            self._bind()
            if "begin" in self.blocks:
                self._run_block("begin", None)
        finally:
            self._leave()

    def _enter(self) -> None:
        rt = self.rt
        self.outer = (rt.scope, rt.src, rt.script_scope)
        rt.scope = self.scope  # type: ignore[assignment]
        rt.src = self.sb.src
        if self.is_script:
            rt.script_scope = self.scope  # type: ignore[assignment]

    def _leave(self) -> None:
        pass

    def _run_block(self, which: str, item: object) -> None:
        rt = self.rt
        outer = (rt.scope, rt.src, rt.script_scope, rt.cur, rt.usings, rt.module)
        rt.scope = self.scope  # type: ignore[assignment]
        rt.src = self.sb.src
        rt.usings = self.sb.usings
        if self.sb.module is not None:
            rt.module = self.sb.module
            rt.script_scope = self.sb.module.scope  # type: ignore[attr-defined]
        if self.is_script:
            rt.script_scope = self.scope  # type: ignore[assignment]
        try:
            rt.exec_stmts(self.blocks[which], self.sink)
        except ReturnSignal:
            pass
        finally:
            rt.scope, rt.src, rt.script_scope, rt.cur, rt.usings, rt.module = outer

    def _bind(self) -> None:
        rt = self.rt
        scope = self.scope
        assert scope is not None
        outer = (rt.scope, rt.src, rt.usings)
        rt.scope = scope
        rt.src = self.sb.src
        rt.usings = self.sb.usings
        try:
            bound = Hashtable()
            unbound: list[object] = []
            by_name = {p.name.lower(): p for p in self.params}
            aliases: dict[str, Node] = {}
            for p in self.params:
                for a in p.attrs:
                    if a.name == "alias":
                        for an in a.args:
                            for alias in as_list(rt.eval(an)):
                                aliases[to_str(alias).lower()] = p
                if self.param_attr(p, "valuefrompipeline") and self.pipeline_param is None:
                    self.pipeline_param = p
            for key, value in self.named.items():
                low = key.lower()
                p = by_name.get(low) or aliases.get(low)
                if p is None:
                    cands = [q for q in self.params if q.name.lower().startswith(low)]
                    if len(cands) == 1:
                        p = cands[0]
                if p is None:
                    if low in COMMON_PARAMS or any(c.startswith(low) for c in ("erroraction",)):
                        if low in ("erroraction", "ea"):
                            scope.vars["erroractionpreference"] = to_str(value)
                        elif low in ("warningaction", "wa"):
                            scope.vars["warningpreference"] = to_str(value)
                        elif low == "verbose":
                            scope.vars["verbosepreference"] = "Continue" if value is SWITCH_PRESENT or to_bool(value) \
                                else "SilentlyContinue"
                        elif low in ("whatif", "wi"):
                            scope.vars["whatifpreference"] = value is SWITCH_PRESENT or to_bool(value)
                        continue
                    if not self.params and not self.body.attrs:
                        unbound.append(f"-{key}")
                        if value is not SWITCH_PRESENT:
                            unbound.append(value)
                        continue
                    raise PSError(rt.fill(ErrorRecord(
                        f"A parameter cannot be found that matches parameter name '{key}'.", category="InvalidArgument",
                        fq_error_id=f"NamedParameterNotFound,{self.name or 'script'}",
                        exception_type="System.Management.Automation.ParameterBindingException", target=None,
                        command_name=self.name or None, reason="ParameterBindingException")))
                bound[p.name] = self._coerce(p, True if value is SWITCH_PRESENT else value)
            positional = [p for p in self.params if p.name not in bound and not is_switch_param(p)
                          and self.param_attr(p, "position") is not None]
            positional.sort(key=lambda q: rt.to_int(self.param_attr(q, "position")))
            if not any(self.param_attr(p, "position") is not None for p in self.params) and not self.body.attrs:
                positional = [p for p in self.params if p.name not in bound and not is_switch_param(p)]
            elif not any(self.param_attr(p, "position") is not None for p in self.params):
                positional = [p for p in self.params if p.name not in bound and not is_switch_param(p)]
            args = list(self.positional)
            for p in positional:
                if not args:
                    break
                if self.pipeline_param is p and self.expecting_input:
                    continue
                bound[p.name] = self._coerce(p, args.pop(0))
            if args and self.body.attrs and self.params:
                raise PSError(rt.fill(ErrorRecord(
                    f"A positional parameter cannot be found that accepts argument '{to_str(args[0])}'.",
                    category="InvalidArgument", fq_error_id=f"PositionalParameterNotFound,{self.name or 'script'}",
                    exception_type="System.Management.Automation.ParameterBindingException",
                    command_name=self.name or None, reason="ParameterBindingException")))
            unbound.extend(args)
            self.parameter_set = self._resolve_parameter_set(bound)
            for p in self.params:
                if p.name in bound:
                    scope.vars[p.name.lower()] = bound[p.name]
                elif is_switch_param(p):
                    scope.vars[p.name.lower()] = SwitchValue(False)
                elif p.default is not None:
                    scope.vars[p.name.lower()] = self._coerce(p, rt.eval(p.default))
                else:
                    scope.vars[p.name.lower()] = self._coerce(p, None) if p.type and p.type.lower() in (
                        "string", "int", "long", "bool") else None
                from_pipeline = p is self.pipeline_param or bool(self.param_attr(p, "valuefrompipelinebypropertyname"))
                if p.name not in bound and self._mandatory(p) and not (from_pipeline and self.expecting_input):
                    raise PSError(rt.fill(ErrorRecord(
                        f"Cannot process command because of one or more missing mandatory parameters: {p.name}.",
                        category="InvalidArgument", fq_error_id=f"MissingMandatoryParameter,{self.name or 'script'}",
                        exception_type="System.Management.Automation.ParameterBindingException",
                        command_name=self.name or None, reason="ParameterBindingException")))
            scope.vars.update(self.extra_vars)
            scope.vars["args"] = unbound
            scope.vars["psboundparameters"] = bound
            scope.vars["myinvocation"] = InvocationInfo(self.name, unbound, bound, self.expecting_input, self.sb)
            scope.vars["pscmdlet"] = CmdletObject(self)
            self.bound = bound
        finally:
            rt.scope, rt.src, rt.usings = outer

    def _sets_of(self, p: Node) -> dict[str, Node]:
        """The parameter sets a parameter belongs to, each with its [Parameter()] attribute."""
        out: dict[str, Node] = {}
        for a in p.attrs:
            if a.name == "parameter":
                name = a.named.get("parametersetname")
                out[to_str(self.rt.eval(name)) if name is not None else ALL_SETS] = a
        return out or {ALL_SETS: Node("attr", 0, name="parameter", args=[], named={})}

    def _resolve_parameter_set(self, bound: Hashtable) -> str:
        """The parameter set the bound parameters select (about_Functions_Advanced_Parameters, ParameterSetName)."""
        named_sets: list[str] = []
        for p in self.params:
            for name in self._sets_of(p):
                if name != ALL_SETS and name not in named_sets:
                    named_sets.append(name)
        if not named_sets:
            return ALL_SETS
        by_name = {p.name: p for p in self.params}
        candidates = [ps for ps in named_sets
                      if all(ps in self._sets_of(by_name[b]) or ALL_SETS in self._sets_of(by_name[b])
                             for b in bound.keys() if b in by_name)]
        default = None
        for a in self.body.attrs:
            if a.name == "cmdletbinding" and "defaultparametersetname" in a.named:
                default = to_str(self.rt.eval(a.named["defaultparametersetname"]))
        if len(candidates) == 1:
            return candidates[0]
        if default in candidates:
            return default  # type: ignore[return-value]
        if not candidates or len(candidates) > 1 and default is None:
            # a set whose mandatory parameters are all bound wins; PowerShell reports the ambiguity otherwise
            complete = [ps for ps in candidates if all(
                p.name in bound for p in self.params
                if ps in self._sets_of(p) and to_bool(self._attr_value(self._sets_of(p)[ps], "mandatory")))]
            if len(complete) == 1:
                return complete[0]
            raise PSError(self.rt.fill(ErrorRecord(
                "Parameter set cannot be resolved using the specified named parameters.", category="InvalidArgument",
                fq_error_id=f"AmbiguousParameterSet,{self.name or 'script'}",
                exception_type="System.Management.Automation.ParameterBindingException",
                command_name=self.name or None, reason="ParameterBindingException")))
        return candidates[0]

    def _attr_value(self, attr: Node, key: str) -> object:
        if key not in attr.named:
            return None
        v = attr.named[key]
        return True if v is None else self.rt.eval(v)

    def _mandatory(self, p: Node) -> bool:
        sets = self._sets_of(p)
        attr = sets.get(self.parameter_set) or sets.get(ALL_SETS)
        return attr is not None and to_bool(self._attr_value(attr, "mandatory"))

    def _coerce(self, p: Node, value: object) -> object:
        if is_switch_param(p):
            return SwitchValue(to_bool(value) if value is not SWITCH_PRESENT else True)
        if p.type is None or value is None and p.type.lower() not in ("string", "int", "long", "bool"):
            return value
        try:
            return self.rt.convert(value, p.type)
        except PSError as e:
            raise PSError(self.rt.fill(ErrorRecord(
                f"Cannot process argument transformation on parameter '{p.name}'. {e.record.message}",
                category="InvalidData", fq_error_id=f"ParameterArgumentTransformationError,{self.name or 'script'}",
                exception_type="System.Management.Automation.ParameterBindingArgumentTransformationException",
                command_name=self.name or None, reason="ParameterBindingArgumentTransformationException"))) from None

    def feed(self, source: Iterable[object]) -> None:
        if "process" not in self.blocks and self.lazy is None and self.pipeline_param is None:
            self.lazy = source  # the end block reads $input as it arrives
            return
        super().feed(source)

    def process_item(self, item: object) -> None:
        if "process" not in self.blocks:
            if item is not NO_INPUT:
                if self.collected is None:
                    self.collected = []
                self.collected.append(item)
                if self.pipeline_param is not None:
                    # each input still binds the ValueFromPipeline parameter: the end block sees the last one
                    assert self.scope is not None
                    self.scope.vars[self.pipeline_param.name.lower()] = self._coerce(self.pipeline_param, item)
            return
        scope = self.scope
        assert scope is not None
        if item is NO_INPUT:
            scope.vars["_"] = None
            scope.vars["input"] = PSEnumerator([])
        else:
            scope.vars["_"] = item
            scope.vars["input"] = PSEnumerator([item])
            if self.pipeline_param is not None:
                scope.vars[self.pipeline_param.name.lower()] = self._coerce(self.pipeline_param, item)
            self._bind_by_property_name(item)
        self.rt.call_depth += 1
        try:
            self._run_block("process", item)
        finally:
            self.rt.call_depth -= 1

    def _bind_by_property_name(self, item: object) -> None:
        """[Parameter(ValueFromPipelineByPropertyName)]: the item's property of the parameter's name or an alias."""
        scope = self.scope
        assert scope is not None
        for p in self.params:
            if p is self.pipeline_param or not to_bool(self.param_attr(p, "valuefrompipelinebypropertyname")) \
                    or p.name in self.bound:
                continue
            names = [p.name] + [to_str(alias) for a in p.attrs if a.name == "alias"
                                for n in a.args for alias in as_list(self.rt.eval(n))]
            found, value = False, None
            for name in names:
                found, value = property_of(item, name)
                if found:
                    break
            if found:
                scope.vars[p.name.lower()] = self._coerce(p, value)
            elif self._mandatory(p):
                raise PSError(self.rt.fill(ErrorRecord(
                    "The input object cannot be bound to any parameters for the command either because the command "
                    "does not take pipeline input or the input and its properties do not match any of the parameters "
                    "that take pipeline input.", category="InvalidArgument",
                    fq_error_id=f"InputObjectNotBound,{self.name or 'script'}",
                    exception_type="System.Management.Automation.ParameterBindingException",
                    command_name=self.name or None, reason="ParameterBindingException")))

    def end(self) -> None:
        rt = self.rt
        try:
            scope = self.scope
            assert scope is not None
            if self.lazy is not None:
                scope.vars["input"] = PSEnumerator(self.lazy)
            else:
                scope.vars["input"] = PSEnumerator(self.collected or [])
            if "end" in self.blocks and self.blocks["end"] is not None:
                rt.call_depth += 1
                try:
                    self._run_block("end", None)
                finally:
                    rt.call_depth -= 1
        finally:
            rt.call_depth -= 1
            if self.is_script:
                rt.script_scope = self.saved_script_scope


ALL_SETS = "__AllParameterSets"


def property_of(item: object, name: str) -> tuple[bool, object]:
    """(found, value) of an object's property as pipeline binding by property name sees it."""
    low = name.lower()
    if isinstance(item, PSObject):
        return (True, item.props[name]) if name in item.props else (False, None)
    getter = getattr(item, "ps_get", None)
    if getter is not None:
        try:
            return True, getter(name)
        except KeyError:
            pass
    for attr in dir(item):
        if attr.lower() == low and attr[:1].isupper():
            return True, getattr(item, attr)
    return False, None


def is_switch_param(p: Node) -> bool:
    return bool(p.type) and p.type.lower() in ("switch", "system.management.automation.switchparameter")


COMMON_PARAMS = {"erroraction", "ea", "warningaction", "wa", "verbose", "vb", "debug", "db", "errorvariable", "ev",
                 "warningvariable", "wv", "outvariable", "ov", "outbuffer", "ob", "pipelinevariable", "pv",
                 "informationaction", "ia", "informationvariable", "iv", "whatif", "wi", "confirm", "cf"}


class CmdletObject:
    ps_type = "System.Management.Automation.PSScriptCmdlet"

    def __init__(self, cmd: ScriptCommand) -> None:
        self.cmd = cmd

    def ps_get(self, name: str) -> object:
        low = name.lower()
        if low == "parametersetname":
            return getattr(self.cmd, "parameter_set", ALL_SETS)
        if low == "myinvocation":
            return self.cmd.scope.vars.get("myinvocation") if self.cmd.scope is not None else None
        if low == "sessionstate":
            return None
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        rt = self.cmd.rt
        if low == "writeobject":
            self.cmd.sink(args[0] if args else None)
            return None
        if low == "writeerror":
            rec = args[0]
            if isinstance(rec, ErrorRecord):
                rt.write_error(rec)
            return None
        if low == "throwterminatingerror":
            rec = args[0]
            if isinstance(rec, ErrorRecord):
                raise PSError(rt.fill(rec))
        if low == "shouldprocess":
            # ShouldProcess(target) / (target, action) / (verboseDescription, verboseWarning, caption)
            if len(args) >= 3:
                if what_if(rt):
                    rt.streams.host_write(f"What if: {to_str(args[0])}")
                    return False
                return True
            action = to_str(args[1]) if len(args) == 2 else self.cmd.name
            return should_process(rt, to_str(args[0]) if args else "", action)
        if low == "getunresolvedproviderpathfrompspath":
            return rt.host.fs.full_win(to_str(args[0]), rt.cwd)
        raise no_method(self, name)


def run_filter_block(rt: Interpreter, sb: ScriptBlock, item: object, sink: Callable[[object], None]) -> None:
    """Runs a scriptblock with $_ set, in a child scope (ForEach-Object/Where-Object)."""
    saved = (rt.scope, rt.src, rt.usings)
    scope = Scope(rt.scope)
    scope.vars["_"] = item
    scope.vars["psitem"] = item
    rt.scope = scope
    rt.src = sb.src
    rt.usings = sb.usings
    rt.call_depth += 1
    try:
        if rt.call_depth > limits.MAX_CALL_DEPTH:
            raise runtime_error("The script failed due to call depth overflow.", "CallDepthOverflow")
        for blk in ("begin", "process", "end"):
            if blk in sb.body.blocks and sb.body.blocks[blk] is not None:
                rt.exec_stmts(sb.body.blocks[blk], sink)
    except ReturnSignal:
        pass
    finally:
        rt.call_depth -= 1
        rt.scope, rt.src, rt.usings = saved
