"""WinRM message encryption framing, the server side, as MS-WSMV 2.2.9.1 defines it.

Written by hand from the spec (no library frames the server side of this MIME
envelope) and deliberately independent of pypsrp's `WinRMEncryption`, which the
clients under test use: a framing bug in one is caught by the other. The
cryptography itself is the authentication context's `wrap_winrm`/`unwrap_winrm`
(pyspnego).

A body looks like this, one part pair per encrypted chunk (one chunk, except
CredSSP messages over 16 KiB sent as `multipart/x-multi-encrypted`):

    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/HTTP-SPNEGO-session-encrypted\\r\\n
    \\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plaintext length>\\r\\n
    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/octet-stream\\r\\n
    <uint32 little-endian signature length><signature><sealed data>
    --Encrypted Boundary--\\r\\n
"""

from __future__ import annotations

import dataclasses
import re
import struct
import typing as t

SPNEGO = "application/HTTP-SPNEGO-session-encrypted"
KERBEROS = "application/HTTP-Kerberos-session-encrypted"
CREDSSP = "application/HTTP-CredSSP-session-encrypted"
PROTOCOLS = (SPNEGO, KERBEROS, CREDSSP)
BOUNDARY = "Encrypted Boundary"
SINGLE = "multipart/encrypted"
MULTI = "multipart/x-multi-encrypted"
CREDSSP_CHUNK = 16384  # MS-WSMV 2.2.9.1.3: CredSSP seals at most 16 KiB per part
_ORIGINAL_TYPE = "type=application/soap+xml;charset=UTF-8"


class FramingError(ValueError):
    """The body is not a well-formed MS-WSMV encrypted message."""


class WinRMWrapper(t.Protocol):
    def wrap_winrm(self, data: bytes) -> t.Any: ...  # (header, data, padding_length)

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class EncryptedType:
    """The parsed Content-Type of an encrypted request."""

    multi: bool
    protocol: str
    boundary: str


_PARAM = re.compile(r';\s*([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^;\s]*))')


def parse_content_type(value: str) -> EncryptedType | None:
    """Return the encryption parameters, or None when the type is not an encrypted one."""
    media = value.split(";", 1)[0].strip().lower()
    if media not in (SINGLE, MULTI):
        return None
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM.finditer(value)}
    protocol = params.get("protocol", "")
    boundary = params.get("boundary", "")
    if protocol.lower() not in {p.lower() for p in PROTOCOLS}:
        raise FramingError(f"unknown encryption protocol {protocol!r}")
    if not boundary:
        raise FramingError("encrypted content type without a boundary")
    canonical = next(p for p in PROTOCOLS if p.lower() == protocol.lower())
    return EncryptedType(multi=media == MULTI, protocol=canonical, boundary=boundary)


def content_type_header(protocol: str, multi: bool) -> str:
    return f'{MULTI if multi else SINGLE};protocol="{protocol}";boundary="{BOUNDARY}"'


def _part(context: WinRMWrapper, protocol: str, chunk: bytes) -> bytes:
    header, sealed, padding = context.wrap_winrm(chunk)
    head = (
        f"--{BOUNDARY}\r\n"
        f"\tContent-Type: {protocol}\r\n"
        f"\tOriginalContent: {_ORIGINAL_TYPE};Length={len(chunk) + padding}\r\n"
        f"--{BOUNDARY}\r\n"
        f"\tContent-Type: application/octet-stream\r\n"
    ).encode("ascii")
    return head + struct.pack("<I", len(header)) + header + sealed


def encrypt(context: WinRMWrapper, protocol: str, plaintext: bytes) -> tuple[str, bytes]:
    """Seal `plaintext`; returns (Content-Type header value, body)."""
    multi = protocol == CREDSSP and len(plaintext) > CREDSSP_CHUNK
    if multi:
        chunks = [plaintext[i : i + CREDSSP_CHUNK] for i in range(0, len(plaintext), CREDSSP_CHUNK)]
    else:
        chunks = [plaintext]
    body = b"".join(_part(context, protocol, c) for c in chunks) + f"--{BOUNDARY}--\r\n".encode("ascii")
    return content_type_header(protocol, multi), body


