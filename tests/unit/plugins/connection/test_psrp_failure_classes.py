"""T3: which engine errors make a host unreachable and which only fail the task, one row per kind.

Each row raises the engine error from the runner the plugin talks to (persistence on and off share it), once
as raised in-process and once after the pin daemon's wire round trip, and checks the Ansible error the plugin
raises: AnsibleConnectionFailure (and its AnsibleAuthenticationFailure) mark the host unreachable, any other
AnsibleError fails the task, where ignore_errors, rescue and failed_when apply.
"""

from __future__ import annotations

import io
import typing as t

import pytest
from ansible.errors import AnsibleAuthenticationFailure, AnsibleConnectionFailure, AnsibleError
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from ansible_collections.pinned.winrm.plugins.plugin_utils import _errors as E
from ansible_collections.pinned.winrm.plugins.plugin_utils import _pin_protocol as proto

UNREACHABLE, FAILED, AUTH = "unreachable", "failed", "auth"

# (engine error, outcome, words the message keeps)
ROWS: list[tuple[BaseException, str, tuple[str, ...]]] = [
    (E.ConfigError("ansible_psrp_auth: must be one of ..."), FAILED, ("ansible_psrp_auth",)),
    (E.HostAuthError("The Windows host 10.0.0.1:5986 rejected the credentials", status=401), AUTH, ("rejected",)),
    (E.SessionOpenError("fault 0x803381a5: maximum number of 5 concurrent shells", status=500), UNREACHABLE,
     ("concurrent shells",)),
    (E.HostError("the Windows host w1 answered with WS-Management fault 0x5: Access is denied."), FAILED,
     ("Access is denied",)),
    (E.HostError("The Windows host w1:5986 answered HTTP 500 Internal Server Error.", status=500), FAILED, ("HTTP 500",)),
    (E.HostError("put_file to 'C:\\\\x\\\\y' failed on the host: the destination directory does not exist"), FAILED,
     ("does not exist",)),
    (E.LocalFileError("fetch_file: cannot write beside /nope/x on the controller: No such file"), FAILED,
     ("/nope/x",)),
    (E.PoolBusyError("all 2 pinned sessions to w1 stayed busy for 300s; raise ansible_psrp_persist_pool_size"), FAILED,
     ("stayed busy", "ansible_psrp_persist_pool_size")),
    (E.TransportError("The connection to w1:5986 was lost after the request was sent"), UNREACHABLE, ("lost",)),
    (E.ConnectTimeoutError("connecting to w1:5986 took longer than ansible_psrp_connection_timeout"), UNREACHABLE,
     ("ansible_psrp_connection_timeout",)),
    (E.ReadTimeoutError("Waiting for the Windows host w1:5986: no answer within 30s"), UNREACHABLE, ("no answer",)),
    (E.ProxyError("The proxy http://p:3128 could not reach the Windows host (502)", status=502), UNREACHABLE,
     ("proxy",)),
    (E.ProxyAuthError("The proxy http://p:3128 rejected the proxy credentials", status=407), UNREACHABLE,
     ("proxy credentials",)),
    (E.AffinityLostError("The forward proxy lost the connection"), UNREACHABLE, ("forward proxy",)),
    (ConnectionResetError(104, "Connection reset by peer"), UNREACHABLE, ("reset",)),
    (E.MalformedAnswerError("The encrypted answer from w1:5985 is not well-formed MS-WSMV framing"), UNREACHABLE,
     ("MS-WSMV framing",)),
    (E.UnexpectedError("unexpected IndexError in the WinRM exchange with w1: list index out of range"), FAILED,
     ("unexpected IndexError",)),
    (RuntimeError("a bug in the engine"), FAILED, ("unexpected RuntimeError", "a bug in the engine")),
]


def _expected_class(outcome: str) -> type[AnsibleError]:
    return {UNREACHABLE: AnsibleConnectionFailure, AUTH: AnsibleAuthenticationFailure, FAILED: AnsibleError}[outcome]


