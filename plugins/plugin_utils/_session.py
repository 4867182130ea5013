"""Session: one authenticated WinRM session holding a PSRP Runspace Pool.

The Session owns a WinRMTransport (one held TCP connection, R4) and a pypsrp
RunspacePool on top of it. It runs scripts, streams files in and out, and
keeps itself usable between tasks: a lost connection is rebuilt by the
transport (R5), an expired shell is rebuilt here, each counted (R6).

The connection plugin uses a Session in-process (persistence off) or through
the pin daemon (persistence on); the code path is the same.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import threading
import time
import typing as t
from xml.etree import ElementTree

from . import _transfers
from ._errors import (
    HostAuthError,
    HostError,
    MalformedAnswerError,
    OutputLimitError,
    PinnedError,
    SessionOpenError,
    TaskInterrupted,
    TransportError,
    UnexpectedError,
)
from ._isolation import Baseline, baseline_script, new_pool_key
from ._output import Collected, OutputSink, StreamedOutput
from ._runner import ExecResult
from ._spec import SessionSpec
from ._timing import PhaseClock
from ._wsman_faults import REBUILD_REASONS, SHELL_REBUILD_FAULTS, WSManFault

log = logging.getLogger(__name__)

try:
    from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
    from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
    from pypsrp._utils import version_equal_or_newer
    from pypsrp.host import PSHost, PSHostUserInterface
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import NAMESPACES as _WSMAN_NAMESPACES

    from ._envelope_template import TemplatedWSMan
    from ._pipeline_template import install as use_pipeline_templates

    HAS_PYPSRP = True
    PYPSRP_IMPORT_ERROR: Exception | None = None
except ImportError as _err:  # pragma: no cover - reported by the plugin's _connect()
    HAS_PYPSRP = False
    PYPSRP_IMPORT_ERROR = _err

EventSink = t.Callable[[str, str], None]
# Asked between two Receives of a running pipeline: True when the task's client went away (T2).
StopCheck = t.Callable[[], bool]

# With a stop check, one Receive waits at most this long for output (WS-Man OperationTimeout), so an
# interrupted task's pipeline is stopped within about this bound plus one round trip (T2).
STOP_CHECK_S = 5

# A pinned process is recycled once it keeps more than this share of the headroom a new one has (the host's
# MaxMemoryPerShellMB minus what its process used after the pool opened): every task starts with at least 90%
# of the memory it would have in a fresh process, as ansible.builtin.psrp gives it (docs/pinning.md).
RECYCLE_MEMORY_SHARE = 0.10
# The most tasks between two readings of a pool's memory (each a WS-Management Get, after a task's reply).
MEMORY_CHECK_MAX_INTERVAL = 32
# Windows' MaxMemoryPerShellMB default, assumed when winrm/config cannot be read (reading it needs admin rights).
DEFAULT_MAX_MEMORY_PER_SHELL_MB = 1024
# A pipeline input item's bytes in its message beside its own (PSRP message header, CLIXML tags, fragment header)
_INPUT_ITEM_OVERHEAD = 96
UNLIMITED_MB = 2147483647  # what winrm/config shows for a quota it does not enforce


def _host_error_from(exc: Exception, spec: SessionSpec) -> PinnedError:
    """Turn pypsrp's errors into the engine's, naming the host as the party that refused."""
    if isinstance(exc, PinnedError):
        return exc
    if HAS_PYPSRP and isinstance(exc, WSManFaultError):
        reason = (exc.reason or str(exc)).strip()
        provider_fault = str(getattr(exc, "provider_fault", None) or "").strip()
        if provider_fault and provider_fault not in reason:
            reason = f"{reason} {provider_fault}"  # e.g. the quota a command's input passed, and its maximum
        return HostError(f"the Windows host {spec.host} answered with WS-Management fault {exc.code:#x}: {reason}",
                         code=exc.code)
    if HAS_PYPSRP and isinstance(exc, AuthenticationError):
        return HostAuthError(f"the Windows host {spec.host} rejected the credentials: {exc}", status=401)
    if HAS_PYPSRP and isinstance(exc, WinRMTransportError):
        return HostError(
            f"the Windows host {spec.host} answered HTTP {exc.code}: {str(exc.response_text)[:500]}", status=exc.code
        )
    if HAS_PYPSRP and isinstance(exc, WinRMError):
        return HostError(f"the Windows host {spec.host} failed the WinRM exchange: {exc}")
    if isinstance(exc, ElementTree.ParseError):  # pypsrp and psrpcore read every answer with ElementTree
        return MalformedAnswerError(
            f"the Windows host {spec.host} sent an answer that is not well-formed XML ({exc}); it was refused."
        )
    # Not a refusal anyone meant: the caller raises this `from exc`, so the original stays visible.
    return UnexpectedError(
        f"unexpected {type(exc).__name__} in the WinRM exchange with {spec.host}: {exc} (a bug in pinned.winrm or a "
        "library it uses, not a refusal of the host; the task's outcome on the host is unknown)"
    )


def _open_error_from(exc: Exception, spec: SessionSpec) -> PinnedError:
    """A host refusal while opening the Runspace Pool is a SessionOpenError: the host cannot be had (T3)."""
    err = _host_error_from(exc, spec)
    if isinstance(err, HostError) and not isinstance(err, (HostAuthError, SessionOpenError)):
        return SessionOpenError(f"{err} (while opening the Runspace Pool)", status=err.status, body=err.body,
                                code=err.code)
    return err


def _stop_running(ps: t.Any) -> str | None:
    """Stop a pipeline a failed or interrupted task leaves running; None when it no longer runs on the host, else
    why the stop failed.

    Then the host runs the script's cleanup and frees the operation, instead of leaving it to the next task.
    """
    if ps.state != PSInvocationState.RUNNING:
        return None
    try:
        ps.stop()  # PSRP's stop: a WS-Man Signal with powershell/signal/crtl_c (MS-PSRP 3.1.5.3.9)
    except Exception as exc:
        # a warning: the command may still run on the host (its cleanup not done, its operation held)
        log.warning("stopping the pipeline of a failed task failed; it may still run on the host: %s: %s",
                    type(exc).__name__, exc)
        return f"{type(exc).__name__}: {exc}"
    return None


def _release(ps: t.Any) -> None:
    """Free the host operation a finished pipeline still holds (MaxConcurrentOperationsPerUser)."""
    try:
        # pypsrp only stops RUNNING pipelines; a finished one still holds a host operation slot.
        ps.state = PSInvocationState.RUNNING
        ps.stop()
    except Exception as exc:
        log.debug("releasing a finished pipeline failed: %s", exc)


def _fault_code(exc: BaseException) -> int | None:
    return exc.code if isinstance(exc, HostError) else None


class Session:
    """An authenticated WinRM session with an open Runspace Pool, reusable task after task."""

    # Idle time after which reuse first checks the pool is alive with a WS-Man Get (RunspacePool.is_alive).
    # Below it, a lost shell is still detected by the first request's fault and rebuilt before anything ran.
    ALIVE_CHECK_AFTER_S = 30.0

    def __init__(self, spec: SessionSpec, *, events: EventSink | None = None, isolate: bool = True) -> None:
        """`isolate`: the pool outlives its task (the pin daemon's), so every pipeline puts the runspace and process
        back as the pool opened them and the pool is recycled when it cannot, or grows old (T1, T4). A session
        that lives for one task only (persistence off) runs its pipelines as ansible.builtin.psrp does."""
        if not HAS_PYPSRP:
            raise PinnedError(f"pypsrp or its dependencies are not installed: {PYPSRP_IMPORT_ERROR}")
        self.spec = spec
        self._events = events or (lambda kind, detail: None)
        self._lock = threading.RLock()
        self.transport: t.Any = None
        self.pool: t.Any = None
        self.psrp_host: t.Any = None
        self._last_pipeline: t.Any = None
        self.negotiated_envelope: int | None = None
        self.clock = PhaseClock()  # where each task's time went, from ensure_ready() on (_timing.py)
        self.isolate = isolate
        self.baseline: Baseline | None = None  # the state of the pool when it opened (isolation)
        self.put_command_quota = _transfers.DEFAULT_COMMAND_INPUT_QUOTA  # lowered to what the host says it takes
        self._put_quota_known = False  # a put command reported the host's quota (or that it cannot be read)
        self.max_pool_tasks: int | None = None  # recycle the pool after this many tasks (ansible_psrp_persist_max_tasks)
        self.memory_limit_mb: int | None = None  # the host's MaxMemoryPerShellMB (None: no limit)
        self._fresh_memory_mb: int | None = None  # what the pool's process used when it opened
        self._memory_due_at = 1  # the pool's task count at which its memory is read next
        self._dirty: str | None = None  # why the runspace may not be as the pool opened it
        self._unstoppable: str | None = None  # why a command may still run in the pool (its stop failed)
        self._unsettled = False  # a task ran since the last check of state, memory and task count
        self._verdict: t.Any = None  # the last restore statement's Verdict
        now = time.time()
        self.stats: dict[str, t.Any] = {
            "opened_at": now,
            "last_used": now,
            "tasks": 0,
            "pool_opens": 0,
            "pool_rebuilds": 0,
            "rebuild_reasons": [],
            "pool_tasks": 0,
            "pool_recycles": 0,
            "recycle_reasons": [],
            "restores": 0,
            "memory_used_mb": None,
        }

    # -- life cycle ------------------------------------------------------

    def _event(self, kind: str, detail: str) -> None:
        log.debug("%s: %s", kind, detail)
        try:
            self._events(kind, detail)
        except Exception:  # an event sink must never break the session
            log.exception("event sink failed")

    def _build_transport(self) -> t.Any:
        from ._transport import WinRMTransport

        return WinRMTransport(self.spec, events=self._events, clock=self.clock)

    def open(self) -> None:
        """Connect, authenticate and open the Runspace Pool."""
        with self._lock:
            spec = self.spec
            if self.transport is None:
                self.transport = self._build_transport()
            # WSMan builds its own requests transport in __init__; we replace it with ours before any I/O. Its
            # requests are written from templates of their shape (_envelope_template), pypsrp's own bytes.
            wsman = TemplatedWSMan(
                spec.host,
                port=spec.port,
                ssl=True,
                auth="negotiate",
                max_envelope_size=spec.max_envelope_size,
                operation_timeout=spec.operation_timeout,
                read_timeout=int(spec.read_timeout),
                connection_timeout=int(spec.connection_timeout),
            )
            wsman.transport = self.transport
            self.psrp_host = PSHost(None, None, False, "Ansible PSRP Host", None, PSHostUserInterface(),
                                    None)  # type: ignore[arg-type]  # pypsrp's annotation is narrower than its code
            kwargs: dict[str, t.Any] = {"configuration_name": spec.configuration_name}
            if spec.no_profile:
                kwargs["no_profile"] = True
            pool = RunspacePool(wsman, host=self.psrp_host, **kwargs)
            use_pipeline_templates(pool)  # a task's CreatePipeline without pypsrp's per-message cost
            try:
                with self.clock.phase("pool_open"):  # connect and authentication inside it count as themselves
                    self._negotiate_envelope(wsman)
                    pool.open()
            except Exception as exc:
                raise _open_error_from(exc, spec) from exc
            self.pool = pool
            self._last_pipeline = None
            self.stats["pool_opens"] += 1
            self.stats["pool_tasks"] = 0
            self._event("pool_open", f"opened Runspace Pool {pool.id} ({spec.configuration_name}) on {spec.endpoint}")
            if self.isolate:
                self._capture_baseline()
                self._read_fresh_memory()

    def _negotiate_envelope(self, wsman: t.Any) -> None:
        """Size messages (and so put/fetch chunks) from the host's MaxEnvelopeSizekb, capped by our setting.

        Reading winrm/config needs rights some users lack; then the configured size stands.
        """
        if self.negotiated_envelope is None:
            memory_mb = DEFAULT_MAX_MEMORY_PER_SHELL_MB
            try:
                config = wsman.get_server_config()
                node = config.find("cfg:Config/cfg:MaxEnvelopeSizekb", namespaces=_WSMAN_NAMESPACES)
                host_size = int(node.text) * 1024 if node is not None and node.text else 0
                node = config.find("cfg:Config/cfg:Winrs/cfg:MaxMemoryPerShellMB", namespaces=_WSMAN_NAMESPACES)
                if node is not None and node.text and node.text.strip().isdigit():
                    memory_mb = int(node.text)
            except (HostAuthError, TransportError):
                raise  # refused credentials or a dead path: retrying in pool.open() would cost a second failed logon
            except (WinRMError, ValueError) as exc:  # access denied, old hosts, a size that is no number: keep ours
                # (narrow on purpose: anything else is a bug, and swallowing it here hid it from every caller)
                log.debug("could not read MaxEnvelopeSizekb: %s", exc)
                host_size = 0
            self.memory_limit_mb = None if memory_mb >= UNLIMITED_MB else memory_mb
            self.negotiated_envelope = min(self.spec.max_envelope_size, host_size) if host_size else self.spec.max_envelope_size
            self._event("envelope", f"max envelope size {self.negotiated_envelope} bytes "
                        f"(host {host_size or 'unknown'}, configured {self.spec.max_envelope_size})")
        wsman.update_max_payload_size(self.negotiated_envelope)

    def _drop_pool(self) -> None:
        self.pool = None
        self._last_pipeline = None
        self._unstoppable = None  # a command that could not be stopped ends with the pool's process

    def _rebuild(self, reason: str) -> None:
        self.stats["pool_rebuilds"] += 1
        self.stats["rebuild_reasons"].append(reason)
        del self.stats["rebuild_reasons"][:-20]
        self._event("reopen", f"rebuilding the Runspace Pool: {reason}")
        self._drop_pool()
        self.open()

    def ensure_ready(self) -> str:
        """Make the session usable for one more task; returns 'opened', 'reused' or 'reopened: <why>'."""
        with self._lock:
            self.clock.start_task()
            if self.pool is None:
                self.open()
                return "opened"
            idle = time.time() - self.stats["last_used"]
            if idle >= self.ALIVE_CHECK_AFTER_S:
                alive = False
                try:
                    alive = bool(self.pool.is_alive(timeout=max(1, min(10, self.spec.operation_timeout))))
                except Exception as exc:  # a dead pool may fail the check in many ways
                    log.debug("is_alive failed: %s", exc)
                if not alive:
                    reason = f"the Runspace Pool did not answer after {idle:.0f}s idle (shell expired or connection lost)"
                    self._rebuild(reason)
                    return f"reopened: {reason}"
            if self._unsettled:
                # finish_pending() did not run after the last task (it failed): settle on this task's path
                recycled = self._settle()
                if recycled:
                    return f"recycled: {recycled}"
            return "reused"

    def close(self) -> None:
        """Close the Runspace Pool (frees the host's shell) and the connection."""
        with self._lock:
            pool, transport = self.pool, self.transport
            self._drop_pool()
            self.transport = None
            try:
                if pool is not None and pool.state == RunspacePoolState.OPENED:
                    pool.close()
            except Exception as exc:
                log.debug("closing the Runspace Pool failed: %s", exc)
            finally:
                if transport is not None:
                    transport.close()
            self._event("close", f"closed the session to {self.spec.endpoint}")

    @property
    def max_payload_size(self) -> int:
        return int(self.pool.connection.max_payload_size)

    # -- running -----------------------------------------------------------

    def _begin_transfer(self) -> None:
        """A put or fetch is a task of its own (under self._lock): a pool to run on, the last pipeline released."""
        if self.pool is None:
            self.open()
        self._finish_last_pipeline()
        self.stats["tasks"] += 1
        self.stats["pool_tasks"] += 1

    def _finish_last_pipeline(self) -> None:
        """Stop the previous task's pipeline so the host's operation count does not grow (MaxConcurrentOperationsPerUser)."""
        last, self._last_pipeline = self._last_pipeline, None
        if last is not None:
            _release(last)

    def finish_pending(self) -> None:
        """After a task's reply, off its critical path: release the host operation its last pipeline holds, then
        make the pool fit for the next task (T1 state put back, T4 recycled when old or near its memory limit)."""
        with self._lock:
            if self.pool is not None:
                self._finish_last_pipeline()
                if self._unsettled:
                    self._settle()

    # -- isolation and recycling (T1, T4) -----------------------------------

    def _capture_baseline(self) -> None:
        """Capture the new pool's state and define its restore function there, once (_isolation.baseline_script)."""
        self.baseline = None
        self._dirty = None
        self._unsettled = False  # a new pool: nothing to put back
        if not version_equal_or_newer(self.pool.protocol_version or "", "2.2"):
            self._event("isolation", f"the host speaks PSRP {self.pool.protocol_version}, without multi-statement "
                        "pipelines: its pool is recycled after every task")
            return
        pool_key = new_pool_key()
        ps = PowerShell(self.pool)
        ps.add_script(baseline_script(pool_key), use_local_scope=True)
        output: list[t.Any] = []
        try:
            ps.begin_invoke()
        except Exception as exc:  # the host refused the Command: it refuses the task's too, so the task fails (T3)
            raise _host_error_from(exc, self.spec) from exc
        try:
            self._wait(ps, None, output.append)
        finally:
            _release(ps)
        try:
            self.baseline = Baseline(str(output[-1]) if output else "", pool_key)
        except ValueError as exc:
            errors = "; ".join(str(e) for e in ps.streams.error)[:300]
            self._event("isolation", f"the host would not describe its new pool's state ({errors or exc}): "
                        "the pool is recycled after every task")

    def _restore_alone(self) -> t.Any:
        """The restore as a pipeline of its own (the task's pipeline ended before its restore); its verdict."""
        ps = PowerShell(self.pool)
        ps.add_script(t.cast(Baseline, self.baseline).restore_statement(), use_local_scope=True)
        self._verdict = None
        try:
            ps.begin_invoke()
        except Exception as exc:
            raise _host_error_from(exc, self.spec) from exc
        try:
            self._wait(ps, None, lambda value: None)
        finally:
            _release(ps)
        return self._verdict

    def _settle(self) -> str | None:
        """Put the runspace back if the last task left it unrestored; recycle the pool when that fails, after
        max_pool_tasks tasks, or when its process nears MaxMemoryPerShellMB. Returns why it recycled, or None.
        Until it has run to its end (a failure here raises), the next task settles first."""
        reason = None
        if self._unstoppable is not None:
            # a restore would queue behind the command still holding the runspace (Windows queues a pipeline
            # while every runspace of the pool is busy): closing the pool ends the command with its process
            reason = f"a command in it could not be stopped and may still run ({self._unstoppable})"
        elif self._dirty is not None:
            verdict = self._restore_alone() if self.baseline is not None else None
            if verdict is not None and verdict.clean:
                self._dirty = None
            else:
                reason = (verdict.why if verdict is not None else self._dirty)
                reason = f"its runspace could not be put back as it opened ({reason})"
        if reason is None and self.max_pool_tasks and self.stats["pool_tasks"] >= self.max_pool_tasks:
            reason = f"it ran {self.stats['pool_tasks']} tasks (ansible_psrp_persist_max_tasks {self.max_pool_tasks})"
        if reason is None:
            reason = self._memory_reason()
        if reason is not None:
            self._recycle(reason)
        self._unsettled = False
        return reason

    def _memory_reason(self) -> str | None:
        """Why the pool's process should be recycled for its memory (rsp:MemoryUsed against MaxMemoryPerShellMB),
        read when due: after every task once the process kept half its allowance, else at an interval that keeps
        the growth seen so far within the allowance left (at most MEMORY_CHECK_MAX_INTERVAL tasks)."""
        limit = self.memory_limit_mb
        if limit is None or self._fresh_memory_mb is None or self.stats["pool_tasks"] < self._memory_due_at:
            return None
        used = self._memory_used_mb()
        if used is None:
            self._memory_due_at = self.stats["pool_tasks"] + MEMORY_CHECK_MAX_INTERVAL
            return None
        fresh = self._fresh_memory_mb
        allowance = RECYCLE_MEMORY_SHARE * (limit - fresh)
        grown = used - fresh
        if grown >= allowance:
            return (f"its process uses {used} MB of the host's MaxMemoryPerShellMB {limit} MB (it used {fresh} MB "
                    f"when the pool opened; recycled past {fresh + allowance:.0f} MB)")
        tasks = max(1, self.stats["pool_tasks"])
        rate = max(1.0, grown / tasks)  # MB a task kept, on average (1 MB assumed at least)
        interval = 1 if grown >= allowance / 2 else int((allowance - grown) / (2 * rate))
        self._memory_due_at = self.stats["pool_tasks"] + max(1, min(MEMORY_CHECK_MAX_INTERVAL, interval))
        return None

    def _read_fresh_memory(self) -> None:
        """What a new pool's process uses: the base its growth is measured from."""
        self._fresh_memory_mb = None
        self._memory_due_at = 1
        if self.memory_limit_mb is None:
            return
        used = self._memory_used_mb()
        if used is not None:
            self._fresh_memory_mb = min(used, self.memory_limit_mb // 2)

    def _memory_used_mb(self) -> int | None:
        """What the shell's process uses, as WinRM reports it (rsp:MemoryUsed of a WS-Management Get on the shell)."""
        try:
            # pypsrp has no public reader of the shell's properties; is_alive() reads them the same way
            state = self.pool.shell._get_shell(timeout=max(1, min(10, self.spec.operation_timeout)))
        except (TransportError, HostAuthError):
            raise
        except Exception as exc:
            log.debug("reading the shell's MemoryUsed failed: %s", exc)
            return None
        text = str(state.get("MemoryUsed") or "").strip().upper().removesuffix("MB")
        used = int(text) if text.isdigit() else None
        self.stats["memory_used_mb"] = used
        return used

    def _recycle(self, reason: str) -> None:
        """Close the pool (its process ends) and open a new one, between tasks."""
        self.stats["pool_recycles"] += 1
        self.stats["recycle_reasons"].append(reason)
        del self.stats["recycle_reasons"][:-20]
        self._event("recycle", f"recycling the Runspace Pool: {reason}")
        pool = self.pool
        self._drop_pool()
        self._dirty = None
        try:
            if pool is not None and pool.state == RunspacePoolState.OPENED:
                pool.close()
        except (TransportError, HostAuthError):
            raise
        except Exception as exc:
            log.debug("closing the recycled Runspace Pool failed: %s", exc)
        self.open()

    def _begin(self, script: str, arguments: t.Sequence[t.Any], pipeline_input: t.Iterator[t.Any] | None) -> t.Any:
        """Start a pipeline; if the host refused the Command itself because the shell is gone, rebuild once and
        send it again (T5: a Command refused for an unknown shell never ran).

        Once the host accepted the Command (pypsrp's pipeline is RUNNING) nothing is ever resent: a fault on a
        later Send (the rest of the script, or its input) means the script may have run, so it is stopped and
        the fault raised.
        """
        rebuilt = False
        while True:
            ps = PowerShell(self.pool)
            ps.add_script(script, use_local_scope=True)
            for arg in arguments:
                ps.add_argument(arg)
            if self.isolate:
                self._unsettled = True
                # until the restore's verdict says otherwise (a task that fails or is stopped never reaches it)
                self._dirty = ("the pipeline gave no restore verdict: the task ended it before its restore statement, "
                               "or removed or redefined the pool's restore function" if self.baseline else
                               "the pool's state could not be captured when it opened, so no second task may use it")
                if self.baseline is not None:
                    # T1: the restore is the pipeline's second statement; the task's is the first, with the input
                    ps.add_statement()
                    ps.add_script(self.baseline.restore_statement(), use_local_scope=True)
                    self._verdict = None
            try:
                ps.begin_invoke(pipeline_input)
                return ps
            except BaseException as exc:
                if ps.state == PSInvocationState.RUNNING:
                    self._fail(ps, exc)  # the host accepted the Command: never resent
                if not isinstance(exc, Exception):
                    raise
                err = _host_error_from(exc, self.spec)
                code = _fault_code(err)
                if not rebuilt and code in SHELL_REBUILD_FAULTS:
                    self._rebuild(f"{REBUILD_REASONS[WSManFault(code)]} (fault {code:#x})")
                    rebuilt = True
                    continue
                raise err from exc

    def _fail(self, ps: t.Any, exc: BaseException) -> t.NoReturn:
        """A started pipeline's task failed or was interrupted: stop it on the host, then raise what the caller sees."""
        not_stopped = _stop_running(ps)
        if not_stopped is not None:
            self._unstoppable = not_stopped
            self._event("stop_failed", f"the pipeline of a failed task could not be stopped ({not_stopped})")
        if isinstance(exc, TaskInterrupted):
            if not_stopped is None:
                self._event("interrupted", f"stopped the pipeline of an interrupted task ({exc})")
                raise exc
            raise TransportError(
                f"the task was interrupted ({exc}) and its pipeline on {self.spec.host} could not be stopped"
            ) from exc
        if isinstance(exc, OutputLimitError) and not_stopped is not None:
            raise OutputLimitError(str(exc).replace(
                OutputLimitError.STOPPED, f"stopping its command on {self.spec.host} failed ({not_stopped}), so it "
                "may still run there")) from exc
        if isinstance(exc, Exception) and not isinstance(exc, PinnedError):
            raise _host_error_from(exc, self.spec) from exc
        raise exc

    def _wait(self, ps: t.Any, should_stop: StopCheck | None, on_output: t.Callable[[t.Any], None] | None = None) -> None:
        """Receive until the pipeline ends; between Receives, stop it if the task's client went away (T2)."""
        poll = min(self.spec.operation_timeout, STOP_CHECK_S) if should_stop is not None else None
        try:
            while True:
                if on_output is not None:
                    while ps.output:
                        value = ps.output.pop(0)
                        if not self._took_verdict(value):
                            on_output(value)
                if ps.state != PSInvocationState.RUNNING:
                    return
                if should_stop is not None and should_stop():
                    raise TaskInterrupted("the task's client went away (task timeout, Ctrl-C or a killed worker)")
                ps.poll_invoke(timeout=poll)
        except BaseException as exc:
            self._fail(ps, exc)

    def _took_verdict(self, value: t.Any) -> bool:
        """Whether an output object is the restore statement's verdict (then it is not the task's output)."""
        verdict = self.baseline.verdict_of(value) if self.baseline is not None else None
        if verdict is None:
            return False
        self._verdict = verdict
        if verdict.clean:
            self._dirty = None
            if verdict.restored:
                self.stats["restores"] += 1
                self._event("restore", f"put back what the task changed: {', '.join(verdict.restored)}")
        else:
            self._dirty = verdict.why
        return True

    def run(
        self,
        script: str,
        *,
        arguments: t.Sequence[t.Any] | None = None,
        input_data: t.Iterable[t.Any] | None = None,
        verbose_errors: bool = False,
        should_stop: StopCheck | None = None,
        output: OutputSink | None = None,
        max_output: int | None = None,
        _phase: str = "command",
    ) -> ExecResult:
        """Run a PowerShell script in the pool; rc/stdout/stderr as ansible.builtin.psrp renders them.

        With `output`, stdout and stderr are written to it as they arrive (each output object when a Receive
        brings it) and the result carries the rc only; without, they are collected into the result.
        `max_output` bounds the bytes written (OutputLimitError, the pipeline stopped). `should_stop` (the
        daemon's "has the client gone?") is asked between Receives: when it answers True the pipeline is
        stopped on the host and TaskInterrupted raised, the session staying usable.
        """
        with self._lock:
            if self.pool is None:
                self.open()
            self.stats["tasks"] += 1
            self.stats["pool_tasks"] += 1
            return self._run(script, list(arguments or ()), input_data, verbose_errors, should_stop, output,
                             max_output)

    def _run(self, script: str, arguments: list[t.Any], input_data: t.Iterable[t.Any] | None, verbose_errors: bool,
             should_stop: StopCheck | None, output: OutputSink | None, max_output: int | None,
             phase: str = "command") -> ExecResult:
        """One pipeline of a task (run(), or one of put_file's commands, timed as a transfer)."""
        collected = Collected() if output is None else None
        rendered = StreamedOutput(output or t.cast(OutputSink, collected), max_output)
        self._finish_last_pipeline()
        try:
            # one generator for every attempt: a Command refused for a lost shell consumed no input
            with self.clock.phase(phase):
                ps = self._begin(script, arguments, _input_generator(input_data, self.max_payload_size))
                self._wait(ps, should_stop, rendered.output)
            self._last_pipeline = ps
            rc = rendered.finish(ps, self.psrp_host, verbose_errors)
        finally:
            self.stats["last_used"] = time.time()
        if collected is None:
            return ExecResult(rc, b"", b"")
        return ExecResult(rc, bytes(collected.stdout), bytes(collected.stderr))

    def put_file(self, chunks: t.Iterable[bytes], out_path: str, *, should_stop: StopCheck | None = None) -> str:
        """Stream `chunks` into `out_path` on the host; returns the SHA-1 of what was written.

        The file goes up in as many commands as the host's per-command input quota needs, appending to a staged
        file beside the destination; each command checks its part's SHA-1, the last moves the staged file into
        place (_transfers.py). A failed command fails the transfer and removes the staged file.
        """
        with self._lock:
            self._begin_transfer()
            pending = _transfers.Lookahead(chunks)
            whole = hashlib.sha1()
            staged, offset = "", 0
            while True:
                lines = self._put_lines_per_command()
                if not self._put_quota_known:
                    lines = min(lines, max(1, _transfers.FIRST_PUT_COMMAND_BYTES // self.put_chunk_size()))
                command = _transfers.PutCommand(pending, lines, whole)
                result = self._put_command(command, out_path, staged, offset, should_stop)
                reply = _transfers.put_reply(result.stdout.decode("utf-8", "replace"))
                if reply is not None:
                    self._learn_put_quota(reply.get("quota"))  # absent: reflection refused, Windows' default stands
                if reply is None or reply.get("sha1") != command.digest.hexdigest() or \
                        reply.get("size") != offset + command.size:
                    raise HostError(
                        f"put_file to {out_path!r}: the host answered {result.stdout.decode('utf-8', 'replace')[:300]!r}"
                        f" for {command.size} bytes with SHA-1 {command.digest.hexdigest()} at offset {offset}; the "
                        f"destination was left unchanged")
                staged, offset = str(reply.get("staged") or ""), offset + command.size
                if command.final:
                    return whole.hexdigest()

    def _put_command(self, command: t.Any, out_path: str, staged: str, offset: int,
                     should_stop: StopCheck | None) -> ExecResult:
        """One put command; a refusal of its input names the host's quota, which later puts then plan with."""
        try:
            # offsets as text: pypsrp sends a Python int as Int32, and a file may pass 2 GiB ([long] converts it)
            result = self._run(_transfers.PUT_SCRIPT, [out_path, staged, str(offset)], command, False, should_stop,
                               None, None, phase="transfer")
        except HostError as exc:
            quota = _transfers.refused_quota(str(exc))
            if quota is None or quota >= self.put_command_quota:
                raise
            self.put_command_quota = quota
            self._put_quota_known = True
            raise HostError(
                f"put_file to {out_path!r}: the host accepts only {quota} bytes of input per command (its session "
                f"configuration's MaximumReceivedDataSizePerCommandMB, below Windows' default of 50 MB the transfer "
                f"was planned with); the destination was left unchanged, and this session's next put_file sends "
                f"smaller commands. Run the task again, or raise MaximumReceivedDataSizePerCommandMB "
                f"(Set-PSSessionConfiguration). ({exc})", status=exc.status) from exc
        finally:
            self.clock.count(transfer_bytes=command.size)  # the file's bytes this command sent (-vvv timing)
        if result.rc != 0:
            raise HostError(f"put_file to {out_path!r} failed on the host: "
                            f"{result.stderr.decode('utf-8', 'replace').strip()}")
        return result

    def _learn_put_quota(self, quota: t.Any) -> None:
        """The host's MaximumReceivedDataSizePerCommandMB as a put command read it (None: no limit or not read)."""
        self._put_quota_known = True
        if isinstance(quota, int) and 0 < quota < self.put_command_quota:
            self.put_command_quota = quota
            self._event("put_quota", f"the host takes {quota} bytes of input per command; puts are sized by it")

    def _put_lines_per_command(self) -> int:
        """Input lines per put command so that its data stays under the host's per-command quota."""
        create_pipeline = len(_transfers.PUT_SCRIPT) + (
            len(self.baseline.restore_statement()) if self.baseline is not None else 0)
        return _transfers.put_lines_per_command(self.put_chunk_size(), self.put_command_quota, 2 * create_pipeline)

    def put_chunk_size(self) -> int:
        """Raw bytes per pipeline input so that one base64 line fits the negotiated envelope."""
        # 82 bytes of PSRP fragment/message header, as ansible.builtin.psrp reserves.
        return max(1024, int((self.max_payload_size - 82) / 4 * 3))

    def fetch_file(self, in_path: str, sink: t.Callable[[bytes], None], *, should_stop: StopCheck | None = None) -> str:
        """Stream `in_path` from the host into `sink`; returns 'file' or 'dir'.

        A file comes in ranges of FETCH_RANGE_BYTES, one command each; the controller checks each range's SHA-1.
        """
        with self._lock:
            self._begin_transfer()
            max_b64 = int(self.max_payload_size - (self.max_payload_size / 4 * 3))
            buffer_size = max(1024, max_b64 - (max_b64 % 1024))
            offset, size = 0, 0
            try:
                while True:
                    kind, size, got = self._fetch_range(in_path, buffer_size, offset, size, sink, should_stop)
                    offset += got
                    if kind == "dir" or offset >= size:
                        return kind
                    if got == 0:
                        raise HostError(f"fetch_file {in_path!r}: the host sent no data at offset {offset} of {size}")
            finally:
                self.stats["last_used"] = time.time()

    def _fetch_range(self, in_path: str, buffer_size: int, offset: int, size: int, sink: t.Callable[[bytes], None],
                     should_stop: StopCheck | None) -> tuple[str, int, int]:
        """One fetch command: (kind, the file's size, bytes received) for the range at `offset`."""
        digest = hashlib.sha1()
        seen: dict[str, t.Any] = {"kind": "file" if offset else None, "sha1": None, "size": size, "got": 0}

        def on_output(value: t.Any) -> None:
            item = str(value)
            if seen["kind"] is None:
                seen["kind"] = {"[FILE]": "file", "[DIR]": "dir"}.get(item)
                if seen["kind"] is None:
                    raise HostError(f"fetch_file {in_path!r}: unexpected first line from the host: {item[:80]!r}")
            elif item.startswith("#size="):
                seen["size"] = int(item[6:])
            elif item.startswith("#sha1="):
                seen["sha1"] = item[6:]
            else:
                data = base64.b64decode(item)
                self.clock.count(transfer_bytes=len(data))
                digest.update(data)
                seen["got"] += len(data)
                sink(data)

        arguments = [in_path, buffer_size, str(offset), str(_transfers.FETCH_RANGE_BYTES), str(size)]  # [long] on the host
        with self.clock.phase("transfer"):
            ps = self._begin(_transfers.FETCH_SCRIPT, arguments, None)
            self._wait(ps, should_stop, on_output)
        self._last_pipeline = ps
        errors = Collected()
        rc = StreamedOutput(errors).finish(ps, self.psrp_host, False)
        stderr = bytes(errors.stderr)
        kind = seen["kind"]
        if rc != 0 or kind is None:
            raise HostError(f"fetch_file {in_path!r} failed on the host: {stderr.decode('utf-8', 'replace').strip()}")
        if kind == "file" and seen["sha1"] != digest.hexdigest():
            raise HostError(
                f"fetch_file {in_path!r}: received data hashes to {digest.hexdigest()} but the host computed "
                f"{seen['sha1']}; the transfer was corrupted"
            )
        return kind, int(seen["size"]), int(seen["got"])


def _input_generator(data: t.Iterable[t.Any] | None, budget: int) -> t.Iterator[list[t.Any]] | None:
    """The input as pypsrp takes it: a generator of lists, each sent in as few Sends as its size needs.

    pypsrp sends every item its generator yields in Sends of its own, so a module's input of three lines cost
    three round trips where ansible.builtin.psrp, which hands pypsrp one list, spends one. Items are grouped up
    to about `budget` bytes (one message's payload), read lazily, so a streamed input (put_file's lines, each a
    payload's worth) is never held whole. None means no input (the pipeline does not wait for any).
    """
    if data is None:
        return None
    iterator = iter(data)
    try:
        first = next(iterator)
    except StopIteration:
        return None

    def gen() -> t.Iterator[list[t.Any]]:
        group: list[t.Any] = []
        size = 0
        for item in itertools.chain((first,), iterator):
            cost = _INPUT_ITEM_OVERHEAD + len(item)
            if group and size + cost > budget:
                yield group
                group, size = [], 0
            group.append(item)
            size += cost
        yield group

    return gen()
