"""The lab engine's PowerShell interpreter, as it moves room by room into tests/lab/pwsh/ (see its __init__)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable

from tests.lab.pwsh import limits
from tests.lab.pwsh.automatic import ExecutionContextObject, HostObject, ps_version_table
from tests.lab.pwsh.conversions import convert_value, format_date
from tests.lab.pwsh.display import display_value, format_for_display, render_error_text
from tests.lab.pwsh.dotnet_objects import ExceptionObj, GuidValue, SecureStringValue
from tests.lab.pwsh.errors import (
    BreakSignal, CMD_NOT_FOUND, ContinueSignal, ErrorRecord, ExitScript, parse_error_record, PSError, ReturnSignal,
    runtime_error, StopUpstream, type_name_of,
)
from tests.lab.pwsh.files import decode_text, FileSystemItem, PathInfo, resolve_path, win_full
from tests.lab.pwsh.host import FileSystem, HostContext, NativeCommandFn, NativeResult, PathOutsideRoot
from tests.lab.pwsh.limits import MAX_STRING_CHARS
from tests.lab.pwsh.members import call_method, get_member, set_member
from tests.lab.pwsh.operators import binary_op, compare, dotnet_regex, wildcard_regex
from tests.lab.pwsh.parser import Node, parse, ParseError, position_message
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import (
    CommandInfo, COMMON_PARAMS, InvocationInfo, is_switch_param, run_filter_block, run_stage, ScriptCommand, Stage,
)
from tests.lab.pwsh.statics import call_static, new_object, static_member
from tests.lab.pwsh.values import (
    as_list, canonical_type, enumerate_value, EnumValue, Hashtable, is_number, NO_INPUT, parse_number, PSEnumerator,
    PSObject, Ref, ScriptBlock, SWITCH_PRESENT, SwitchValue, to_bool, to_str, TypeRef,
)


class Runtime:
    """Runs parsed scripts against one Engine's file system, environment and streams."""

    def __init__(self, host: "HostContext", streams: object) -> None:
        self.host = host
        self.streams = streams
        self.global_scope = Scope(None)
        self.script_scope = self.global_scope
        self.call_depth = 0
        self.src = ""
        self.cur: tuple[int, int] = (0, 0)
        self.errors: list[ErrorRecord] = []
        self.last_ok = True
        g = self.global_scope.vars
        g["true"] = True
        g["false"] = False
        g["null"] = None
        g["erroractionpreference"] = "Continue"
        g["warningpreference"] = "Continue"
        g["verbosepreference"] = "SilentlyContinue"
        g["debugpreference"] = "SilentlyContinue"
        g["progresspreference"] = "Continue"
        g["informationpreference"] = "SilentlyContinue"
        g["error"] = self.errors
        g["pid"] = 4242
        g["ofs"] = " "
        g["home"] = host.profile_dir
        g["psversiontable"] = ps_version_table()
        g["host"] = HostObject(self)
        g["executioncontext"] = ExecutionContextObject(self)
        g["pshome"] = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"
        g["iscorecLR".lower()] = False
        g["lastexitcode"] = None
        g["shellid"] = "Microsoft.PowerShell"
        g["nestedpromptlevel"] = 0
        g["maximumfunctioncount"] = 4096
        self.cwd = host.profile_dir + "\\Documents"

    # ---- positions and errors --------------------------------------------------------------------
    def position(self) -> str:
        return position_message(self.src, self.cur[0], self.cur[1])

    def line_no(self) -> int:
        return self.src.replace("\r\n", "\n").count("\n", 0, self.cur[0]) + 1

    def fill(self, record: ErrorRecord) -> ErrorRecord:
        if record.position is None:
            record.position = self.position()
            record.line = self.line_no()
        return record

    def write_error(self, record: ErrorRecord, action: str | None = None) -> None:
        """A non-terminating error, handled as $ErrorActionPreference (or -ErrorAction) says."""
        self.fill(record)
        self.last_ok = False
        pref = (action or to_str(self.get_var("ErrorActionPreference")) or "Continue").lower()
        if pref == "stop":
            raise PSError(record)
        if pref == "ignore":
            return
        self.errors.insert(0, record)
        if pref == "silentlycontinue":
            return
        self.streams.error(record.to_info())

    def warn(self, message: str, action: str | None = None) -> None:
        pref = (action or to_str(self.get_var("WarningPreference")) or "Continue").lower()
        if pref in ("silentlycontinue", "ignore"):
            return
        if pref == "stop":
            raise runtime_error(f"The running command stopped because the preference variable "
                                f"\"WarningPreference\" or common parameter is set to Stop: {message}",
                                "ActionPreferenceStop", "OperationStopped",
                                "System.Management.Automation.ActionPreferenceStopException")
        self.streams.warning(message)

    # ---- variables -------------------------------------------------------------------------------
    def get_var(self, name: str, scope: str | None = None) -> object:
        low = name.lower()
        if scope == "env":
            return self.host.env_get(name)
        if scope == "script":
            s = self.script_scope.find(low) if low in self.script_scope.vars else None
            return self.script_scope.vars.get(low) if s else self.global_scope.vars.get(low)
        if scope == "global":
            return self.global_scope.vars.get(low)
        if low == "?":
            return self.last_ok
        if low == "pwd":
            return PathInfo(self.cwd)
        found = self.scope.find(low)
        if found is None:
            return None
        return found.vars[low]

    def has_var(self, name: str) -> bool:
        return self.scope.find(name.lower()) is not None

    def set_var(self, name: str, value: object, scope: str | None = None, local: bool = True) -> None:
        low = name.lower()
        if scope == "env":
            self.host.env_set(name, None if value is None else to_str(value))
            return
        if low in ("true", "false", "null") and scope is None:
            if low == "null":
                return
            raise runtime_error(f"Cannot overwrite variable {name} because it is read-only or constant.",
                                "VariableNotWritable", "WriteError", "System.Management.Automation.SessionStateUnauthorizedAccessException")
        if isinstance(value, str) and len(value) > limits.MAX_STRING_CHARS:
            raise runtime_error("The string is longer than the lab engine allows.", "LabStringTooLong")
        target = {"script": self.script_scope, "global": self.global_scope}.get(scope or "", self.scope)
        target.vars[low] = value

    # ---- running ---------------------------------------------------------------------------------
    def run_script(self, src: str, args: list[object], named: dict[str, object], input_iter: Iterable[object] | None,
                   sink: Callable[[object], None], file_name: str | None = None) -> None:
        body = parse(src)
        sb = ScriptBlock(body, src, file_name)
        self.scope = self.global_scope
        cmd = ScriptCommand(self, sb, "", args, named, new_scope=True, is_script=True)
        cmd.sink = sink
        run_stage(cmd, input_iter)

    def exec_stmts(self, node: Node, sink: Callable[[object], None]) -> None:
        for st in node.list:
            self.exec_stmt(st, sink)

    def exec_stmt(self, st: Node, sink: Callable[[object], None]) -> None:
        try:
            self._exec_stmt(st, sink)
        except PSError as e:
            if e.record.position is None:
                self.cur = (st.pos, st.end if st.end > st.pos else st.pos + 1)
                self.fill(e.record)
            raise

    def _exec_stmt(self, st: Node, sink: Callable[[object], None]) -> None:
        k = st.k
        self.cur = (st.pos, st.end if st.end > st.pos else st.pos + 1)
        if k == "pipeline":
            self.run_pipeline(st, sink)
        elif k == "assign":
            self.exec_assign(st)
        elif k == "multi_assign":
            values = self.collect(st.value)
            lst = list(values)
            for idx, t in enumerate(st.targets):
                if idx == len(st.targets) - 1:
                    rest = lst[idx:]
                    self.set_var(t.name, rest[0] if len(rest) == 1 else (rest or None), t.scope)
                else:
                    self.set_var(t.name, lst[idx] if idx < len(lst) else None, t.scope)
        elif k == "if":
            for cond, body in st.clauses:
                if to_bool(self.eval_pipeline_value(cond)):
                    self.exec_stmts(body, sink)
                    return
            if st.else_ is not None:
                self.exec_stmts(st.else_, sink)
        elif k == "foreach":
            coll = self.eval_pipeline_value(st.coll, keep_enumerator=True)
            count = 0
            items = coll if isinstance(coll, PSEnumerator) else enumerate_value(coll) if coll is not None else []
            for item in items:
                count += 1
                if count > limits.MAX_LOOP_ITERATIONS:
                    raise self.bound_error("foreach")
                self.set_var(st.var.name, item, st.var.scope)
                try:
                    self.exec_stmts(st.body, sink)
                except BreakSignal:
                    break
                except ContinueSignal:
                    continue
        elif k in ("while", "do", "for"):
            self.exec_loop(st, sink)
        elif k == "switch":
            self.exec_switch(st, sink)
        elif k == "try":
            self.exec_try(st, sink)
        elif k == "function":
            self.scope.funcs[st.name.lower()] = ScriptBlock(st.body, self.src, None)
        elif k == "throw":
            self.exec_throw(st)
        elif k == "return":
            if st.value is not None:
                self.run_pipeline(st.value, sink)
            raise ReturnSignal()
        elif k == "exit":
            code = 0
            if st.value is not None:
                v = self.eval_pipeline_value(st.value)
                code = self.to_int(v) if v is not None and v != "" else 0
            raise ExitScript(code)
        elif k == "break":
            raise BreakSignal()
        elif k == "continue":
            raise ContinueSignal()
        else:
            raise runtime_error(f"Statement '{k}' is outside the lab engine's subset.", "LabUnsupported")

    def bound_error(self, what: str) -> PSError:
        return runtime_error(f"The lab engine stopped a {what} loop after {limits.MAX_LOOP_ITERATIONS} iterations.",
                             "LabLoopBound", "LimitsExceeded")

    def exec_loop(self, st: Node, sink: Callable[[object], None]) -> None:
        if st.k == "for" and st.init is not None:
            self.exec_stmt(st.init, lambda v: None)
        count = 0
        first = True
        while True:
            count += 1
            if count > limits.MAX_LOOP_ITERATIONS:
                raise self.bound_error(st.k)
            if st.k == "do" and first:
                pass
            elif st.cond is not None:
                ok = to_bool(self.eval_pipeline_value(st.cond))
                if st.k == "do" and st.until:
                    ok = not ok
                if not ok:
                    break
            first = False
            try:
                self.exec_stmts(st.body, sink)
            except BreakSignal:
                break
            except ContinueSignal:
                pass
            if st.k == "for" and st.step is not None:
                self.exec_stmt(st.step, lambda v: None)
            if st.k == "do":
                ok = to_bool(self.eval_pipeline_value(st.cond))
                if (not ok) if not st.until else ok:
                    break

    def exec_switch(self, st: Node, sink: Callable[[object], None]) -> None:
        value = self.eval_pipeline_value(st.value)
        items = [None] if value is None else list(enumerate_value(value))
        case = "casesensitive" in st.opts
        saved = self.scope.vars.get("_")
        try:
            for count, item in enumerate(items):
                if count > limits.MAX_LOOP_ITERATIONS:
                    raise self.bound_error("switch")
                self.scope.vars["_"] = item
                matched = False
                try:
                    for cond, body in st.clauses:
                        if cond is None:
                            continue
                        if cond.k == "scriptblock":
                            out: list[object] = []
                            run_filter_block(self, ScriptBlock(cond.body, self.src), item, out.append)
                            hit = to_bool(out[0] if len(out) == 1 else out)
                        else:
                            c = self.eval(cond)
                            if "regex" in st.opts:
                                hit = bool(re.search(dotnet_regex(to_str(c)), to_str(item), 0 if case else re.I))
                            elif "wildcard" in st.opts:
                                hit = bool(re.match("^" + wildcard_regex(to_str(c)) + "$", to_str(item),
                                                    0 if case else re.I | re.S))
                            else:
                                hit = compare(self, "eq", item, c, case)
                        if hit:
                            matched = True
                            self.exec_stmts(body, sink)
                    if not matched:
                        for cond, body in st.clauses:
                            if cond is None:
                                self.exec_stmts(body, sink)
                except ContinueSignal:
                    continue
        except BreakSignal:
            pass
        finally:
            self.scope.vars["_"] = saved

    def exec_try(self, st: Node, sink: Callable[[object], None]) -> None:
        try:
            try:
                self.exec_stmts(st.body, sink)
            except PSError as e:
                rec = e.record
                for types, body in st.catches:
                    if not types or any(self.catch_matches(t, rec) for t in types):
                        saved = self.scope.vars.get("_", None)
                        had = "_" in self.scope.vars
                        self.scope.vars["_"] = rec
                        self.scope.vars["psitem"] = rec
                        try:
                            self.exec_stmts(body, sink)
                        finally:
                            if had:
                                self.scope.vars["_"] = saved
                            else:
                                self.scope.vars.pop("_", None)
                        break
                else:
                    raise
        finally:
            if st.fin is not None:
                self.exec_stmts(st.fin, sink)

    def catch_matches(self, tname: str, rec: ErrorRecord) -> bool:
        want = canonical_type(tname).lower()
        have = rec.exception_type.lower()
        if want in ("system.exception", "system.object"):
            return True
        if want == "system.management.automation.runtimeexception":
            return have.startswith("system.management.automation.")
        if want == "system.systemexception":
            return True
        return have == want or have.endswith("." + want.rsplit(".", 1)[-1])

    def exec_throw(self, st: Node) -> None:
        value = None if st.value is None else self.eval_pipeline_value(st.value)
        if isinstance(value, ErrorRecord):
            raise PSError(value)
        if value is None:
            msg = "ScriptHalted"
            rec = ErrorRecord(msg, category="OperationStopped", fq_error_id="ScriptHalted",
                              exception_type="System.Management.Automation.RuntimeException")
        else:
            msg = to_str(value)
            rec = ErrorRecord(msg, category="OperationStopped", fq_error_id=msg,
                              exception_type="System.Management.Automation.RuntimeException",
                              target=value, thrown_object=value)
        raise PSError(self.fill(rec))

    def exec_assign(self, st: Node) -> None:
        value_node = st.value
        if value_node.k == "pipeline" and len(value_node.elements) == 1 and value_node.elements[0].k == "expr" \
                and not value_node.elements[0].redirs:
            value = self.eval(value_node.elements[0].expr)
            if isinstance(value, PSEnumerator):
                pass
        else:
            value = self.collect_value(value_node)
        target = st.target
        op = st.op
        if op != "=":
            cur = self.eval(target)
            value = self.binop(op[0], cur, value)
        self.assign_to(target, value)

    def assign_to(self, target: Node, value: object) -> None:
        if target.k == "var":
            if isinstance(value, str) and len(value) > limits.MAX_STRING_CHARS:
                raise runtime_error("The string is longer than the lab engine allows.", "LabStringTooLong")
            self.set_var(target.name, value, target.scope)
        elif target.k == "cast":
            self.set_var(target.operand.name, self.convert(value, target.type), target.operand.scope)
        elif target.k == "member":
            obj = self.eval(target.obj)
            name = target.name if isinstance(target.name, str) else to_str(self.eval(target.name))
            set_member(self, obj, name, value)
        elif target.k == "index":
            obj = self.eval(target.obj)
            idx = self.eval(target.index)
            if isinstance(obj, dict):
                obj[idx] = value
            elif isinstance(obj, (list, bytearray)):
                i = self.to_int(idx)
                try:
                    obj[i] = value if isinstance(obj, list) else self.to_int(value) & 0xFF
                except IndexError:
                    raise runtime_error("Index was outside the bounds of the array.", "IndexOutOfRange",
                                        exc="System.IndexOutOfRangeException") from None
            else:
                raise runtime_error(f"Unable to index into an object of type {type_name_of(obj)}.",
                                    "CannotIndex")
        else:
            raise runtime_error("The assignment expression is not valid.", "InvalidLeftHandSide")

    # ---- pipelines -------------------------------------------------------------------------------
    def collect(self, node: Node) -> list[object]:
        out: list[object] = []
        if node.k in ("pipeline",):
            self.run_pipeline(node, out.append)
        else:
            self.exec_stmt(node, out.append)
        return out

    def collect_value(self, node: Node) -> object:
        out = self.collect(node)
        if not out:
            return None
        return out[0] if len(out) == 1 else out

    def eval_pipeline_value(self, node: Node, keep_enumerator: bool = False) -> object:
        if node.k == "assign":  # `while ($read = $fs.Read(...))`: the condition is the assigned value
            self.exec_assign(node)
            return self.eval(node.target)
        if node.k == "pipeline" and len(node.elements) == 1 and node.elements[0].k == "expr" \
                and not node.elements[0].redirs:
            v = self.eval(node.elements[0].expr)
            if isinstance(v, PSEnumerator) and keep_enumerator:
                return v
            return v
        return self.collect_value(node)

    def run_pipeline(self, node: Node, sink: Callable[[object], None]) -> None:
        elements = node.elements
        stages: list[Stage] = []
        source: Iterable[object] | None = None
        first = elements[0]
        saved_cur = self.cur
        if first.k == "expr":
            self.cur = (first.pos, first.end)
            sink0 = self.redirect(first.redirs, sink if len(elements) == 1 else None)
            value = self.eval(first.expr)
            if first.expr.k == "incdec" and len(elements) == 1:
                return  # `$i++` as a statement writes nothing
            if value is None and first.expr.k == "call":
                if len(elements) == 1:
                    return  # a void .NET method writes nothing (AutomationNull), unlike $null
                value = []
            if len(elements) == 1:
                if first.expr.k == "paren" or first.expr.k in ("subexpr", "arrayexpr") or True:
                    for item in enumerate_value(value) if not isinstance(value, PSEnumerator) else value:
                        sink0(item)
                return
            source = value if isinstance(value, PSEnumerator) else enumerate_value(value)
            cmd_nodes = elements[1:]
        else:
            cmd_nodes = elements
        for cn in cmd_nodes:
            self.cur = (cn.pos, cn.end)
            stages.append(self.make_stage(cn))
        self.cur = saved_cur
        for idx, st in enumerate(stages):
            nxt = stages[idx + 1].process_item if idx + 1 < len(stages) else sink
            st.sink = self.redirect(cmd_nodes[idx].redirs, nxt)
        for idx, st in enumerate(stages):
            st.expecting_input = idx > 0 or source is not None
        try:
            for st in stages:
                self.cur = st.where
                st.begin()
            if source is not None:
                stages[0].feed(source)
            else:
                self.cur = stages[0].where
                stages[0].process_item(NO_INPUT)
            for st in stages:
                self.cur = st.where
                st.end()
        except StopUpstream:
            pass

    def redirect(self, redirs: list[tuple[str, str, Node | None]], sink: Callable[[object], None] | None
                 ) -> Callable[[object], None]:
        out = sink if sink is not None else (lambda v: None)
        for stream, kind, target in redirs:
            if kind == "merge":
                continue
            tval = self.eval(target) if target is not None else None
            if stream in ("1", "*"):
                if tval is None:
                    out = lambda v: None  # noqa: E731
                else:
                    path = to_str(tval)
                    append = kind == ">>"
                    fs = self.host.fs
                    if not append:
                        fs.write_bytes(path, b"", self.cwd)

                    def out(v: object, _p: str = path) -> None:
                        text = format_for_display([v]) + "\r\n"
                        fs.append_bytes(_p, text.encode("utf-16-le") if not fs.exists(_p, self.cwd) or True
                                        else b"", self.cwd)
        return out

    def make_stage(self, cn: Node) -> "Stage":
        if cn.k == "expr":
            raise PSError(self.fill(ErrorRecord(
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
                    order.append((a.name, self.eval(a.value)))
            elif a.k == "splat":
                sv = self.get_var(a.name)
                if isinstance(sv, dict):
                    for k2, v2 in sv.items():
                        order.append((str(k2), v2 if not isinstance(v2, bool) or True else v2))
                else:
                    for v2 in as_list(sv):
                        order.append((None, v2))
            else:
                order.append((None, self.eval(a)))
        target: object = name_node
        if not isinstance(name_node, str):
            target = self.eval(name_node)
            if isinstance(target, CommandInfo):
                target = target.Name
            elif not isinstance(target, ScriptBlock):
                target = to_str(target)
        if isinstance(target, str) and self._is_native(target):
            # An executable gets its arguments in the order written; "-Name" is just text to it.
            argv: list[object] = []
            for name, value in order:
                if name is None:
                    argv.extend(as_list(value) if isinstance(value, (list, tuple)) else [value])
                else:
                    argv.append(f"-{name}" if value is SWITCH_PRESENT else f"-{name}:{to_str(value)}")
            stage = NativeCommand(self, target.lower().removesuffix(".exe"), argv, {})
            stage.where = (cn.pos, cn.end)
            return stage
        switch_names = self.switch_names(target)
        # a parameter name takes the next argument as its value unless the command declares it a switch
        pending: str | None = None
        for name, value in order:
            if name is not None:
                if pending is not None:
                    named[pending] = SWITCH_PRESENT
                    pending = None
                if value is SWITCH_PRESENT and not self.is_switch(name, switch_names):
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
            stage: Stage = ScriptCommand(self, target, "", positional, named, new_scope=cn.invoke != ".")
        else:
            stage = self.resolve_command(str(target), positional, named, cn)
        stage.where = where
        return stage

    def switch_names(self, target: object) -> set[str] | None:
        """Names of the switch parameters of the command about to run (None: any name may be a switch)."""
        sb = target if isinstance(target, ScriptBlock) else None
        if isinstance(target, str):
            fn = self.scope.find_func(target.lower())
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

    @staticmethod
    def is_switch(name: str, switches: set[str] | None) -> bool:
        if switches is None:
            return True
        low = name.lower()
        return low in switches or any(sw.startswith(low) for sw in switches) and len(low) >= 2 and \
            sum(1 for sw in switches if sw.startswith(low)) == 1 and not False

    def _is_native(self, name: str) -> bool:
        low = name.lower()
        return (self.host.native_command(low) is not None and not isinstance(self.scope.find_func(low), ScriptBlock)
                and lookup_cmdlet(low) is None)

    def resolve_command(self, name: str, positional: list[object], named: dict[str, object], cn: Node) -> "Stage":
        low = name.lower()
        fn = self.scope.find_func(low)
        if isinstance(fn, ScriptBlock):
            return ScriptCommand(self, fn, name, positional, named, new_scope=cn.invoke != ".")
        cls = lookup_cmdlet(low)
        if cls is not None:
            return cls(self, name, positional, named)
        native = self.host.native_command(low)
        if native is not None:
            return NativeCommand(self, low.removesuffix(".exe"), positional, named)
        if ("\\" in name or "/" in name) and name.lower().endswith(".ps1"):
            text = self.host.fs.read_text(name, self.cwd)
            return ScriptCommand(self, ScriptBlock(parse(text), text, name), name, positional, named, True)
        raise PSError(self.fill(ErrorRecord(
            CMD_NOT_FOUND.format(name), category="ObjectNotFound", fq_error_id="CommandNotFoundException",
            exception_type="System.Management.Automation.CommandNotFoundException", target=name,
            reason="CommandNotFoundException")))

    # ---- expressions -----------------------------------------------------------------------------
    def eval(self, node: Node) -> object:
        k = node.k
        if k == "const":
            return node.value
        if k == "var":
            return self.eval_var(node)
        if k == "expand":
            return "".join(p if isinstance(p, str) else self.interp_str(self.eval(p)) for p in node.parts)
        if k == "member":
            obj = self.eval(node.obj)
            name = node.name if isinstance(node.name, str) else to_str(self.eval(node.name))
            if node.static:
                return static_member(self, obj, name)
            return get_member(self, obj, name)
        if k == "call":
            obj = self.eval(node.obj)
            args = [self.eval(a) for a in node.args]
            name = node.name if isinstance(node.name, str) else to_str(self.eval(node.name))
            if node.static:
                return call_static(self, obj, name, args)
            return call_method(self, obj, name, args)
        if k == "index":
            return self.eval_index(self.eval(node.obj), self.eval(node.index))
        if k == "binop":
            op = node.op
            if op == "and":
                return to_bool(self.eval(node.left)) and to_bool(self.eval(node.right))
            if op == "or":
                return to_bool(self.eval(node.left)) or to_bool(self.eval(node.right))
            return self.binop(op, self.eval(node.left), self.eval(node.right))
        if k == "not":
            return not to_bool(self.eval(node.operand))
        if k == "neg":
            v = self.eval(node.operand)
            return -self.to_num(v)
        if k == "pos":
            return self.to_num(self.eval(node.operand))
        if k == "unop":
            v = self.eval(node.operand)
            if node.op == "join":
                return "".join(to_str(x) for x in as_list(v))
            if node.op == "split":
                return [p for p in re.split(r"\s+", to_str(v).strip()) if p != ""] if to_str(v).strip() else [""]
            if node.op == "bnot":
                return ~self.to_int(v)
        if k == "array":
            return [self.eval(i) for i in node.items]
        if k == "unary_comma":
            return [self.eval(node.operand)]
        if k == "arrayexpr":
            out: list[object] = []
            self.exec_stmts(node.body, out.append)
            return out
        if k == "subexpr":
            out2: list[object] = []
            self.exec_stmts(node.body, out2.append)
            return None if not out2 else out2[0] if len(out2) == 1 else out2
        if k == "paren":
            p = node.pipeline
            if p.k == "pipeline" and len(p.elements) == 1 and p.elements[0].k == "expr" and not p.elements[0].redirs:
                return self.eval(p.elements[0].expr)
            if p.k == "assign":
                self.exec_assign(p)
                return self.eval(p.target)
            return self.collect_value(p)
        if k == "hashtable":
            h = Hashtable()
            for kn, vn in node.entries:
                h[self.eval(kn)] = self.collect_value(vn) if vn.k != "pipeline" or len(vn.elements) > 1 \
                    or vn.elements[0].k != "expr" else self.eval(vn.elements[0].expr)
            return h
        if k == "scriptblock":
            return ScriptBlock(node.body, self.src)
        if k == "typelit":
            return TypeRef(node.name)
        if k == "cast":
            if node.type.lower() in ("pscustomobject",) and node.operand.k == "hashtable":
                h = self.eval(node.operand)
                return PSObject(h)  # type: ignore[arg-type]
            if node.type.lower() == "ordered":
                return self.eval(node.operand)
            if node.type.lower() == "ref":
                return Ref(self.eval(node.operand))
            return self.convert(self.eval(node.operand), node.type)
        if k == "range":
            a, b = self.to_int(self.eval(node.left)), self.to_int(self.eval(node.right))
            if abs(b - a) > limits.MAX_LOOP_ITERATIONS:
                raise self.bound_error("range")
            return list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        if k == "incdec":
            cur = self.eval(node.target)
            new = self.binop(node.op, cur if cur is not None else 0, 1)
            self.assign_to(node.target, new)
            return new if node.prefix else cur
        raise runtime_error(f"The expression '{k}' is outside the lab engine's subset.", "LabUnsupported")

    def interp_str(self, v: object) -> str:
        if isinstance(v, (list, tuple)):
            ofs = self.get_var("OFS")
            return (to_str(ofs) if ofs is not None else " ").join(to_str(x) for x in v)
        return to_str(v)

    def eval_var(self, node: Node) -> object:
        name, scope = node.name, node.scope
        low = name.lower()
        if scope is None and low == "psitem":
            low = "_"
        if scope == "variable":
            scope = None
        if scope in (None, "local", "private", "using"):
            found = self.scope.find(low)
            if found is not None:
                return found.vars[low]
            if low == "?":
                return self.last_ok
            if low == "pwd":
                return PathInfo(self.cwd)
            return None
        return self.get_var(name, scope)

    def eval_index(self, obj: object, idx: object) -> object:
        if obj is None:
            raise runtime_error("Cannot index into a null array.", "NullArray")
        if isinstance(idx, list) and not isinstance(obj, dict):
            return [self.eval_index(obj, i) for i in idx]
        if isinstance(obj, dict):
            return obj[idx]
        if isinstance(obj, PSObject):
            return obj.props[idx]
        if isinstance(obj, (list, tuple, str, bytes, bytearray)):
            i = self.to_int(idx)
            try:
                v = obj[i]
            except IndexError:
                return None
            return v
        getter = getattr(obj, "ps_index", None)
        if getter is not None:
            return getter(idx)
        if self.to_int(idx) == 0:
            return obj
        return None

    # ---- conversions and operators ---------------------------------------------------------------
    def to_num(self, v: object) -> int | float:
        if isinstance(v, bool):
            return int(v)
        if is_number(v):
            return v  # type: ignore[return-value]
        if v is None:
            return 0
        if isinstance(v, str):
            n = parse_number(v)
            if n is None:
                raise runtime_error(f'Cannot convert value "{v}" to type "System.Int32". Error: "Input string was '
                                    f'not in a correct format."', "InvalidCastFromStringToInteger",
                                    "InvalidArgument", "System.Management.Automation.RuntimeException")
            return n
        if isinstance(v, list) and len(v) == 1:
            return self.to_num(v[0])
        if isinstance(v, SwitchValue):
            return int(v.present)
        raise runtime_error(f'Cannot convert the "{to_str(v)}" value of type "{type_name_of(v)}" to type '
                            f'"System.Int32".', "ConvertToFinalInvalidCastException", "InvalidArgument")

    def to_int(self, v: object) -> int:
        n = self.to_num(v)
        if isinstance(n, float):
            return int(round(n))  # .NET rounds to even; Python round does too
        return n

    def convert(self, v: object, type_name: str) -> object:
        return convert_value(self, v, type_name)

    def binop(self, op: str, left: object, right: object) -> object:
        return binary_op(self, op, left, right)


# =================================================================================================
# Cmdlets
# =================================================================================================

class Cmdlet(Stage):
    """A built-in command: declared parameters bound by name (unique prefix), position and pipeline."""

    names: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    positional: tuple[str, ...] = ()
    switches: tuple[str, ...] = ()
    aliases: dict[str, str] = {}
    noun = "Command"

    def __init__(self, rt: Runtime, name: str, positional: list[object], named: dict[str, object]) -> None:
        self.rt = rt
        self.name = self.names[0] if self.names else name
        self.p: dict[str, object] = {}
        self.ea: str | None = None
        self.wa: str | None = None
        self.verbose = False
        all_params = tuple(self.params) + tuple(self.switches)
        for key, value in named.items():
            low = key.lower()
            canon = self.aliases.get(low)
            if canon is None:
                exact = [p for p in all_params if p.lower() == low]
                cands = exact or [p for p in all_params if p.lower().startswith(low)]
                if len(cands) == 1:
                    canon = cands[0]
                elif len(cands) > 1:
                    raise self.binding_error(f"Parameter cannot be processed because the parameter name '{key}' is "
                                             f"ambiguous. Possible matches include: -{' -'.join(cands)}.",
                                             "AmbiguousParameter")
            if canon is None:
                if low in ("erroraction", "ea"):
                    self.ea = to_str(value)
                    continue
                if low in ("warningaction", "wa"):
                    self.wa = to_str(value)
                    continue
                if low in ("verbose", "vb"):
                    self.verbose = value is SWITCH_PRESENT or to_bool(value)
                    continue
                if low in COMMON_PARAMS:
                    continue
                raise self.binding_error(f"A parameter cannot be found that matches parameter name '{key}'.",
                                         "NamedParameterNotFound")
            if canon in self.switches:
                self.p[canon] = True if value is SWITCH_PRESENT else to_bool(value)
            else:
                if value is SWITCH_PRESENT:
                    raise self.binding_error(f"Missing an argument for parameter '{canon}'. Specify a parameter of "
                                             f"type 'System.Object' and try again.", "MissingArgument")
                self.p[canon] = value
        rest = list(positional)
        for pname in self.positional:
            if not rest:
                break
            if pname in self.p:
                continue
            if pname == "*":
                self.p["*"] = rest
                rest = []
                break
            self.p[pname] = rest.pop(0)
        if rest:
            raise self.binding_error(f"A positional parameter cannot be found that accepts argument "
                                     f"'{to_str(rest[0])}'.", "PositionalParameterNotFound")

    def binding_error(self, message: str, fq: str) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(
            message, category="InvalidArgument", fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
            exception_type="System.Management.Automation.ParameterBindingException", command_name=self.name,
            reason="ParameterBindingException")))

    def emit(self, v: object) -> None:
        self.sink(v)

    def error(self, message: str, fq: str, category: str = "ObjectNotFound",
              exc: str = "System.Management.Automation.ItemNotFoundException", target: object = None) -> None:
        self.rt.write_error(ErrorRecord(message, category=category,
                                        fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
                                        exception_type=exc, target=target, command_name=self.name), self.ea)

    def terminate(self, message: str, fq: str, category: str = "InvalidArgument",
                  exc: str = "System.Management.Automation.PSArgumentException", target: object = None) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(message, category=category,
                                                fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
                                                exception_type=exc, target=target, command_name=self.name)))

    def process_item(self, item: object) -> None:
        self.rt.cur = self.where
        self.process(item)

    def process(self, item: object) -> None:
        pass

    def input_or(self, item: object, pname: str) -> object:
        return self.p.get(pname) if item is NO_INPUT else item

    def path_not_found(self, path: str) -> None:
        full = win_full(self.rt, path) if not path.lower().startswith("env:") else path
        self.error(f"Cannot find path '{full}' because it does not exist.", "PathNotFound", target=full)


