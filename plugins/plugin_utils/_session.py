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
import logging
import threading
import time
import typing as t
from xml.etree import ElementTree

from ._errors import (
    HostAuthError,
    HostError,
    MalformedAnswerError,
    PinnedError,
    SessionOpenError,
    TaskInterrupted,
    TransportError,
    UnexpectedError,
)
from ._output import Collected, OutputSink, StreamedOutput
from ._spec import SessionSpec

log = logging.getLogger(__name__)

try:
    from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
    from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
    from pypsrp.host import PSHost, PSHostUserInterface
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import NAMESPACES as _WSMAN_NAMESPACES
    from pypsrp.wsman import WSMan

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

# WS-Management fault codes that mean "this shell is gone" (expired, deleted, unknown id): a Command refused
# with one never ran, so it may be sent again on a rebuilt pool (T5). Not 0x80338029 (the operation timed
# out): that says nothing about the shell, and a Command that timed out may have started.
_SHELL_GONE_CODES = frozenset(
    {
        0x8033805B,  # ERROR_WSMAN_UNEXPECTED_SELECTORS (shell id unknown)
        0x803381A6,  # ERROR_WSMAN_SHELL_NOT_FOUND? (reported by some hosts for deleted shells)
    }
)

# Our own transfer scripts (plain PowerShell, no reflection). Both stage data so a
# failed transfer never leaves a partial file where the full one should be.
PUT_SCRIPT = r"""param([string]$Path)
$ErrorActionPreference = 'Stop'
if (Test-Path -LiteralPath $Path -PathType Container) {
    throw "put_file: the destination '$Path' is a directory"
}
$parent = Split-Path -Parent $Path
if ($parent -and -not (Test-Path -LiteralPath $parent -PathType Container)) {
    throw "put_file: the destination directory '$parent' does not exist"
}
$tmp = "$Path.pinned-$([Guid]::NewGuid().ToString('N')).tmp"
$sha1 = [Security.Cryptography.SHA1]::Create()
$expected = $null
$fs = [IO.File]::Create($tmp)
$done = $false
try {
    foreach ($line in $input) {
        if ($line.StartsWith('#sha1=')) { $expected = $line.Substring(6); continue }
        if ($line.Length -gt 0) {
            $bytes = [Convert]::FromBase64String($line)
            $null = $sha1.TransformBlock($bytes, 0, $bytes.Length, $bytes, 0)
            $fs.Write($bytes, 0, $bytes.Length)
        }
    }
    $null = $sha1.TransformFinalBlock([byte[]]::new(0), 0, 0)
    $fs.Dispose()
    $hash = [BitConverter]::ToString($sha1.Hash).Replace('-', '').ToLowerInvariant()
    if ($expected -ne $hash) {
        throw "put_file: the data received hashes to $hash but the controller sent $expected; '$Path' was left unchanged"
    }
    Move-Item -LiteralPath $tmp -Destination $Path -Force
    $done = $true
    "{`"sha1`":`"$hash`"}"
}
finally {
    $fs.Dispose()
    if (-not $done) { Remove-Item -LiteralPath $tmp -Force -ErrorAction SilentlyContinue }
}
"""

FETCH_SCRIPT = r"""param([string]$Path, [int]$BufferSize)
$ErrorActionPreference = 'Stop'
if (Test-Path -LiteralPath $Path -PathType Container) {
    "[DIR]"
}
elseif (Test-Path -LiteralPath $Path -PathType Leaf) {
    "[FILE]"
    $sha1 = [Security.Cryptography.SHA1]::Create()
    $fs = [IO.File]::OpenRead($Path)
    try {
        $buffer = [byte[]]::new($BufferSize)
        while (($read = $fs.Read($buffer, 0, $buffer.Length)) -gt 0) {
            $null = $sha1.TransformBlock($buffer, 0, $read, $buffer, 0)
            [Convert]::ToBase64String($buffer, 0, $read)
        }
    }
    finally {
        $fs.Dispose()
    }
    $null = $sha1.TransformFinalBlock([byte[]]::new(0), 0, 0)
    "#sha1=" + [BitConverter]::ToString($sha1.Hash).Replace('-', '').ToLowerInvariant()
}
else {
    throw "fetch_file: '$Path' does not exist on the host"
}
"""


