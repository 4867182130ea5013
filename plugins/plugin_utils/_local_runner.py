"""What the connection plugin calls with persistence off: LocalRunner, PinClient's interface in-process.

LocalRunner runs each operation on an in-process Session that lives for one task (the plugin calls
``release()`` at the end of each task), as ansible.builtin.psrp opens and closes a session per task.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import typing as t

from ._errors import LocalFileError, TransportError
from ._pin_client import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_AGE, SessionOptions, write_verified
from ._pin_start import check_packages
from ._runner import ExecResult
from ._session_report import command_deadline, pool_rebuilds, reauth_reasons, session_unusable, task_report

if t.TYPE_CHECKING:
    from ._runner import TaskReport
    from ._spec import SessionSpec

log = logging.getLogger(__name__)


class LocalRunner:
    """The same operations on an in-process Session (persistence off): opened for one task, closed by release()."""

    def __init__(self, *, session_factory: t.Callable[..., t.Any] | None = None,
                 command_timeout: float | None = None) -> None:
        self._factory = session_factory
        self.command_timeout = command_timeout
        self._session: t.Any = None
        self._pin: str | None = None
        self._events: list[tuple[str, str]] = []
        self._rebuilds_before = 0
        self._key = os.urandom(32)
        self._notes: list[tuple[str, str]] = []

    def _spec(self, target: SessionSpec | SessionOptions) -> SessionSpec:
        """The spec to open: the plugin builds it (persistence off); options are validated here as the daemon does."""
        if not isinstance(target, SessionOptions):
            return target
        from ._spec import build_spec

        self._notes = []
        return build_spec(dict(target.options), dict(target.environ), self._notes)

    def _take(self, target: SessionSpec | SessionOptions) -> tuple[t.Any, str, dict[str, int]]:
        check_packages()
        spec = self._spec(target)
        pin = spec.pin_key(self._key)
        if self._session is not None and pin != self._pin:
            self.release()  # a different spec never rides this session
        if self._session is None:
            factory = self._factory
            if factory is None:
                from ._session import Session

                # one pool per task, as ansible.builtin.psrp: nothing to isolate from the next task
                factory = functools.partial(Session, isolate=False)
            self._session = factory(spec, events=lambda kind, detail: self._events.append((kind, detail)))
            self._pin = pin
        self._events = []
        session = self._session
        self._rebuilds_before = pool_rebuilds(session)
        try:
            status = str(session.ensure_ready())
        except BaseException:
            self.release()
            raise

        return session, status, reauth_reasons(session)

    def _info(self, status: str, before: dict[str, int]) -> TaskReport:
        info = task_report(self._session, status, before, self._rebuilds_before)
        info["tasks"] = int((getattr(self._session, "stats", None) or {}).get("tasks", 0))
        info["events"] = [list(e) for e in self._events]
        info["daemon_pid"] = None
        if self._notes:
            info["notes"] = [list(n) for n in self._notes]
        return info

    def _call(self, work: t.Callable[[], t.Any]) -> t.Any:
        try:
            with command_deadline(self._session, self.command_timeout):
                return work()
        except BaseException as exc:
            if session_unusable(exc):
                self.release()
            raise

    def exec(
        self,
        spec: SessionSpec | SessionOptions,
        script: str,
        *,
        arguments: t.Sequence[t.Any] | None = None,
        input_lines: t.Iterable[str] | None = None,
        verbose_errors: bool = False,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
        max_output: int | None = None,
    ) -> tuple[ExecResult, TaskReport]:
        """Run a PowerShell script on this task's session."""
        session, status, before = self._take(spec)
        result = self._call(
            lambda: session.run(script, arguments=arguments, input_data=input_lines, verbose_errors=verbose_errors,
                                max_output=max_output),
        )
        return ExecResult(int(result.rc), bytes(result.stdout), bytes(result.stderr)), self._info(status, before)

    def put_file(
        self,
        spec: SessionSpec | SessionOptions,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> TaskReport:
        """Stream the local file to the host in envelope-sized chunks."""
        session, status, before = self._take(spec)
        size = max(1024, int(session.put_chunk_size()))
        digest = hashlib.sha1()

        def chunks(source: t.BinaryIO) -> t.Iterator[bytes]:
            while chunk := source.read(size):
                digest.update(chunk)
                yield chunk

        try:
            source = open(in_path, "rb")
        except OSError as exc:
            raise LocalFileError(f"put_file: cannot read {in_path} on the controller: {exc}") from exc
        with source:
            sha1 = self._call(lambda: session.put_file(chunks(source), out_path))
        if sha1 != digest.hexdigest():
            raise TransportError(f"put_file: the host stored data hashing to {sha1} but {in_path} hashes to {digest.hexdigest()}")
        info = self._info(status, before)
        info["sha1"], info["size"] = str(sha1), os.path.getsize(in_path)
        return info

    def fetch_file(
        self,
        spec: SessionSpec | SessionOptions,
        in_path: str,
        out_path: str,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> TaskReport:
        """Stream the host's file into out_path via a temp file renamed once the host hash verified."""
        session, status, before = self._take(spec)

        def receive(write: t.Callable[[bytes], None]) -> TaskReport:
            # Session.fetch_file verified the host's SHA-1 over these very bytes; hashing them again here
            # would only compare the stream with itself
            kind = self._call(lambda: session.fetch_file(in_path, write))
            info = self._info(status, before)
            info["kind"] = kind
            return info

        return write_verified(out_path, receive)

    def reset(self, spec: SessionSpec | SessionOptions) -> int:
        """Close this task's session if it belongs to `spec`."""
        if self._session is None or self._spec(spec).pin_key(self._key) != self._pin:
            return 0
        self.release()
        return 1

    def list_sessions(self) -> list[dict[str, t.Any]]:
        """Nothing is pinned without persistence."""
        return []

    def close(self, host: str | None) -> int:
        """Close this task's session if it goes to `host` (or any host when None)."""
        if self._session is None or (host is not None and self._session.spec.host.lower() != host.lower()):
            return 0
        self.release()
        return 1

    def release(self) -> None:
        """End of the task: close the session (connection, authentication and pool go with it)."""
        session, self._session, self._pin = self._session, None, None
        if session is not None:
            try:
                session.finish_pending()
            except Exception as exc:
                log.debug("finishing the last pipeline failed: %s", exc)
            try:
                session.close()
            except Exception as exc:
                log.debug("closing the session failed: %s", exc)
