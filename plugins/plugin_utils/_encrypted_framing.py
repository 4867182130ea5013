"""Reading a WinRM answer sealed with message encryption: the MIME framing of MS-WSMV 2.2.9.1, strictly.

Sealing stays pypsrp's (``WinRMEncryption.wrap_message``). Reading is ours because pypsrp's
``unwrap_message`` splits and indexes the body blindly: a truncated body, a boundary other than the one it
splits on, or a lying length raises IndexError, ValueError or struct.error from inside its parser, which
nobody can tell from a bug, and no other library reads this framing. Here every way a body can break is
refused on purpose with a MalformedAnswerError saying which, and so is a part whose signature does not
verify (pyspnego's SpnegoError, kept as the cause).
"""

from __future__ import annotations

import re
import struct
import typing as t

from ._errors import MalformedAnswerError

try:
    from spnego.exceptions import SpnegoError
except ImportError:  # pragma: no cover - pyspnego comes with pypsrp; the plugin reports it missing
    SpnegoError = Exception  # type: ignore[assignment,misc]

BOUNDARY = "Encrypted Boundary"  # MS-WSMV 2.2.9.1.1: the boundary of every encrypted message
_HEAD = re.compile(
    rb"--\s*Encrypted Boundary\r\n"  # Exchange puts a space after the dashes; pypsrp accepts it, so do we
    rb"\tContent-Type: (?P<protocol>[^\r\n]*)\r\n"
    rb"\tOriginalContent: type=application/soap\+xml;\s*charset=UTF-8;\s*Length=(?P<length>\d{1,10})\r\n"
    rb"--\s*Encrypted Boundary\r\n"
    rb"\tContent-Type: application/octet-stream\r\n",
    re.IGNORECASE,
)
_NEXT = re.compile(rb"--\s*Encrypted Boundary(?P<closing>--)?\r\n")
_PARAM = re.compile(r';\s*([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))')


class Unwrapper(t.Protocol):
    """What unwraps one part: pyspnego's context (``unwrap_winrm``)."""

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes: ...


def unwrap(context: Unwrapper, protocol: str, content_type: str, body: bytes, *, party: str) -> bytes:
    """The plaintext of an encrypted answer, or MalformedAnswerError naming `party` and what broke."""

    def refused(what: str) -> MalformedAnswerError:
        return MalformedAnswerError(
            f"The encrypted answer from {party} is not well-formed MS-WSMV framing ({what}); it was refused and the "
            "connection closed."
        )

    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM.finditer(content_type)}
    if params.get("boundary") != BOUNDARY:
        raise refused(f"its boundary is {params.get('boundary')!r}, not {BOUNDARY!r}")
    if (params.get("protocol") or "").lower() != protocol.lower():
        raise refused(f"it is sealed with {params.get('protocol')!r}, not this session's {protocol!r}")
    plaintext: list[bytes] = []
    pos = 0
    while True:
        head = _HEAD.match(body, pos)
        if head is None:
            raise refused(f"part {len(plaintext) + 1} does not start with the MS-WSMV part headers")
        if head["protocol"].decode("latin-1").lower() != protocol.lower():
            raise refused(f"part {len(plaintext) + 1} says it is sealed with {head['protocol'].decode('latin-1')!r}")
        pos = head.end()
        if len(body) - pos < 4:
            raise refused(f"part {len(plaintext) + 1} ends before its signature length")
        (signature_length,) = struct.unpack_from("<I", body, pos)
        pos += 4
        if not 0 < signature_length <= len(body) - pos:
            raise refused(f"part {len(plaintext) + 1} gives a signature length of {signature_length} bytes, with "
                          f"{len(body) - pos} left")
        end = _NEXT.search(body, pos + signature_length)
        if end is None:
            raise refused(f"part {len(plaintext) + 1} has no boundary after it")
        header, sealed = body[pos:pos + signature_length], body[pos + signature_length:end.start()]
        try:
            part = context.unwrap_winrm(header, sealed)
        except SpnegoError as e:
            raise MalformedAnswerError(
                f"The encrypted answer from {party} did not verify ({type(e).__name__}: {str(e)[:160]}): it was "
                "altered on the way or not sealed by the host this session authenticated to; it was refused and "
                "the connection closed."
            ) from e
        expected = int(head["length"])
        if len(part) != expected:
            raise refused(f"part {len(plaintext) + 1} decrypts to {len(part)} bytes, its header says {expected}")
        plaintext.append(part)
        if end["closing"]:
            if body[end.end():].strip(b"\r\n"):
                raise refused("data follows the closing boundary")
            return b"".join(plaintext)
        pos = end.start()
