"""WS-Management envelopes from a template of their shape: pypsrp's own bytes, written out once per shape.

pypsrp builds every WS-Management request (MS-WSMV 2.2.4) from nothing: some fifteen ElementTree elements for
the header and the body, then ``ET.tostring`` walks them to collect namespaces and write them out. A warm task
sends three (Command, Receive, Signal) that differ from the previous task's only in the message id, the command
id and, for the Command, its arguments; writing them was about a tenth of the pin daemon's CPU per task. No
library keeps such a template (pypsrp has no cache; psrpcore, which writes its own messages, would replace the
engine), so this does, in ``TemplatedWSMan.invoke``:

- A request's *shape* is everything of it but its values: the action, resource URI, option and selector sets,
  timeout and the WSMan fields the header carries (locale, envelope size, endpoint, session id), and the body's
  element tree without its attribute values and texts.
- A shape's template is pypsrp's own envelope for the request (built by pypsrp's ``_create_header``, written by
  ``ET.tostring`` as pypsrp's ``invoke`` writes it) with the message id and each body value replaced by a marker,
  split at the markers. A request is the template joined with its values.
- A value is written as it is only where ElementTree would write it unchanged: ASCII without ``& < > "`` or
  control characters (ids, base64, stream names and signal codes are). Any other value, an element with a tail,
  or a non-str value sends the request through pypsrp's ``invoke`` as before.

What the request does once written (send, WSManFault on error, the RelatesTo check) is pypsrp's ``invoke``'s,
restated below because pypsrp writes and sends in one method.
tests/unit/plugins/plugin_utils/test_envelope_template.py checks the bytes against pypsrp's for every request
the engine sends, and that anything else falls back.
"""

from __future__ import annotations

import re
import typing as t
import uuid
import xml.etree.ElementTree as ET

from ._templates import UNKNOWN, ShapeCache, Template, Unshaped, marker

# Guarded as the engine's other imports are (this module loads without pypsrp); _session, its only user, reports
# a missing pypsrp before any pool exists.
try:
    from pypsrp.exceptions import WinRMError, WinRMTransportError
    from pypsrp.wsman import NAMESPACES, WSMan
except ImportError:  # pragma: no cover
    WSMan = object  # type: ignore[assignment,misc]
    NAMESPACES = {}

_MAX_SHAPES = 32  # a session sends a handful (Command, Receive, Send, Signal, Delete); a bound keeps it small
_PLAIN = re.compile(r"[\x20-\x21\x23-\x25\x27-\x3b\x3d\x3f-\x7e]*")  # printable ASCII less " & < >


def _set_key(wsman_set: t.Any) -> t.Hashable:
    if wsman_set is None:
        return None
    return (type(wsman_set), wsman_set.element_name, wsman_set.child_element_name, wsman_set.must_understand,
            tuple((name, str(value), tuple(attributes.items())) for name, value, attributes in wsman_set.values))


def _body_shape(element: ET.Element, values: list[str]) -> t.Hashable:
    """`element`'s tree without its attribute values and texts (appended to `values`, in document order)."""
    if element.tail:
        raise Unshaped("an element with a tail")
    for value in element.attrib.values():
        if not isinstance(value, str) or not _PLAIN.fullmatch(value):
            raise Unshaped("an attribute value ElementTree would escape")
        values.append(value)
    text = element.text
    if text is not None and not isinstance(text, str):
        raise Unshaped("a text that is not a str")
    if text:  # "" and None are written alike (an empty element): the shape says which, no value is added
        if not _PLAIN.fullmatch(text):
            raise Unshaped("a text ElementTree would escape")
        values.append(text)
    return (element.tag, tuple(element.attrib), bool(text), tuple(_body_shape(child, values) for child in element))


