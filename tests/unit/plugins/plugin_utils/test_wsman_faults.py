"""The fault codes the engine acts on are the ones the lab host sends, as Windows does, for the same conditions."""

from __future__ import annotations

from ansible_collections.pinned.winrm.plugins.plugin_utils._wsman_faults import SHELL_REBUILD_FAULTS, WSManFault

from tests.lab import _soap


def test_each_fault_code_is_what_the_lab_host_sends_for_that_condition() -> None:
    assert _soap.timed_out().wsman_code == WSManFault.OPERATION_TIMED_OUT
    assert _soap.shell_not_found("0").wsman_code == WSManFault.INVALID_SELECTORS
    assert _soap.quota_operations(25).wsman_code == WSManFault.QUOTA_MAX_OPERATIONS


def test_an_operation_timeout_never_rebuilds_the_pool_and_resends_t5() -> None:
    # a Command that timed out may have started; resending it could run it twice
    assert WSManFault.OPERATION_TIMED_OUT not in SHELL_REBUILD_FAULTS
    assert SHELL_REBUILD_FAULTS == {WSManFault.INVALID_SELECTORS, WSManFault.QUOTA_MAX_OPERATIONS}


def test_every_rebuild_fault_has_its_own_reason() -> None:
    from ansible_collections.pinned.winrm.plugins.plugin_utils._wsman_faults import REBUILD_REASONS

    assert set(REBUILD_REASONS) == SHELL_REBUILD_FAULTS
    assert len(set(REBUILD_REASONS.values())) == len(REBUILD_REASONS)
