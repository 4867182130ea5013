"""Where a PowerShell run writes: the Streams protocol its host implements, and ErrorInfo, the error it reports.

The interpreter only writes through this interface; the WS-Management service (PSRP pipelines) and
the engine's powershell.exe emulation (text and CLIXML on stderr) each provide one.
"""

from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass
class ErrorInfo:
    """One PowerShell ErrorRecord as the lab reports it (enough for PSRP serialisation and CLIXML text)."""

    message: str
    category: str = "NotSpecified"          # CategoryInfo category name, e.g. "ObjectNotFound"
    fq_error_id: str = "Microsoft.PowerShell.Commands.WriteErrorException"
    target: str | None = None
    command_name: str | None = None
    position: str | None = None             # "At line:1 char:1\n+ ..." like InvocationInfo.PositionMessage
    exception_type: str = "Microsoft.PowerShell.Commands.WriteErrorException"


class Streams(typing.Protocol):
    """Where a PowerShell run writes. Optional extra: `terminating_error(record)` (see docs/lab-engine.md)."""

    def output(self, value: object) -> None: ...
    def error(self, record: ErrorInfo) -> None: ...
    def warning(self, message: str) -> None: ...
    def verbose(self, message: str) -> None: ...
    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None: ...
    def set_should_exit(self, code: int) -> None: ...