def _marked_copy(element: ET.Element, counter: list[int]) -> ET.Element:
    """A copy of `element` with each attribute value and non-empty text replaced by its marker."""
    copy = ET.Element(element.tag)
    for name in element.attrib:
        counter[0] += 1
        copy.set(name, marker(counter[0]))
    if element.text:
        counter[0] += 1
        copy.text = marker(counter[0])
    for child in element:
        copy.append(_marked_copy(child, counter))
    return copy


class TemplatedWSMan(WSMan):
    """pypsrp's WSMan, with each request written from its shape's template (see the module's docstring)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._templates = ShapeCache(_MAX_SHAPES)  # its own: the session's id is part of every shape
        self.hits = 0  # requests written from a template (the tests read it)

    def invoke(self, action: str, resource_uri: str, resource: ET.Element | None, option_set: t.Any = None,
               selector_set: t.Any = None, timeout: int | None = None, *,
               retries_on_read_timeout: int = 0) -> ET.Element:
        message_id = str(uuid.uuid4()).upper()
        try:
            xml = self._write(message_id, action, resource_uri, resource, option_set, selector_set, timeout)
        except Unshaped:
            return super().invoke(action, resource_uri, resource, option_set, selector_set, timeout,
                                  retries_on_read_timeout=retries_on_read_timeout)
        self.hits += 1
        # From here on pypsrp's invoke (0.9): the HTTP timeout outlasts the operation timeout, a WSManFault in an
        # error response is raised as pypsrp raises it (without chaining the HTTP error, which carries the same
        # fault), and the response must relate to this request.
        http_timeout = timeout + 2 if timeout else None
        try:
            response = self.transport.send(xml, retries_on_read_timeout=retries_on_read_timeout,
                                           timeout=http_timeout)
        except WinRMTransportError as err:
            try:
                raise self._parse_wsman_fault(err.response_text) from None
            except ET.ParseError:
                raise err from None
        response_xml = ET.fromstring(response)
        relates_to_et = response_xml.find("s:Header/wsa:RelatesTo", namespaces=NAMESPACES)
        relates_to = relates_to_et.text if relates_to_et is not None else ""
        if f"uuid:{message_id}" != relates_to:
            raise WinRMError("Received related id does not match related expected message id: "
                             f"Sent: uuid:{message_id}, Received: {relates_to}")
        return response_xml

    def _write(self, message_id: str, action: str, resource_uri: str, resource: ET.Element | None,
               option_set: t.Any, selector_set: t.Any, timeout: int | None) -> bytes:
        values = [message_id]
        body = _body_shape(resource, values) if resource is not None else None
        shape = (action, resource_uri, _set_key(option_set), _set_key(selector_set), timeout, body,
                 self.data_locale, self.locale, self.max_envelope_size, self.operation_timeout,
                 str(self.session_id), self.transport.endpoint)
        template = self._templates.get(shape)
        if template is UNKNOWN:
            template = self._build(action, resource_uri, resource, option_set, selector_set, timeout, len(values))
            self._templates.put(shape, template)
        if template is None:
            raise Unshaped("a shape no template can serve")
        return t.cast(Template, template).join([value.encode("ascii") for value in values])

    def _build(self, action: str, resource_uri: str, resource: ET.Element | None, option_set: t.Any,
               selector_set: t.Any, timeout: int | None, count: int) -> Template | None:
        """pypsrp's envelope for the request with a marker for each value, split at the markers (None: no template
        can serve the shape)."""
        s = NAMESPACES["s"]
        envelope = ET.Element("{%s}Envelope" % s)  # as pypsrp's invoke builds it
        _message_id, header = self._create_header(action, resource_uri, option_set, selector_set, timeout)
        header.find("{%s}MessageID" % NAMESPACES["wsa"]).text = f"uuid:{marker(0)}"  # type: ignore[union-attr]
        envelope.append(header)
        body = ET.SubElement(envelope, "{%s}Body" % s)
        if resource is not None:
            body.append(_marked_copy(resource, [0]))
        written = ET.tostring(envelope, encoding="utf-8", method="xml")
        return Template.split(written, count, once=True)  # each value written once, where the request holds it