CMDLETS: dict[str, type[Cmdlet]] = {}


def cmdlet(*names: str, noun: str = ""):  # type: ignore[no-untyped-def]
    def deco(cls: type[Cmdlet]) -> type[Cmdlet]:
        cls.names = names
        cls.noun = noun or names[0].replace("-", "") + "Command"
        for n in names:
            CMDLETS[n.lower()] = cls
        return cls
    return deco


def lookup_cmdlet(name: str) -> type[Cmdlet] | None:
    low = name.lower()
    if low.startswith("microsoft.powershell.") and "\\" in low:
        low = low.split("\\", 1)[1]
    return CMDLETS.get(low)


@cmdlet("Write-Output", "echo", "write")
class WriteOutput(Cmdlet):
    params = ("InputObject",)
    positional = ("*",)
    switches = ("NoEnumerate",)

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.emit(item)
            return
        values = self.p.get("*", [self.p["InputObject"]] if "InputObject" in self.p else [])
        vals = values if isinstance(values, list) else [values]
        for v in vals if len(vals) != 1 else [vals[0]]:
            if self.p.get("NoEnumerate"):
                self.emit(v)
            else:
                for x in enumerate_value(v) if isinstance(v, (list, tuple)) else [v]:
                    self.emit(x)


@cmdlet("Write-Host")
class WriteHost(Cmdlet):
    params = ("Object", "Separator", "ForegroundColor", "BackgroundColor")
    positional = ("*",)
    switches = ("NoNewline",)

    def process(self, item: object) -> None:
        objs = [item] if item is not NO_INPUT else self.p.get("*", [self.p["Object"]] if "Object" in self.p else [])
        sep = to_str(self.p.get("Separator", " "))
        text = sep.join(sep.join(to_str(x) for x in o) if isinstance(o, list) else to_str(o)
                        for o in objs)  # type: ignore[union-attr]
        self.rt.streams.host_write(text, newline=not self.p.get("NoNewline"))


