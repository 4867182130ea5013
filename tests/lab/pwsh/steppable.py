"""Steppable pipelines: `{ cmd1 | cmd2 }.GetSteppablePipeline()`, then Begin($expectingInput), Process($item),
End() and Dispose(), each answering what the pipeline wrote meanwhile as an array.

As in PowerShell (ScriptBlock.GetSteppablePipeline), the script block must hold exactly one pipeline of
commands; their arguments are evaluated when the steppable pipeline is made, and each command keeps the
scope it was begun in. A terminating error inside a step reaches the caller as it was raised (exec_wrapper.ps1
reports `failure during exec_wrapper: <the error>` for an error inside its action pipeline, as recorded
from Windows).
"""

from __future__ import annotations

from tests.lab.pwsh.errors import method_exception
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.stages import Stage
from tests.lab.pwsh.values import NO_INPUT, ScriptBlock, to_bool


class SteppablePipeline:
    ps_type = "System.Management.Automation.SteppablePipeline"

    def __init__(self, rt: Interpreter, sb: ScriptBlock) -> None:
        self.rt = rt
        stmts = sb.body.blocks.get("end")
        elements = stmts.list if stmts is not None and len(stmts.list) == 1 else None
        pipeline = elements[0] if elements else None
        if pipeline is None or pipeline.k != "pipeline" or any(e.k == "expr" for e in pipeline.elements) \
                or set(sb.body.blocks) != {"end"}:
            raise method_exception("GetSteppablePipeline", 0, "Only a script block that contains exactly one "
                                   "pipeline or command can be converted.")
        saved = (rt.src, rt.usings)
        rt.src, rt.usings = sb.src, sb.usings
        try:
            self.stages: list[Stage] = [rt.stage_for(cn) for cn in pipeline.elements]
        finally:
            rt.src, rt.usings = saved
        self.pending: list[object] = []
        for idx, stage in enumerate(self.stages):
            stage.sink = self.stages[idx + 1].process_item if idx + 1 < len(self.stages) else self.pending.append

    def _drain(self) -> list[object]:
        out = list(self.pending)
        self.pending.clear()
        return out

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        rt = self.rt
        if low == "begin":
            expecting = to_bool(args[0]) if args else False
            for idx, stage in enumerate(self.stages):
                stage.expecting_input = expecting if idx == 0 else True
            for stage in self.stages:
                rt.cur = stage.where
                stage.begin()
            return self._drain()
        if low == "process":
            first = self.stages[0]
            rt.cur = first.where
            first.process_item(args[0] if args else NO_INPUT)
            return self._drain()
        if low == "end":
            for stage in self.stages:
                rt.cur = stage.where
                stage.end()
            return self._drain()
        if low == "dispose":
            return None
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)
