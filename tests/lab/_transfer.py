"""powershell.exe's stdin as the interpreter reads it: text lines streamed as the bytes arrive.

Every script real clients send (ansible's bootstrap, exec and module wrappers, the psrp/winrm put and
fetch scripts, pypsrp's copy.ps1/fetch.ps1) runs in the interpreter as received (docs/lab-engine.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from tests.lab import pwsh

log = logging.getLogger(__name__)


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