@cmdlet("Write-Error")
class WriteError(Cmdlet):
    params = ("Message", "Category", "ErrorId", "TargetObject", "Exception", "ErrorRecord", "RecommendedAction",
              "CategoryActivity", "CategoryReason", "CategoryTargetName", "CategoryTargetType")
    positional = ("Message",)
    aliases = {"msg": "Message"}

    def process(self, item: object) -> None:
        rt = self.rt
        if isinstance(self.p.get("ErrorRecord"), ErrorRecord):
            rt.write_error(self.p["ErrorRecord"], self.ea)  # type: ignore[arg-type]
            return
        msg = to_str(self.input_or(item, "Message"))
        exc = self.p.get("Exception")
        if isinstance(exc, ExceptionObj):
            msg = msg or exc.Message
        fn = rt.scope.vars.get("myinvocation")
        fn_name = fn.MyCommand.Name if isinstance(fn, InvocationInfo) and fn.MyCommand.Name else ""
        fq = to_str(self.p["ErrorId"]) if "ErrorId" in self.p else "Microsoft.PowerShell.Commands.WriteErrorException"
        if fn_name:
            fq = f"{fq},{fn_name}"
        rec = ErrorRecord(msg, category=to_str(self.p.get("Category", "NotSpecified")), fq_error_id=fq,
                          exception_type=exc.ps_type if isinstance(exc, ExceptionObj)
                          else "Microsoft.PowerShell.Commands.WriteErrorException",
                          target=self.p.get("TargetObject"), command_name=self.name)
        rt.write_error(rec, self.ea)


