"""Files stream through the daemon in bounded pieces, both ways, and land only when verified."""

from __future__ import annotations

import glob
import hashlib
import os

import pytest

from _pin_fakes import FakeSession, pin_env, read_journal  # noqa: F401
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import LocalRunner, PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

SIZE = 64 * 1024 * 1024
# Peak RSS growth allowed while 64 MiB pass through: a fraction of the file, so it cannot have been held whole.
RSS_BOUND = 24 * 1024 * 1024


def make_spec():
    return build_spec({"remote_addr": "win1", "remote_user": "alice", "remote_password": "pw-stream", "auth": "ntlm"})


def _status(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _reset_peak(pid: int | str) -> int:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; returns that RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")
    return _status(pid, "VmRSS")


def _sha1(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "payload.bin"
    with open(path, "wb") as fh:
        for _ in range(SIZE // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    return str(path)


@pytest.mark.timeout(120)
def test_a_64_mib_put_and_fetch_stream_through_the_daemon_with_bounded_memory(pin_env, big_file, tmp_path):
    client = PinClient(pin_env.root)
    spec = make_spec()
    _, info = client.exec(spec, "whoami", idle_timeout=60, max_age=600)
    daemon = info["daemon_pid"]
    base_daemon, base_self = _reset_peak(daemon), _reset_peak("self")

    remote = str(tmp_path / "on-host.bin")
    put = client.put_file(spec, big_file, remote, idle_timeout=60, max_age=600)
    assert put["session"] == "reused" and put["size"] == SIZE
    assert put["sha1"] == _sha1(big_file) == _sha1(remote)
    biggest = [r for r in read_journal(pin_env.journal) if r["event"] == "put"][0]["biggest_chunk"]
    assert biggest == FakeSession.CHUNK  # re-chunked to what the session's envelope takes

    back = str(tmp_path / "fetched.bin")
    got = client.fetch_file(spec, remote, back, idle_timeout=60, max_age=600)
    assert got["kind"] == "file" and got["size"] == SIZE
    assert _sha1(back) == put["sha1"]

    assert _status(daemon, "VmHWM") - base_daemon < RSS_BOUND
    assert _status("self", "VmHWM") - base_self < RSS_BOUND
    assert glob.glob(str(tmp_path / ".*pinned-tmp")) == []


def test_a_failed_fetch_leaves_neither_the_destination_nor_a_temp_file(pin_env, tmp_path):
    client = PinClient(pin_env.root)
    out = tmp_path / "never.bin"
    with pytest.raises(HostError, match="does not exist on the host"):
        client.fetch_file(make_spec(), str(tmp_path / "missing.bin"), str(out), idle_timeout=60, max_age=600)
    assert os.listdir(tmp_path) == []


def test_fetching_a_directory_reports_it_and_writes_nothing(pin_env, tmp_path):
    client = PinClient(pin_env.root)
    (tmp_path / "adir").mkdir()
    info = client.fetch_file(make_spec(), str(tmp_path / "adir"), str(tmp_path / "out"), idle_timeout=60, max_age=600)
    assert info["kind"] == "dir"
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_an_existing_destination_is_replaced_only_once_the_new_file_is_complete(pin_env, tmp_path):
    client = PinClient(pin_env.root)
    src = tmp_path / "src.bin"
    src.write_bytes(b"new" * 100_000)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"old")
    with pytest.raises(HostError):
        client.fetch_file(make_spec(), str(tmp_path / "missing"), str(dest), idle_timeout=60, max_age=600)
    assert dest.read_bytes() == b"old"
    client.fetch_file(make_spec(), str(src), str(dest), idle_timeout=60, max_age=600)
    assert dest.read_bytes() == src.read_bytes()


def test_the_local_runner_streams_the_same_way_without_a_daemon(big_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PINNED_WINRM_TEST_JOURNAL", str(tmp_path / "journal.jsonl"))
    runner = LocalRunner(session_factory=FakeSession)
    spec = make_spec()
    base = _reset_peak("self")
    remote, back = str(tmp_path / "remote.bin"), str(tmp_path / "back.bin")
    put = runner.put_file(spec, big_file, remote, idle_timeout=60, max_age=600)
    got = runner.fetch_file(spec, remote, back, idle_timeout=60, max_age=600)
    runner.release()
    assert put["session"] == "opened" and got["session"] == "reused"
    assert _sha1(back) == _sha1(big_file) == put["sha1"]
    assert _status("self", "VmHWM") - base < RSS_BOUND
    events = [r["event"] for r in read_journal(str(tmp_path / "journal.jsonl"))]
    assert events == ["open", "put", "fetch", "finish", "close"]
