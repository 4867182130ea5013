"""A pipeline of several statements (pypsrp's add_statement(), PSRP's ExtraCmds), as Windows runs it.

The server builds one PowerShell whose commands end statements (PowerShell.FromPSObjectForRemoting), and
BeginInvoke runs it as a batch (PowerShell.BeginBatchInvoke): the first statement with the pipeline's input,
each later one with none (BatchInvocationWorkItem invokes it with a null input), one after the other in the
same runspace, their output in one stream. A statement that fails or is stopped ends the batch: the later
ones do not run and the client gets that state (ServerPowerShellDriver.HandlePowerShellInvocationStateChanged).
`exit` only completes its statement (LocalPipeline turns ExitException into SetShouldExit), so the next runs.
"""

from __future__ import annotations

import typing as t

from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell

from tests.integration.lab_wsman.test_runspace_state import lab  # noqa: F401  (the fixture)


def _two_statements(pool: t.Any, first: str, second: str) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(first, use_local_scope=True).add_statement().add_script(second, use_local_scope=True)
    return ps


def test_only_the_first_statement_gets_the_pipelines_input(lab) -> None:  # noqa: F811
    pool = lab()
    ps = _two_statements(pool, "foreach ($i in $input) { \"first $i\" }",
                         "\"second $(@($input).Count) $($MyInvocation.ExpectingInput)\"")
    assert ps.invoke(input=["a", "b"]) == ["first a", "first b", "second 0 False"]
    assert ps.state == PSInvocationState.COMPLETED


def test_exit_in_the_first_statement_completes_it_and_the_next_statement_still_runs(lab) -> None:  # noqa: F811
    pool = lab()
    ps = _two_statements(pool, "'before'; exit 3", "'after'")
    assert ps.invoke() == ["before", "after"]
    assert ps.state == PSInvocationState.COMPLETED
    assert pool.host.rc == 3  # the host was told to exit with 3 (SetShouldExit)


def test_a_terminating_error_in_the_first_statement_ends_the_pipeline_before_the_next(lab) -> None:  # noqa: F811
    pool = lab()
    ps = _two_statements(pool, "$global:ran = 'first'; throw 'boom'", "$global:ran = 'second'; 'after'")
    assert ps.invoke() == []
    assert ps.state == PSInvocationState.FAILED
    assert ps.had_errors and "boom" in str(ps.streams.error[0])
    check = PowerShell(pool)
    check.add_script("$global:ran")
    assert check.invoke() == ["first"]
