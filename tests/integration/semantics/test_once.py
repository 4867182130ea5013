"""T5 against the lab host: a command is resent only when the host provably did not start it.

The real Session talks to the lab host directly; the lab counts the pipelines it began to run
(`pipelines_started`), which is what "never run twice" means. Faults come from the lab's switches:
`wsman_fault_on_action_next` answers the next request of one WS-Management action with a fault.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError
from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

pytestmark = [pytest.mark.timeout(120)]

COUNTED = ("pipelines_started", "pipelines_stopped", "runspace_pools_created", "wsman.Command")


@pytest.fixture
def session(lab, lab_description, lab_host) -> t.Iterator[Session]:
    user = next(u for u in lab_host["users"] if u.get("kind") == "local")
    spec = build_spec({"remote_addr": lab_host["address"], "port": lab_host["https_port"], "protocol": "https",
                       "remote_user": user["username"], "remote_password": user["password"], "auth": "ntlm",
                       "ca_cert": lab_description["ca_cert"]})
    warm = Session(spec)
    warm.ensure_ready()
    warm.run("'warm'")
    yield warm
    lab.clear_faults(lab_host["name"])
    warm.close()


def _counts(lab, host) -> dict[str, int]:
    c = lab.host_counters(host["name"])
    return {k: c.get(k, 0) for k in COUNTED}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in COUNTED}


def test_a_fault_after_the_host_accepted_the_command_never_runs_the_script_again(lab, lab_host, session) -> None:
    before = _counts(lab, lab_host)
    running_before = lab.host_state(lab_host["name"])["pipelines_running"]  # other tests' leftovers, if any
    # the Command is accepted (the script starts), then the host says the shell is gone on its input's Send
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Send": ["shell_not_found"]})
    with pytest.raises(HostError, match="0x8033805b"):
        session.run("$input | ForEach-Object { \"got $_\" }", input_data=["one", "two", "three"])
    assert _delta(_counts(lab, lab_host), before) == {
        "pipelines_started": 1,  # once: not resent on a rebuilt pool with the rest of its input
        "pipelines_stopped": 1,  # and the started one was stopped, not left waiting for input
        "runspace_pools_created": 0,
        "wsman.Command": 1,
    }
    assert lab.host_state(lab_host["name"])["pipelines_running"] <= running_before
    assert session.run("'next'").stdout == b"next"  # the session still serves


def test_a_put_whose_input_is_refused_after_the_command_runs_its_script_once(lab, lab_host, session, tmp_path) -> None:
    before = _counts(lab, lab_host)
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Send": ["shell_not_found"]})
    with pytest.raises(HostError):
        session.put_file(iter([b"a" * 4096, b"b" * 4096]), "C:\\Windows\\Temp\\t5-put.bin")
    assert _delta(_counts(lab, lab_host), before)["pipelines_started"] == 1


def test_an_operation_timeout_is_not_taken_for_a_lost_shell(lab, lab_host, session) -> None:
    # 0x80338029 says the host did not answer in time, not that the shell is gone: no rebuild, no resend
    before = _counts(lab, lab_host)
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Command": ["operation_timeout"]})
    with pytest.raises(HostError, match="0x80338029"):
        session.run("'timed out'")
    assert _delta(_counts(lab, lab_host), before) == {
        "pipelines_started": 0, "pipelines_stopped": 0, "runspace_pools_created": 0, "wsman.Command": 1,
    }
    assert session.stats["pool_rebuilds"] == 0


def test_a_command_refused_for_a_lost_shell_is_sent_again_on_a_rebuilt_pool(lab, lab_host, session) -> None:
    # the one resend T5 allows: the host refused the Command itself, so nothing of it ran
    before = _counts(lab, lab_host)
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Command": ["shell_not_found"]})
    result = session.run("$input | ForEach-Object { \"got $_\" }", input_data=["one", "two"])
    assert result.stdout == b"got one\r\ngot two"
    assert _delta(_counts(lab, lab_host), before) == {
        # the task once, and the rebuilt pool's state capture (T1), which a new pool runs before any task
        "pipelines_started": 2, "pipelines_stopped": 0, "runspace_pools_created": 1, "wsman.Command": 3,
    }
    assert session.stats["pool_rebuilds"] == 1


def test_a_command_refused_for_the_users_operations_quota_is_sent_again_on_a_rebuilt_pool(lab, lab_host,
                                                                                           session) -> None:
    # 0x803381A6: the host refused the Command itself (MaxConcurrentOperationsPerUser), so nothing of it ran;
    # rebuilding the pool closes the old pool's operations, which is what held the quota
    before = _counts(lab, lab_host)
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Command": ["quota_operations"]})
    result = session.run("'sent once'")
    assert result.stdout == b"sent once"
    assert _delta(_counts(lab, lab_host), before) == {
        "pipelines_started": 2, "pipelines_stopped": 0, "runspace_pools_created": 1, "wsman.Command": 3,
    }
    assert session.stats["pool_rebuilds"] == 1
    assert session.stats["rebuild_reasons"][-1].startswith(
        "the host refused the Command for the user's MaxConcurrentOperationsPerUser"), session.stats["rebuild_reasons"]


def test_a_rebuild_for_a_lost_shell_says_so(lab, lab_host, session) -> None:
    lab.set_faults(lab_host["name"], wsman_fault_on_action_next={"Command": ["shell_not_found"]})
    assert session.run("'again'").stdout == b"again"
    assert session.stats["rebuild_reasons"][-1] == "the host no longer knows the shell (fault 0x8033805b)"
