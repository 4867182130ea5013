"""The lab's throwaway Kerberos realm issues real tickets that a keytab-backed acceptor accepts."""

from __future__ import annotations

import pathlib
import secrets
import socket
import typing as t

import pytest

spnego = pytest.importorskip("spnego")

import krb5  # noqa: E402

from tests.lab._kdc import LabKDC  # noqa: E402

# pyspnego gets tickets through python-krb5 (its errors) and accepts through GSSAPI (SpnegoError).
REFUSED = (spnego.exceptions.SpnegoError, krb5.Krb5Error)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def kdc(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LabKDC]:
    realm = LabKDC(tmp_path_factory.mktemp("kdc"))
    realm.start()
    yield realm
    realm.stop()


@pytest.fixture
def krb5_env(kdc: LabKDC, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """Point this process's Kerberos library at the lab realm; return a keytab for HTTP/win-lab1."""
    for key, value in kdc.env().items():
        monkeypatch.setenv(key, value)
    keytab = kdc.add_service("HTTP/win-lab1.lab.test")
    monkeypatch.setenv("KRB5_KTNAME", f"FILE:{keytab}")
    monkeypatch.setenv("KRB5RCACHETYPE", "none")
    return keytab


def _handshake(username: str, password: str, hostname: str = "win-lab1.lab.test") -> tuple[t.Any, t.Any]:
    client = spnego.client(username, password, hostname=hostname, service="HTTP", protocol="kerberos")
    server = spnego.server(protocol="kerberos")
    token = client.step()
    for _ in range(5):
        token = server.step(token)
        if token is not None:
            token = client.step(token)
        if server.complete and client.complete:
            break
    return client, server


def test_a_user_gets_a_ticket_the_service_keytab_accepts(kdc: LabKDC, krb5_env: pathlib.Path) -> None:
    password = secrets.token_urlsafe(12)
    kdc.add_user("alice", password)
    client, server = _handshake("alice", password)
    assert client.complete and server.complete
    assert server.client_principal == "alice@LAB.TEST"
    # The session key is shared: what the client wraps, the acceptor unwraps.
    assert server.unwrap(client.wrap(b"over kerberos").data).data == b"over kerberos"
    # The ticket came from this KDC: its log names the user and the service.
    log = kdc.log_path.read_text()
    assert "alice@LAB.TEST for krbtgt/LAB.TEST@LAB.TEST" in log
    assert "alice@LAB.TEST for HTTP/win-lab1.lab.test@LAB.TEST" in log


def test_a_wrong_password_gets_no_ticket(kdc: LabKDC, krb5_env: pathlib.Path) -> None:
    kdc.add_user("bob", secrets.token_urlsafe(12))
    with pytest.raises(REFUSED):
        _handshake("bob", "not-the-password")


def test_a_service_without_a_principal_cannot_be_reached(kdc: LabKDC, krb5_env: pathlib.Path) -> None:
    password = secrets.token_urlsafe(12)
    kdc.add_user("carol", password)
    with pytest.raises(REFUSED):
        _handshake("carol", password, hostname="unknown-host.lab.test")


def test_changing_a_password_invalidates_the_old_one(kdc: LabKDC, krb5_env: pathlib.Path) -> None:
    old, new = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    kdc.add_user("dave", old)
    kdc.add_user("dave", new)
    client, server = _handshake("dave", new)
    assert server.client_principal == "dave@LAB.TEST"
    with pytest.raises(REFUSED):
        _handshake("dave", old)


def test_kinit_fills_the_lab_cache_and_passwords_stay_out_of_the_realm_files(kdc: LabKDC) -> None:
    password = secrets.token_urlsafe(12)
    kdc.add_user("erin", password)
    kdc.kinit("erin", password)
    assert kdc.ccache.stat().st_size > 0
    assert oct(kdc.workdir.stat().st_mode & 0o777) == "0o700"
    for path in kdc.workdir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    env = kdc.env()
    assert set(env) == {"KRB5_CONFIG", "KRB5CCNAME"}
    conf = pathlib.Path(env["KRB5_CONFIG"]).read_text()
    assert f"kdc = 127.0.0.1:{kdc.port}" in conf and "dns_canonicalize_hostname = false" in conf


def test_stop_frees_the_kdc_port(tmp_path: pathlib.Path) -> None:
    realm = LabKDC(tmp_path / "kdc2")
    realm.start()
    port = realm.port
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    realm.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
