"""Transfers past 2 GiB: a put command that appends at an offset beyond Int32, and a fetch range that starts there,
against the lab host, without moving 2 GiB (the staged and fetched files are sparse on the host's disk).

pypsrp sends a Python int as an Int32, which no host can read past 2147483647, so the Session sends offsets as
text and the scripts' [long] parameters convert them (tests/integration/peers/test_large_files.py moves 2 GiB).
"""

from __future__ import annotations

import hashlib
import pathlib
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils import _transfers
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session

from .test_isolation import spec_of

pytestmark = [pytest.mark.timeout(120)]

PAST = (1 << 31) + 4099


@pytest.fixture
def session(lab_description, lab_host) -> t.Iterator[Session]:
    pinned = Session(spec_of(lab_description, lab_host))
    pinned.ensure_ready()
    yield pinned
    pinned.close()


def test_a_put_command_appends_past_2_gib_and_moves_the_file_into_place(session, lab_host) -> None:
    home = pathlib.Path(lab_host["root"]) / "Users" / "ansible"
    staged, dest = home / "sparse.pinned-test.tmp", home / "sparse.bin"
    with staged.open("wb") as f:
        f.truncate(PAST)
    try:
        tail = b"the last bytes"
        command = _transfers.PutCommand(_transfers.Lookahead([tail]), 10, hashlib.sha1())
        result = session._put_command(command, "C:\\Users\\ansible\\sparse.bin",
                                      "C:\\Users\\ansible\\sparse.pinned-test.tmp", PAST, None)
        reply = _transfers.put_reply(result.stdout.decode())
        assert reply is not None and reply["size"] == PAST + len(tail) and reply["final"] is True
        assert dest.stat().st_size == PAST + len(tail) and not staged.exists()
        with dest.open("rb") as f:
            f.seek(PAST)
            assert f.read() == tail
    finally:
        staged.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)


def test_a_fetch_range_past_2_gib_comes_with_its_sha1(session, lab_host) -> None:
    path = pathlib.Path(lab_host["root"]) / "Users" / "ansible" / "sparse-fetch.bin"
    with path.open("wb") as f:
        f.seek(PAST)
        f.write(b"tail")
    received: list[bytes] = []
    try:
        kind, size, got = session._fetch_range("C:\\Users\\ansible\\sparse-fetch.bin", 1024, PAST, PAST + 4,
                                               received.append, None)
        assert (kind, size, got, b"".join(received)) == ("file", PAST + 4, 4, b"tail")
    finally:
        path.unlink(missing_ok=True)
