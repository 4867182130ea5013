"""Nested runspaces: `[PowerShell]::Create([InitialSessionState]::CreateDefault2())` and what module_wrapper.ps1,
async_watchdog.ps1 and setup.ps1 do with one.

A nested runspace lives in the same process (its environment, file system, console and compiled C#
types are the caller's; tests/lab/pwsh/process.py) but has its own variables, functions, modules and
$Error. Commands are added as on System.Management.Automation.PowerShell: AddCommand/AddScript chain a
pipeline, AddStatement starts the next one; AddScript(text) runs in the runspace's global scope (useLocalScope
false, the default, as `Function Write-Host` that module_wrapper adds stays defined for the module).
Invoke() returns the output; non-terminating errors collect in Streams.Error; a terminating error makes
Invoke throw `Exception calling "Invoke" with "0" argument(s): ...` whose InnerException holds the record,
as module_wrapper expects; `exit N` ends the invocation without an error (Ansible.Basic's ExitJson exits
that way after setting the runspace's $LASTEXITCODE). BeginInvoke runs it on a thread; AsyncWaitHandle.WaitOne
waits for it with the given timeout.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.lab.pwsh.dotnet_objects import ExceptionObj
from tests.lab.pwsh.dotnet_types import register, register_generic, SimpleType
from tests.lab.pwsh.errors import (
    BreakSignal, ContinueSignal, ErrorRecord, ExitScript, method_exception, no_method, parse_error_record, PSError,
    ReturnSignal,
)
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.parser import Node, parse, ParseError
from tests.lab.pwsh.commands import resolve_command
from tests.lab.pwsh.stages import ScriptCommand, Stage
from tests.lab.pwsh.values import as_list, NO_INPUT, PSObject, ScriptBlock, SWITCH_PRESENT, to_str


class RunspaceStreams:
    """Where a nested runspace writes: records kept for $ps.Streams, host text dropped (it has no host UI)."""

    def __init__(self) -> None:
        self.Error: list[ErrorRecord] = []   # noqa: N815 (PSDataStreams' property names)
        self.Warning: list[str] = []         # noqa: N815
        self.Verbose: list[str] = []         # noqa: N815
        self.Debug: list[str] = []           # noqa: N815
        self.Information: list[object] = []  # noqa: N815
        self.Progress: list[object] = []     # noqa: N815

    def output(self, value: object) -> None:  # output goes to the caller's collection, not here
        pass

    def error(self, record: object) -> None:
        pass

    def error_record(self, record: ErrorRecord) -> None:
        self.Error.append(record)

    def warning(self, message: str) -> None:
        self.Warning.append(message)

    def verbose(self, message: str) -> None:
        self.Verbose.append(message)

    def debug(self, message: str) -> None:
        self.Debug.append(message)

    def information(self, data: object, tags: list[str]) -> None:
        self.Information.append(data)

    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None:
        pass

    def set_should_exit(self, code: int) -> None:
        pass

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "clearstreams":
            self.__init__()  # type: ignore[misc]
            return None
        raise no_method(self, name)


class _Command:
    def __init__(self, text: object, is_script: bool, use_local_scope: bool) -> None:
        self.text = text
        self.is_script = is_script
        self.use_local_scope = use_local_scope
        self.positional: list[object] = []
        self.named: dict[str, object] = {}


class SessionStateProxy:
    ps_type = "System.Management.Automation.Runspaces.SessionStateProxy"

    def __init__(self, inner: Interpreter) -> None:
        self.inner = inner

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "setvariable":
            self.inner.set_var(to_str(args[0]), args[1], "global")
            return None
        if low == "getvariable":
            return self.inner.get_var(to_str(args[0]), "global")
        raise no_method(self, name)


class DebuggerObj:
    ps_type = "System.Management.Automation.Debugger"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "setbreakpoints":
            raise method_exception(name, len(args), "The lab engine has no script debugger (breakpoints are used "
                                                    "only by ansible's coverage collection).")
        raise no_method(self, name)


class RunspaceObj:
    ps_type = "System.Management.Automation.Runspaces.LocalRunspace"

    def __init__(self, inner: Interpreter) -> None:
        self.SessionStateProxy = SessionStateProxy(inner)
        self.Debugger = DebuggerObj()
        self.RunspaceStateInfo = "Opened"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() in ("dispose", "close", "open"):
            return None
        raise no_method(self, name)


class AsyncResultObj:
    """What BeginInvoke returns: IsCompleted and an AsyncWaitHandle whose WaitOne(ms) waits for the thread."""

    ps_type = "System.Management.Automation.PowerShellAsyncResult"

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.AsyncWaitHandle = _WaitHandle(thread)

    def ps_get(self, name: str) -> object:
        if name.lower() == "iscompleted":
            return not self.thread.is_alive()
        raise KeyError(name)


class _WaitHandle:
    ps_type = "System.Threading.ManualResetEvent"

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "waitone":
            timeout_ms = int(args[0]) if args else -1  # type: ignore[call-overload]
            self.thread.join(None if timeout_ms < 0 else timeout_ms / 1000.0)
            return not self.thread.is_alive()
        if name.lower() in ("dispose", "close"):
            return None
        raise no_method(self, name)


class PowerShellObj:
    """System.Management.Automation.PowerShell over a nested runspace of the caller's process."""

    ps_type = "System.Management.Automation.PowerShell"

    def __init__(self, rt: Interpreter) -> None:
        self.streams = RunspaceStreams()
        self.inner = rt.new_runspace(self.streams)
        self.Runspace = RunspaceObj(self.inner)
        self.statements: list[list[_Command]] = [[]]
        self.result: list[object] = []
        self.failure: PSError | None = None
        self.HadErrors = False  # noqa: N815

    def ps_get(self, name: str) -> object:
        if name.lower() == "streams":
            return self.streams
        raise KeyError(name)

    def _last(self) -> _Command:
        if not self.statements[-1]:
            raise method_exception("AddParameter", 1, "A command is required to add a parameter. A command must be "
                                                      "added to the PowerShell instance before adding a parameter.")
        return self.statements[-1][-1]

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("addcommand", "addscript"):
            use_local = bool(args[1]) if len(args) > 1 else (low == "addcommand")
            text = args[0]
            self.statements[-1].append(_Command(text if isinstance(text, ScriptBlock) and low == "addcommand"
                                                else to_str(text), low == "addscript", use_local))
            return self
        if low == "addstatement":
            if self.statements[-1]:
                self.statements.append([])
            return self
        if low == "addparameters":
            cmd = self._last()
            source = args[0]
            if isinstance(source, (dict, PSObject)):
                items = source.items() if isinstance(source, dict) else source.props.items()
                for k, v in items:
                    cmd.named[to_str(k)] = v
            else:
                cmd.positional.extend(as_list(source))
            return self
        if low == "addparameter":
            self._last().named[to_str(args[0])] = args[1] if len(args) > 1 else SWITCH_PRESENT
            return self
        if low == "addargument":
            self._last().positional.append(args[0])
            return self
        if low == "invoke":
            self._invoke(args[0] if args else None)
            if self.failure is not None:
                raise _invoke_failure("Invoke", len(args), self.failure)
            return list(self.result)
        if low == "begininvoke":
            source = args[0] if args and isinstance(args[0], list) and args[0] else None
            thread = threading.Thread(target=self._invoke, args=(source,), name="lab-nested-runspace", daemon=True)
            thread.start()
            return AsyncResultObj(thread)
        if low == "endinvoke":
            result = args[0]
            if isinstance(result, AsyncResultObj):
                result.thread.join()
            if self.failure is not None:
                raise _invoke_failure("EndInvoke", 1, self.failure)
            return list(self.result)
        if low in ("dispose", "stop", "beginstop", "clear"):
            return None
        raise no_method(self, name)

    def _invoke(self, input_value: object) -> None:
        inner = self.inner
        self.result = []
        self.failure = None
        try:
            for statement in (s for s in self.statements if s):
                self._run_statement(inner, statement, input_value)
        except ExitScript as e:
            # `exit N` ends the invocation and, as in a runspace's pipeline, sets its $LASTEXITCODE
            inner.set_var("LASTEXITCODE", e.code, "global")
        except PSError as e:
            self.failure = e
        except (BreakSignal, ContinueSignal, ReturnSignal):
            pass
        self.HadErrors = bool(self.streams.Error) or self.failure is not None

    def _run_statement(self, inner: Interpreter, statement: list[_Command], input_value: object) -> None:
        stages: list[Stage] = [self._stage(inner, cmd) for cmd in statement]
        for idx, stage in enumerate(stages):
            stage.sink = stages[idx + 1].process_item if idx + 1 < len(stages) else self.result.append
        inner.scope = inner.global_scope
        source = as_list(input_value) if input_value is not None else None
        for idx, stage in enumerate(stages):
            stage.expecting_input = idx > 0 or source is not None
        for stage in stages:
            stage.begin()
        if source is not None:
            stages[0].feed(source)
        else:
            stages[0].process_item(NO_INPUT)
        for stage in stages:
            stage.end()

    @staticmethod
    def _stage(inner: Interpreter, cmd: _Command) -> Stage:
        if cmd.is_script:
            text = to_str(cmd.text)
            try:
                body = parse(text)
            except ParseError as e:
                raise PSError(parse_error_record(text, e)) from None
            inner.scope = inner.global_scope
            return ScriptCommand(inner, ScriptBlock(body, text), "", list(cmd.positional), dict(cmd.named),
                                 new_scope=cmd.use_local_scope)
        if isinstance(cmd.text, ScriptBlock):
            return ScriptCommand(inner, cmd.text, "", list(cmd.positional), dict(cmd.named))
        name = to_str(cmd.text)
        node = Node("command", 0, name=name, args=[], redirs=[], invoke=None)
        inner.scope = inner.global_scope
        inner.src = name
        stage = resolve_command(inner, name, list(cmd.positional), dict(cmd.named), node)
        if isinstance(stage, ScriptCommand) and not cmd.use_local_scope:
            stage.is_script = True  # useLocalScope false: the command gets a $script: scope of its own
        return stage


