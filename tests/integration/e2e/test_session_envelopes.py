"""A real Session's WS-Management requests, written from templates: each one byte for byte what pypsrp would write.

The Session's WSMan is a TemplatedWSMan that also writes every request as pypsrp's WSMan.invoke does (the same
message id held for it) and keeps both; the lab counts the requests it received, so none went past the check.
"""

from __future__ import annotations

import threading
import typing as t
import uuid
import xml.etree.ElementTree as ET
from unittest import mock

import pytest
from pypsrp.wsman import NAMESPACES

from ansible_collections.pinned.winrm.plugins.plugin_utils import _session
from ansible_collections.pinned.winrm.plugins.plugin_utils._envelope_template import TemplatedWSMan

from .conftest import E2E, direct_session


class CheckedWSMan(TemplatedWSMan):
    """Keeps (action, template's bytes, pypsrp's bytes) of each request it writes from a template."""

    written: t.ClassVar[list[tuple[str, bytes, bytes]]] = []

    def _write(self, message_id: str, action: str, resource_uri: str, resource: ET.Element | None,
               option_set: t.Any, selector_set: t.Any, timeout: int | None) -> bytes:
        ours = super()._write(message_id, action, resource_uri, resource, option_set, selector_set, timeout)
        held, real, writer = uuid.UUID(message_id), uuid.uuid4, threading.current_thread()
        # held for this thread only: the lab may serve from threads of this process
        with mock.patch.object(uuid, "uuid4", lambda: held if threading.current_thread() is writer else real()):
            # how pypsrp's invoke (0.9) builds and writes a request
            envelope = ET.Element("{%s}Envelope" % NAMESPACES["s"])
            _message_id, header = self._create_header(action, resource_uri, option_set, selector_set, timeout)
            envelope.append(header)
            body = ET.SubElement(envelope, "{%s}Body" % NAMESPACES["s"])
            if resource is not None:
                body.append(resource)
            theirs = ET.tostring(envelope, encoding="utf-8", method="xml")
        self.written.append((action.rsplit("/", 1)[1], ours, theirs))
        return ours


def _requests(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("wsman.") and k.count(".") == 1)


@pytest.mark.compat
def test_every_request_of_a_sessions_life_is_written_from_its_template_as_pypsrp_writes_it(
        e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_session, "TemplatedWSMan", CheckedWSMan)
    monkeypatch.setattr(CheckedWSMan, "written", [])
    session = direct_session(e2e)
    before = e2e.counters()
    try:
        session.open()
        assert session.run("Write-Output 'one'").stdout.strip() == b"one"
        assert session.run("$input | Write-Output", input_data=["a", "b"]).stdout.split() == [b"a", b"b"]
        session.put_file(iter([b"x" * 70_000]), r"C:\Windows\Temp\envelopes.txt")
        assert session.run("Write-Output 'two'").rc == 0
    finally:
        session.close()
    received = _requests(e2e.counters()) - _requests(before)
    kinds = [kind for kind, _ours, _theirs in CheckedWSMan.written]
    assert set(kinds) >= {"Create", "Receive", "Command", "Send", "Signal", "Delete"}
    assert [kind for kind, ours, theirs in CheckedWSMan.written if ours != theirs] == []
    assert received == len(kinds)
