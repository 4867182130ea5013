"""WS-Management requests written from templates: byte for byte what pypsrp's WSMan.invoke writes, or pypsrp's.

Each request goes to a recording transport through pypsrp's own WSMan and through TemplatedWSMan with the same
message id (uuid4 is held for the call); the bytes must be equal. The transport answers each request with an
envelope relating to the message id it read from it.
"""

from __future__ import annotations

import base64
import re
import typing as t
import uuid
import xml.etree.ElementTree as ET

import pytest
from pypsrp.exceptions import WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.wsman import NAMESPACES, OptionSet, SelectorSet, WSMan

from ansible_collections.pinned.winrm.plugins.plugin_utils._envelope_template import TemplatedWSMan

RSP = NAMESPACES["rsp"]
SHELL_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
ACTION = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"


class RecordingTransport:
    """Records each request and answers it with an envelope relating to its MessageID."""

    endpoint = "https://win01.example:5986/wsman"

    def __init__(self, fault: str | None = None) -> None:
        self.sent: list[bytes] = []
        self.fault = fault

    def send(self, xml: bytes, retries_on_read_timeout: int = 0, timeout: int | None = None) -> bytes:
        self.sent.append(xml)
        if self.fault is not None:
            raise WinRMTransportError("http", 500, self.fault)
        # read, not parsed: a request with a control character is no XML, and pypsrp sends it all the same
        message_id = re.search(rb":MessageID>([^<]+)</", xml).group(1).decode()  # type: ignore[union-attr]
        return (f'<s:Envelope xmlns:s="{NAMESPACES["s"]}" xmlns:a="{NAMESPACES["wsa"]}"><s:Header>'
                f"<a:RelatesTo>{message_id}</a:RelatesTo></s:Header><s:Body /></s:Envelope>").encode()


def pair(fault: str | None = None) -> tuple[WSMan, TemplatedWSMan]:
    plain = WSMan("win01.example", ssl=True, auth="basic", username="u", password="p")
    ours = TemplatedWSMan("win01.example", ssl=True, auth="basic", username="u", password="p")
    ours.session_id = plain.session_id
    plain.transport, ours.transport = RecordingTransport(fault), RecordingTransport(fault)  # type: ignore[assignment]
    return plain, ours


def both(monkeypatch: pytest.MonkeyPatch, plain: WSMan, ours: TemplatedWSMan, *request: t.Any,
         **kwargs: t.Any) -> tuple[bytes, bytes]:
    """The bytes pypsrp and the template write for `request`, with the same message id."""
    held = uuid.uuid4()
    monkeypatch.setattr(uuid, "uuid4", lambda: held)
    plain.invoke(*request, **kwargs)
    ours.invoke(*request, **kwargs)
    monkeypatch.undo()
    return plain.transport.sent[-1], ours.transport.sent[-1]  # type: ignore[attr-defined]


def selectors(shell_id: str) -> SelectorSet:
    selector_set = SelectorSet()
    selector_set.add_option("ShellId", shell_id)
    return selector_set


def receive(command_id: str) -> ET.Element:
    body = ET.Element("{%s}Receive" % RSP)
    ET.SubElement(body, "{%s}DesiredStream" % RSP, attrib={"CommandId": command_id}).text = "stdout"
    return body


def command(command_id: str, arguments: bytes) -> ET.Element:
    body = ET.Element("{%s}CommandLine" % RSP, CommandId=command_id)
    ET.SubElement(body, "{%s}Command" % RSP).text = ""
    ET.SubElement(body, "{%s}Arguments" % RSP).text = base64.b64encode(arguments).decode()
    return body


def signal(command_id: str, code: str) -> ET.Element:
    body = ET.Element("{%s}Signal" % RSP, attrib={"CommandId": command_id})
    ET.SubElement(body, "{%s}Code" % RSP).text = code
    return body


def create(creation_xml: bytes) -> tuple[ET.Element, OptionSet]:
    shell = ET.Element("{%s}Shell" % RSP, ShellId=str(uuid.uuid4()).upper())
    ET.SubElement(shell, "{%s}InputStreams" % RSP).text = "stdin pr"
    ET.SubElement(shell, "{%s}OutputStreams" % RSP).text = "stdout"
    ET.SubElement(shell, "creationXml", xmlns="http://schemas.microsoft.com/powershell").text = \
        base64.b64encode(creation_xml).decode()
    options = OptionSet()
    options.add_option("protocolversion", "2.3", {"MustComply": "true"})
    return shell, options


