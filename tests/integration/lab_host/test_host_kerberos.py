"""Kerberos against the lab realm: Negotiate(Kerberos), raw Kerberos and the Kerberos header."""

from __future__ import annotations

import hashlib
import pathlib
import secrets
import shutil
import typing as t

import pytest
import spnego
from pypsrp.exceptions import AuthenticationError
from spnego.channel_bindings import GssChannelBindings

from tests.integration.lab_host._echo import expected_answer, request_envelope
from tests.lab import _msgenc

if not (shutil.which("krb5kdc") or shutil.which("krb5kdc", path="/usr/sbin:/sbin")):
    pytest.skip("MIT krb5kdc is not installed", allow_module_level=True)

from tests.lab._kdc import LabKDC  # noqa: E402

HOSTNAME = "win-lab1.lab.test"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[tuple[LabKDC, pathlib.Path, str]]:
    kdc = LabKDC(tmp_path_factory.mktemp("realm"))
    kdc.start()
    password = secrets.token_urlsafe(12)
    kdc.add_user("dora", password)
    keytab = kdc.workdir / "keytabs" / "win-lab1.keytab"
    for spn in (f"HTTP/{HOSTNAME}", f"host/{HOSTNAME}"):
        kdc.add_service(spn, keytab=keytab)
    with pytest.MonkeyPatch.context() as patch:
        # The client side of these tests runs in this process: point its Kerberos library at the realm.
        for key, value in kdc.env().items():
            patch.setenv(key, value)
        patch.setenv("KRB5RCACHETYPE", "none")
        yield kdc, keytab, password
    kdc.stop()


@pytest.fixture
def krb_lab(make_host, realm):
    kdc, keytab, password = realm
    return make_host(realm=kdc.realm, keytab=keytab, users={"alice": "A-" + password, "dora": password})


@pytest.mark.parametrize(("ssl", "auth"), [(False, "kerberos"), (False, "negotiate"), (True, "negotiate")])
def test_pypsrp_kerberos_round_trips(krb_lab, ssl, auth) -> None:
    transport = krb_lab.pypsrp(ssl=ssl, auth=auth, user="dora@LAB.TEST", password=krb_lab.password("dora"),
                               negotiate_hostname_override=HOSTNAME, negotiate_service="HTTP")
    message = request_envelope("Get", "k" * 3000)
    assert expected_answer("dora", message)[0] in transport.send(message).decode()
    assert krb_lab.counters.get(f"auth_handshakes.{auth}") == 1
    assert krb_lab.counters.log()[-1]["mech"] == "kerberos"


def test_the_kerberos_header_uses_kerberos_session_encryption(krb_lab, realm) -> None:
    _, _, password = realm
    context = spnego.client("dora", password, hostname=HOSTNAME, service="HTTP", protocol="kerberos",
                            options=spnego.NegotiateOptions.wrapping_winrm)
    raw = krb_lab.raw(tls=False)
    response, _ = raw.handshake(context, scheme="Kerberos")
    assert response.status == 200
    assert (response.getheader("WWW-Authenticate") or "").startswith("Kerberos ")  # mutual authentication
    message = request_envelope("Get", "sealed")
    content_type, body = _msgenc.encrypt(context, _msgenc.KERBEROS, message)
    response, sealed = raw.post(body, {"Content-Type": content_type})
    assert response.status == 200
    answer = _msgenc.decrypt(context, _msgenc.parse_content_type(response.getheader("Content-Type")), sealed)
    assert expected_answer("dora", message)[0] in answer.decode()
    assert krb_lab.counters.get("auth_handshakes.kerberos") == 1


def test_kerberos_channel_binding_is_checked_when_the_client_sends_one(krb_lab, realm) -> None:
    _, _, password = realm

    def client(application_data: bytes) -> t.Any:
        bindings = GssChannelBindings(application_data=application_data)
        return spnego.client("dora", password, hostname=HOSTNAME, service="HTTP", protocol="kerberos",
                             channel_bindings=bindings)

    good = krb_lab.raw(tls=True)
    good.conn.connect()
    cert_hash = hashlib.sha256(good.peer_cert()).digest()
    response, _ = good.handshake(client(b"tls-server-end-point:" + cert_hash), scheme="Negotiate")
    assert response.status == 200
    # Same client, same ticket source, only the binding differs (MIT's refusal surfaces through
    # pyspnego as an error about context flags, so the status is what is asserted).
    response, _ = krb_lab.raw(tls=True).handshake(client(b"tls-server-end-point:" + bytes(32)), scheme="Negotiate")
    assert response.status == 401
    assert krb_lab.counters.get("auth_handshakes.kerberos") == 1
    assert krb_lab.counters.get("auth_failures.kerberos") == 1


def test_a_principal_of_another_realm_user_is_not_a_user_of_the_host(make_host, realm) -> None:
    kdc, keytab, password = realm
    lab = make_host(realm=kdc.realm, keytab=keytab)  # dora is not among this host's users
    transport = lab.pypsrp(ssl=False, auth="kerberos", user="dora@LAB.TEST", password=password,
                           negotiate_hostname_override=HOSTNAME, negotiate_service="HTTP")
    with pytest.raises(AuthenticationError):
        transport.send(request_envelope())
    assert lab.counters.get("auth_failures.kerberos") == 1
    assert "not a user of this host" in lab.counters.log()[-1]["detail"]



@pytest.mark.parametrize("ssl", [False, True])
def test_negotiate_as_a_local_user_falls_back_to_ntlm_when_the_kdc_is_up(krb_lab, ssl) -> None:
    # alice has no principal in the realm, so the client's SPNEGO init offers NTLM only.
    transport = krb_lab.pypsrp(ssl=ssl, auth="negotiate", user="alice")
    message = request_envelope("Get", "local user")
    assert expected_answer("alice", message)[0] in transport.send(message).decode()
    assert krb_lab.counters.get("auth_handshakes.negotiate") == 1
    assert krb_lab.counters.log()[-1]["mech"] == "ntlm"


def test_credssp_auto_runs_ntlm_inside_spnego_when_the_kdc_is_up(krb_lab) -> None:
    transport = krb_lab.pypsrp(ssl=True, auth="credssp", user="alice", credssp_auth_mechanism="auto")
    message = request_envelope("Get", "credssp auto")
    assert expected_answer("alice", message)[0] in transport.send(message).decode()
    assert krb_lab.counters.get("auth_handshakes.credssp") == 1
