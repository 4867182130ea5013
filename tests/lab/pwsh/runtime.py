"""The interpreter: runs a parsed script's statements, expressions and pipelines on one host.

`Runtime` is the one implementation of `Interpreter` (tests/lab/pwsh/interpreter.py): it owns the
scopes, the current location and position, variables and preferences, and evaluates the AST from
tests/lab/pwsh/parser, calling on the other rooms for operators, members, commands and output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from tests.lab.pwsh import csharp, kernel, limits, nested_powershell, net  # noqa: F401  (importing registers their .NET types)
from tests.lab.pwsh.automatic import ExecutionContextObject, HostObject, ps_version_table
from tests.lab.pwsh.commands import make_stage
from tests.lab.pwsh.conversions import convert_value
from tests.lab.pwsh.display import format_for_display
from tests.lab.pwsh.dotnet_objects import ExceptionObj
from tests.lab.pwsh.dotnet_types import type_ref
from tests.lab.pwsh.errors import (
    BreakSignal, ContinueSignal, ErrorRecord, ExitScript, PSError, ReturnSignal, runtime_error,
    StopUpstream, type_name_of, variable_not_writable,
)
from tests.lab.pwsh.files import PathInfo
from tests.lab.pwsh.host import HostContext
from tests.lab.pwsh.language import check_conversion
from tests.lab.pwsh.members import call_method, get_member, set_member
from tests.lab.pwsh.operators import binary_op, compare, dotnet_regex, wildcard_regex
from tests.lab.pwsh.parser import Node, parse, position_message
from tests.lab.pwsh.runspace import Runspace
from tests.lab.pwsh.stages import run_filter_block, run_stage, ScriptCommand, Stage
from tests.lab.pwsh.statics import call_static, set_static_member, static_member
from tests.lab.pwsh.streams import Streams
from tests.lab.pwsh.values import (
    as_list, canonical_type, enumerate_value, Hashtable, is_number, NO_INPUT, parse_number, PSEnumerator, PSObject,
    Ref, ScriptBlock, SwitchValue, to_bool, to_str,
)


# Base classes of the exceptions the engine raises by name (catch [IOException] catches FileNotFoundException).
_EXCEPTION_BASES = {
    "system.io.filenotfoundexception": ("system.io.ioexception", "system.systemexception"),
    "system.io.directorynotfoundexception": ("system.io.ioexception", "system.systemexception"),
    "system.io.ioexception": ("system.systemexception",),
    "system.unauthorizedaccessexception": ("system.systemexception",),
    "system.argumentexception": ("system.systemexception",),
    "system.invalidoperationexception": ("system.systemexception",),
    "system.formatexception": ("system.systemexception",),
}


def _base_match(have: str, want: str) -> bool:
    return want in ("system.exception", "system.object") or want in _EXCEPTION_BASES.get(have, ())


# Automatic variables PowerShell defines where the lab engine sets them only when they have a value.
_NOT_STRICT = {"_", "psitem", "input", "args", "this", "matches", "lastexitcode", "pscommandpath", "psscriptroot",
               "myinvocation", "psboundparameters", "pscmdlet", "error", "null", "true", "false", "sender",
               "eventargs", "foreach", "switch", "stacktrace", "consolefilename", "executioncontext", "host"}
# Large values assigned to variables are what makes a process grow: past this size, the host is told every
# _CHECK_EVERY elements so it can weigh the process against MaxMemoryPerShellMB.
_LARGE_VALUE = 1 << 20
_CHECK_EVERY = 8 << 20


class Runtime:
    """Runs parsed scripts against one Engine's file system, environment and streams."""

    def __init__(self, host: HostContext, streams: Streams, runspace: Runspace | None = None) -> None:
        self.host = host
        self.streams = streams
        # The session state this run reads and writes: kept by the caller from one pipeline to the next.
        self.runspace = runspace if runspace is not None else Runspace(host.profile_dir + "\\Documents", 4242)
        self.global_scope = self.runspace.global_scope
        self.script_scope = self.global_scope
        self.scope = self.global_scope
        self.call_depth = 0
        self.src = ""
        self.cur: tuple[int, int] = (0, 0)
        self.last_ok = True
        self.usings: list[str] = []   # using namespace ...: prefixes for type names in this script
        self.module: object = None    # the module whose scope this code runs in (New-Module, Import-Module)
        self._large_since_check = 0
        g = self.global_scope.vars
        # Constant, AllScope variables bound to this run's host and streams (about_Automatic_Variables).
        g["home"] = host.profile_dir
        g["psversiontable"] = ps_version_table()
        g["host"] = HostObject(self)
        g["executioncontext"] = ExecutionContextObject(self)
        host.fs.drive_root = lambda name: self.scope.find_drive(name)

    @property
    def errors(self) -> list[object]:
        """$Error: the runspace's, newest first."""
        return self.runspace.errors

    @property
    def cwd(self) -> str:
        """The current location: the runspace's, so the next pipeline starts where this one left it."""
        return self.runspace.cwd

    @cwd.setter
    def cwd(self, value: str) -> None:
        self.runspace.cwd = value

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
        keep = getattr(self.streams, "error_record", None)  # a nested runspace keeps the records themselves
        if keep is not None:
            keep(record)
        else:
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
        if scope == "function":
            return self.scope.find_func(low)
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

    def set_var(self, name: str, value: object, scope: str | None = None, local: bool = True,
                force: bool = False) -> None:
        low = name.lower()
        if scope == "function":  # ${function:Name} = {...} defines a function in the current scope
            self.scope.funcs[low] = value if isinstance(value, ScriptBlock) else ScriptBlock(
                parse(to_str(value)), to_str(value))
            return
        if scope == "env":
            self.host.env_set(name, None if value is None else to_str(value))
            return
        if low in ("true", "false", "null") and scope is None:
            if low == "null":
                return
            raise variable_not_writable(name)
        if isinstance(value, str) and len(value) > limits.MAX_STRING_CHARS:
            raise runtime_error("The string is longer than the lab engine allows.", "LabStringTooLong")
        target = {"script": self.script_scope, "global": self.global_scope}.get(scope or "", self.scope)
        if target.protected(low, force):  # only Set-Variable -Force passes ReadOnly
            raise variable_not_writable(name)
        target.vars[low] = value
        if isinstance(value, (str, bytes, bytearray, list)) and len(value) >= _LARGE_VALUE:
            self._large_since_check += len(value)
            if self._large_since_check >= _CHECK_EVERY:
                self._large_since_check = 0
                self.host.check_memory()  # the process holds more: its host may end it (MaxMemoryPerShellMB)

    # ---- running ---------------------------------------------------------------------------------
    def run_script(self, src: str, args: list[object], named: dict[str, object], input_iter: Iterable[object] | None,
                   sink: Callable[[object], None], file_name: str | None = None, local_scope: bool = True) -> None:
        """Runs a script as a pipeline's command: in a new scope under the global one (`local_scope`, AddScript's
        useLocalScope=true, and a script file), or in the global scope itself (AddScript's default)."""
        body = parse(src)
        sb = ScriptBlock(body, src, file_name)
        self.scope = self.global_scope
        cmd = ScriptCommand(self, sb, "", args, named, new_scope=local_scope, is_script=True)
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
            # function global:Name / script:Name / local:Name define it in that scope (about_Scopes)
            target = {"global": self.global_scope, "script": self.script_scope}.get(st.scope or "", self.scope)
            target.funcs[st.name.lower()] = ScriptBlock(st.body, self.src, None, self.usings, self.module)
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
        """`catch [T]`: the inner exception's type first (as ExceptionHandlingOps.FindMatchingHandler), then the
        error's own, each with its base classes."""
        want = canonical_type(tname).lower()
        resolved = type_ref(self, tname).canon.lower()
        inner = getattr(rec.exception, "InnerException", None)
        if inner is None and rec.inner is not None:
            inner_types = [rec.inner[0].lower()]
        else:
            inner_types = [getattr(inner, "ps_type", "").lower()] + [
                b.lower() for b in getattr(inner, "ps_bases", ())] if inner is not None else []
        if inner_types and (resolved in inner_types or want in inner_types or _base_match(inner_types[0], resolved)):
            return True
        have = rec.exception_type.lower()
        bases = [b.lower() for b in getattr(rec.exception, "ps_bases", ())]
        if resolved in bases or resolved == have or want in bases:
            return True
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
        if isinstance(value, ExceptionObj):  # throw [InvalidOperationException]"m": that exception, message m
            rec = ErrorRecord(value.Message, category="OperationStopped", fq_error_id=value.Message,
                              exception_type=value.ps_type, thrown_object=value)
            rec.exception = value
            raise PSError(self.fill(rec))
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
        if value_node.k == "assign":  # `$a = $b = value`: the inner assignment's value is assigned again
            self.exec_assign(value_node)
            value = self.eval(value_node.target)
        elif value_node.k == "pipeline" and len(value_node.elements) == 1 and value_node.elements[0].k == "expr" \
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
            if target.static:
                set_static_member(self, obj, name, value)
            else:
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
                for item in enumerate_value(value) if not isinstance(value, PSEnumerator) else value:
                    sink0(item)
                return
            source = value if isinstance(value, PSEnumerator) else enumerate_value(value)
            cmd_nodes = elements[1:]
        else:
            cmd_nodes = elements
        for cn in cmd_nodes:
            self.cur = (cn.pos, cn.end)
            stages.append(make_stage(self, cn))
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
            return ScriptBlock(node.body, self.src, None, self.usings, self.module)
        if k == "typelit":
            return type_ref(self, node.name)
        if k == "cast":
            if node.type.lower() in ("pscustomobject",) and node.operand.k == "hashtable":
                h = self.eval(node.operand)
                return PSObject(h)  # type: ignore[arg-type]
            if node.type.lower() == "ordered":
                return self.eval(node.operand)
            if node.type.lower() == "ref":
                return Ref(self.eval(node.operand))
            check_conversion(self, node.type)
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
            if self.scope.strict_mode() >= 1 and low not in _NOT_STRICT:
                raise runtime_error(f"The variable '${name}' cannot be retrieved because it has not been set.",
                                    "VariableIsUndefined", "InvalidOperation", target=name)
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
        as_number = getattr(v, "ps_number", None)  # enum values, IntPtr and other numeric .NET objects
        if as_number is not None:
            return as_number()
        raise runtime_error(f'Cannot convert the "{to_str(v)}" value of type "{type_name_of(v)}" to type '
                            f'"System.Int32".', "ConvertToFinalInvalidCastException", "InvalidArgument")

    def to_int(self, v: object) -> int:
        n = self.to_num(v)
        if isinstance(n, float):
            return int(round(n))  # .NET rounds to even; Python round does too
        return n

    def convert(self, v: object, type_name: str) -> object:
        return convert_value(self, v, type_name)

    def new_runspace(self, streams: Streams) -> Runtime:
        """A new runspace in this process ([PowerShell]::Create()): its own session state, the same host."""
        return Runtime(self.host, streams, Runspace(self.runspace.start_location, self.runspace.process_id))

    def stage_for(self, node: Node) -> Stage:
        return make_stage(self, node)

    def binop(self, op: str, left: object, right: object) -> object:
        return binary_op(self, op, left, right)


