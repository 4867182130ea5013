"""Squid's Negotiate proxy auth in the lab: Kerberos against the lab KDC, and NTLM inside Negotiate, both checked."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import spnego

from tests.integration.lab_proxies.conftest import EchoServer, connect_with_auth, echo_through, logged
from tests.lab._kdc import LabKDC
from tests.lab._squid import SquidProxy

pytestmark = pytest.mark.timeout(60)

USER = "proxy-negotiate"
PROXY_NAME = "proxy.lab.test"


@pytest.fixture(scope="module")
def password() -> str:
    return f"Kn:{secrets.token_urlsafe(12)}"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabKDC]:
    kdc = LabKDC(tmp_path_factory.mktemp("kdc"))
    kdc.start()
    yield kdc
    kdc.stop()


@pytest.fixture(scope="module")
def negotiate_squid(tmp_path_factory: pytest.TempPathFactory, realm: LabKDC, password: str,
                    echo_server: EchoServer) -> Iterator[SquidProxy]:
    realm.add_user(USER, password)
    keytab = realm.add_service(f"HTTP/{PROXY_NAME}")
    # a service the KDC knows but whose key the proxy does not hold: its tickets must be refused
    realm.add_service("HTTP/elsewhere.lab.test")
    squid = SquidProxy(tmp_path_factory.mktemp("squid-negotiate"), auth="negotiate", users={USER: password},
                       keytab=keytab, realm=realm.realm, service_name=f"HTTP/{PROXY_NAME}",
                       krb5_config=realm.krb5_config, allowed_connect_ports=[echo_server.port])
    squid.start()
    yield squid
    squid.stop()


@pytest.fixture()
def kerberos_client_env(realm: LabKDC, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # paths only: the client's GSSAPI finds the lab realm and keeps its tickets in this test's cache
    monkeypatch.setenv("KRB5_CONFIG", str(realm.krb5_config))
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'ccache'}")


def _entries_of(squid: SquidProxy, local_port: int, count: int) -> list[tuple[int, str | None]]:
    """The access-log lines of one client connection, once count of them are written (at transaction end)."""
    return logged(lambda: [(e.http_status, e.user) for e in squid.access_entries() if e.client_port == local_port],
                  count)


def test_squid_negotiate_accepts_a_kerberos_ticket_for_its_own_principal(
        negotiate_squid: SquidProxy, echo_server: EchoServer, realm: LabKDC, password: str,
        kerberos_client_env: None) -> None:
    ctx = spnego.client(f"{USER}@{realm.realm}", password, hostname=PROXY_NAME, service="HTTP",
                        protocol="negotiate")
    result = connect_with_auth(negotiate_squid.port, echo_server.port, scheme="Negotiate", context=ctx)
    try:
        assert ctx.negotiated_protocol == "kerberos"
        # Kerberos needs one leg: the first CONNECT already carries the ticket
        assert result.statuses == [200]
        assert echo_through(result, b"after kerberos") == b"echo:after kerberos"
    finally:
        result.close()
    assert _entries_of(negotiate_squid, result.local_port, 1) == [(200, f"{USER}@{realm.realm}")]


def test_squid_negotiate_refuses_a_ticket_for_another_service(
        negotiate_squid: SquidProxy, echo_server: EchoServer, realm: LabKDC, password: str,
        kerberos_client_env: None) -> None:
    ctx = spnego.client(f"{USER}@{realm.realm}", password, hostname="elsewhere.lab.test", service="HTTP",
                        protocol="kerberos")
    before = len(echo_server.connections)
    result = connect_with_auth(negotiate_squid.port, echo_server.port, scheme="Negotiate", context=ctx)
    assert result.statuses == [407]
    assert len(echo_server.connections) == before


def test_squid_negotiate_accepts_ntlm_inside_negotiate_with_the_right_password(
        negotiate_squid: SquidProxy, echo_server: EchoServer, password: str) -> None:
    ctx = spnego.client(USER, password, hostname=PROXY_NAME, service="HTTP", protocol="negotiate",
                        options=spnego.NegotiateOptions.use_ntlm)
    result = connect_with_auth(negotiate_squid.port, echo_server.port, scheme="Negotiate", context=ctx)
    try:
        assert result.statuses == [407, 200]
        assert echo_through(result, b"after ntlm in negotiate") == b"echo:after ntlm in negotiate"
    finally:
        result.close()
    assert _entries_of(negotiate_squid, result.local_port, 2) == [(407, None), (200, USER)]


def test_squid_negotiate_refuses_ntlm_inside_negotiate_with_a_wrong_password(
        negotiate_squid: SquidProxy, echo_server: EchoServer, password: str) -> None:
    ctx = spnego.client(USER, password[::-1], hostname=PROXY_NAME, service="HTTP", protocol="negotiate",
                        options=spnego.NegotiateOptions.use_ntlm)
    result = connect_with_auth(negotiate_squid.port, echo_server.port, scheme="Negotiate", context=ctx)
    assert result.statuses == [407, 407]


def test_squid_negotiate_refuses_a_forged_token(negotiate_squid: SquidProxy, echo_server: EchoServer) -> None:
    """What ntlm_fake_auth would wave through: a token no acceptor can verify."""

    class Forged:
        complete = False

        def step(self, in_token: bytes | None = None) -> bytes:
            return b"NTLMSSP\x00\x03\x00\x00\x00" + secrets.token_bytes(64)

    result = connect_with_auth(negotiate_squid.port, echo_server.port, scheme="Negotiate",
                               context=Forged())  # type: ignore[arg-type]
    assert result.statuses[-1] == 407
