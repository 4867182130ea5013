"""The pin daemon with the REAL Session against the lab host, counted by the lab, not by us."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import typing as t

import pytest

from _pin_fakes import HERE, pid_alive, wait_until
from tests._pin_daemons import private_pin_client
from ansible_collections.pinned.winrm.plugins.plugin_utils._local_runner import LocalRunner
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _options(desc: dict[str, t.Any], host: dict[str, t.Any], proxy: bool = True) -> dict[str, t.Any]:
    user = next(u for u in host["users"] if u.get("kind") == "local")
    options = {
        "remote_addr": host["address"], "port": host["https_port"], "protocol": "https",
        "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
        "ca_cert": desc["ca_cert"],
    }
    if proxy:
        squid = desc["proxies"]["squid_ntlm"]
        options.update(proxy=squid["url"], proxy_auth="ntlm", proxy_user=squid["username"],
                       proxy_password=squid["password"])
    return options


@pytest.fixture
def lab_spec(lab_description, lab_host):
    if "squid_ntlm" not in lab_description.get("proxies", {}):
        pytest.skip("the session lab runs without the NTLM Squid")
    return build_spec(_options(lab_description, lab_host))


@pytest.fixture
def real_client(monkeypatch) -> t.Iterator[PinClient]:
    """A daemon of its own with the real Session (the test session factory is switched off)."""
    monkeypatch.delenv("PINNED_WINRM_TEST_SESSION_FACTORY", raising=False)
    with private_pin_client("pinl") as client:
        yield client


def counts(lab, host) -> dict[str, int]:
    c = lab.host_counters(host["name"])
    return {k: c.get(k, 0) for k in ("tcp_connections", "auth_handshakes", "runspace_pools_created",
                                     "runspace_pools_deleted", "wsman.Command")}


def test_twenty_tasks_through_squid_ride_one_connection_one_handshake_one_pool_and_a_second_run_adds_none(
        lab, lab_description, lab_host, lab_spec, real_client):
    outputs = []
    for i in range(20):
        result, info = real_client.exec(lab_spec, f"$n = {i}; $n * 2", idle_timeout=60, max_age=600)
        assert result.rc == 0, result.stderr
        outputs.append(result.stdout)
        assert info["session"] == ("opened" if i == 0 else "reused")
    assert outputs == [str(i * 2).encode() for i in range(20)]
    first = counts(lab, lab_host)
    assert (first["tcp_connections"], first["auth_handshakes"], first["runspace_pools_created"]) == (1, 1, 1)

    # A second ansible-playbook run: another process, another PinClient, within the idle time.
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = [{HERE!r}]
        import _pin_fakes
        from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
        from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
        spec = build_spec(json.loads(sys.stdin.readline()))
        client = PinClient({real_client.paths.root!r})
        print(json.dumps([client.exec(spec, "'second run'", idle_timeout=60, max_age=600)[1]["session"]
                          for _ in range(5)]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(_options(lab_description, lab_host)) + "\n",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["reused"] * 5
    second = counts(lab, lab_host)
    assert second["tcp_connections"] == first["tcp_connections"]
    assert second["auth_handshakes"] == first["auth_handshakes"]
    assert second["runspace_pools_created"] == first["runspace_pools_created"]
    assert second["wsman.Command"] == first["wsman.Command"] + 5


def test_with_persistence_off_every_task_opens_its_own_connection_handshake_and_pool(
        lab, lab_host, lab_spec):
    for i in range(3):
        runner = LocalRunner()
        result, info = runner.exec(lab_spec, f"'task {i}'", idle_timeout=60, max_age=600)
        runner.release()
        assert result.stdout == f"task {i}".encode() and info["session"] == "opened"
    c = counts(lab, lab_host)
    assert (c["tcp_connections"], c["auth_handshakes"], c["runspace_pools_created"]) == (3, 3, 3)
    assert c["runspace_pools_deleted"] == 3


def test_an_expired_shell_between_tasks_is_rebuilt_without_a_new_handshake_and_reported(
        lab, lab_host, lab_spec, real_client):
    real_client.exec(lab_spec, "'before'", idle_timeout=60, max_age=600)
    assert lab.expire_shells(lab_host["name"]) >= 1
    result, info = real_client.exec(lab_spec, "'after'", idle_timeout=60, max_age=600)
    assert result.stdout == b"after"
    assert info["session"].startswith("reopened: ")
    assert any(kind == "reopen" for kind, _ in info["events"])
    c = counts(lab, lab_host)
    assert (c["tcp_connections"], c["auth_handshakes"], c["runspace_pools_created"]) == (1, 1, 2)


def test_a_daemon_killed_between_tasks_costs_one_new_session_and_the_next_task_succeeds(
        lab, lab_host, lab_spec, real_client):
    _, info = real_client.exec(lab_spec, "'one'", idle_timeout=60, max_age=600)
    os.kill(info["daemon_pid"], signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(info["daemon_pid"]), 5)
    result, info2 = real_client.exec(lab_spec, "'two'", idle_timeout=60, max_age=600)
    assert result.stdout == b"two" and info2["session"] == "opened"
    c = counts(lab, lab_host)
    assert (c["auth_handshakes"], c["runspace_pools_created"]) == (2, 2)


def test_put_and_fetch_stream_through_the_daemon_to_the_lab_hosts_disk(lab_host, lab_spec, real_client, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    name = f"pin-{os.getpid()}.bin"
    put = real_client.put_file(lab_spec, str(src), f"C:\\Users\\{name}", idle_timeout=60, max_age=600)
    assert put["sha1"] == hashlib.sha1(data).hexdigest()
    on_host = os.path.join(lab_host["root"], "Users", name)
    with open(on_host, "rb") as fh:
        assert fh.read() == data  # what the lab host's disk received
    back = tmp_path / "back.bin"
    got = real_client.fetch_file(lab_spec, f"C:\\Users\\{name}", str(back), idle_timeout=60, max_age=600)
    assert got["kind"] == "file" and back.read_bytes() == data
    os.unlink(on_host)


def test_reset_connection_closes_the_pool_on_the_host_and_the_next_task_opens_a_new_one(
        lab, lab_host, lab_spec, real_client):
    real_client.exec(lab_spec, "'x'", idle_timeout=60, max_age=600)
    assert real_client.reset(lab_spec) == 1
    assert counts(lab, lab_host)["runspace_pools_deleted"] == 1
    _, info = real_client.exec(lab_spec, "'y'", idle_timeout=60, max_age=600)
    assert info["session"] == "opened"
    assert real_client.list_sessions()[0]["tasks"] == 1


def test_a_tunnel_dropped_between_tasks_is_rebuilt_with_exactly_one_reauthentication(
        lab, lab_host, lab_spec, real_client):
    real_client.exec(lab_spec, "'before'", idle_timeout=60, max_age=600)
    before = counts(lab, lab_host)
    lab.restart_proxy("squid_ntlm")  # the CONNECT tunnel under the pinned session is gone
    result, info = real_client.exec(lab_spec, "'after'", idle_timeout=60, max_age=600)
    assert result.stdout == b"after"
    after = counts(lab, lab_host)
    assert after["tcp_connections"] == before["tcp_connections"] + 1
    assert after["auth_handshakes"] == before["auth_handshakes"] + 1
    assert after["runspace_pools_created"] == before["runspace_pools_created"]  # the pool survived
    assert info["reauths"] == 1 and sum(info["reauth_reasons"].values()) == 1
    assert real_client.list_sessions()[0]["reauths"] == 1
