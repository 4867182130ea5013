"""The collection's own put/fetch scripts (plugins/plugin_utils/_transfers.py) run exactly on the lab engine.

The scripts are imported, not copied, so a change to them is tested here against the emulated host.
Input is streamed the way the session sends it: base64 lines, then '#sha1=<hex>' of that command's part, then
'#final' after the file's last part. A put of several commands appends to one staged file.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import typing as t

import pytest

import json

from plugins.plugin_utils._transfers import FETCH_SCRIPT, PUT_SCRIPT
from tests.lab._engine import Engine
from tests.unit.lab.conftest import RecordingStreams

DEST = "C:\\Windows\\Temp\\payload.bin"


def _dest(root: pathlib.Path) -> pathlib.Path:
    return root / "Windows" / "Temp" / "payload.bin"


def _lines(data: bytes, chunk: int, sha1: str | None = None, final: bool = True) -> t.Iterator[str]:
    for i in range(0, len(data), chunk):
        yield base64.b64encode(data[i : i + chunk]).decode()
    yield "#sha1=" + (sha1 if sha1 is not None else hashlib.sha1(data).hexdigest())
    if final:
        yield "#final"


def _put(engine: Engine, lines: t.Iterable[str], path: str = DEST, staged: str = "", offset: int = 0
         ) -> RecordingStreams:
    streams = RecordingStreams()
    engine.run_powershell(PUT_SCRIPT, [path, staged, offset], iter(lines), streams)
    return streams


def _fetch(engine: Engine, path: str, buffer_size: int = 1024, offset: int = 0, length: int = 1 << 30,
           size: int = 0) -> RecordingStreams:
    streams = RecordingStreams()
    engine.run_powershell(FETCH_SCRIPT, [path, buffer_size, offset, length, size], iter(()), streams)
    return streams


@pytest.mark.parametrize("size", [0, 1, 3000, 70_000])
def test_put_writes_exactly_the_bytes_sent_and_reports_their_sha1(engine, root, size) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    streams = _put(engine, _lines(data, 1024))
    assert streams.all_errors == []
    assert _dest(root).read_bytes() == data
    reply = json.loads(streams.out[0])
    assert (reply["sha1"], reply["size"], reply["final"]) == (hashlib.sha1(data).hexdigest(), size, True)
    assert [p.name for p in _dest(root).parent.iterdir()] == ["payload.bin"]  # no temp file left


def test_a_put_of_several_commands_appends_to_one_staged_file_and_moves_it_into_place_with_the_last(engine, root):
    data = bytes(range(256)) * 40
    parts = [data[:4000], data[4000:9000], data[9000:]]
    _dest(root).write_bytes(b"old content")
    staged, offset = "", 0
    for i, part in enumerate(parts):
        streams = _put(engine, _lines(part, 1000, final=i == len(parts) - 1), staged=staged, offset=offset)
        assert streams.all_errors == []
        reply = json.loads(streams.out[0])
        assert (reply["sha1"], reply["size"]) == (hashlib.sha1(part).hexdigest(), offset + len(part))
        staged, offset = reply["staged"], reply["size"]
        if i < len(parts) - 1:
            assert _dest(root).read_bytes() == b"old content"  # never half-written
    assert _dest(root).read_bytes() == data
    assert [p.name for p in _dest(root).parent.iterdir()] == ["payload.bin"]


def test_a_later_put_command_that_fails_removes_the_staged_file_and_keeps_the_destination(engine, root):
    _dest(root).write_bytes(b"old content")
    first = json.loads(_put(engine, _lines(b"first part", 4, final=False)).out[0])
    streams = _put(engine, _lines(b"second part", 4, sha1="0" * 40), staged=first["staged"], offset=first["size"])
    assert "hashes to" in streams.all_errors[0].message
    assert _dest(root).read_bytes() == b"old content"
    assert [p.name for p in _dest(root).parent.iterdir()] == ["payload.bin"]


def test_a_put_command_refuses_a_staged_file_that_is_not_as_long_as_the_controller_sent(engine, root):
    first = json.loads(_put(engine, _lines(b"first part", 4, final=False)).out[0])
    streams = _put(engine, _lines(b"more", 4), staged=first["staged"], offset=first["size"] + 1)
    assert "holds 10 bytes where the controller sent 11" in streams.all_errors[0].message
    assert list(_dest(root).parent.iterdir()) == []


def test_put_consumes_its_input_as_it_arrives(engine, root) -> None:
    chunk = 16 * 1024
    data = bytes(range(256)) * (8 * chunk // 256)
    seen_temp_sizes: list[int] = []

    def lines() -> t.Iterator[str]:
        for i, line in enumerate(_lines(data, chunk)):
            temps = [p for p in _dest(root).parent.iterdir() if p.name.endswith(".tmp")]
            seen_temp_sizes.append(temps[0].stat().st_size if temps else -1)
            yield line

    streams = _put(engine, lines())
    assert streams.all_errors == []
    # Before the last lines were read, most earlier chunks were already on disk (beyond one write buffer).
    assert seen_temp_sizes[-1] >= 6 * chunk
    assert seen_temp_sizes[1:] == sorted(seen_temp_sizes[1:])
    assert _dest(root).read_bytes() == data


def test_put_with_a_wrong_sha1_leaves_no_file_and_no_temp_file(engine, root) -> None:
    streams = _put(engine, _lines(b"important bytes", 4, sha1="0" * 40))
    assert streams.out == []
    assert len(streams.all_errors) == 1
    assert "hashes to" in streams.all_errors[0].message and "was left unchanged" in streams.all_errors[0].message
    assert list(_dest(root).parent.iterdir()) == []


def test_put_with_a_wrong_sha1_keeps_the_previous_destination(engine, root) -> None:
    _dest(root).write_bytes(b"old content")
    _put(engine, _lines(b"new content", 4, sha1="f" * 40))
    assert _dest(root).read_bytes() == b"old content"
    assert [p.name for p in _dest(root).parent.iterdir()] == ["payload.bin"]


def test_put_onto_a_directory_is_refused(engine, root) -> None:
    (root / "Windows" / "Temp" / "adir").mkdir()
    streams = _put(engine, _lines(b"data", 4), "C:\\Windows\\Temp\\adir")
    assert "is a directory" in streams.all_errors[0].message
    assert list((root / "Windows" / "Temp" / "adir").iterdir()) == []


@pytest.mark.parametrize(("size", "buffer_size"), [(0, 1024), (5, 1024), (10_000, 1024), (4096, 2048)])
def test_fetch_streams_the_file_in_buffer_sized_base64_lines_with_its_sha1(engine, root, size, buffer_size) -> None:
    data = bytes((i * 13) % 256 for i in range(size))
    _dest(root).write_bytes(data)
    streams = _fetch(engine, DEST, buffer_size)
    assert streams.all_errors == []
    assert streams.out[:2] == ["[FILE]", f"#size={size}"]
    assert streams.out[-1] == "#sha1=" + hashlib.sha1(data).hexdigest()
    chunks = [base64.b64decode(str(line)) for line in streams.out[2:-1]]
    assert b"".join(chunks) == data
    assert all(len(c) <= buffer_size for c in chunks)
    assert len(chunks) == -(-size // buffer_size)


def test_fetch_of_a_directory_answers_dir(engine, root) -> None:
    streams = _fetch(engine, "C:\\Windows\\Temp")
    assert streams.out == ["[DIR]"]
    assert streams.all_errors == []


def test_fetch_of_a_missing_file_is_an_error(engine, root) -> None:
    streams = _fetch(engine, "C:\\Windows\\Temp\\missing.bin")
    assert streams.out == []
    assert [e.message for e in streams.all_errors] == ["fetch_file: 'C:\\Windows\\Temp\\missing.bin' does not exist on the host"]


def test_put_then_fetch_round_trips_non_ascii_paths(engine, root) -> None:
    path = "C:\\Windows\\Temp\\Grüße ✓.bin"
    data = "ünïcödé ✓".encode() * 100
    assert _put(engine, _lines(data, 500), path).all_errors == []
    streams = _fetch(engine, path)
    assert b"".join(base64.b64decode(str(x)) for x in streams.out[2:-1]) == data


def test_fetch_of_a_later_range_sends_that_range_with_its_sha1_and_refuses_a_file_that_changed_size(engine, root):
    data = bytes(range(256)) * 10
    _dest(root).write_bytes(data)
    streams = _fetch(engine, DEST, 100, offset=1000, length=700, size=len(data))
    assert streams.all_errors == []
    assert b"".join(base64.b64decode(str(x)) for x in streams.out[:-1]) == data[1000:1700]
    assert streams.out[-1] == "#sha1=" + hashlib.sha1(data[1000:1700]).hexdigest()
    changed = _fetch(engine, DEST, 100, offset=1000, length=700, size=len(data) - 1)
    assert "changed while it was fetched" in changed.all_errors[0].message
