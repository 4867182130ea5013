"""A CreatePipeline message written from its shape's template is byte for byte the message pypsrp writes.

Every comparison is against pypsrp's own serializer on the same message objects, so a pypsrp that wrote a message
differently would fail here before a host saw a wrong byte.
"""

from __future__ import annotations

import random
import typing as t
import uuid
import xml.etree.ElementTree as ET

import pytest
from pypsrp.complex_objects import (
    ApartmentState,
    Color,
    Command,
    CommandParameter,
    Coordinates,
    HostInfo,
    Pipeline,
    RemoteStreamOptions,
    Size,
)
from pypsrp.host import PSHost, PSHostRawUserInterface, PSHostUserInterface
from pypsrp.messages import CreatePipeline, Destination, Message
from pypsrp.powershell import Fragmenter, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

from ansible_collections.pinned.winrm.plugins.plugin_utils._pipeline_template import TemplatedSerializer, install

RESTORE = "try { __pinned_restore_0123 'nonce' 'seal' } catch { 'nonce recycle: ' + $_.Exception.Message }"
HOST = PSHost(None, None, False, "Ansible PSRP Host", None, PSHostUserInterface(), None)  # as _session builds it


def create_pipeline(scripts: t.Sequence[str], arguments: t.Sequence[t.Any] = (), *, named: bool = False,
                    local_scope: bool = True, no_input: bool = True, host: PSHost | None = HOST) -> CreatePipeline:
    """The message PowerShell.begin_invoke sends for these statements (the arguments go to the first)."""
    commands = []
    for index, script in enumerate(scripts):
        command = Command(cmd=script, is_script=True, use_local_scope=local_scope, protocol_version="2.3")
        if index == 0:
            for n, value in enumerate(arguments):
                command.args.append(CommandParameter(name=f"p{n}" if named else None, value=value))
        command.end_of_statement = index < len(scripts) - 1
        commands.append(command)
    pipeline = Pipeline(is_nested=False, cmds=commands, history=None, redirect_err_to_out=False)
    return CreatePipeline(no_input, ApartmentState(value=2), RemoteStreamOptions(value=15), False,
                          HostInfo(host=host), pipeline, False)


def pypsrp_bytes(message: CreatePipeline) -> bytes:
    return ET.tostring(Serializer().serialize(message), encoding="utf-8", method="xml")


def templated(message: CreatePipeline) -> bytes:
    serializer = TemplatedSerializer(Serializer())
    written = serializer.serialize(message)
    assert serializer.hits == 1, "written by pypsrp, not from a template"
    return t.cast(bytes, written)


STRINGS = [
    'Write-Output "task 1"\nexit $LASTEXITCODE',
    "CRLF\r\nand\ttab and a lone \r",
    "control \x00 \x07 \x1b \x1f and \x7f",
    "literal escapes _x000A_ _X0041_ _x and _ alone",
    "XML: & < > \" ' ]]> <!-- -->",
    "non-BMP 😀 𝄞 and BMP é ü ∑ \ufeff \ufffe",
    "lone surrogate \ud800 and \udfff",
    " ",
    "x" * 200_000,  # more than one fragment
]


@pytest.mark.parametrize("text", STRINGS, ids=range(len(STRINGS)))
def test_a_templated_message_is_what_pypsrp_writes_for_any_text(text: str) -> None:
    for message in (create_pipeline([text, RESTORE]), create_pipeline([text], [text, "second"]),
                    create_pipeline(["param($a)", RESTORE], [text], named=True)):
        assert templated(message) == pypsrp_bytes(message)


def test_random_texts_across_unicode_are_written_as_pypsrp_writes_them() -> None:
    rng = random.Random(20261202)
    alphabet = [chr(c) for c in (*range(0, 0x80), *range(0xD7F0, 0xE010), *range(0xFFF0, 0x10000), 0x1F600, 0x10FFFF)]
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        argument = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
        message = create_pipeline([text, RESTORE], [argument])
        assert templated(message) == pypsrp_bytes(message), repr(text)


@pytest.mark.parametrize("variant", [
    dict(local_scope=False), dict(no_input=False), dict(host=None), dict(named=True),
])
def test_every_shape_has_its_own_template(variant: dict[str, t.Any]) -> None:
    plain = create_pipeline(["Get-Date", RESTORE], ["a"])
    other = create_pipeline(["Get-Date", RESTORE], ["a"], **variant)
    serializer = TemplatedSerializer(Serializer())
    assert serializer.serialize(plain) == pypsrp_bytes(plain)
    assert serializer.serialize(other) == pypsrp_bytes(other) != pypsrp_bytes(plain)
    assert serializer.hits == 2


def test_one_shape_is_serialized_by_pypsrp_once_then_filled_in() -> None:
    serializer = TemplatedSerializer(Serializer())
    inner_calls = []
    real = serializer._inner.serialize

    def counting(value: t.Any, *args: t.Any) -> t.Any:
        if isinstance(value, CreatePipeline):
            inner_calls.append(value)
        return real(value, *args)

    serializer._inner.serialize = counting
    marker = uuid.uuid4().hex
    first = create_pipeline([f"Write-Output first-{marker}", RESTORE])
    serializer.serialize(first)  # a shape not seen before: pypsrp writes its template
    for n in range(5):
        message = create_pipeline([f"Write-Output {n}-{marker}", RESTORE])
        assert serializer.serialize(message) == pypsrp_bytes(message)
    assert serializer.hits == 6
    assert len(inner_calls) <= 1  # none when another test built this shape's template first


@pytest.mark.parametrize("case", ["empty text", "integer argument", "list argument", "host with a raw UI"])
def test_what_a_template_cannot_describe_is_written_by_pypsrp(case: str) -> None:
    message = {
        "empty text": lambda: create_pipeline(["", RESTORE]),
        "integer argument": lambda: create_pipeline(["param($n)"], [42]),
        "list argument": lambda: create_pipeline(["param($l)"], [["a", "b"]]),
        "host with a raw UI": lambda: create_pipeline(["Get-Date"], host=PSHost(
            None, None, False, "h", None, PSHostUserInterface(PSHostRawUserInterface(
                "title", 25, Color(value=Color.WHITE), Color(value=Color.BLUE), Coordinates(x=0, y=0),
                Coordinates(x=0, y=0), Size(width=120, height=3000), Size(width=120, height=50),
                Size(width=120, height=50), Size(width=120, height=50))), None)),
    }[case]()
    serializer = TemplatedSerializer(Serializer())
    rpid, pid = str(uuid.uuid4()), str(uuid.uuid4())
    ours = Message(Destination.SERVER, rpid, pid, message, t.cast(Serializer, serializer)).pack()
    assert serializer.hits == 0
    assert ours == Message(Destination.SERVER, rpid, pid, message, Serializer()).pack()


def test_a_runspace_pool_sends_the_templated_message_in_the_fragments_pypsrp_would() -> None:
    # no I/O: a pool is only built here; its fragmenter is what packs every message it sends
    pool = RunspacePool(WSMan("win01.example", ssl=True, auth="basic", username="u", password="p"), host=HOST)
    serializer = install(pool)
    assert install(pool) is serializer  # installed once however often asked
    message = create_pipeline(["x" * 300_000, RESTORE], ["argument"])
    pid = str(uuid.uuid4()).upper()
    fragments = pool._fragmenter.fragment(message, pool.id, pid)
    expected = Fragmenter(pool.connection.max_payload_size, Serializer()).fragment(message, pool.id, pid)
    assert serializer.hits == 1
    assert len(fragments) > 1 and fragments == expected