class ExecResult(t.NamedTuple):
    rc: int
    stdout: bytes
    stderr: bytes


def _host_error_from(exc: Exception, spec: SessionSpec) -> PinnedError:
    """Turn pypsrp's errors into the engine's, naming the host as the party that refused."""
    if isinstance(exc, PinnedError):
        return exc
    if HAS_PYPSRP and isinstance(exc, WSManFaultError):
        reason = (exc.reason or str(exc)).strip()
        err = HostError(f"the Windows host {spec.host} answered with WS-Management fault {exc.code:#x}: {reason}")
        err.code = exc.code  # type: ignore[attr-defined]
        return err
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
        opened = SessionOpenError(f"{err} (while opening the Runspace Pool)", status=err.status, body=err.body)
        opened.code = getattr(err, "code", None)  # type: ignore[attr-defined]
        return opened
    return err


def _stop_running(ps: t.Any) -> bool:
    """Stop a pipeline a failed or interrupted task leaves running; True when it no longer runs on the host.

    Then the host runs the script's cleanup and frees the operation, instead of leaving it to the next task.
    """
    if ps.state != PSInvocationState.RUNNING:
        return True
    try:
        ps.stop()  # PSRP's stop: a WS-Man Signal with powershell/signal/crtl_c (MS-PSRP 3.1.5.3.9)
    except Exception as exc:
        log.debug("stopping the failed pipeline failed: %s", exc)
        return False
    return True


def _fault_code(exc: BaseException) -> int | None:
    return getattr(exc, "code", None) if isinstance(exc, (HostError,)) else None