@cmdlet("Write-Warning")
class WriteWarning(Cmdlet):
    params = ("Message",)
    positional = ("Message",)

    def process(self, item: object) -> None:
        self.rt.warn(to_str(self.input_or(item, "Message")), self.wa)


@cmdlet("Write-Verbose")
class WriteVerbose(Cmdlet):
    params = ("Message",)
    positional = ("Message",)

    def process(self, item: object) -> None:
        pref = to_str(self.rt.get_var("VerbosePreference")).lower()
        if self.verbose or pref in ("continue", "inquire"):
            self.rt.streams.verbose(to_str(self.input_or(item, "Message")))


def _optional_stream(rt: Runtime, name: str) -> Callable[..., None] | None:
    """Streams.debug/information/progress are optional: a host without them drops those records."""
    return getattr(rt.streams, name, None)


@cmdlet("Write-Debug")
class WriteDebug(Cmdlet):
    params = ("Message",)
    positional = ("Message",)

    def __init__(self, rt: Runtime, name: str, positional: list[object], named: dict[str, object]) -> None:
        # -Debug / -Debug:$false override $DebugPreference for this command only.
        switch = [v is SWITCH_PRESENT or to_bool(v) for k, v in named.items() if k.lower() in ("debug", "db")]
        self.debug_switch: bool | None = switch[-1] if switch else None
        super().__init__(rt, name, positional, named)

    def process(self, item: object) -> None:
        pref = to_str(self.rt.get_var("DebugPreference")).lower()
        write = _optional_stream(self.rt, "debug")
        shown = self.debug_switch if self.debug_switch is not None else pref in ("continue", "inquire", "stop")
        if write is not None and shown:
            write(to_str(self.input_or(item, "Message")))


@cmdlet("Write-Information")
class WriteInformation(Cmdlet):
    params = ("MessageData", "Tags")
    positional = ("MessageData", "Tags")

    def process(self, item: object) -> None:
        # Unlike debug and verbose, an information record reaches the stream whatever the preference
        # (SilentlyContinue only keeps the host from showing it); Ignore drops it.
        if to_str(self.rt.get_var("InformationPreference")).lower() == "ignore":
            return
        write = _optional_stream(self.rt, "information")
        if write is not None:
            tags = [to_str(t) for t in as_list(self.p.get("Tags"))] if self.p.get("Tags") is not None else []
            write(display_value(self.input_or(item, "MessageData")), tags)


