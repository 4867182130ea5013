"""A task's CreatePipeline message from a template of its shape: pypsrp's own bytes, written out once per shape.

pypsrp builds every CreatePipeline message (MS-PSRP 2.2.2.10) from nothing: it deep-copies the commands to split
them into statements, serializes some 150 CLIXML elements and writes them out. That is the pin daemon's largest
cost per task (about 1.7 ms of a raw task's 8), for a message in which only the scripts' text and the arguments
differ from one task to the next. No library keeps such a template (pypsrp has no cache; psrpcore, which does
its own serializing, would replace the whole engine), so this does, around pypsrp's serializer:

- A pipeline's *shape* is everything the serializer reads except those strings: the classes and attribute values
  of the message's objects, walked generically, so an attribute added by a later pypsrp is part of the shape
  rather than missed. Strings elsewhere (type names, a parameter's name) are part of it too. An object's property
  descriptions, which its class's __init__ builds from constants, count by their names.
- A shape's template is pypsrp's own serialization of the message with each string replaced by a marker, split
  at the markers. A task's message is the template joined with its strings, each escaped by pypsrp's serializer
  and ElementTree exactly as they are inside the whole message (their escaping depends on the string alone).
- What the walk does not know (a host with a raw UI, whose data the serializer reads from the host object; an
  argument that is not a non-empty str) is serialized by pypsrp as before, as is every other message.

tests/unit/plugins/plugin_utils/test_pipeline_template.py checks the bytes against pypsrp's for every kind of
string and shape; a change of pypsrp that made them differ fails it.
"""

from __future__ import annotations

import typing as t
import xml.etree.ElementTree as ET

from ._templates import UNKNOWN, ShapeCache, Template, Unshaped, marker

# Guarded as the engine's other imports are (this module loads without pypsrp); _session, its only user, reports
# a missing pypsrp before any pool exists.
try:
    from pypsrp.complex_objects import Command, CommandParameter, ComplexObject, ObjectMeta
    from pypsrp.host import PSHost
    from pypsrp.messages import CreatePipeline
except ImportError:  # pragma: no cover
    _SLOTS: dict[type, str] = {}
else:
    # The strings a task brings, by the class holding them: a command's text, a parameter's value.
    _SLOTS = {Command: "cmd", CommandParameter: "value"}
_ATOMS = (bool, int, float, str, bytes, type(None))
_MAX_SHAPES = 64  # a daemon sees a handful (raw, module, restore, transfers); a bound keeps a bad client harmless
# A ComplexObject's property descriptions, built by its class's __init__ from constants: their names are their shape.
_DESCRIPTIONS = frozenset({"_extended_properties", "_adapted_properties", "_property_sets"})


def _shape(value: t.Any, slots: list[tuple[t.Any, str, str]], seen: dict[int, int]) -> t.Hashable:
    """A hashable description of `value` without the task's strings (appended to `slots` as (owner, attr, text))."""
    if isinstance(value, _ATOMS):
        return type(value), value
    if isinstance(value, type):  # an ObjectMeta's object class
        return "class", value
    key = id(value)
    if key in seen:  # an object met twice is serialized as a reference: the shape says which
        return "ref", seen[key]
    seen[key] = len(seen)
    if isinstance(value, (list, tuple)):
        return type(value), tuple(_shape(v, slots, seen) for v in value)
    if isinstance(value, dict):
        return "dict", tuple((_shape(k, slots, seen), _shape(v, slots, seen)) for k, v in value.items())
    if isinstance(value, PSHost):
        # HostInfo reads only whether the host, its UI and its raw UI are null; a raw UI's data it reads in full
        ui = value.ui
        if ui is not None and ui.raw_ui is not None:
            raise Unshaped("a host with a raw UI")
        return "host", ui is None
    if isinstance(value, (ComplexObject, ObjectMeta)):
        slot_attr = _SLOTS.get(type(value))
        items: list[t.Hashable] = [t.cast(t.Hashable, type(value))]
        for name, attr in vars(value).items():
            if name == slot_attr:
                if not isinstance(attr, str) or not attr:  # "" is written as an empty element, not as text
                    raise Unshaped(f"{type(value).__name__}.{name} is not a non-empty str")
                slots.append((value, name, attr))
                items.append((name, "slot"))
            elif name in _DESCRIPTIONS:
                items.append((name, tuple(prop for prop, _meta in attr)))
            else:
                items.append((name, _shape(attr, slots, seen)))
        return tuple(items)
    raise Unshaped(f"a {type(value).__name__}")


def _text(serializer: t.Any, value: str) -> bytes:
    """`value` as pypsrp and ElementTree write it as an element's text."""
    written: bytes = ET.tostring(serializer.serialize(value), encoding="utf-8", method="xml")
    if not (written.startswith(b"<S>") and written.endswith(b"</S>")):
        raise Unshaped(f"pypsrp wrote a string as {written[:20]!r}")
    return written[3:-4]


class TemplatedSerializer:
    """pypsrp's Serializer, with CreatePipeline messages written from their shape's template.

    Installed as the fragmenter's serializer of one Runspace Pool (install()); everything else is pypsrp's.
    """

    _templates: t.ClassVar[ShapeCache] = ShapeCache(_MAX_SHAPES)  # shared by every pool: the shapes are the same

    def __init__(self, inner: t.Any) -> None:
        self._inner = inner
        self.hits = 0  # messages written from a template (the tests read it)

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._inner, name)  # cipher, deserialize, ...: pypsrp's

    def serialize(self, value: t.Any, metadata: t.Any = None, parent: t.Any = None, clear: bool = True) -> t.Any:
        if isinstance(value, CreatePipeline) and metadata is None and parent is None and clear:
            try:
                written = self._from_template(value)
            except Unshaped:
                written = None
            if written is not None:
                self.hits += 1
                return written  # bytes: pypsrp's Message.pack sends bytes as they are
        return self._inner.serialize(value, metadata, parent, clear)

    def _from_template(self, message: CreatePipeline) -> bytes | None:
        slots: list[tuple[t.Any, str, str]] = []
        shape = _shape(message, slots, {})
        template = self._templates.get(shape)  # one look-up: another session's thread may clear the cache
        if template is UNKNOWN:
            template = self._build(message, slots)
            self._templates.put(shape, template)
        if template is None:
            return None
        # each escaped once, however often written
        return t.cast(Template, template).join([_text(self._inner, text) for _owner, _name, text in slots])

    def _build(self, message: CreatePipeline, slots: list[tuple[t.Any, str, str]]) -> Template | None:
        """pypsrp's bytes for `message` with a marker for each string, split at the markers (None: not usable)."""
        for index, (owner, name, _text_value) in enumerate(slots):
            setattr(owner, name, marker(index))
        try:
            element = self._inner.serialize(message)
        finally:
            for owner, name, text in slots:
                setattr(owner, name, text)
        written = ET.tostring(element, encoding="utf-8", method="xml")
        # every string written as text (the first statement's commands twice: in Cmds and again in ExtraCmds)
        return Template.split(written, len(slots), once=False)


def install(pool: t.Any) -> TemplatedSerializer:
    """Have `pool` (a pypsrp RunspacePool) write its CreatePipeline messages from templates."""
    fragmenter = pool._fragmenter  # pypsrp keeps the serializer its messages are packed with here, and only here
    if not isinstance(fragmenter.serializer, TemplatedSerializer):
        fragmenter.serializer = TemplatedSerializer(fragmenter.serializer)
    return t.cast(TemplatedSerializer, fragmenter.serializer)