def requests() -> list[tuple[t.Any, ...]]:
    shell = str(uuid.uuid4()).upper()
    shell_body, shell_options = create(b"\x00\x01 creation " * 40)
    return [
        (ACTION + "Receive", SHELL_URI, receive(str(uuid.uuid4()).upper()), None, selectors(shell), 20),
        (ACTION + "Command", SHELL_URI, command(str(uuid.uuid4()).upper(), b"pipeline" * 500), None,
         selectors(shell)),
        (ACTION + "Signal", SHELL_URI, signal(str(uuid.uuid4()).upper(), "powershell/signal/crtl_c"), None,
         selectors(shell)),
        ("http://schemas.xmlsoap.org/ws/2004/09/transfer/Create", SHELL_URI, shell_body, shell_options),
        ("http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete", SHELL_URI, None, None, selectors(shell)),
    ]


@pytest.mark.compat
def test_every_request_the_engine_sends_is_written_as_pypsrp_writes_it_and_from_its_template(monkeypatch) -> None:
    plain, ours = pair()
    for request in requests():
        theirs, mine = both(monkeypatch, plain, ours, *request)
        assert mine == theirs, request[0]
    assert ours.hits == 5 and len(ours._templates) == 5


def test_the_next_request_of_a_shape_fills_the_same_template_with_its_own_values(monkeypatch) -> None:
    plain, ours = pair()
    for _ in range(3):  # new command, shell and message ids each time, and arguments of another length
        for request in requests():
            theirs, mine = both(monkeypatch, plain, ours, *request)
            assert mine == theirs
    # the shell id is part of the selector set, so of the shape: one template per shell
    assert ours.hits == 15
    first, second = (both(monkeypatch, plain, ours, ACTION + "Receive", SHELL_URI, receive(c), None,
                          selectors("S1"), 20) for c in ("A1", "B2"))
    assert first[1] == first[0] and second[1] == second[0] and first[1] != second[1]
    assert ours.hits == 17


@pytest.mark.parametrize("value", ["a&b", "<x>", 'say "hi"', "line\nbreak", "tab\there", "caf\u00e9", "\x01"])
@pytest.mark.parametrize("where", ["text", "attribute"])
def test_a_value_elementtree_would_escape_is_written_by_pypsrp(monkeypatch, value: str, where: str) -> None:
    plain, ours = pair()
    body = receive(value) if where == "attribute" else signal("C1", value)
    theirs, mine = both(monkeypatch, plain, ours, ACTION + "Signal", SHELL_URI, body, None, selectors("S1"))
    assert mine == theirs and ours.hits == 0


@pytest.mark.parametrize("case", ["tail", "empty text", "no text"])
def test_tails_and_empty_elements_are_written_as_pypsrp_writes_them(monkeypatch, case: str) -> None:
    plain, ours = pair()
    body = signal("C1", "code")
    code = body.find("{%s}Code" % RSP)
    assert code is not None
    if case == "tail":
        code.tail = "after"
    else:
        code.text = "" if case == "empty text" else None
    theirs, mine = both(monkeypatch, plain, ours, ACTION + "Signal", SHELL_URI, body, None, selectors("S1"))
    assert mine == theirs
    assert ours.hits == (0 if case == "tail" else 1)


def test_a_settings_change_of_the_wsman_is_a_new_shape(monkeypatch) -> None:
    plain, ours = pair()
    request = (ACTION + "Receive", SHELL_URI, receive("C1"), None, selectors("S1"), 20)
    both(monkeypatch, plain, ours, *request)
    for wsman in (plain, ours):
        wsman.update_max_payload_size(153600)  # as a session does after reading the host's MaxEnvelopeSizekb
        wsman.locale = "de-DE"
    theirs, mine = both(monkeypatch, plain, ours, *request)
    assert mine == theirs and b"de-DE" in mine and b"153600" in mine
    assert len(ours._templates) == 2


def test_a_response_to_another_request_is_refused_as_pypsrp_refuses_it(monkeypatch) -> None:
    _plain, ours = pair()
    answer = ours.transport.send  # type: ignore[attr-defined]
    monkeypatch.setattr(ours.transport, "send", lambda xml, **kw: answer(xml.replace(b"uuid:", b"uuid:0"), **kw))
    with pytest.raises(WinRMError, match="Received related id does not match"):
        ours.invoke(*requests()[0])


def test_a_wsman_fault_in_an_error_response_is_raised_as_pypsrp_raises_it() -> None:
    fault = (f'<s:Envelope xmlns:s="{NAMESPACES["s"]}" xmlns:f="{NAMESPACES["wsmanfault"]}"><s:Body><s:Fault>'
             '<s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text>shell gone</s:Text></s:Reason>'
             '<s:Detail><f:WSManFault Code="2150858843" Machine="win01"><f:Message>The shell was not found'
             '</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>')
    errors = []
    for wsman in pair(fault):
        with pytest.raises(WSManFaultError) as raised:
            wsman.invoke(*requests()[0])
        errors.append((raised.value.code, raised.value.machine, raised.value.reason))
    assert errors[0] == errors[1] == (2150858843, "win01", "The shell was not found")