@cmdlet("Write-Progress")
class WriteProgress(Cmdlet):
    params = ("Activity", "Status", "PercentComplete", "Id", "CurrentOperation", "SecondsRemaining", "ParentId")
    positional = ("Activity", "Status")
    switches = ("Completed",)

    def process(self, item: object) -> None:
        if to_str(self.rt.get_var("ProgressPreference")).lower() in ("silentlycontinue", "ignore"):
            return
        write = _optional_stream(self.rt, "progress")
        if write is None:
            return
        rt, p = self.rt, self.p
        write(activity=to_str(p.get("Activity", "")), status=to_str(p.get("Status", "Processing")),
              activity_id=rt.to_int(p.get("Id", 0)), percent_complete=rt.to_int(p.get("PercentComplete", -1)),
              seconds_remaining=rt.to_int(p.get("SecondsRemaining", -1)),
              parent_id=rt.to_int(p.get("ParentId", -1)),
              current_operation=None if p.get("CurrentOperation") is None else to_str(p["CurrentOperation"]),
              completed=bool(p.get("Completed")))


@cmdlet("Out-Null")
class OutNull(Cmdlet):
    params = ("InputObject",)


@cmdlet("Out-Host", "Out-Default")
class OutHost(Cmdlet):
    params = ("InputObject",)
    switches = ("Paging",)

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            for line in format_for_display([item]).split("\r\n"):
                self.rt.streams.host_write(line)


@cmdlet("Out-String")
class OutString(Cmdlet):
    params = ("InputObject", "Width")
    switches = ("Stream",)

    def begin(self) -> None:
        self.items: list[object] = []

    def process(self, item: object) -> None:
        v = self.input_or(item, "InputObject")
        if item is NO_INPUT and "InputObject" not in self.p:
            return
        if self.p.get("Stream"):
            text = format_for_display([v])
            for line in text.split("\r\n"):
                self.emit(line)
        else:
            self.items.append(v)

    def end(self) -> None:
        if not self.p.get("Stream"):
            text = format_for_display(self.items)
            self.emit(text + "\r\n" if self.items else "")


@cmdlet("Start-Sleep", "sleep")
class StartSleep(Cmdlet):
    params = ("Seconds", "Milliseconds")
    positional = ("Seconds",)
    aliases = {"s": "Seconds", "m": "Milliseconds"}

    def process(self, item: object) -> None:
        secs = self.rt.to_num(self.p["Seconds"]) if "Seconds" in self.p else \
            self.rt.to_num(self.p.get("Milliseconds", 0)) / 1000.0
        if secs < 0:
            raise self.terminate(f"Cannot validate argument on parameter 'Seconds'. The {secs} argument is less than "
                                 f"the minimum allowed range of 0.", "ParameterArgumentValidationError")
        time.sleep(min(float(secs), limits.MAX_SLEEP_SECONDS))


@cmdlet("Get-Date")
class GetDate(Cmdlet):
    params = ("Date", "Format", "UFormat")
    positional = ("Date",)

    def process(self, item: object) -> None:
        d = self.p.get("Date")
        d = convert_value(self.rt, d, "datetime") if d is not None else dt.datetime.now().astimezone()
        if "Format" in self.p:
            self.emit(format_date(d, to_str(self.p["Format"])))  # type: ignore[arg-type]
        elif "UFormat" in self.p:
            self.emit(d.strftime(to_str(self.p["UFormat"])))  # type: ignore[union-attr]
        else:
            self.emit(d)


@cmdlet("New-Guid")
class NewGuid(Cmdlet):
    def process(self, item: object) -> None:
        self.emit(GuidValue(uuid.uuid4()))


@cmdlet("Get-Location", "pwd", "gl")
class GetLocation(Cmdlet):
    def process(self, item: object) -> None:
        self.emit(PathInfo(self.rt.cwd))


@cmdlet("Set-Location", "cd", "sl", "chdir")
class SetLocation(Cmdlet):
    params = ("Path", "LiteralPath")
    positional = ("Path",)

    def process(self, item: object) -> None:
        path = to_str(self.p.get("Path", self.p.get("LiteralPath", "~")))
        hp = resolve_path(self.rt, path)
        if not hp.is_dir():
            raise self.terminate(f"Cannot find path '{win_full(self.rt, path)}' because it does not exist.",
                                 "PathNotFound", "ObjectNotFound", "System.Management.Automation.ItemNotFoundException")
        self.rt.cwd = self.rt.host.fs.win_of(hp)


def env_path(path: str) -> str | None:
    low = path.lower()
    for prefix in ("env:\\", "env:/", "env:"):
        if low.startswith(prefix):
            return path[len(prefix):]
    return None


