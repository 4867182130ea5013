"""Fixtures for the simulated host's HTTP layer: a lab CA, hosts answered by an echo service,
and a raw HTTP/1.1 client that holds one TCP connection (as a proxy with affinity would)."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import pathlib
import secrets
import socket
import ssl
import typing as t

import pytest
from pypsrp.wsman import _TransportHTTP

from tests.integration.lab_host._echo import EchoService
from tests.lab._certs import LabCA
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._faults import Faults
from tests.lab._host import WinRMHost

pytestmark = pytest.mark.timeout(30)


@dataclasses.dataclass
class ClientCert:
    cert: pathlib.Path
    key: pathlib.Path
    thumbprint: str


@dataclasses.dataclass
class LabHost:
    host: WinRMHost
    service: EchoService
    config: HostConfig
    ca: LabCA

    @property
    def counters(self) -> Counters:
        return self.host.counters

    @property
    def faults(self) -> Faults:
        return self.host.faults

    def password(self, user: str) -> str:
        return self.config.users[user]

    def pypsrp(self, *, ssl: bool, auth: str, user: str = "alice", password: str | None = None,
               **kwargs: t.Any) -> _TransportHTTP:
        """pypsrp's own HTTP transport, unmodified, pointed at this host."""
        return _TransportHTTP(
            "127.0.0.1", port=self.config.https_port if ssl else self.config.http_port,
            username=user, password=self.password(user) if password is None and user else password,
            ssl=ssl, path="wsman", auth=auth, cert_validation=str(self.ca.cert_path),
            connection_timeout=5, read_timeout=10, **kwargs,
        )

    def raw(self, *, tls: bool, cert: ClientCert | None = None) -> RawClient:
        return RawClient(self, tls=tls, cert=cert)


class RawClient:
    """One HTTP/1.1 connection; http.client reconnects only if the server closed it."""

    def __init__(self, lab: LabHost, *, tls: bool, cert: ClientCert | None = None) -> None:
        self.lab = lab
        if tls:
            ctx = ssl.create_default_context(cafile=str(lab.ca.cert_path))
            if cert is not None:
                ctx.load_cert_chain(str(cert.cert), str(cert.key))
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", lab.config.https_port, context=ctx, timeout=5)
        else:
            self.conn = http.client.HTTPConnection("127.0.0.1", lab.config.http_port, timeout=5)

    def post(self, body: bytes = b"", headers: dict[str, str] | None = None,
             path: str = "/wsman") -> tuple[http.client.HTTPResponse, bytes]:
        all_headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
        all_headers.update(headers or {})
        self.conn.request("POST", path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        return response, response.read()

    def handshake(self, context: t.Any, scheme: str = "Negotiate", body: bytes = b"",
                  headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        """Run a token handshake on this connection; return the last response."""
        token = context.step()
        for _ in range(10):
            extra = dict(headers or {})
            extra["Authorization"] = f"{scheme} {base64.b64encode(token).decode()}"
            response, data = self.post(body, extra)
            offered = response.getheader("WWW-Authenticate") or ""
            if response.status != 401 or not offered.startswith(f"{scheme} "):
                word, _, value = offered.partition(" ")
                if value and word == scheme and not context.complete:
                    context.step(base64.b64decode(value))
                return response, data
            token = context.step(base64.b64decode(offered.split(" ", 1)[1]))
            if token is None:
                return response, data
        raise AssertionError("handshake did not finish in 10 legs")

    def peer_cert(self) -> bytes:
        sock = self.conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        return t.cast(bytes, sock.getpeercert(binary_form=True))

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.create(tmp_path_factory.mktemp("lab-ca"))


@pytest.fixture(scope="session")
def alice_cert(lab_ca: LabCA) -> ClientCert:
    cert, key, thumbprint = lab_ca.issue_client("alice", "alice@localhost")
    return ClientCert(cert, key, thumbprint)


@pytest.fixture
def make_host(lab_ca: LabCA, alice_cert: ClientCert) -> t.Iterator[t.Callable[..., LabHost]]:
    """Start hosts (users alice and bob, random passwords); every one is stopped afterwards."""
    started: list[WinRMHost] = []

    def factory(**overrides: t.Any) -> LabHost:
        config = HostConfig(
            name=overrides.pop("name", "WIN-LAB1"),
            users={"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)},
            cert_map={alice_cert.thumbprint: "alice"},
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        service = EchoService()
        host = WinRMHost(config, ca=lab_ca, service=service)
        host.start()
        started.append(host)
        return LabHost(host, service, config, lab_ca)

    yield factory
    for host in started:
        host.stop()


@pytest.fixture
def lab(make_host: t.Callable[..., LabHost]) -> LabHost:
    return make_host()


def connect_raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)
