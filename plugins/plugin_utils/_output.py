"""A pipeline's output as ansible.builtin.psrp renders it, written out piece by piece as it arrives.

ansible.builtin.psrp joins every output object and then the host's Write-Host lines with CRLF (stdout),
and every error record and then the host's error lines (stderr), once the pipeline has ended. The same
text here is produced incrementally: each output object is rendered and written as soon as a Receive
brings it, the host lines and error records when the pipeline ends. Nothing holds the whole output: the
pin daemon writes each piece to the socket (bounded frames), the in-process runner collects it.

A per-task bound (``ansible_psrp_max_output_mb``) stops the pipeline once the text written exceeds it.
"""

from __future__ import annotations

import typing as t

from ._errors import OutputLimitError

# (stream, data): stream is "stdout" or "stderr", data UTF-8 bytes (surrogateescape, as builtin's to_bytes)
OutputSink = t.Callable[[str, bytes], None]

# Characters encoded at a time: one huge output object is never copied whole into bytes.
TEXT_SLICE = 256 * 1024

MAX_OUTPUT_SETTING = "ansible_psrp_max_output_mb"


def render_object(output: t.Any) -> str:
    """One output object as ansible.builtin.psrp prints it (property lines for objects without ToString)."""
    try:
        from pypsrp.complex_objects import GenericComplexObject
    except ImportError:  # pragma: no cover - the session needs pypsrp anyway
        return _render_plain(output)
    if isinstance(output, GenericComplexObject) and output.to_string is None:
        lines = list(output.property_sets)
        lines += [f"{k}: {v}" for k, v in output.adapted_properties.items()]
        lines += [f"{k}: {v}" for k, v in output.extended_properties.items()]
        return "\n".join(lines)
    return _render_plain(output)


def _render_plain(output: t.Any) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return "" if output is None else str(output)


def render_error(error: t.Any, verbose_errors: bool) -> str:
    """One ErrorRecord as ansible.builtin.psrp prints it on stderr."""
    if error.fq_error == "NativeCommandErrorMessage" and not error.target_name:
        return str(error)
    if error.fq_error in ("NativeCommandError", "NativeCommandErrorMessage"):
        return f"{error}\r\n"
    command_name = f"{error.command_name} : " if error.command_name else ""
    position = f"{error.invocation_position_message}\r\n" if error.invocation_position_message else ""
    msg = (
        f"{command_name}{error}\r\n{position}"
        f"    + CategoryInfo          : {error.message}\r\n"
        f"    + FullyQualifiedErrorId : {error.fq_error}"
    )
    if verbose_errors and error.script_stacktrace is not None:
        msg += f"\r\nStackTrace:\r\n{error.script_stacktrace}"
    return f"{msg}\r\n"


class StreamedOutput:
    """Writes a pipeline's stdout and stderr to a sink as builtin would render them, counting against a bound."""

    def __init__(self, sink: OutputSink, limit: int | None = None) -> None:
        self._sink = sink
        self._limit = limit or None
        self._first_stdout = True
        self.written = 0

    def _write(self, stream: str, text: str) -> None:
        for start in range(0, len(text), TEXT_SLICE):
            data = text[start : start + TEXT_SLICE].encode("utf-8", "surrogateescape")
            self.written += len(data)
            if self._limit is not None and self.written > self._limit:
                raise OutputLimitError(
                    f"the task's output passed {self._limit // (1024 * 1024)} MiB ({MAX_OUTPUT_SETTING}); "
                    f"{OutputLimitError.STOPPED}. Raise {MAX_OUTPUT_SETTING} (0: no bound, as "
                    "ansible.builtin.psrp, which keeps every byte in memory several times over), or have the "
                    "command write to a file on the host and fetch it."
                )
            self._sink(stream, data)

    def stdout_item(self, text: str) -> None:
        """One stdout item (an output object, or a host line): CRLF between items, as builtin joins them."""
        if not self._first_stdout:
            self._write("stdout", "\r\n")
        self._first_stdout = False
        self._write("stdout", text)

    def output(self, value: t.Any) -> None:
        """An output object that a Receive brought."""
        self.stdout_item(render_object(value))

    def finish(self, pipeline: t.Any, host: t.Any, verbose_errors: bool) -> int:
        """The pipeline ended: the host's lines and the error records, then the rc; the host is reset for the next."""
        for line in host.ui.stdout:
            self.stdout_item(str(line))
        for error in pipeline.streams.error:
            self._write("stderr", render_error(error, verbose_errors))
        for line in host.ui.stderr:
            self._write("stderr", str(line))
        rc = int(host.rc or (1 if pipeline.had_errors else 0))
        host.rc = 0
        host.ui.stdout = []
        host.ui.stderr = []
        return rc


class Collected:
    """A sink that keeps stdout and stderr (the in-process runner, and transfers' short answers)."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()

    def __call__(self, stream: str, data: bytes) -> None:
        (self.stdout if stream == "stdout" else self.stderr).extend(data)
