"""T4 over a pinned session's whole life: a daemon-held session runs a thousand tasks and its host process stays
within the host's MaxMemoryPerShellMB, its pool recycled between tasks, never during one.

Each task leaves 12 MB behind in a global variable of its own name (6 Mi UTF-16 characters): a pool that kept
them would grow past Windows' default 1024 MB limit within about 80 tasks, before the task count alone
(ansible_psrp_persist_max_tasks, here its default, 100) recycled it, and the lab host would end its process
mid-task (shells_killed.memory), as Windows' job object does. The daemon puts the state back after every task.
"""

from __future__ import annotations

import os
import typing as t

import pytest

from tests._pin_daemons import private_pin_client
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import DEFAULT_MAX_TASKS, PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TASKS = int(os.environ.get("PINNED_LONG_LIFE_TASKS", "1000"))


@pytest.fixture
def client(monkeypatch) -> t.Iterator[PinClient]:
    """A daemon of its own with the real Session."""
    monkeypatch.delenv("PINNED_WINRM_TEST_SESSION_FACTORY", raising=False)
    with private_pin_client("pinlife") as pinned:
        yield pinned


def test_a_thousand_tasks_leave_the_host_process_within_its_memory_limit(lab, lab_description, lab_host, client):
    user = next(u for u in lab_host["users"] if u["username"] == "ansible")
    spec = build_spec({"remote_addr": lab_host["address"], "port": lab_host["https_port"], "protocol": "https",
                       "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
                       "ca_cert": lab_description["ca_cert"]})
    assert lab.get_limits(lab_host["name"])["limits"]["MaxMemoryPerShellMB"] == 1024
    before = lab.host_counters(lab_host["name"])
    pids: list[str] = []
    peak = 0
    for i in range(TASKS):
        script = f"Set-Variable -Name left{i} -Scope Global -Value ('x' * 6MB); $PID"
        result, info = client.exec(spec, script, idle_timeout=600, max_age=36000)
        assert result.rc == 0, (i, result.stderr)
        pids.append(result.stdout.decode())
        if i % 50 == 49:
            (session,) = client.list_sessions()
            peak = max(peak, session["memory_used_mb"] or 0)
    after = lab.host_counters(lab_host["name"])
    (session,) = client.list_sessions()
    assert after.get("shells_killed.memory", 0) == before.get("shells_killed.memory", 0)  # never mid-task
    assert 0 < peak <= 1024 and session["memory_used_mb"] <= 1024
    # a new process every DEFAULT_MAX_TASKS tasks, between two tasks
    changes = [i for i in range(1, TASKS) if pids[i] != pids[i - 1]]
    assert changes == list(range(DEFAULT_MAX_TASKS, TASKS, DEFAULT_MAX_TASKS)), changes
    # and after the last task, when its count is due (off the task's path: the listing may come before it)
    assert len(changes) <= session["pool_recycles"] <= len(changes) + 1
