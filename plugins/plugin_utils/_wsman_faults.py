"""The WS-Management fault codes the engine acts on, with what Windows means by each.

The numbers and names are Windows' (wsmerror.h in the Windows SDK); the fault subcodes (w:...) are DMTF DSP0226's.
A Windows fault carries its code in ``s:Detail/f:WSManFault/@Code`` (MS-WSMV 2.2.4.43 WSManFaultType), which
pypsrp exposes as ``WSManFaultError.code`` and the engine keeps on ``HostError.code``. docs/lab-wsman.md lists the
faults the lab host sends, each with the Windows answer it was modelled on.
"""

from __future__ import annotations

import enum


class WSManFault(enum.IntEnum):
    """A WS-Management fault code the engine tells apart from the others."""

    #: ERROR_WSMAN_OPERATION_TIMEDOUT, w:TimedOut: a Receive's OperationTimeout passed with no output (recording
    #: test_winrs_operation_timeout). Says nothing about the shell, and a timed-out Command may have started.
    OPERATION_TIMED_OUT = 0x80338029
    #: ERROR_WSMAN_INVALID_SELECTORS, w:InvalidSelectors: the ShellId (or CommandId) names nothing the host
    #: has; what Windows answers for a shell it deleted or expired (recording test_psrp_is_alive_invalid_selectors).
    INVALID_SELECTORS = 0x8033805B
    #: ERROR_WSMAN_QUOTA_MAX_OPERATIONS, w:QuotaLimit: the user's MaxConcurrentOperationsPerUser is reached
    #: (winrm/config/Service; a pending Receive counts); the refused request was not run.
    QUOTA_MAX_OPERATIONS = 0x803381A6


# A Command refused with one of these never ran, so the session may rebuild its pool and send it again (T5):
# the shell is gone, or the old pool's operations hold the user's quota (rebuilding closes them).
SHELL_REBUILD_FAULTS = frozenset({WSManFault.INVALID_SELECTORS, WSManFault.QUOTA_MAX_OPERATIONS})

# Why the session rebuilds its pool for each of them: the reason -vvv shows and the session report keeps.
REBUILD_REASONS = {
    WSManFault.INVALID_SELECTORS: "the host no longer knows the shell",
    WSManFault.QUOTA_MAX_OPERATIONS: "the host refused the Command for the user's MaxConcurrentOperationsPerUser; "
                                     "rebuilding closes the old pool's operations",
}
