"""The lab host's command engine: a documented subset of PowerShell and cmd (see docs/lab-engine.md).

The WS-Management service hands every WinRS command to `Engine.run_cmd` and every PSRP pipeline to
`Engine.run_powershell`; results are derived from the script, its arguments and the input received.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import pathlib
import re
import typing
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger(__name__)

__all__ = ["Engine", "ErrorInfo", "Streams"]


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
