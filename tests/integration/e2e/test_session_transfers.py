"""Session-level transfers against the lab: chunks sized from the negotiated envelope, hashes, no partial files."""

from __future__ import annotations

import hashlib
import os
import pathlib
import time
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError

from .conftest import E2E, delta
from .conftest import direct_session as _session


def _host_file(e2e: E2E, windows_path: str) -> pathlib.Path:
    relative = windows_path.split(":", 1)[1].lstrip("\\/").replace("\\", "/")
    root = pathlib.Path(e2e.host()["root"])
    # the lab maps C:\ case-insensitively under root; find the real entry
    path = root
    for part in relative.split("/"):
        match = [p for p in path.iterdir() if p.name.lower() == part.lower()] if path.exists() else []
        path = match[0] if match else path / part
    return path


@pytest.mark.compat
def test_put_chunks_follow_the_hosts_envelope_not_a_larger_setting(e2e: E2E) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    session = _session(e2e, max_envelope_size=4 * 1024 * 1024)  # larger than the host's 500 KiB
    before = e2e.counters()
    try:
        session.open()
        assert session.negotiated_envelope == 512000
        sha1 = session.put_file(iter([data[i:i + 65536] for i in range(0, len(data), 65536)]), r"C:\Windows\Temp\env.bin")
    finally:
        session.close()
    after = e2e.counters()
    assert sha1 == hashlib.sha1(data).hexdigest()
    assert _host_file(e2e, r"C:\Windows\Temp\env.bin").read_bytes() == data
    assert delta(after, before, "rejected.envelope_size") == 0
    # each Send carries at most one envelope of the host's size: 3 MiB of base64 needs several
    assert delta(after, before, "wsman.Send") >= (len(data) * 4 // 3) // 512000


def test_failed_put_leaves_no_file_at_the_destination(e2e: E2E) -> None:
    session = _session(e2e)
    target = r"C:\Windows\Temp\never-written.bin"

    def chunks():
        yield b"first chunk"
        raise OSError("the controller's disk failed mid-read")

    try:
        session.open()
        with pytest.raises(Exception, match="disk failed"):
            session.put_file(chunks(), target)
        # the session stays usable, and the host cleans up: its stopped pipeline runs the script's finally block
        # on its own thread. The lab says when that thread has ended; then the staged file must be gone.
        path = _host_file(e2e, target)
        assert not path.exists()
        ending: dict[str, t.Any] = {}
        for _ in range(600):  # a bound for a wedged lab only: the thread ends within milliseconds
            ending = e2e.lab.host_state(e2e.host()["name"])
            if not ending["pipelines_ending"]:
                break
            time.sleep(0.1)
        staged = [p.name for p in path.parent.iterdir() if p.name.lower().startswith("never-written.bin")]
        assert not ending["pipelines_ending"], f"the stopped put's script still runs on the host: {ending}"
        assert not staged and not path.exists(), staged
        assert session.run("Write-Output still-here").stdout.strip() == b"still-here"
    finally:
        session.close()


def test_fetch_streams_and_verifies_the_hosts_hash(e2e: E2E) -> None:
    data = os.urandom(700_000)
    session = _session(e2e)
    received = bytearray()
    try:
        session.open()
        session.put_file(iter([data]), r"C:\Windows\Temp\fetch-me.bin")
        assert session.fetch_file(r"C:\Windows\Temp\fetch-me.bin", received.extend) == "file"
        assert session.fetch_file(r"C:\Windows\Temp", received.extend) == "dir"
        with pytest.raises(HostError, match="does not exist"):
            session.fetch_file(r"C:\Windows\Temp\missing.bin", received.extend)
    finally:
        session.close()
    assert bytes(received) == data


def test_put_into_a_missing_directory_says_so(e2e: E2E) -> None:
    session = _session(e2e)
    try:
        session.open()
        with pytest.raises(HostError, match="directory .* does not exist"):
            session.put_file(iter([b"data"]), r"C:\NoSuchDir\x.bin")
    finally:
        session.close()
