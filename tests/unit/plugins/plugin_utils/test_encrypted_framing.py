"""Reading sealed WinRM answers (plugins/plugin_utils/_encrypted_framing.py) with real pyspnego contexts.

The "host" seals with the lab's MS-WSMV framing (tests/lab/_msgenc.py, which models Windows) over an NTLM or
CredSSP acceptor; the reader must give back exactly what was sealed, and refuse every broken body on purpose:
a MalformedAnswerError saying what broke, never an IndexError or struct.error from inside a parser.
"""

from __future__ import annotations

import secrets
import struct

import pytest
from spnego.exceptions import SpnegoError

from ansible_collections.pinned.winrm.plugins.plugin_utils._encrypted_framing import unwrap
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import MalformedAnswerError
from tests.lab import _msgenc
from tests.unit.spnego_pairs import Store


def _pair(tmp_path, protocol: str) -> tuple[object, object]:
    return Store(tmp_path).pair(protocol)


@pytest.fixture
def ntlm(tmp_path):
    return _pair(tmp_path, "ntlm")


def _read(client: object, content_type: str, body: bytes, protocol: str = _msgenc.SPNEGO) -> bytes:
    return unwrap(client, protocol, content_type, body, party="w1:5985")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 5000, 200_000])
def test_what_the_host_seals_reads_back_exactly(ntlm, size: int) -> None:
    client, server = ntlm
    for n in range(3):  # one context, several messages: the sequence numbers advance together
        plaintext = secrets.token_bytes(size) if size else b""
        content_type, body = _msgenc.encrypt(server, _msgenc.SPNEGO, plaintext)
        assert _read(client, content_type, body) == plaintext, n


def test_a_credssp_answer_sealed_in_16_kib_parts_reads_back_exactly(tmp_path) -> None:
    client, server = _pair(tmp_path, "credssp")
    plaintext = secrets.token_bytes(70_000)
    content_type, body = _msgenc.encrypt(server, _msgenc.CREDSSP, plaintext)
    assert content_type.startswith(_msgenc.MULTI) and body.count(b"application/octet-stream") == 5
    assert _read(client, content_type, body, _msgenc.CREDSSP) == plaintext


def _sealed(ntlm, plaintext: bytes = b"<s:Envelope>answer</s:Envelope>") -> tuple[object, str, bytes]:
    client, server = ntlm
    content_type, body = _msgenc.encrypt(server, _msgenc.SPNEGO, plaintext)
    return client, content_type, body


def _octets(body: bytes) -> int:
    marker = b"\tContent-Type: application/octet-stream\r\n"
    return body.index(marker) + len(marker)


BROKEN = [
    ("boundary mismatch", lambda ct, b: (ct.replace("Encrypted Boundary", "Other Boundary"), b), "boundary"),
    ("another protocol in the content type", lambda ct, b: (ct.replace("SPNEGO", "Kerberos"), b), "sealed with"),
    ("another protocol in the part", lambda ct, b: (ct, b.replace(b"SPNEGO", b"Kerberos", 1)), "says it is sealed"),
    ("no part headers", lambda ct, b: (ct, b"garbage" + b), "part headers"),
    ("truncated inside the headers", lambda ct, b: (ct, b[:40]), "part headers"),
    ("truncated before the signature length", lambda ct, b: (ct, b[:_octets(b) + 2]), "signature length"),
    ("signature length 0", lambda ct, b: (ct, b[:_octets(b)] + struct.pack("<I", 0) + b[_octets(b) + 4:]),
     "signature length of 0"),
    ("signature length 0xFFFFFFFF", lambda ct, b: (ct, b[:_octets(b)] + struct.pack("<I", 0xFFFFFFFF)
                                                   + b[_octets(b) + 4:]), "signature length of 4294967295"),
    ("no closing boundary", lambda ct, b: (ct, b[:-len(b"--Encrypted Boundary--\r\n")]), "no boundary after it"),
    ("length header lies", lambda ct, b: (ct, b.replace(b"Length=", b"Length=9", 1)), "its header says"),
    ("data after the closing boundary", lambda ct, b: (ct, b + b"trailing"), "follows the closing boundary"),
]


@pytest.mark.parametrize("name, breaks, says", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_framing_is_refused_saying_what_broke(ntlm, name: str, breaks, says: str) -> None:
    client, content_type, body = _sealed(ntlm)
    content_type, body = breaks(content_type, body)
    with pytest.raises(MalformedAnswerError) as caught:
        _read(client, content_type, body)
    assert says in str(caught.value) and "w1:5985" in str(caught.value), caught.value
    assert caught.value.__cause__ is None  # refused by the reader itself, nothing else failed under it


def test_a_flipped_ciphertext_byte_does_not_verify_and_keeps_pyspnego_s_error(ntlm) -> None:
    client, content_type, body = _sealed(ntlm)
    at = _octets(body) + 4 + 16 + 3
    flipped = body[:at] + bytes([body[at] ^ 0x5A]) + body[at + 1:]
    with pytest.raises(MalformedAnswerError) as caught:
        _read(client, content_type, flipped)
    assert "did not verify" in str(caught.value)
    assert isinstance(caught.value.__cause__, SpnegoError)
