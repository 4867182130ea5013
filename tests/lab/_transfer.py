"""Target side of the transfer and bootstrap scripts real clients send (see docs/lab-engine.md).

Every transfer script (ansible's psrp/winrm put and fetch, pypsrp's copy.ps1/fetch.ps1) runs in the
interpreter. Only ansible's exec_wrapper.ps1 is emulated here in Python: it is a 800-line script built
on steppable pipelines, Add-Type and reflection that the subset does not cover. Its contract (read the
manifest JSON up to the `\\0\\0\\0\\0` line, run the action's script with its params and the remaining input,
turn a terminating error into ansible's failure JSON and exit 1) is reproduced, and the action script
itself is run by the interpreter.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator

from tests.lab import pwsh

log = logging.getLogger(__name__)

_MARKER = "\0\0\0\0"


def _is_exec_wrapper(sb: pwsh.ScriptBlock) -> bool:
    """exec_wrapper.ps1 as bootstrap_wrapper.ps1 loads it: by name and by its param block."""
    if not sb.file_name or sb.file_name.lower() != "exec_wrapper.ps1":
        return False
    names = {p.name.lower() for p in (sb.body.params or [])}
    return {"inputobject", "manifest", "encodeinputoutput", "temppath"} <= names


class ExecWrapper:
    """A ScriptCommand's behaviour for exec_wrapper.ps1 (begin/process/end with pipeline input)."""

    def begin(self, cmd: pwsh.ScriptCommand) -> dict[str, object]:
        assert cmd.scope is not None
        cmd.scope.vars["erroractionpreference"] = "Stop"  # exec_wrapper's begin block sets it
        return {"manifest_lines": [], "action": None, "marker": False}

    def process(self, cmd: pwsh.ScriptCommand, state: dict, item: object) -> None:
        if item is pwsh.NO_INPUT:
            return
        action = state["action"]
        if action is not None:
            self._guard(cmd, state, lambda: action.process_item(item))
            return
        if pwsh.to_str(item) == _MARKER:
            state["marker"] = True
            self._guard(cmd, state, lambda: self._start_action(cmd, state, expecting_input=True))
            return
        state["manifest_lines"].append(pwsh.to_str(item))

    def end(self, cmd: pwsh.ScriptCommand, state: dict) -> None:
        def finish() -> None:
            if state["action"] is None and not state.get("failed"):
                self._start_action(cmd, state, expecting_input=False)
            action = state["action"]
            if action is None:
                return
            outer_sink = cmd.sink
            action.sink = outer_sink  # only the end block's output reaches the caller, as with $actionPipeline.End()
            action.end()
        self._guard(cmd, state, finish)

    def _start_action(self, cmd: pwsh.ScriptCommand, state: dict, expecting_input: bool) -> None:
        rt = cmd.rt
        text = "\n".join(state["manifest_lines"])
        try:
            manifest = json.loads(text)
        except ValueError as e:
            raise pwsh.runtime_error(f"Conversion from JSON failed with error: {e}", "System.ArgumentException",
                                      "NotSpecified", "System.ArgumentException") from None
        actions = manifest.get("actions") or []
        if not actions:
            raise pwsh.runtime_error("The manifest has no action to run.", "LabManifestWithoutAction")
        action = actions[0]
        name = action.get("name", "")
        info = (manifest.get("scripts") or {}).get(name)
        if info is None:
            raise pwsh.runtime_error(f"Could not find the script '{name}'.", "System.Exception",
                                      "NotSpecified", "System.Exception")
        script = base64.b64decode(info["script"]).decode("utf-8-sig")
        params = dict(action.get("params") or {})
        params.update({k: v for k, v in (action.get("secure_params") or {}).items() if v})
        try:
            body = pwsh.parse(script)
        except pwsh.ParseError as e:
            raise pwsh.PSError(pwsh.parse_error_record(script, e)) from None
        sb = pwsh.ScriptBlock(body, script, name)
        named = {k: pwsh.from_json(v) for k, v in params.items()}
        stage = pwsh.ScriptCommand(rt, sb, "", [], named, new_scope=True)
        stage.sink = lambda v: None  # output of begin/process is discarded (`$null = $actionPipeline.Process()`)
        stage.expecting_input = expecting_input
        saved = rt.scope
        rt.scope = cmd.scope  # the action runs below exec_wrapper's scope, where $ErrorActionPreference = 'Stop'
        try:
            stage.begin()
            if not expecting_input:
                stage.process_item(pwsh.NO_INPUT)
        finally:
            rt.scope = saved
        state["action"] = stage

    def _guard(self, cmd: pwsh.ScriptCommand, state: dict, fn) -> None:  # type: ignore[no-untyped-def]
        rt = cmd.rt
        saved = rt.scope
        rt.scope = cmd.scope
        try:
            fn()
        except pwsh.PSError as e:
            state["failed"] = True
            state["action"] = None
            rec = rt.fill(e.record)
            exception = "\r\n".join([rec.message, rec.position or "", f"+ CategoryInfo          : {rec.category_info()}",
                                     f"+ FullyQualifiedErrorId : {rec.fq_error_id}", "", "ScriptStackTrace:",
                                     f"at <ScriptBlock>, <No file>: line {rec.line or 1}"])
            cmd.sink(json.dumps({"failed": True, "msg": f"failure during exec_wrapper: {rec.message}",
                                 "exception": exception}, separators=(",", ":"), ensure_ascii=False))
            rt.streams.set_should_exit(1)
        finally:
            rt.scope = saved


def native_script(sb: pwsh.ScriptBlock) -> ExecWrapper | None:
    """The Python emulation for a script the subset cannot run, or None to interpret it."""
    if _is_exec_wrapper(sb):
        return ExecWrapper()
    return None


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """powershell.exe reading stdin as text: one pipeline string per line, streamed as bytes arrive."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while True:
            idx = buf.find(b"\n")
            if idx < 0:
                break
            line, buf = buf[:idx], buf[idx + 1:]
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if len(buf) > pwsh.limits.MAX_STRING_CHARS:
            raise pwsh.runtime_error("A stdin line is longer than the lab engine accepts.", "LabLineTooLong")
    if buf:
        yield buf.rstrip(b"\r").decode("utf-8", errors="replace")
