"""The simulated host authenticates as WinRM does, with unmodified pypsrp and pywinrm clients."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
import spnego
import winrm.transport
from pypsrp.exceptions import AuthenticationError
from spnego.channel_bindings import GssChannelBindings

from tests.integration.lab_host._echo import expected_answer, request_envelope
from tests.lab import _msgenc

WINDOWS_OFFERS = ["Negotiate", "Kerberos", 'Basic realm="WSMAN"', "CredSSP"]


def _assert_echo(answer: bytes, user: str, sent: bytes) -> None:
    digest, length = expected_answer(user, sent)
    text = answer.decode("utf-8")
    assert f'user="{user}"' in text and f'sha256="{digest}"' in text and f'length="{length}"' in text


def _offers(response) -> list[str]:
    return response.headers.get_all("WWW-Authenticate") or []


@pytest.mark.parametrize(
    ("ssl", "auth", "protocol"),
    [
        (True, "basic", None),
        (False, "ntlm", _msgenc.SPNEGO),
        (False, "negotiate", _msgenc.SPNEGO),
        (True, "ntlm", None),
        (True, "negotiate", None),
        (False, "credssp", _msgenc.CREDSSP),
        (True, "credssp", None),
    ],
)
def test_pypsrp_round_trips_through_each_auth_and_encryption(lab, ssl, auth, protocol) -> None:
    transport = lab.pypsrp(ssl=ssl, auth=auth)
    try:
        for size in (0, 3000, 40000):  # 40000 > 16 KiB: CredSSP multi-part in both directions
            message = request_envelope("Get", "p" * size)
            _assert_echo(transport.send(message), "alice", message)
    finally:
        transport.close()
    assert lab.counters.get(f"auth_handshakes.{auth}") == 1
    types = {e["request_type"] for e in lab.counters.log() if e.get("request_bytes")}
    if protocol is None:
        assert types == {"application/soap+xml;charset=UTF-8"}
    else:
        assert all(f'protocol="{protocol}"' in ty for ty in types)
        if protocol == _msgenc.CREDSSP:
            assert any(ty.startswith("multipart/x-multi-encrypted") for ty in types)
            assert any(str(e.get("response_type")).startswith("multipart/x-multi-encrypted") for e in lab.counters.log())


def test_pywinrm_ntlm_encrypts_over_http(lab) -> None:
    transport = winrm.transport.Transport(
        endpoint=f"http://127.0.0.1:{lab.config.http_port}/wsman", username="bob", password=lab.password("bob"),
        auth_method="ntlm", message_encryption="auto",
    )
    for size in (10, 20000):
        message = request_envelope("Get", "w" * size)
        _assert_echo(transport.send_message(message), "bob", message)
    assert lab.counters.get("auth_handshakes.ntlm") == 1
    assert lab.counters.get("rejected.unencrypted") == 0
    assert all("multipart/encrypted" in (e["request_type"] or "") for e in lab.counters.log() if e["request_bytes"])


def test_certificate_auth_maps_the_client_certificate_to_its_user(lab, alice_cert) -> None:
    transport = lab.pypsrp(ssl=True, auth="certificate", user=None, password=None,
                           certificate_pem=str(alice_cert.cert), certificate_key_pem=str(alice_cert.key))
    message = request_envelope("Get", "cert")
    _assert_echo(transport.send(message), "alice", message)
    assert lab.counters.get("auth_handshakes.certificate") == 1


def test_certificate_header_without_a_mapped_certificate_is_refused(lab) -> None:
    raw = lab.raw(tls=True)
    response, _ = raw.post(request_envelope(), {"Authorization": "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"})
    assert response.status == 401
    assert lab.counters.get("auth_failures.certificate") == 1


def test_the_first_401_offers_the_configured_schemes_in_windows_order(make_host) -> None:
    full = make_host()
    response, body = full.raw(tls=False).post(request_envelope())
    assert (response.status, response.reason, body) == (401, "", b"")
    assert _offers(response) == WINDOWS_OFFERS
    assert response.getheader("Server") == "Microsoft-HTTPAPI/2.0"
    assert response.getheader("Connection") == "close"
    only = make_host(name="WIN-LAB2", auth=("negotiate",))
    response, _ = only.raw(tls=True).post(request_envelope())
    assert _offers(response) == ["Negotiate"]


def test_wrong_password_gets_the_same_401_and_offers_windows_sends(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm", password="not-" + lab.password("alice"))
    with pytest.raises(AuthenticationError):
        transport.send(request_envelope())
    raw = lab.raw(tls=False)
    response, _ = raw.handshake(spnego.client("alice", "wrong", protocol="ntlm"))
    assert response.status == 401
    assert _offers(response) == WINDOWS_OFFERS
    assert response.getheader("Connection") == "close"
    assert lab.counters.get("auth_failures.ntlm") == 2
    assert lab.counters.get("auth_handshakes") == 0
    assert lab.service.received == []


def test_plaintext_soap_over_http_is_refused_while_allow_unencrypted_is_false(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm", encryption="never")
    with pytest.raises(AuthenticationError):
        transport.send(request_envelope("Get", "secret"))
    assert lab.counters.get("rejected.unencrypted") >= 1
    assert lab.service.received == []


def test_plaintext_soap_over_http_is_served_when_allow_unencrypted_is_true(make_host) -> None:
    lab = make_host(allow_unencrypted=True)
    transport = lab.pypsrp(ssl=False, auth="ntlm", encryption="never")
    message = request_envelope("Get", "open")
    _assert_echo(transport.send(message), "alice", message)


def test_basic_over_http_is_refused(lab) -> None:
    raw = lab.raw(tls=False)
    basic = base64.b64encode(f"alice:{lab.password('alice')}".encode()).decode()
    response, _ = raw.post(request_envelope(), {"Authorization": f"Basic {basic}"})
    assert response.status == 401
    assert _offers(response) == WINDOWS_OFFERS
    assert lab.counters.get("rejected.basic_over_http") == 1
    assert lab.service.received == []


def test_a_new_tcp_connection_must_authenticate_again(lab) -> None:
    first = lab.raw(tls=False)
    response, _ = first.handshake(spnego.client("alice", lab.password("alice"), protocol="ntlm"))
    assert response.status == 200
    second = lab.raw(tls=False)
    response, _ = second.post(b"")  # no Authorization: the first connection's logon does not carry over
    assert response.status == 401
    response, _ = second.handshake(spnego.client("alice", lab.password("alice"), protocol="ntlm"))
    assert response.status == 200
    assert lab.counters.get("auth_handshakes.ntlm") == 2
    assert lab.counters.get("reauth_on_connection") == 0


def test_an_ntlm_leg_on_another_connection_than_its_challenge_is_refused(lab) -> None:
    # What a proxy without connection affinity (tinyproxy) does to an NTLM handshake, held
    # deterministically: the NEGOTIATE leg goes on one connection, the AUTHENTICATE leg on another.
    context = spnego.client("alice", lab.password("alice"), protocol="ntlm")
    first = lab.raw(tls=False)
    response, _ = first.post(b"", {"Authorization": f"Negotiate {base64.b64encode(context.step()).decode()}"})
    assert response.status == 401
    challenge = (response.getheader("WWW-Authenticate") or "").split(" ", 1)
    assert challenge[0] == "Negotiate" and len(challenge) == 2
    authenticate = context.step(base64.b64decode(challenge[1]))
    second = lab.raw(tls=False)
    response, _ = second.post(b"", {"Authorization": f"Negotiate {base64.b64encode(authenticate).decode()}"})
    assert response.status == 401
    assert _offers(response) == WINDOWS_OFFERS
    assert lab.counters.get("auth_handshakes") == 0
    assert lab.counters.get("tcp_connections") == 2
    assert lab.service.received == []


def test_a_second_handshake_on_an_authenticated_connection_counts_as_reauth(lab) -> None:
    raw = lab.raw(tls=False)
    for _ in range(2):
        response, _ = raw.handshake(spnego.client("alice", lab.password("alice"), protocol="ntlm"))
        assert response.status == 200
    assert lab.counters.get("tcp_connections") == 1
    assert lab.counters.get("auth_handshakes") == 2
    assert lab.counters.get("reauth_on_connection") == 1


def test_an_encrypted_message_on_a_connection_that_did_not_authenticate_is_refused(lab) -> None:
    transport = lab.pypsrp(ssl=False, auth="ntlm")
    transport.send(request_envelope("Get", "first"))
    assert transport.encryption is not None
    # What a proxy without affinity does: the sealed message arrives on another upstream connection.
    content_type, body = transport.encryption.wrap_message(request_envelope("Get", "moved"))
    other = lab.raw(tls=False)
    response, _ = other.post(body, {"Content-Type": f'{content_type};protocol="{_msgenc.SPNEGO}";boundary="Encrypted Boundary"'})
    assert response.status == 401
    assert _offers(response) == WINDOWS_OFFERS
    assert lab.counters.get("rejected.unauthenticated_encrypted") == 1
    assert len(lab.service.received) == 1


def _ntlm_with_bindings(lab, application_data: bytes | None):
    bindings = GssChannelBindings(application_data=application_data) if application_data is not None else None
    return spnego.client("alice", lab.password("alice"), protocol="ntlm", channel_bindings=bindings)


def test_ntlm_channel_binding_is_checked_when_the_client_sends_one(lab) -> None:
    good = lab.raw(tls=True)
    good.conn.connect()
    cert_hash = hashlib.sha256(good.peer_cert()).digest()  # RFC 5929 for a SHA-256 signed certificate
    response, _ = good.handshake(_ntlm_with_bindings(lab, b"tls-server-end-point:" + cert_hash))
    assert response.status == 200

    wrong = lab.raw(tls=True)
    response, _ = wrong.handshake(_ntlm_with_bindings(lab, b"tls-server-end-point:" + bytes(32)))
    assert response.status == 401
    assert any("bindings" in str(e.get("detail", "")).lower() for e in lab.counters.log())

    # CbtHardeningLevel=Relaxed: a client that sends no binding is accepted.
    none = lab.raw(tls=True)
    response, _ = none.handshake(_ntlm_with_bindings(lab, None))
    assert response.status == 200
    assert lab.counters.get("auth_handshakes.ntlm") == 2
    assert lab.counters.get("auth_failures.ntlm") == 1


def test_credssp_refuses_delegated_credentials_of_another_user(lab) -> None:
    inner = spnego.client("alice", lab.password("alice"), protocol="ntlm")
    context = spnego.client(
        spnego.Password("bob", lab.password("bob")), protocol="credssp", credssp_negotiate_context=inner,
    )
    raw = lab.raw(tls=True)
    response, _ = raw.handshake(context, scheme="CredSSP")
    assert response.status == 401
    assert lab.counters.get("auth_failures.credssp") == 1
    assert any("another user" in str(e.get("detail", "")) for e in lab.counters.log())


def test_credssp_accepts_matching_delegated_credentials_from_requests_credssp(lab) -> None:
    transport = winrm.transport.Transport(
        endpoint=f"https://127.0.0.1:{lab.config.https_port}/wsman", username="bob", password=lab.password("bob"),
        auth_method="credssp", ca_trust_path=str(lab.ca.cert_path), message_encryption="always",
    )
    message = request_envelope("Get", "d" * 20000)
    _assert_echo(transport.send_message(message), "bob", message)
    assert lab.counters.get("auth_handshakes.credssp") == 1


def test_request_log_never_holds_passwords_or_tokens(lab) -> None:
    for auth, ssl in (("ntlm", False), ("credssp", False), ("basic", True)):
        transport = lab.pypsrp(ssl=ssl, auth=auth)
        transport.send(request_envelope("Get", "log"))
    with pytest.raises(AuthenticationError):
        lab.pypsrp(ssl=False, auth="ntlm", password="typo-" + lab.password("alice")).send(request_envelope())
    text = repr(lab.counters.log())
    for secret in (lab.password("alice"), base64.b64encode(lab.password("alice").encode()).decode()):
        assert secret not in text
    assert not re.search(r"(Negotiate|CredSSP|Basic) [A-Za-z0-9+/=]{8,}", text)
    assert {e["user"] for e in lab.counters.log() if e["status"] == 200} == {"alice"}