class Session:
    """An authenticated WinRM session with an open Runspace Pool, reusable task after task."""

    # Idle time after which reuse first checks the pool is alive with a WS-Man Get (RunspacePool.is_alive).
    # Below it, a lost shell is still detected by the first request's fault and rebuilt before anything ran.
    ALIVE_CHECK_AFTER_S = 30.0

    def __init__(self, spec: SessionSpec, *, events: EventSink | None = None) -> None:
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
        now = time.time()
        self.stats: dict[str, t.Any] = {
            "opened_at": now,
            "last_used": now,
            "tasks": 0,
            "pool_opens": 0,
            "pool_rebuilds": 0,
            "rebuild_reasons": [],
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

        return WinRMTransport(self.spec, events=self._events)

    def open(self) -> None:
        """Connect, authenticate and open the Runspace Pool."""
        with self._lock:
            spec = self.spec
            if self.transport is None:
                self.transport = self._build_transport()
            # WSMan builds its own requests transport in __init__; we replace it with ours before any I/O.
            wsman = WSMan(
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
            self.psrp_host = PSHost(None, None, False, "Ansible PSRP Host", None, PSHostUserInterface(), None)
            kwargs: dict[str, t.Any] = {"configuration_name": spec.configuration_name}
            if spec.no_profile:
                kwargs["no_profile"] = True
            pool = RunspacePool(wsman, host=self.psrp_host, **kwargs)
            try:
                self._negotiate_envelope(wsman)
                pool.open()
            except Exception as exc:
                raise _open_error_from(exc, spec) from exc
            self.pool = pool
            self._last_pipeline = None
            self.stats["pool_opens"] += 1
            self._event("pool_open", f"opened Runspace Pool {pool.id} ({spec.configuration_name}) on {spec.endpoint}")

    def _negotiate_envelope(self, wsman: t.Any) -> None:
        """Size messages (and so put/fetch chunks) from the host's MaxEnvelopeSizekb, capped by our setting.

        Reading winrm/config needs rights some users lack; then the configured size stands.
        """
        if self.negotiated_envelope is None:
            try:
                config = wsman.get_server_config()
                node = config.find("cfg:Config/cfg:MaxEnvelopeSizekb", namespaces=_WSMAN_NAMESPACES)
                host_size = int(node.text) * 1024 if node is not None and node.text else 0
            except (HostAuthError, TransportError):
                raise  # refused credentials or a dead path: retrying in pool.open() would cost a second failed logon
            except (WinRMError, ValueError) as exc:  # access denied, old hosts, a size that is no number: keep ours
                # (narrow on purpose: anything else is a bug, and swallowing it here hid it from every caller)
                log.debug("could not read MaxEnvelopeSizekb: %s", exc)
                host_size = 0
            self.negotiated_envelope = min(self.spec.max_envelope_size, host_size) if host_size else self.spec.max_envelope_size
            self._event("envelope", f"max envelope size {self.negotiated_envelope} bytes "
                        f"(host {host_size or 'unknown'}, configured {self.spec.max_envelope_size})")
        wsman.update_max_payload_size(self.negotiated_envelope)

    def _drop_pool(self) -> None:
        self.pool = None
        self._last_pipeline = None

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

    def _finish_last_pipeline(self) -> None:
        """Stop the previous task's pipeline so the host's operation count does not grow (MaxConcurrentOperationsPerUser)."""
        last, self._last_pipeline = self._last_pipeline, None
        if last is None:
            return
        try:
            # pypsrp only stops RUNNING pipelines; a finished one still holds a host operation slot.
            last.state = PSInvocationState.RUNNING
            last.stop()
        except Exception as exc:
            log.debug("stopping the previous pipeline failed: %s", exc)

    def finish_pending(self) -> None:
        """Release the host operation held by the last pipeline (run off the task's critical path)."""
        with self._lock:
            if self.pool is not None:
                self._finish_last_pipeline()

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
                if not rebuilt and code in _SHELL_GONE_CODES:
                    self._rebuild(f"the host no longer knows the shell (fault {code:#x})")
                    rebuilt = True
                    continue
                raise err from exc

    def _fail(self, ps: t.Any, exc: BaseException) -> t.NoReturn:
        """A started pipeline's task failed or was interrupted: stop it on the host, then raise what the caller sees."""
        stopped = _stop_running(ps)
        if isinstance(exc, TaskInterrupted):
            if stopped:
                self._event("interrupted", f"stopped the pipeline of an interrupted task ({exc})")
                raise exc
            raise TransportError(
                f"the task was interrupted ({exc}) and its pipeline on {self.spec.host} could not be stopped"
            ) from exc
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
                        on_output(ps.output.pop(0))
                if ps.state != PSInvocationState.RUNNING:
                    return
                if should_stop is not None and should_stop():
                    raise TaskInterrupted("the task's client went away (task timeout, Ctrl-C or a killed worker)")
                ps.poll_invoke(timeout=poll)
        except BaseException as exc:
            self._fail(ps, exc)

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
    ) -> ExecResult:
        """Run a PowerShell script in the pool; rc/stdout/stderr as ansible.builtin.psrp renders them.

        With `output`, stdout and stderr are written to it as they arrive (each output object when a Receive
        brings it) and the result carries the rc only; without, they are collected into the result.
        `max_output` bounds the bytes written (OutputLimitError, the pipeline stopped). `should_stop` (the
        daemon's "has the client gone?") is asked between Receives: when it answers True the pipeline is
        stopped on the host and TaskInterrupted raised, the session staying usable.
        """
        collected = Collected() if output is None else None
        rendered = StreamedOutput(output or t.cast(OutputSink, collected), max_output)
        with self._lock:
            if self.pool is None:
                self.open()
            self._finish_last_pipeline()
            self.stats["tasks"] += 1
            try:
                # one generator for every attempt: a Command refused for a lost shell consumed no input
                ps = self._begin(script, list(arguments or ()), _input_generator(input_data))
                self._wait(ps, should_stop, rendered.output)
                self._last_pipeline = ps
                rc = rendered.finish(ps, self.psrp_host, verbose_errors)
            finally:
                self.stats["last_used"] = time.time()
        if collected is None:
            return ExecResult(rc, b"", b"")
        return ExecResult(rc, bytes(collected.stdout), bytes(collected.stderr))

    def put_file(self, chunks: t.Iterable[bytes], out_path: str, *, should_stop: StopCheck | None = None) -> str:
        """Stream `chunks` into `out_path` on the host; returns the verified SHA-1.

        The host writes a temporary file beside the destination and moves it
        into place only when the hash it computed matches ours.
        """
        with self._lock:
            if self.pool is None:
                self.open()
            self._finish_last_pipeline()
            digest = hashlib.sha1()

            def lines() -> t.Iterator[str]:
                for chunk in chunks:
                    if chunk:
                        digest.update(chunk)
                        yield base64.b64encode(chunk).decode("ascii")
                yield "#sha1=" + digest.hexdigest()

            result = self.run(PUT_SCRIPT, arguments=[out_path], input_data=lines(), should_stop=should_stop)
            if result.rc != 0:
                raise HostError(f"put_file to {out_path!r} failed on the host: {result.stderr.decode('utf-8', 'replace').strip()}")
            text = result.stdout.decode("utf-8", "replace")
            remote = _json_sha1(text)
            if remote is None:
                raise HostError(
                    f"put_file to {out_path!r}: the host returned no hash (stdout {text.strip()[:200]!r}, stderr "
                    f"{result.stderr.decode('utf-8', 'replace').strip()[:300]!r}); the destination may be unchanged"
                )
            if remote != digest.hexdigest():
                raise HostError(
                    f"put_file to {out_path!r}: the host reported SHA-1 {remote} but the controller sent "
                    f"{digest.hexdigest()}; the destination was left unchanged"
                )
            return remote

    def put_chunk_size(self) -> int:
        """Raw bytes per pipeline input so that one base64 line fits the negotiated envelope."""
        # 82 bytes of PSRP fragment/message header, as ansible.builtin.psrp reserves.
        return max(1024, int((self.max_payload_size - 82) / 4 * 3))

    def fetch_file(self, in_path: str, sink: t.Callable[[bytes], None], *, should_stop: StopCheck | None = None) -> str:
        """Stream `in_path` from the host into `sink`; returns 'file' or 'dir'. Verifies the host's SHA-1."""
        with self._lock:
            if self.pool is None:
                self.open()
            self._finish_last_pipeline()
            self.stats["tasks"] += 1
            max_b64 = int(self.max_payload_size - (self.max_payload_size / 4 * 3))
            buffer_size = max(1024, max_b64 - (max_b64 % 1024))
            digest = hashlib.sha1()
            seen: dict[str, str | None] = {"kind": None, "sha1": None}

            def on_output(value: t.Any) -> None:
                item = str(value)
                if seen["kind"] is None:
                    seen["kind"] = {"[FILE]": "file", "[DIR]": "dir"}.get(item)
                    if seen["kind"] is None:
                        raise HostError(f"fetch_file {in_path!r}: unexpected first line from the host: {item[:80]!r}")
                elif item.startswith("#sha1="):
                    seen["sha1"] = item[6:]
                else:
                    data = base64.b64decode(item)
                    digest.update(data)
                    sink(data)

            try:
                ps = self._begin(FETCH_SCRIPT, [in_path, buffer_size], None)
                self._wait(ps, should_stop, on_output)
            finally:
                self.stats["last_used"] = time.time()
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
            return kind


def _input_generator(data: t.Iterable[t.Any] | None) -> t.Iterator[t.Any] | None:
    """pypsrp wants a generator; None means no input (the pipeline does not wait for any)."""
    if data is None:
        return None
    iterator = iter(data)
    try:
        first = next(iterator)
    except StopIteration:
        return None

    def gen() -> t.Iterator[t.Any]:
        yield first
        yield from iterator

    return gen()


def _json_sha1(text: str) -> str | None:
    import json

    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line).get("sha1")
            except (ValueError, AttributeError):
                continue
            return str(value) if value else None
    return None