@cmdlet("Test-Path")
class TestPath(Cmdlet):
    params = ("Path", "LiteralPath", "PathType")
    positional = ("Path",)
    switches = ("IsValid",)
    aliases = {"pspath": "LiteralPath", "lp": "LiteralPath", "type": "PathType"}

    def process(self, item: object) -> None:
        paths = as_list(self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"])
        kind = to_str(self.p.get("PathType", "Any")).lower()
        if not paths:
            raise self.terminate("Cannot bind argument to parameter 'Path' because it is null.",
                                 "ParameterArgumentValidationErrorNullNotAllowed")
        for path in paths:
            sp = to_str(path)
            env = env_path(sp)
            if env is not None:
                self.emit(env == "" or self.rt.host.env_get(env) is not None)
                continue
            try:
                hp = self.rt.host.fs.host_path(sp, self.rt.cwd)
            except PathOutsideRoot:
                self.emit(False)
                continue
            if kind == "leaf":
                self.emit(hp.is_file())
            elif kind == "container":
                self.emit(hp.is_dir())
            else:
                self.emit(hp.exists())


def env_entry(name: str, value: str) -> PSObject:
    o = PSObject({"Name": name, "Key": name, "Value": value})
    return o


@cmdlet("Get-Item", "gi")
class GetItem(Cmdlet):
    params = ("Path", "LiteralPath")
    positional = ("Path",)
    switches = ("Force",)
    aliases = {"lp": "LiteralPath", "pspath": "LiteralPath"}

    def process(self, item: object) -> None:
        for path in as_list(self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]):
            sp = to_str(path)
            env = env_path(sp)
            if env is not None:
                v = self.rt.host.env_get(env)
                if v is None:
                    self.error(f"Cannot find path '{env}' because it does not exist.", "PathNotFound", target=env)
                else:
                    self.emit(env_entry(env, v))
                continue
            hp = resolve_path(self.rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            self.emit(FileSystemItem(self.rt, hp, self.rt.host.fs.win_of(hp)))


@cmdlet("Get-ChildItem", "gci", "dir", "ls")
class GetChildItem(Cmdlet):
    params = ("Path", "LiteralPath", "Filter", "Include", "Exclude", "Depth")
    positional = ("Path", "Filter")
    switches = ("Recurse", "Force", "File", "Directory", "Name")

    def process(self, item: object) -> None:
        path = to_str(self.input_or(item, "Path") or self.p.get("LiteralPath") or ".")
        env = env_path(path)
        if env is not None:
            for k, v in sorted(self.rt.host.env.items(), key=lambda kv: kv[0].lower()):
                if not env or fnmatch.fnmatch(k.lower(), env.lower()):
                    self.emit(env_entry(k, v))
            return
        hp = resolve_path(self.rt, path)
        pattern = None
        if not hp.exists() and any(ch in path for ch in "*?"):
            pattern = hp.name
            hp = hp.parent
        if not hp.exists():
            self.path_not_found(path)
            return
        filt = to_str(self.p.get("Filter") or pattern or "*").lower()
        entries = [hp] if hp.is_file() else sorted(hp.rglob("*") if self.p.get("Recurse") else hp.iterdir(),
                                                   key=lambda e: (e.is_file(), str(e).lower()))
        for e in entries[:100000]:
            if not fnmatch.fnmatch(e.name.lower(), filt):
                continue
            if self.p.get("File") and not e.is_file() or self.p.get("Directory") and not e.is_dir():
                continue
            self.emit(e.name if self.p.get("Name") else FileSystemItem(self.rt, e, self.rt.host.fs.win_of(e)))


_PS_ENCODINGS = {"utf8": "utf-8-sig", "utf8bom": "utf-8-sig", "utf8nobom": "utf-8", "unicode": "utf-16",
                 "bigendianunicode": "utf-16-be", "ascii": "ascii", "default": "cp1252", "oem": "cp437",
                 "utf32": "utf-32", "string": "utf-16", "unknown": "utf-16"}


def ps_encode(text: str, encoding: str | None, default: str) -> bytes:
    name = (encoding or default).lower()
    if name == "byte":
        raise ValueError("byte")
    codec = _PS_ENCODINGS.get(name, name)
    if codec == "utf-16":
        return b"\xff\xfe" + text.encode("utf-16-le", errors="surrogatepass")
    if codec in ("ascii", "cp1252", "cp437"):
        return text.encode(codec, errors="replace")
    return text.encode(codec, errors="surrogatepass")


class _ContentWriter(Cmdlet):
    params = ("Path", "LiteralPath", "Value", "Encoding", "FilePath", "InputObject", "Width")
    positional = ("Path", "Value")
    switches = ("NoNewline", "Force", "PassThru", "Append", "NoClobber")
    aliases = {"lp": "LiteralPath", "pspath": "LiteralPath"}
    append = False
    default_encoding = "default"

    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(item)
        elif "Value" in self.p:
            self.values.extend(as_list(self.p["Value"]) if isinstance(self.p["Value"], list) else [self.p["Value"]])
        elif "InputObject" in self.p:
            self.values.append(self.p["InputObject"])

    def text(self) -> str:
        sep = "" if self.p.get("NoNewline") else "\r\n"
        return "".join(to_str(v) + sep for v in self.values)

    def end(self) -> None:
        rt = self.rt
        path = to_str(self.p.get("Path") or self.p.get("LiteralPath") or self.p.get("FilePath") or "")
        if not path:
            raise self.terminate("Cannot bind argument to parameter 'Path' because it is an empty string.",
                                 "ParameterArgumentValidationErrorEmptyStringNotAllowed")
        hp = resolve_path(rt, path)
        enc = to_str(self.p["Encoding"]) if "Encoding" in self.p else None
        try:
            if enc and enc.lower() == "byte":
                data = bytes(rt.to_int(x) & 0xFF for v in self.values for x in as_list(v))
            else:
                data = ps_encode(self.text(), enc, self.default_encoding)
        except LookupError:
            raise self.terminate(f"Cannot bind parameter 'Encoding'. Cannot convert value \"{enc}\".",
                                 "CannotConvertArgumentNoMessage") from None
        if not hp.parent.is_dir():
            self.error(f"Could not find a part of the path '{win_full(rt, path)}'.",
                       "GetContentWriterDirectoryNotFoundError", "ObjectNotFound", "System.IO.DirectoryNotFoundException",
                       win_full(rt, path))
            return
        if hp.is_dir():
            self.error(f"Access to the path '{win_full(rt, path)}' is denied.", "GetContentWriterUnauthorizedAccessError",
                       "PermissionDenied", "System.UnauthorizedAccessException", win_full(rt, path))
            return
        append = self.append or bool(self.p.get("Append"))
        if append and hp.exists() and data.startswith((b"\xff\xfe", b"\xef\xbb\xbf")) and hp.stat().st_size:
            data = data[2:] if data.startswith(b"\xff\xfe") else data[3:]
        with open(hp, "ab" if append else "wb") as f:
            f.write(data)
        if self.p.get("PassThru"):
            for v in self.values:
                self.emit(v)


@cmdlet("Set-Content", "sc")
class SetContent(_ContentWriter):
    pass


@cmdlet("Add-Content", "ac")
class AddContent(_ContentWriter):
    append = True


@cmdlet("Out-File")
class OutFile(_ContentWriter):
    positional = ("FilePath", "Encoding")
    default_encoding = "unicode"

    def text(self) -> str:
        return format_for_display(self.values) + ("" if self.p.get("NoNewline") else "\r\n") if self.values else ""


@cmdlet("Get-Content", "gc", "cat", "type")
class GetContent(Cmdlet):
    params = ("Path", "LiteralPath", "Encoding", "TotalCount", "Tail", "ReadCount", "Delimiter")
    positional = ("Path",)
    switches = ("Raw", "Force", "Wait")
    aliases = {"first": "TotalCount", "head": "TotalCount", "last": "Tail", "lp": "LiteralPath",
               "pspath": "LiteralPath"}

    def process(self, item: object) -> None:
        rt = self.rt
        for path in as_list(self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]):
            sp = to_str(path)
            env = env_path(sp)
            if env is not None:
                v = rt.host.env_get(env)
                if v is None:
                    self.path_not_found(sp)
                else:
                    self.emit(v)
                continue
            hp = resolve_path(rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            if hp.is_dir():
                self.error(f"Unable to get content because it is a directory: '{win_full(rt, sp)}'. Please use "
                           f"'Get-ChildItem' instead.", "GetContainerContentException", "InvalidOperation",
                           "System.Management.Automation.PSInvalidOperationException", win_full(rt, sp))
                continue
            data = hp.read_bytes()
            enc = to_str(self.p.get("Encoding", "default")).lower()
            if enc == "byte":
                if self.p.get("Raw"):
                    self.emit(bytearray(data))
                else:
                    for b in data:
                        self.emit(b)
                continue
            codec = _PS_ENCODINGS.get(enc, enc)
            text = decode_text(data, "utf-16-le" if codec == "utf-16" else codec.replace("-sig", ""))
            if self.p.get("Raw"):
                self.emit(text)
                continue
            lines = re.split(r"\r\n|\n|\r", text)
            if lines and lines[-1] == "":
                lines.pop()
            if "TotalCount" in self.p:
                lines = lines[:rt.to_int(self.p["TotalCount"])]
            if "Tail" in self.p:
                n = rt.to_int(self.p["Tail"])
                lines = lines[-n:] if n else []
            for line in lines:
                self.emit(line)


@cmdlet("New-Item", "ni")
class NewItem(Cmdlet):
    params = ("Path", "Name", "ItemType", "Value")
    positional = ("Path",)
    switches = ("Force",)
    aliases = {"type": "ItemType"}

    def process(self, item: object) -> None:
        rt = self.rt
        base = to_str(self.p.get("Path", "."))
        name = self.p.get("Name")
        env = env_path(base)
        if env is not None:
            var = to_str(name) if name is not None else env
            if rt.host.env_get(var) is not None and not self.p.get("Force"):
                self.error(f"A variable with name '{var}' already exists.", "EnvironmentVariableAlreadyExists",
                           "ResourceExists", "System.Management.Automation.SessionStateException", var)
                return
            rt.host.env_set(var, to_str(self.p.get("Value", "")))
            self.emit(env_entry(var, to_str(self.p.get("Value", ""))))
            return
        path = base + "\\" + to_str(name) if name is not None else base
        hp = resolve_path(rt, path)
        kind = to_str(self.p.get("ItemType", "File")).lower()
        full = rt.host.fs.win_of(hp)
        if hp.exists() and not self.p.get("Force"):
            self.error(f"The file '{full}' already exists.", "NewItemIOError", "WriteError", "System.IO.IOException",
                       full)
            return
        if kind in ("directory", "dir", "d"):
            if hp.exists() and hp.is_file():
                self.error(f"An item with the specified name {full} already exists.", "DirectoryExist",
                           "ResourceExists", "System.IO.IOException", full)
                return
            hp.mkdir(parents=True, exist_ok=True)
        elif kind in ("file", "f"):
            if not hp.parent.is_dir():
                if self.p.get("Force"):
                    hp.parent.mkdir(parents=True, exist_ok=True)
                else:
                    self.error(f"Could not find a part of the path '{full}'.", "NewItemIOError", "WriteError",
                               "System.IO.DirectoryNotFoundException", full)
                    return
            value = self.p.get("Value")
            hp.write_bytes(b"" if value is None else to_str(value).encode("utf-8") if True else b"")
        else:
            raise self.terminate(f"The lab engine supports -ItemType File and Directory, not '{kind}'.",
                                 "LabUnsupportedItemType")
        self.emit(FileSystemItem(rt, hp, full))


@cmdlet("Remove-Item", "rm", "del", "ri", "erase", "rd", "rmdir")
class RemoveItem(Cmdlet):
    params = ("Path", "LiteralPath", "Include", "Exclude", "Filter")
    positional = ("Path",)
    switches = ("Recurse", "Force")
    aliases = {"lp": "LiteralPath", "pspath": "LiteralPath"}

    def process(self, item: object) -> None:
        rt = self.rt
        src = self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]
        if isinstance(src, FileSystemItem):
            src = src.FullName
        for path in as_list(src):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            env = env_path(sp)
            if env is not None:
                if rt.host.env_get(env) is None:
                    self.path_not_found(sp)
                else:
                    rt.host.env_set(env, None)
                continue
            hp = resolve_path(rt, sp)
            if hp == rt.host.fs.root:
                raise self.terminate("The lab engine refuses to remove C:\\.", "LabRefusedRemoveRoot")
            if not hp.exists():
                self.path_not_found(sp)
                continue
            if hp.is_dir():
                if any(hp.iterdir()) and not self.p.get("Recurse"):
                    raise self.terminate(f"The item at {win_full(rt, sp)} has children and the Recurse parameter was "
                                         f"not specified.", "RemoveItemChildren", "InvalidOperation")
                shutil.rmtree(hp)
            else:
                hp.unlink()