def _over_the_wire(exc: BaseException) -> BaseException:
    """What the client re-raises after the daemon sent `exc` (persistence on): an exception of no engine class
    comes back as an UnexpectedError naming it."""
    return proto.error_from_wire(proto.error_to_wire(exc))


class _Runner:
    """The pin client / local runner interface, failing every operation with one error."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def exec(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        raise self.exc

    put_file = fetch_file = exec

    def release(self) -> None:
        pass


def _connection(exc: BaseException, tmp_path) -> t.Any:
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={"ansible_host": "w1", "ansible_user": "u", "ansible_password": "Pw-123",
                                  "ansible_psrp_persist_dir": str(tmp_path)})
    conn._spec = conn._session_spec()
    conn._runner = _Runner(exc)
    conn._connected = True
    return conn


def _operations(conn: t.Any, tmp_path) -> dict[str, t.Callable[[], t.Any]]:
    src = tmp_path / "src.txt"
    src.write_text("x")
    return {
        "exec": lambda: conn.exec_command("Write-Output x"),
        "put": lambda: conn.put_file(str(src), "C:\\x\\y.txt"),
        "fetch": lambda: conn.fetch_file("C:\\x\\y.txt", str(tmp_path / "out.txt")),
    }


@pytest.mark.compat
@pytest.mark.parametrize("wire", [False, True], ids=["in-process", "through-the-daemon"])
@pytest.mark.parametrize("exc, outcome, words", ROWS, ids=[f"{type(r[0]).__name__}-{i}" for i, r in enumerate(ROWS)])
def test_each_engine_error_ends_the_task_as_its_failure_class(exc, outcome, words, wire, tmp_path):
    raised = _over_the_wire(exc) if wire else exc
    conn = _connection(raised, tmp_path)
    for name, operation in _operations(conn, tmp_path).items():
        with pytest.raises(AnsibleError) as caught:
            operation()
        err = caught.value
        assert type(err) is _expected_class(outcome), (name, type(err), err)
        # unreachable is decided by the class alone (AnsibleConnectionFailure.as_task_result)
        assert isinstance(err, AnsibleConnectionFailure) == (outcome in (UNREACHABLE, AUTH)), name
        for word in words:
            assert word in str(err), (name, str(err))
        assert "Pw-123" not in str(err)


@pytest.mark.compat
@pytest.mark.parametrize("exc", [E.HostError("fetch_file 'C:\\\\x' failed on the host: C:\\x does not exist"),
                                 E.LocalFileError("fetch_file: cannot write beside /nope/out.txt on the controller")])
def test_a_failed_fetch_leads_with_the_builtin_message(exc, tmp_path):
    conn = _connection(exc, tmp_path)
    out = str(tmp_path / "out.txt")
    with pytest.raises(AnsibleError) as caught:
        conn.fetch_file("C:\\x", out)
    assert str(caught.value).startswith(f"failed to transfer file to '{out}': ")
    assert str(exc) in str(caught.value)


@pytest.mark.compat
def test_a_read_timeout_during_a_command_leads_with_the_builtin_message(tmp_path):
    exc = E.ReadTimeoutError("Waiting for the Windows host w1:5986: no answer within 30s (ansible_psrp_read_timeout)")
    conn = _connection(exc, tmp_path)
    with pytest.raises(AnsibleConnectionFailure) as caught:
        conn.exec_command("Write-Output x")
    assert str(caught.value).startswith("HTTP read timeout during PSRP script execution: ")
    assert "ansible_psrp_read_timeout" in str(caught.value)


@pytest.mark.compat
def test_an_interrupt_is_never_turned_into_a_task_result(tmp_path):
    # task timeout (a BaseException raised by SIGALRM) and Ctrl-C pass through untouched: Ansible reports them
    conn = _connection(KeyboardInterrupt(), tmp_path)
    for operation in _operations(conn, tmp_path).values():
        with pytest.raises(KeyboardInterrupt):
            operation()