def decrypt(context: WinRMWrapper, ctype: EncryptedType, body: bytes) -> bytes:
    """Unseal an encrypted body; checks every part's protocol and original length."""
    delim = f"--{ctype.boundary}\r\n".encode("ascii")
    closing = f"--{ctype.boundary}--".encode("ascii")
    # The next part starts with this marker; 60+ fixed bytes will not occur by chance in ciphertext.
    next_part = delim + b"\tContent-Type: " + ctype.protocol.encode("ascii")
    end = body.rstrip(b"\r\n")
    if not end.endswith(closing):
        raise FramingError("encrypted body does not end with the closing boundary")
    limit = len(end) - len(closing)
    pos = 0
    out: list[bytes] = []
    while pos < limit:
        pos = _expect(body, pos, delim, "part boundary")
        headers, pos = _read_part_headers(body, pos, delim)
        if headers.get("content-type", "").lower() != ctype.protocol.lower():
            raise FramingError(f"part protocol {headers.get('content-type')!r} does not match {ctype.protocol!r}")
        length = _original_length(headers.get("originalcontent", ""))
        pos = _expect(body, pos, delim, "data boundary")
        data_headers, pos = _read_part_headers(body, pos, None, single_line=True)
        if data_headers.get("content-type", "").lower() != "application/octet-stream":
            raise FramingError("data part is not application/octet-stream")
        if pos + 4 > limit:
            raise FramingError("truncated signature length")
        (sig_len,) = struct.unpack("<I", body[pos : pos + 4])
        pos += 4
        if pos + sig_len > limit:
            raise FramingError("signature longer than the body")
        signature = body[pos : pos + sig_len]
        pos += sig_len
        stop = body.find(next_part, pos) if ctype.multi else -1
        if stop < 0 or stop > limit:
            stop = limit
        sealed = body[pos:stop]
        plain = context.unwrap_winrm(signature, sealed)
        if len(plain) != length:
            raise FramingError(f"decrypted length {len(plain)} differs from OriginalContent Length {length}")
        out.append(plain)
        pos = stop
        if not ctype.multi:
            break
    if pos != limit or not out:
        raise FramingError("trailing data after the encrypted parts")
    return b"".join(out)


def _expect(body: bytes, pos: int, token: bytes, what: str) -> int:
    if not body.startswith(token, pos):
        raise FramingError(f"expected {what} at offset {pos}")
    return pos + len(token)


def _read_part_headers(
    body: bytes, pos: int, stop: bytes | None, *, single_line: bool = False
) -> tuple[dict[str, str], int]:
    """Read `\\tName: value\\r\\n` lines up to the next boundary (or one line)."""
    headers: dict[str, str] = {}
    for _ in range(8):  # a part carries two header lines; bound the loop anyway
        if stop is not None and body.startswith(stop, pos):
            break
        eol = body.find(b"\r\n", pos, pos + 1024)
        if eol < 0:
            raise FramingError(f"unterminated part header at offset {pos}")
        line = body[pos:eol].decode("ascii", "replace").strip()
        name, sep, value = line.partition(":")
        if not sep:
            raise FramingError(f"malformed part header {line!r}")
        headers[name.strip().lower()] = value.strip()
        pos = eol + 2
        if single_line:
            break
    else:
        raise FramingError("too many part headers")
    return headers, pos


def _original_length(value: str) -> int:
    match = re.search(r"(?:^|;)\s*Length\s*=\s*(\d+)\s*(?:;|$)", value, re.I)
    if not match or not value.lower().startswith("type=application/soap+xml"):
        raise FramingError(f"malformed OriginalContent {value!r}")
    return int(match.group(1))