class _CopyMove(Cmdlet):
    params = ("Path", "LiteralPath", "Destination")
    positional = ("Path", "Destination")
    switches = ("Force", "Recurse", "PassThru")
    aliases = {"lp": "LiteralPath", "pspath": "LiteralPath"}
    move = False

    def process(self, item: object) -> None:
        rt = self.rt
        src_v = self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]
        dest = to_str(self.p.get("Destination", "."))
        for path in as_list(src_v):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            hp = resolve_path(rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            dp = resolve_path(rt, dest)
            if dp.is_dir():
                dp = dp / hp.name
            if dp.exists() and not self.p.get("Force") and self.move:
                self.error("Cannot create a file when that file already exists.", "MoveFileInfoItemIOError",
                           "WriteError", "System.IO.IOException", sp)
                continue
            if not dp.parent.is_dir():
                self.error(f"Could not find a part of the path '{rt.host.fs.win_of(dp)}'.", "CopyItemIOError" if not self.move
                           else "MoveFileInfoItemIOError", "WriteError", "System.IO.DirectoryNotFoundException", sp)
                continue
            if self.move:
                if dp.exists() and dp.is_file():
                    dp.unlink()
                os.replace(hp, dp)
            elif hp.is_dir():
                shutil.copytree(hp, dp, dirs_exist_ok=True)
            else:
                shutil.copyfile(hp, dp)
            if self.p.get("PassThru"):
                self.emit(FileSystemItem(rt, dp, rt.host.fs.win_of(dp)))


@cmdlet("Copy-Item", "copy", "cp", "cpi")
class CopyItem(_CopyMove):
    pass


@cmdlet("Move-Item", "move", "mv", "mi")
class MoveItem(_CopyMove):
    move = True


@cmdlet("Get-FileHash")
class GetFileHash(Cmdlet):
    params = ("Path", "LiteralPath", "Algorithm", "InputStream")
    positional = ("Path",)
    aliases = {"lp": "LiteralPath", "pspath": "LiteralPath"}

    def process(self, item: object) -> None:
        rt = self.rt
        alg = to_str(self.p.get("Algorithm", "SHA256")).upper()
        if alg not in ("SHA1", "SHA256", "SHA384", "SHA512", "MD5"):
            raise self.terminate(f"Cannot validate argument on parameter 'Algorithm'. The argument \"{alg}\" does not "
                                 f"belong to the set \"SHA1,SHA256,SHA384,SHA512,MACTripleDES,MD5,RIPEMD160\".",
                                 "ParameterArgumentValidationError")
        for path in as_list(self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            hp = resolve_path(rt, sp)
            if not hp.is_file():
                self.error(f"Cannot find path '{win_full(rt, sp)}' because it does not exist.", "FileNotFound",
                           target=win_full(rt, sp))
                continue
            h = hashlib.new(alg.lower())
            with open(hp, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self.emit(PSObject({"Algorithm": alg, "Hash": h.hexdigest().upper(), "Path": rt.host.fs.win_of(hp)}))


@cmdlet("Join-Path")
class JoinPath(Cmdlet):
    params = ("Path", "ChildPath", "AdditionalChildPath")
    positional = ("Path", "ChildPath", "AdditionalChildPath")
    switches = ("Resolve",)

    def process(self, item: object) -> None:
        child = to_str(self.p.get("ChildPath", ""))
        extra = [to_str(x) for x in as_list(self.p.get("AdditionalChildPath"))]
        for base in as_list(self.input_or(item, "Path")):
            out = to_str(base)
            for part in [child, *extra]:
                if part:
                    out = out.rstrip("\\/") + "\\" + part.lstrip("\\/")
            self.emit(out)


@cmdlet("Split-Path")
class SplitPath(Cmdlet):
    params = ("Path", "LiteralPath")
    positional = ("Path",)
    switches = ("Parent", "Leaf", "Qualifier", "NoQualifier", "IsAbsolute", "Extension", "LeafBase")

    def process(self, item: object) -> None:
        for path in as_list(self.input_or(item, "Path") or self.p.get("LiteralPath")):
            p = to_str(path).replace("/", "\\")
            if self.p.get("Leaf"):
                self.emit(p.rstrip("\\").rsplit("\\", 1)[-1])
            elif self.p.get("LeafBase"):
                leaf = p.rstrip("\\").rsplit("\\", 1)[-1]
                self.emit(leaf.rsplit(".", 1)[0] if "." in leaf else leaf)
            elif self.p.get("Extension"):
                leaf = p.rstrip("\\").rsplit("\\", 1)[-1]
                self.emit("." + leaf.rsplit(".", 1)[1] if "." in leaf else "")
            elif self.p.get("Qualifier"):
                self.emit(p[:2] if re.match(r"^[A-Za-z]:", p) else "")
            elif self.p.get("NoQualifier"):
                self.emit(p[2:] if re.match(r"^[A-Za-z]:", p) else p)
            elif self.p.get("IsAbsolute"):
                self.emit(bool(re.match(r"^[A-Za-z]:\\|^\\\\", p)))
            else:
                stripped = p.rstrip("\\")
                if "\\" not in stripped:
                    self.emit("")
                    continue
                parent = stripped.rsplit("\\", 1)[0]
                self.emit(parent + "\\" if re.fullmatch(r"[A-Za-z]:", parent) else parent)


@cmdlet("Get-Command", "gcm")
class GetCommand(Cmdlet):
    params = ("Name", "CommandType", "Module")
    positional = ("Name",)
    switches = ("All", "ListImported")

    def process(self, item: object) -> None:
        rt = self.rt
        for name in as_list(self.input_or(item, "Name")):
            n = to_str(name)
            fn = rt.scope.find_func(n.lower())
            if isinstance(fn, ScriptBlock):
                self.emit(CommandInfo(n, "Function", fn))
            elif lookup_cmdlet(n) is not None:
                cls = lookup_cmdlet(n)
                canon = cls.names[0]  # type: ignore[union-attr]
                self.emit(CommandInfo(canon, "Cmdlet" if canon.lower() == n.lower() else "Alias",
                                      source="Microsoft.PowerShell.Management"))
            elif rt.host.native_command(n) is not None:
                base = n.lower().removesuffix(".exe")
                self.emit(CommandInfo(f"{base}.exe", "Application", source=f"C:\\Windows\\system32\\{base}.exe"))
            else:
                self.error(CMD_NOT_FOUND.format(n), "CommandNotFoundException", "ObjectNotFound",
                           "System.Management.Automation.CommandNotFoundException", n)


@cmdlet("New-Object")
class NewObject(Cmdlet):
    params = ("TypeName", "ArgumentList", "Property", "ComObject")
    positional = ("TypeName", "ArgumentList")
    aliases = {"args": "ArgumentList"}

    def process(self, item: object) -> None:
        if "ComObject" in self.p:
            raise self.terminate("COM objects are outside the lab engine's subset.", "LabUnsupportedComObject")
        tname = to_str(self.p.get("TypeName"))
        args = self.p.get("ArgumentList")
        arglist = args if isinstance(args, list) else ([] if args is None else [args])
        if canonical_type(tname).lower() in ("system.management.automation.psobject", "psobject",
                                             "system.management.automation.pscustomobject"):
            obj: object = PSObject(self.p.get("Property") if isinstance(self.p.get("Property"), dict) else None)
        else:
            obj = new_object(self.rt, tname, arglist)
        self.emit(obj)


@cmdlet("Invoke-Expression", "iex")
class InvokeExpression(Cmdlet):
    params = ("Command",)
    positional = ("Command",)

    def process(self, item: object) -> None:
        rt = self.rt
        text = to_str(self.input_or(item, "Command"))
        try:
            body = parse(text)
        except ParseError as e:
            raise PSError(parse_error_record(text, e)) from None
        cmd = ScriptCommand(rt, ScriptBlock(body, text), "", [], {}, new_scope=False)
        cmd.sink = self.sink
        run_stage(cmd, None)


@cmdlet("ConvertTo-Json")
class ConvertToJson(Cmdlet):
    params = ("InputObject", "Depth")
    positional = ("InputObject",)
    switches = ("Compress", "AsArray", "EnumsAsStrings")

    def begin(self) -> None:
        self.items: list[object] = []

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" in self.p:
                self.items.append(self.p["InputObject"])
                self.direct = True
            return
        self.items.append(item)

    def end(self) -> None:
        if not self.items:
            return
        depth = self.rt.to_int(self.p.get("Depth", 2))
        value = self.items[0] if len(self.items) == 1 else self.items
        data = to_jsonable(value, depth)
        if self.p.get("Compress"):
            self.emit(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        else:
            self.emit(json_51(data))


def to_jsonable(v: object, depth: int, level: int = 0) -> object:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if level > depth:
        return to_str(v)
    if isinstance(v, (list, tuple, bytearray, bytes)):
        return [to_jsonable(x, depth, level + 1) for x in v]
    if isinstance(v, dict):
        return {to_str(k): to_jsonable(x, depth, level + 1) for k, x in v.items()}
    if isinstance(v, PSObject):
        return {to_str(k): to_jsonable(x, depth, level + 1) for k, x in v.props.items()}
    if isinstance(v, dt.datetime):
        return "/Date(" + str(int(v.timestamp() * 1000)) + ")/"
    if isinstance(v, SwitchValue):
        return {"IsPresent": v.present}
    if isinstance(v, EnumValue):
        return v.name
    return to_str(v)


def json_51(v: object, indent: int = 0) -> str:
    """ConvertTo-Json's Windows PowerShell 5.1 layout ("key":  value, arrays aligned under the key)."""
    pad = " " * indent
    if isinstance(v, dict):
        if not v:
            return "{\r\n\r\n" + pad + "}"
        lines = []
        for k, x in v.items():
            key = json.dumps(k, ensure_ascii=False)
            lines.append(pad + "    " + key + ":  " + json_51(x, indent + 4 + len(key) + 3))
        return "{\r\n" + ",\r\n".join(lines) + "\r\n" + pad + "}"
    if isinstance(v, list):
        if not v:
            return "[\r\n\r\n" + pad + "]"
        inner = [pad + "    " + json_51(x, indent + 4) for x in v]
        return "[\r\n" + ",\r\n".join(inner) + "\r\n" + pad + "]"
    return json.dumps(v, ensure_ascii=False)


def from_json(v: object) -> object:
    if isinstance(v, dict):
        return PSObject({k: from_json(x) for k, x in v.items()})
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


@cmdlet("ConvertFrom-Json")
class ConvertFromJson(Cmdlet):
    params = ("InputObject",)
    positional = ("InputObject",)
    switches = ("AsHashtable", "NoEnumerate")

    def begin(self) -> None:
        self.parts: list[str] = []

    def process(self, item: object) -> None:
        v = self.input_or(item, "InputObject")
        if item is NO_INPUT and "InputObject" not in self.p:
            return
        self.parts.append(to_str(v))
        if sum(len(p) for p in self.parts) > limits.MAX_STRING_CHARS:
            raise self.terminate("The JSON input is larger than the lab engine accepts.", "LabJsonTooLarge")

    def end(self) -> None:
        text = "\n".join(self.parts)
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except ValueError as e:
            raise self.terminate(f"Invalid JSON primitive: {text.strip()[:40]}.", "System.ArgumentException",
                                 "NotSpecified", "System.ArgumentException") from e
        self.emit(from_json(data))


@cmdlet("Select-Object", "select")
class SelectObject(Cmdlet):
    params = ("Property", "First", "Last", "Skip", "ExpandProperty", "Index", "InputObject")
    positional = ("Property",)
    switches = ("Unique",)

    def begin(self) -> None:
        self.count = 0
        self.skipped = 0
        self.buf: list[object] = []
        self.seen: list[object] = []

    def shape(self, v: object) -> object:
        rt = self.rt
        if "ExpandProperty" in self.p:
            return get_member(rt, v, to_str(self.p["ExpandProperty"]))
        if "Property" in self.p:
            props = as_list(self.p["Property"])
            if props == ["*"]:
                return v
            return PSObject({to_str(p): get_member(rt, v, to_str(p)) for p in props})
        return v

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" not in self.p:
                return
            item = self.p["InputObject"]
        if self.skipped < self.rt.to_int(self.p.get("Skip", 0)):
            self.skipped += 1
            return
        if "Last" in self.p:
            self.buf.append(item)
            return
        if self.p.get("Unique"):
            if any(compare(self.rt, "eq", s, item, True) for s in self.seen):
                return
            self.seen.append(item)
        if "First" in self.p:
            if self.count >= self.rt.to_int(self.p["First"]):
                raise StopUpstream()
        self.count += 1
        out = self.shape(item)
        for x in enumerate_value(out) if "ExpandProperty" in self.p else [out]:
            self.emit(x)

    def feed(self, source: Iterable[object]) -> None:
        try:
            super().feed(source)
        except StopUpstream:
            pass

    def end(self) -> None:
        if "Last" in self.p:
            n = self.rt.to_int(self.p["Last"])
            for item in self.buf[-n:] if n else []:
                self.emit(self.shape(item))


@cmdlet("ForEach-Object", "foreach", "%")
class ForEachObject(Cmdlet):
    params = ("Process", "Begin", "End", "MemberName", "ArgumentList", "InputObject")
    positional = ("*",)

    def begin(self) -> None:
        rest = self.p.get("*", [])
        blocks = [x for x in rest if isinstance(x, ScriptBlock)] if isinstance(rest, list) else []
        if "Process" not in self.p and blocks:
            if len(blocks) == 1:
                self.p["Process"] = blocks[0]
            else:
                self.p["Begin"], self.p["Process"] = blocks[0], blocks[1]
                if len(blocks) > 2:
                    self.p["End"] = blocks[2]
        if "Process" not in self.p and rest and isinstance(rest, list) and isinstance(rest[0], str):
            self.p["MemberName"] = rest[0]
        if isinstance(self.p.get("Begin"), ScriptBlock):
            run_filter_block(self.rt, self.p["Begin"], None, self.sink)  # type: ignore[arg-type]

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            if "InputObject" not in self.p:
                return
            item = self.p["InputObject"]
        sb = self.p.get("Process")
        if isinstance(sb, ScriptBlock):
            run_filter_block(self.rt, sb, item, self.sink)
        elif "MemberName" in self.p:
            name = to_str(self.p["MemberName"])
            if isinstance(item, str) or get_member(self.rt, item, name) is not None or not hasattr(item, "ps_call"):
                v = get_member(self.rt, item, name)
                if v is None and isinstance(item, str):
                    v = call_method(self.rt, item, name, as_list(self.p.get("ArgumentList")))
                for x in enumerate_value(v):
                    self.emit(x)
            else:
                self.emit(call_method(self.rt, item, name, as_list(self.p.get("ArgumentList"))))

    def end(self) -> None:
        if isinstance(self.p.get("End"), ScriptBlock):
            run_filter_block(self.rt, self.p["End"], None, self.sink)  # type: ignore[arg-type]


@cmdlet("Where-Object", "where", "?")
class WhereObject(Cmdlet):
    params = ("FilterScript", "Property", "Value", "InputObject", "EQ", "NE", "Like", "Match", "GT", "LT")
    positional = ("FilterScript", "Value")

    def process(self, item: object) -> None:
        if item is NO_INPUT:
            return
        sb = self.p.get("FilterScript")
        if isinstance(sb, ScriptBlock):
            out: list[object] = []
            run_filter_block(self.rt, sb, item, out.append)
            if to_bool(out[0] if len(out) == 1 else out):
                self.emit(item)
            return
        prop = to_str(sb if sb is not None else self.p.get("Property"))
        v = get_member(self.rt, item, prop)
        for op in ("EQ", "NE", "Like", "Match", "GT", "LT"):
            if op in self.p:
                if to_bool(binary_op(self.rt, op.lower(), v, self.p[op])):
                    self.emit(item)
                return
        if to_bool(v):
            self.emit(item)


@cmdlet("Measure-Object", "measure")
class MeasureObject(Cmdlet):
    params = ("Property", "InputObject")
    positional = ("Property",)
    switches = ("Sum", "Average", "Maximum", "Minimum", "Line", "Word", "Character")

    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(get_member(self.rt, item, to_str(self.p["Property"])) if "Property" in self.p else item)

    def end(self) -> None:
        rt = self.rt
        nums = [rt.to_num(v) for v in self.values] if any(self.p.get(k) for k in ("Sum", "Average", "Maximum", "Minimum")) else []
        out = {"Count": len(self.values),
               "Average": (sum(nums) / len(nums) if nums else None) if self.p.get("Average") else None,
               "Sum": sum(nums) if self.p.get("Sum") else None,
               "Maximum": (max(nums) if nums else None) if self.p.get("Maximum") else None,
               "Minimum": (min(nums) if nums else None) if self.p.get("Minimum") else None,
               "Property": to_str(self.p["Property"]) if "Property" in self.p else None}
        self.emit(PSObject(out))


@cmdlet("Sort-Object", "sort")
class SortObject(Cmdlet):
    params = ("Property",)
    positional = ("Property",)
    switches = ("Descending", "Unique")

    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(item)

    def end(self) -> None:
        rt = self.rt

        def key(v: object) -> tuple[int, object]:
            x = get_member(rt, v, to_str(self.p["Property"])) if "Property" in self.p else v
            return (0, x) if is_number(x) else (1, to_str(x).lower())
        vals = sorted(self.values, key=key, reverse=bool(self.p.get("Descending")))
        for v in vals:
            self.emit(v)


@cmdlet("Get-Variable", "gv")
class GetVariable(Cmdlet):
    params = ("Name", "Scope")
    positional = ("Name",)
    switches = ("ValueOnly",)

    def process(self, item: object) -> None:
        name = to_str(self.p.get("Name"))
        if not self.rt.has_var(name):
            self.error(f"Cannot find a variable with the name '{name}'.", "VariableNotFound", target=name)
            return
        v = self.rt.get_var(name)
        self.emit(v if self.p.get("ValueOnly") else PSObject({"Name": name, "Value": v}))


@cmdlet("Set-Variable", "sv")
class SetVariable(Cmdlet):
    params = ("Name", "Value", "Scope")
    positional = ("Name", "Value")

    def process(self, item: object) -> None:
        scope = to_str(self.p["Scope"]).lower() if "Scope" in self.p else None
        self.rt.set_var(to_str(self.p.get("Name")), self.p.get("Value"), scope)


@cmdlet("ConvertTo-SecureString")
class ConvertToSecureString(Cmdlet):
    params = ("String",)
    positional = ("String",)
    switches = ("AsPlainText", "Force")

    def process(self, item: object) -> None:
        self.emit(SecureStringValue(to_str(self.input_or(item, "String"))))


# =================================================================================================
# Native commands run from PowerShell
# =================================================================================================

def _native_hostname(host: HostContext, cwd: str, args: list[str]) -> NativeResult:
    """hostname.exe: the computer name; any argument is refused as Windows refuses it."""
    if args:
        return 1, [], ["sethostname: Use the Network Control Panel Applet to set hostname.",
                       "hostname -s is not supported."]
    return 0, [host.computer_name], []


def _native_whoami(host: HostContext, cwd: str, args: list[str]) -> NativeResult:
    """whoami.exe: computer\\user in lower case; /upn fails for a local account."""
    if not args:
        return 0, [f"{host.computer_name.lower()}\\{host.user.lower()}"], []
    if [a.lower() for a in args] == ["/upn"]:
        return 1, [], ["ERROR: Unable to get User Principal Name (UPN) as the current logged-on user", "is not a domain user."]
    return 1, [], [f"ERROR: Invalid argument/option - '{args[0]}'.", 'Type "WHOAMI /?" for usage.']


# The executables every lab host has whatever its Engine adds (the Engine adds cmd.exe and powershell.exe).
BUILTIN_NATIVE_COMMANDS: dict[str, NativeCommandFn] = {"hostname": _native_hostname, "whoami": _native_whoami}


class NativeCommand(Stage):
    """An executable: output lines to the pipeline, stderr lines as NativeCommandError, sets $LASTEXITCODE."""

    def __init__(self, rt: Runtime, name: str, positional: list[object], named: dict[str, object]) -> None:
        self.rt = rt
        self.name = name
        args = [to_str(a) for a in positional]
        for k, v in named.items():
            args.append(f"-{k}" if v is SWITCH_PRESENT else f"-{k}:{to_str(v)}")
        self.args = args

    def process_item(self, item: object) -> None:
        if item is not NO_INPUT:
            return

    def end(self) -> None:
        rt = self.rt
        run = rt.host.native_command(self.name)
        assert run is not None  # resolve_command only makes a NativeCommand for a name the host has
        rc, out, err = run(rt.host, rt.cwd, self.args)
        for line in out:
            self.sink(line)
        for idx, line in enumerate(err):
            rec = ErrorRecord(line, category="NotSpecified",
                              fq_error_id="NativeCommandError" if idx == 0 else "NativeCommandErrorMessage",
                              exception_type="System.Management.Automation.RemoteException", target=line,
                              command_name=f"{self.name}.exe", reason="RemoteException")
            rt.write_error(rec, "Continue" if to_str(rt.get_var("ErrorActionPreference")).lower() == "stop" else None)
        rt.global_scope.vars["lastexitcode"] = rc
        rt.last_ok = rc == 0


