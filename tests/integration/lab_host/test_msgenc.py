"""The lab's MS-WSMV framing interoperates with pypsrp's independent framing, both ways."""

from __future__ import annotations

import os
import secrets

import pytest
import spnego
from pypsrp.encryption import WinRMEncryption

from tests.lab import _msgenc
from tests.lab._hostauth import _NTLM_STORE, _install_ntlm_store_hook


def _handshake(client, server) -> None:
    token = client.step()
    while token is not None:
        token = server.step(token)
        if token is None:
            break
        token = client.step(token)
    assert client.complete and server.complete


@pytest.fixture
def ntlm_pair(tmp_path):
    """A completed client/acceptor NTLM pair; the acceptor reads a lab store, not os.environ."""
    password = secrets.token_urlsafe(12)
    store = tmp_path / "users"
    store.write_text(f":lab:{password}\n")
    _install_ntlm_store_hook()
    token = _NTLM_STORE.set(str(store))
    try:
        assert "NTLM_USER_FILE" not in os.environ
        client = spnego.client("lab", password, protocol="ntlm", options=spnego.NegotiateOptions.wrapping_winrm)
        server = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.wrapping_winrm)
        _handshake(client, server)
        yield client, server
    finally:
        _NTLM_STORE.reset(token)


@pytest.fixture
def credssp_pair(tmp_path):
    password = secrets.token_urlsafe(12)
    store = tmp_path / "users"
    store.write_text(f":lab:{password}\n")
    _install_ntlm_store_hook()
    token = _NTLM_STORE.set(str(store))
    try:
        client = spnego.client("lab", password, protocol="credssp")
        server = spnego.server(protocol="credssp")
        _handshake(client, server)
        yield client, server
    finally:
        _NTLM_STORE.reset(token)


def _boundary(content_type: str) -> str:
    parsed = _msgenc.parse_content_type(content_type)
    assert parsed is not None
    return parsed.boundary


@pytest.mark.parametrize("size", [0, 1, 5000, 70000])
def test_lab_decrypts_what_pypsrp_encrypts_and_pypsrp_decrypts_what_the_lab_encrypts(ntlm_pair, size) -> None:
    client, server = ntlm_pair
    message = os.urandom(size)
    client_side = WinRMEncryption(client, WinRMEncryption.SPNEGO)
    media, body = client_side.wrap_message(message)
    content_type = f'{media};protocol="{WinRMEncryption.SPNEGO}";boundary="Encrypted Boundary"'
    assert _msgenc.decrypt(server, _msgenc.parse_content_type(content_type), body) == message

    answer = os.urandom(size) + b"answer"
    content_type, sealed = _msgenc.encrypt(server, _msgenc.SPNEGO, answer)
    assert content_type == 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
    assert client_side.unwrap_message(sealed, _boundary(content_type)) == answer


def test_credssp_messages_over_16k_use_one_part_per_16k_both_ways(credssp_pair) -> None:
    client, server = credssp_pair
    message = os.urandom(50000)
    client_side = WinRMEncryption(client, WinRMEncryption.CREDSSP)
    media, body = client_side.wrap_message(message)
    assert media == "multipart/x-multi-encrypted"
    content_type = f'{media};protocol="{WinRMEncryption.CREDSSP}";boundary="Encrypted Boundary"'
    assert _msgenc.decrypt(server, _msgenc.parse_content_type(content_type), body) == message

    content_type, sealed = _msgenc.encrypt(server, _msgenc.CREDSSP, message)
    assert content_type.startswith("multipart/x-multi-encrypted;")
    assert sealed.count(b"\tContent-Type: application/octet-stream\r\n") == 4  # ceil(50000 / 16384)
    assert client_side.unwrap_message(sealed, "Encrypted Boundary") == message


def test_a_tampered_length_or_protocol_is_a_framing_error(ntlm_pair) -> None:
    client, server = ntlm_pair
    client_side = WinRMEncryption(client, WinRMEncryption.SPNEGO)
    _, body = client_side.wrap_message(b"hello world")
    parsed = _msgenc.parse_content_type(f'multipart/encrypted;protocol="{_msgenc.SPNEGO}";boundary="Encrypted Boundary"')
    with pytest.raises(_msgenc.FramingError):
        _msgenc.decrypt(server, parsed, body.replace(b"Length=11", b"Length=12"))
    _, body = client_side.wrap_message(b"hello world")
    with pytest.raises(_msgenc.FramingError):
        _msgenc.decrypt(server, parsed, body.replace(_msgenc.SPNEGO.encode(), _msgenc.KERBEROS.encode()))
    _, body = client_side.wrap_message(b"hello world")
    with pytest.raises(_msgenc.FramingError):
        _msgenc.decrypt(server, parsed, body[:-10])


def test_content_types_that_are_not_encrypted_are_left_alone() -> None:
    assert _msgenc.parse_content_type("application/soap+xml;charset=UTF-8") is None
    with pytest.raises(_msgenc.FramingError):
        _msgenc.parse_content_type('multipart/encrypted;protocol="application/x-unknown";boundary="b"')
