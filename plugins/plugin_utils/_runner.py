"""The seam between the connection plugin and what runs its tasks: Runner, ExecResult and TaskReport.

Two runners satisfy ``Runner``: ``_pin_client.PinClient`` (persistence on: the task runs on the pin daemon's
pinned session) and ``_local_runner.LocalRunner`` (persistence off: an in-process session for one task). The
plugin holds its runner as a ``Runner`` and calls nothing else. ``spec`` is a SessionSpec, or for PinClient the
SessionOptions the daemon validates.

Every task's worker loads this module, and each worker is a new process, so what it builds at import is paid
by every task. Only ExecResult exists at run time, as a plain tuple class: ``typing.NamedTuple`` generates and
evaluates code for each class, and a TypedDict or Protocol class is built by typing's metaclasses, the largest
part of this module's import in a fresh worker. ``TaskReport`` and ``Runner`` are for the type checker alone (a
TypedDict is a plain dict at run time anyway); modules that name them import them under ``typing.TYPE_CHECKING``. No
``from __future__ import annotations`` here: the few annotations are evaluated names, cheaper than strings that
each ``typing.get_type_hints`` would compile.
"""

import typing as t


class ExecResult(tuple[int, bytes, bytes]):
    """What a command returned: its exit code and its output, as the host's streams carried it.

    A tuple ``(rc, stdout, stderr)`` with those three names, as ``typing.NamedTuple`` would make it.
    """

    __slots__ = ()

    def __new__(cls, rc: int, stdout: bytes, stderr: bytes) -> "ExecResult":
        return tuple.__new__(cls, (rc, stdout, stderr))

    def __getnewargs__(self) -> tuple[int, bytes, bytes]:
        return (self[0], self[1], self[2])

    def __repr__(self) -> str:
        return f"ExecResult(rc={self[0]!r}, stdout={self[1]!r}, stderr={self[2]!r})"

    @property
    def rc(self) -> int:
        """The command's exit code."""
        return self[0]

    @property
    def stdout(self) -> bytes:
        """What the command wrote to its output stream."""
        return self[1]

    @property
    def stderr(self) -> bytes:
        """What the command wrote to its error stream."""
        return self[2]


if t.TYPE_CHECKING:
    from ._pin_client import SessionOptions
    from ._spec import SessionSpec

    class TaskReport(t.TypedDict, total=False):
        """What one task did to its session, daemon and in-process alike (the plugin shows it at -vvv).

        Built by ``_session_report.task_report``; the runners add who served the task, transfers their outcome.
        """

        ok: bool
        rc: int  # exec over the wire: the client moves it into ExecResult
        session: str  # 'opened', 'reused' or 'reopened: <why>'
        session_id: str  # the daemon's id of the pinned session
        reauths: int  # re-authentications during this task
        reauths_total: int  # ... over the session's life
        reauth_reasons: dict[str, int]  # this task's re-authentications by reason
        pool_rebuilds: int
        timing: dict[str, t.Any]  # _timing: the task's phases and counts
        timing_line: str  # the -vvv line computed where the work happened
        tasks: int  # tasks the session has served
        events: list[list[str]]  # [kind, detail] the session reported (-vvvv)
        daemon_pid: int | None  # None in-process
        notes: list[list[str]]  # [level, text]: what validating the options adjusted or warns about
        sha1: str  # put_file: the hash of what the host stored
        size: int  # put_file: bytes sent
        kind: str  # fetch_file: what the host's path was

    class Runner(t.Protocol):
        """What the connection plugin calls: one task's operations on the session for `spec`."""

        def exec(
            self,
            spec: "SessionSpec | SessionOptions",
            script: str,
            *,
            arguments: t.Sequence[t.Any] | None = None,
            input_lines: t.Iterable[str] | None = None,
            verbose_errors: bool = False,
            idle_timeout: float = ...,
            max_age: float = ...,
            max_output: int | None = None,
        ) -> tuple[ExecResult, TaskReport]:
            """Run a PowerShell script; its input lines and output are streamed."""

        def put_file(self, spec: "SessionSpec | SessionOptions", in_path: str, out_path: str, *,
                     idle_timeout: float = ..., max_age: float = ...) -> TaskReport:
            """Copy the controller's `in_path` to the host's `out_path`, verified by SHA-1 end to end."""

        def fetch_file(self, spec: "SessionSpec | SessionOptions", in_path: str, out_path: str, *,
                       idle_timeout: float = ..., max_age: float = ...) -> TaskReport:
            """Copy the host's `in_path` to the controller's `out_path`, renamed into place once verified."""

        def reset(self, spec: "SessionSpec | SessionOptions") -> int:
            """Close the sessions of this spec (meta: reset_connection); returns how many."""

        def list_sessions(self) -> list[dict[str, t.Any]]:
            """The sessions this runner keeps (secret-free rows)."""

        def close(self, host: str | None) -> int:
            """Close the sessions to `host` (all when None); returns how many."""

        def release(self) -> None:
            """End of the task: what the runner holds for this task only is let go."""
