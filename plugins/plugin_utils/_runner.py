"""The seam between the connection plugin and what runs its tasks: Runner, ExecResult and TaskReport.

Two runners satisfy ``Runner``: ``_pin_client.PinClient`` (persistence on: the task runs on the pin daemon's
pinned session) and ``_local_runner.LocalRunner`` (persistence off: an in-process session for one task). The
plugin holds its runner as a ``Runner`` and calls nothing else. ``spec`` is a SessionSpec, or for PinClient the
SessionOptions the daemon validates.

Every task's worker loads this module, so it imports typing alone, and its annotations are evaluated objects
(no ``from __future__ import annotations``): string annotations on a NamedTuple or TypedDict would cost each
worker a compile per field.
"""

import typing as t

if t.TYPE_CHECKING:
    from ._pin_client import SessionOptions
    from ._spec import SessionSpec


class ExecResult(t.NamedTuple):
    """What a command returned: its exit code and its output, as the host's streams carried it."""

    rc: int
    stdout: bytes
    stderr: bytes


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