def _invoke_failure(method: str, nargs: int, failure: PSError) -> PSError:
    """Invoke/EndInvoke rethrow a terminating error as MethodInvocationException, the record in InnerException."""
    inner_rec = failure.record
    inner = inner_rec.exception if isinstance(inner_rec.exception, ExceptionObj) else ExceptionObj(inner_rec)
    if not hasattr(inner, "ErrorRecord") or inner.ErrorRecord is None:
        inner.ErrorRecord = inner_rec
    rec = ErrorRecord(f'Exception calling "{method}" with "{nargs}" argument(s): "{inner_rec.message}"',
                      category="NotSpecified", fq_error_id="RuntimeException",
                      exception_type="System.Management.Automation.MethodInvocationException")
    outer = ExceptionObj(rec)
    outer.InnerException = inner
    rec.exception = outer
    return PSError(rec)


class InitialSessionStateObj:
    ps_type = "System.Management.Automation.Runspaces.InitialSessionState"

    def __init__(self) -> None:
        self.LanguageMode = "FullLanguage"
        self.Variables: list[object] = []
        self.Commands: list[object] = []


register(SimpleType("System.Management.Automation.PowerShell",
                    methods={"create": lambda rt, a: PowerShellObj(rt)}), "powershell")
register(SimpleType("System.Management.Automation.Runspaces.InitialSessionState",
                    methods={"createdefault2": lambda rt, a: InitialSessionStateObj(),
                             "createdefault": lambda rt, a: InitialSessionStateObj(),
                             "create": lambda rt, a: InitialSessionStateObj()}), "initialsessionstate")
register_generic("System.Management.Automation.PSDataCollection`1", lambda args: SimpleType(
    "System.Management.Automation.PSDataCollection`1", ctor=lambda rt, a: _DataCollection()))


class InvocationSettingsObj:
    ps_type = "System.Management.Automation.PSInvocationSettings"

    def __init__(self, values: dict[str, object] | None = None) -> None:
        self.Host: object = None
        self.AddToHistory = False
        for k, v in (values or {}).items():
            setattr(self, to_str(k), v)


register(SimpleType("System.Management.Automation.PSInvocationSettings", ctor=lambda rt, a: InvocationSettingsObj(),
                    cast=lambda rt, v: InvocationSettingsObj(v if isinstance(v, dict) else None)))


class _DataCollection(list):  # type: ignore[type-arg]
    ps_type = "System.Management.Automation.PSDataCollection`1"

    def ps_call_first(self, name: str, args: list[object]) -> object:
        if name.lower() == "complete":
            return None
        from tests.lab.pwsh.net.collections import NOT_HANDLED
        return NOT_HANDLED

