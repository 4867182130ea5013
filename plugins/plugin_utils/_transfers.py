"""T4 for files: put_file and fetch_file of any size, each command within the host's per-command limits.

Windows caps what one remote command may receive: a session configuration's MaximumReceivedDataSizePerCommandMB
(50 by default; every chunk of data a command gets counts, its CREATE_PIPELINE included) and
MaximumReceivedObjectSizeMB (10; one input object). ansible-core's psrp_put_file.ps1 lifts the first for its
command through reflection on PowerShell's internals (`MaximumAllowedMemory` of the command's deserializer),
which Constrained Language Mode refuses and a PowerShell whose internals moved would break. These scripts use
no reflection: a file goes up in several commands, each well under Windows' default quota, appending to one
staged file beside the destination; each command checks the SHA-1 of the bytes it wrote against the
controller's, and the last moves the staged file into place. So the destination is never half-written, and no
command is ever sent twice (a failed command fails the transfer; its staged file is removed).

The first command of a session's first put carries at most 512 KiB and reports the quota its command got (read
by reflection where PowerShell allows it, never changed); the later commands are sized by it, or by Windows'
default where it could not be read.

A file comes down in ranges, one command each, so what the host's process buffers for a slow client stays
bounded whatever the file's size; each range carries its own SHA-1, checked by the controller.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import typing as t

# Windows' default MaximumReceivedDataSizePerCommandMB: what a put command's input is planned against until the
# host refuses one with a lower maximum (then the session plans with that).
DEFAULT_COMMAND_INPUT_QUOTA = 50 * 1024 * 1024
# What a put command leaves of the quota unused: its CREATE_PIPELINE and the fragments' headers are counted too.
_QUOTA_HEADROOM = 2 * 1024 * 1024
_PER_LINE_OVERHEAD = 256  # PSRP message and fragment headers, <S></S> around one base64 line
# The file bytes the first put command of a session carries at most, while the host's quota is not yet known
# (its reply says it): a host whose session configuration lowered MaximumReceivedDataSizePerCommandMB to 1 MB
# still takes it. Smaller files go up in that one command.
FIRST_PUT_COMMAND_BYTES = 512 * 1024
# The file bytes one fetch command reads: bounds what the host buffers (as base64) for a client that lags.
FETCH_RANGE_BYTES = 32 * 1024 * 1024

# Windows' text when a command passed MaximumReceivedDataSizePerCommandMB (PSRemotingErrorId 872).
_QUOTA_REFUSAL = re.compile(r"exceeded the allowed maximum\. The allowed maximum is (\d+)")

PUT_SCRIPT = r"""param([string]$Path, [string]$Staged, [long]$Offset)
$ErrorActionPreference = 'Stop'
$fs = $null
$kept = $false
try {
    if (-not $Staged) {
        if (Test-Path -LiteralPath $Path -PathType Container) {
            throw "put_file: the destination '$Path' is a directory"
        }
        $parent = Split-Path -Parent $Path
        if ($parent -and -not (Test-Path -LiteralPath $parent -PathType Container)) {
            throw "put_file: the destination directory '$parent' does not exist"
        }
        $Staged = "$Path.pinned-$([Guid]::NewGuid().ToString('N')).tmp"
        $fs = [IO.FileStream]::new($Staged, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write, [IO.FileShare]::None)
    }
    else {
        $fs = [IO.FileStream]::new($Staged, [IO.FileMode]::Open, [IO.FileAccess]::Write, [IO.FileShare]::None)
        if ($fs.Length -ne $Offset) {
            throw "put_file: the staged file '$Staged' holds $($fs.Length) bytes where the controller sent $Offset"
        }
        $null = $fs.Seek(0, [IO.SeekOrigin]::End)
    }
    $sha1 = [Security.Cryptography.SHA1]::Create()
    $expected = $null
    $final = $false
    $written = 0
    foreach ($line in $input) {
        if ($line.StartsWith('#sha1=')) { $expected = $line.Substring(6); continue }
        if ($line -eq '#final') { $final = $true; continue }
        if ($line.Length -gt 0) {
            $bytes = [Convert]::FromBase64String($line)
            $null = $sha1.TransformBlock($bytes, 0, $bytes.Length, $bytes, 0)
            $fs.Write($bytes, 0, $bytes.Length)
            $written += $bytes.Length
        }
    }
    $null = $sha1.TransformFinalBlock([byte[]]::new(0), 0, 0)
    $fs.Dispose()
    $hash = [BitConverter]::ToString($sha1.Hash).Replace('-', '').ToLowerInvariant()
    if ($expected -ne $hash) {
        throw "put_file: the data received hashes to $hash but the controller sent $expected; '$Path' was left unchanged"
    }
    if ($final) {
        Move-Item -LiteralPath $Staged -Destination $Path -Force
    }
    $kept = $true
    # The session configuration's MaximumReceivedDataSizePerCommandMB as this command's deserializer holds it
    # (read, never changed; the internals ansible-core's psrp_put_file.ps1 sets): the next commands are sized
    # by it. Where reflection is refused or finds nothing, the controller keeps Windows' default.
    $quota = ''
    try {
        $flags = [Reflection.BindingFlags]'NonPublic, Instance'
        $external = $Host.GetType().GetProperty('ExternalHost', $flags).GetValue($Host, $null)
        $transport = $external.GetType().GetField('_transportManager', $flags).GetValue($external)
        $fragmentor = $transport.GetType().GetProperty('Fragmentor', $flags).GetValue($transport, $null)
        $context = $fragmentor.GetType().GetProperty('DeserializationContext', $flags).GetValue($fragmentor, $null)
        $maximum = $context.GetType().GetProperty('MaximumAllowedMemory', $flags).GetValue($context, $null)
        $quota = if ($null -eq $maximum) { ',"quota":null' } else { ",`"quota`":$maximum" }
    }
    catch {
        $quota = ''
    }
    "{`"sha1`":`"$hash`",`"staged`":`"$($Staged.Replace('\', '\\'))`",`"size`":$($Offset + $written),`"final`":$(([string]$final).ToLowerInvariant())$quota}"
}
finally {
    if ($null -ne $fs) { $fs.Dispose() }
    if (-not $kept -and $Staged) { Remove-Item -LiteralPath $Staged -Force -ErrorAction SilentlyContinue }
}
"""

FETCH_SCRIPT = r"""param([string]$Path, [int]$BufferSize, [long]$Offset, [long]$Length, [long]$Size)
$ErrorActionPreference = 'Stop'
if (Test-Path -LiteralPath $Path -PathType Container) {
    "[DIR]"
}
elseif (Test-Path -LiteralPath $Path -PathType Leaf) {
    $fs = [IO.File]::OpenRead($Path)
    try {
        if ($Offset -eq 0) {
            "[FILE]"
            "#size=$($fs.Length)"
        }
        elseif ($fs.Length -ne $Size) {
            throw "fetch_file: '$Path' changed while it was fetched (it held $Size bytes, now $($fs.Length))"
        }
        $null = $fs.Seek($Offset, [IO.SeekOrigin]::Begin)
        $sha1 = [Security.Cryptography.SHA1]::Create()
        $buffer = [byte[]]::new($BufferSize)
        $left = $Length
        while ($left -gt 0 -and ($read = $fs.Read($buffer, 0, [Math]::Min($buffer.Length, $left))) -gt 0) {
            $null = $sha1.TransformBlock($buffer, 0, $read, $buffer, 0)
            [Convert]::ToBase64String($buffer, 0, $read)
            $left -= $read
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


def put_lines_per_command(chunk_size: int, quota: int, create_pipeline_bytes: int) -> int:
    """How many base64 lines of `chunk_size` raw bytes one put command may carry under `quota` bytes of input."""
    line = 4 * -(-chunk_size // 3) + _PER_LINE_OVERHEAD
    room = quota - create_pipeline_bytes - _QUOTA_HEADROOM
    return max(1, room // line)


def refused_quota(message: str) -> int | None:
    """The maximum a host named when it refused a command's input (MaximumReceivedDataSizePerCommandMB), or None."""
    match = _QUOTA_REFUSAL.search(message)
    return int(match.group(1)) if match else None


class PutCommand:
    """The input of one put command: up to `lines` chunks of the file, their SHA-1, and '#final' after the last."""

    def __init__(self, chunks: "Lookahead", lines: int, whole: t.Any) -> None:
        self._chunks = chunks
        self._lines = lines
        self._whole = whole  # the SHA-1 of the whole file, fed as the chunks pass
        self.digest = hashlib.sha1()
        self.size = 0
        self.final = False

    def __iter__(self) -> t.Iterator[str]:
        for _ in range(self._lines):
            chunk = self._chunks.next()
            if chunk is None:
                break
            self.digest.update(chunk)
            self._whole.update(chunk)
            self.size += len(chunk)
            yield base64.b64encode(chunk).decode("ascii")
        yield "#sha1=" + self.digest.hexdigest()
        if self._chunks.exhausted():
            self.final = True
            yield "#final"


class Lookahead:
    """An iterator of non-empty byte chunks that can tell whether another one follows (reading it ahead)."""

    _END = object()

    def __init__(self, chunks: t.Iterable[bytes]) -> None:
        self._it = (chunk for chunk in chunks if chunk)
        self._ahead: t.Any = None

    def next(self) -> bytes | None:
        if self._ahead is not None:
            chunk, self._ahead = self._ahead, None
            return None if chunk is self._END else t.cast(bytes, chunk)
        return next(self._it, None)

    def exhausted(self) -> bool:
        if self._ahead is None:
            self._ahead = next(self._it, self._END)
        return self._ahead is self._END


def put_reply(text: str) -> dict[str, t.Any] | None:
    """The JSON line a put command ends with, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None
