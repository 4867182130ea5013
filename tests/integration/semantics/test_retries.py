"""reconnection_retries against the lab host: what is resent is what the host provably did not process.

A refused connection (nothing listening yet) and HTTP 503 (the lab answers as HTTP.sys does, before
WinRM sees the message) are retried with ansible_psrp_reconnection_retries; the lab counts the pipelines
it began to run, so a retry that ran a command twice would show.
"""

from __future__ import annotations

import socket
import threading
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError, SessionOpenError, TransportError
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = [pytest.mark.timeout(120)]


def _spec(lab_description: dict[str, t.Any], host: dict[str, t.Any], **extra: t.Any) -> t.Any:
    user = next(u for u in host["users"] if u.get("kind") == "local")
    return build_spec({"remote_addr": host["address"], "port": host["https_port"], "protocol": "https",
                       "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
                       "ca_cert": lab_description["ca_cert"], "reconnection_backoff": 0, **extra})


class Events:
    """The session's event sink, kept for the test."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, kind: str, detail: str) -> None:
        self.seen.append((kind, detail))

    def retries(self) -> list[str]:
        return [detail for kind, detail in self.seen if kind == "retry"]


def _started(lab: t.Any, host: dict[str, t.Any]) -> int:
    return int(lab.host_counters(host["name"]).get("pipelines_started", 0))


def test_503_answers_are_retried_and_the_command_runs_once(lab, lab_description, lab_host) -> None:
    events = Events()
    session = Session(_spec(lab_description, lab_host, reconnection_retries=2), events=events)
    try:
        session.ensure_ready()
        before = _started(lab, lab_host)
        lab.set_faults(lab_host["name"], http_status_next=[503, 503])
        assert session.run("'after two 503s'").stdout == b"after two 503s"
        assert _started(lab, lab_host) - before == 1
        assert len(events.retries()) == 2 and "503" in events.retries()[0]
    finally:
        lab.clear_faults(lab_host["name"])
        session.close()


def test_without_retries_a_503_fails_the_task_and_runs_nothing(lab, lab_description, lab_host) -> None:
    session = Session(_spec(lab_description, lab_host))
    try:
        session.ensure_ready()
        before = _started(lab, lab_host)
        lab.set_faults(lab_host["name"], http_status_next=[503])
        with pytest.raises(HostError, match="503.*ansible_psrp_reconnection_retries") as err:
            session.run("'never'")
        assert not isinstance(err.value, SessionOpenError)
        assert _started(lab, lab_host) == before
    finally:
        lab.clear_faults(lab_host["name"])
        session.close()


class _LateListener:
    """A port that refuses connections until `listen()`, then relays each connection to the lab host."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # bound, not listening: the kernel refuses every connection
        self.port = self.sock.getsockname()[1]
        self.listening = False

    def listen(self) -> None:
        if not self.listening:
            self.listening = True
            self.sock.listen(8)
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_refused_connection_is_retried(lab, lab_description, lab_host) -> None:
    late = _LateListener(lab_host["https_port"])
    events = Events()

    def on_event(kind: str, detail: str) -> None:
        events(kind, detail)
        if kind == "retry":
            late.listen()  # the host comes up between two attempts: held by the event, not by a clock

    spec = _spec(lab_description, lab_host, port=late.port, reconnection_retries=3)
    session = Session(spec, events=on_event)
    try:
        assert session.ensure_ready() == "opened"
        assert session.run("'reached'").stdout == b"reached"
        assert len(events.retries()) == 1 and "Could not connect" in events.retries()[0]
    finally:
        session.close()
        late.close()


def test_without_retries_a_refused_connection_is_unreachable_at_once(lab, lab_description, lab_host) -> None:
    late = _LateListener(lab_host["https_port"])
    try:
        session = Session(_spec(lab_description, lab_host, port=late.port))
        with pytest.raises(TransportError, match="Could not connect"):
            session.ensure_ready()
    finally:
        late.close()
