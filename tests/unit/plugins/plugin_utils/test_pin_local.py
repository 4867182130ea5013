"""LocalRunner: persistence off, same interface as PinClient, one session per task."""

from __future__ import annotations

import json

import pytest

from _pin_fakes import FakeSession, read_journal
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import HostError, TransportError
from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import LocalRunner, PinClient
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec


def make_spec(password: str = "pw-local", user: str = "alice"):
    return build_spec({"remote_addr": "win1", "remote_user": user, "remote_password": password, "auth": "ntlm"})


@pytest.fixture
def journal(tmp_path, monkeypatch):
    path = str(tmp_path / "journal.jsonl")
    monkeypatch.setenv("PINNED_WINRM_TEST_JOURNAL", path)
    return path


def events(journal: str) -> list[str]:
    return [r["event"] for r in read_journal(journal)]


def test_a_task_opens_one_session_reuses_it_within_the_task_and_closes_it_at_release(journal):
    runner = LocalRunner(session_factory=FakeSession)
    spec = make_spec()
    r1, i1 = runner.exec(spec, "whoami", idle_timeout=60, max_age=600)
    r2, i2 = runner.exec(spec, "echo-input", input_lines=["a", "b"], idle_timeout=60, max_age=600)
    assert (i1["session"], i2["session"]) == ("opened", "reused")
    assert r2.stdout == b"a\nb"
    runner.release()
    assert events(journal) == ["open", "run", "run", "finish", "close"]
    _, i3 = runner.exec(spec, "whoami", idle_timeout=60, max_age=600)
    assert i3["session"] == "opened"
    runner.release()


def test_another_credential_in_the_same_runner_never_rides_the_open_session(journal):
    runner = LocalRunner(session_factory=FakeSession)
    a, _ = runner.exec(make_spec("one"), "whoami", idle_timeout=60, max_age=600)
    b, info = runner.exec(make_spec("two"), "whoami", idle_timeout=60, max_age=600)
    assert info["session"] == "opened"
    assert json.loads(a.stdout)["id"] != json.loads(b.stdout)["id"]
    assert events(journal).count("close") == 1
    runner.release()


def test_errors_keep_their_class_and_a_broken_session_is_closed(journal):
    runner = LocalRunner(session_factory=FakeSession)
    spec = make_spec()
    with pytest.raises(HostError):
        runner.exec(spec, "fail-host", idle_timeout=60, max_age=600)
    assert "close" not in events(journal)
    with pytest.raises(TransportError):
        runner.exec(spec, "fail-transport", idle_timeout=60, max_age=600)
    assert events(journal)[-1] == "close"
    _, info = runner.exec(spec, "whoami", idle_timeout=60, max_age=600)
    assert info["session"] == "opened"
    runner.release()


def test_reset_and_close_affect_only_the_matching_session(journal):
    runner = LocalRunner(session_factory=FakeSession)
    spec = make_spec()
    runner.exec(spec, "whoami", idle_timeout=60, max_age=600)
    assert runner.reset(make_spec(user="bob")) == 0
    assert runner.close("win2") == 0
    assert runner.list_sessions() == []
    assert runner.reset(spec) == 1
    assert runner.close(None) == 0


def test_the_local_runner_and_the_pin_client_offer_the_same_operations():
    import inspect

    for name in ("exec", "put_file", "fetch_file", "reset", "list_sessions", "close", "release"):
        local, pinned = getattr(LocalRunner, name), getattr(PinClient, name)
        assert inspect.signature(local) == inspect.signature(pinned), name


def test_reauthentications_of_one_call_are_reported_by_reason(journal):
    runner = LocalRunner(session_factory=FakeSession)
    spec = make_spec()
    _, info = runner.exec(spec, "reauth", idle_timeout=60, max_age=600)
    assert info["reauths"] == 1 and info["reauth_reasons"] == {"proxy closed keep-alive": 1}
    _, info = runner.exec(spec, "whoami", idle_timeout=60, max_age=600)
    assert info["reauths"] == 0 and info["reauth_reasons"] == {} and info["reauths_total"] == 1
    runner.release()
