"""T1 Isolation: every pipeline of a pinned pool leaves its runspace and process as the pool opened them.

ansible.builtin.psrp runs each task in a fresh Runspace Pool (a fresh wsmprovhost.exe); a pinned pool lives
on, and PowerShell keeps a runspace's session state and its process' environment from one pipeline to the
next. So the Session captures the state of a new pool once (BASELINE_SCRIPT, its own pipeline when the pool
opens) and ends every pipeline it runs with a second statement, RESTORE_SCRIPT, that puts back what the
first statement (the task) changed:

- process environment variables (what the `environment:` keyword's module_wrapper set, `$env:X = ...`);
- global variables: new ones removed, changed built-in ones (preference variables, `$PSDefaultParameterValues`)
  set back, `$LASTEXITCODE` gone, `$Error` emptied;
- functions, aliases and PS drives the task added, modules it imported; the current location.

One CREATE_PIPELINE carries both statements (PSRP's ExtraCmds; pypsrp's `add_statement()`); Windows runs
them one after the other in the same runspace, the first with the pipeline's input, the next only when the
first completed (PowerShell's `PowerShell.BeginBatchInvoke`, `ServerPowerShellDriver`; docs/pinning.md). The
task's statement is the first, so it gets its input and runs exactly as alone; the restore costs no request.

What the restore cannot put back safely it reports instead of hiding: a changed language mode, strict mode
set in the global scope, a changed or removed built-in function, alias or drive, a module that refuses removal,
a constant variable, `$Error` under Constrained Language (no method can clear it there). Its verdict is the
pipeline's last output object, `"<nonce> clean ..."` or `"<nonce> recycle: <why>"`, under a nonce the task
never saw; the Session takes it out of the task's output and recycles the pool before the next task when the
verdict is not clean or never came (a task that failed or was stopped ends its pipeline before the restore).

Both scripts use cmdlets by their module-qualified names (a task's function or alias named like one does not
shadow them), set their own preference variables, and touch only core .NET types, so they also run in
Constrained Language Mode.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import typing as t

# Variables that are not state: PowerShell sets them for each statement, scope or command.
_VOLATILE_VARIABLES = (
    "$", "?", "^", "_", "args", "input", "MyInvocation", "PSBoundParameters", "PSCmdlet", "PSItem",
    "PSCommandPath", "PSScriptRoot", "Error", "StackTrace", "Matches", "foreach", "switch", "this",
)

# What both scripts share: the snapshot of the state a task can leave, as plain data.
_SNAPSHOT = r"""
$pinnedVolatile = @('__VOLATILE__')
$pinnedSnapshot = {
    $state = @{}
    $environment = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-ChildItem -LiteralPath 'Env:') { $environment[[string]$item.Name] = [string]$item.Value }
    $state['env'] = $environment
    $vars = @{}
    foreach ($item in Microsoft.PowerShell.Utility\Get-Variable -Scope Global) {
        $name = [string]$item.Name
        if ($pinnedVolatile -contains $name) { continue }
        $value = $item.Value
        if ($null -eq $value) { $vars[$name] = @('null', '', 'null'); continue }
        $type = [string]$value.PSObject.TypeNames[0]
        $kind = 'o'
        if ($value -is [string]) { $kind = 's' }
        elseif ($value -is [bool]) { $kind = 'b' }
        elseif ($value -is [int]) { $kind = 'i' }
        elseif ($value -is [long]) { $kind = 'l' }
        elseif ($value -is [double]) { $kind = 'd' }
        elseif ($value -is [hashtable]) { $kind = 'h' }
        $text = if ($kind -eq 'h') { [string]$value.Count } else { $value.ToString() }
        $vars[$name] = @($kind, $text, "$type|$text")
    }
    $state['vars'] = $vars
    $functions = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-ChildItem -LiteralPath 'Function:') { $functions[[string]$item.Name] = [string]$item.Definition }
    $state['functions'] = $functions
    $aliases = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-ChildItem -LiteralPath 'Alias:') { $aliases[[string]$item.Name] = [string]$item.Definition }
    $state['aliases'] = $aliases
    $drives = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-PSDrive) { $drives[[string]$item.Name] = [string]$item.Root }
    $state['drives'] = $drives
    $modules = @{}
    foreach ($item in Microsoft.PowerShell.Core\Get-Module) { $modules[[string]$item.Name] = [string]$item.Path }
    $state['modules'] = $modules
    $state['location'] = [string](Microsoft.PowerShell.Management\Get-Location).Path
    $state['language'] = [string]$ExecutionContext.SessionState.LanguageMode
    $state
}
# A table's digest: its entries sorted, joined and hashed (String.GetHashCode is stable within one process,
# and the baseline and every restore run in the same process).
$pinnedDigest = {
    param($table)
    $lines = foreach ($key in @($table.Keys | Microsoft.PowerShell.Utility\Sort-Object)) {
        $entry = $table[$key]
        if ($entry -is [array]) { "$key=$($entry[2])" } else { "$key=$entry" }
    }
    $text = $lines -join "`n"
    "$($text.Length):$($text.GetHashCode())"
}
$pinnedCategories = @('env', 'vars', 'functions', 'aliases', 'drives', 'modules')
"""

BASELINE_SCRIPT = (
    r"""
$ErrorActionPreference = 'Stop'
"""
    + _SNAPSHOT
    + r"""
$pinnedState = & $pinnedSnapshot
$pinnedDigests = @{}
foreach ($category in $pinnedCategories) { $pinnedDigests[$category] = & $pinnedDigest $pinnedState[$category] }
$pinnedState['digests'] = $pinnedDigests
Microsoft.PowerShell.Utility\ConvertTo-Json -InputObject $pinnedState -Compress -Depth 4
"""
)

RESTORE_SCRIPT = (
    r"""param([string]$PinnedNonce, [string]$PinnedBaseline)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$VerbosePreference = 'SilentlyContinue'
$DebugPreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$ConfirmPreference = 'None'
$WhatIfPreference = $false
$PSDefaultParameterValues = @{}
$pinnedWhy = @()
$pinnedDone = @()
# Strict mode set in the global scope cannot be turned off from here (Set-StrictMode has no -Scope); this script
# reads no unset variable, so it runs under strict mode too, and says so.
try { $null = $pinnedNeverSet } catch { $pinnedWhy += 'strict mode is set in the global scope' }
"""
    + _SNAPSHOT
    + r"""
try {
    $base = Microsoft.PowerShell.Utility\ConvertFrom-Json -InputObject $PinnedBaseline
    $now = & $pinnedSnapshot
    if ($now['language'] -ne $base.language) { $pinnedWhy += "the language mode is $($now['language'])" }
    $changed = @(foreach ($category in $pinnedCategories) {
        if ((& $pinnedDigest $now[$category]) -ne $base.digests.$category) { $category }
    })
    $was = @{}
    foreach ($category in $changed) {
        $table = @{}
        foreach ($p in $base.$category.PSObject.Properties) { $table[$p.Name] = $p.Value }
        $was[$category] = $table
    }
    if ($changed -contains 'modules') {
        foreach ($module in @(Microsoft.PowerShell.Core\Get-Module)) {
            if (-not $was['modules'].ContainsKey([string]$module.Name)) {
                $module | Microsoft.PowerShell.Core\Remove-Module -Force -ErrorAction Ignore
            }
        }
        $now['functions'] = (& $pinnedSnapshot)['functions']
        if ((& $pinnedDigest $now['functions']) -ne $base.digests.functions -and $changed -notcontains 'functions') {
            $changed += 'functions'
            $table = @{}
            foreach ($p in $base.functions.PSObject.Properties) { $table[$p.Name] = $p.Value }
            $was['functions'] = $table
        }
        $pinnedDone += 'modules'
    }
    if ($changed -contains 'env') {
        foreach ($name in @($now['env'].Keys)) {
            if (-not $was['env'].ContainsKey($name)) {
                Microsoft.PowerShell.Management\Remove-Item -LiteralPath "Env:$name" -Force -ErrorAction Ignore
            }
        }
        foreach ($name in @($was['env'].Keys)) {
            if ($now['env'][$name] -cne $was['env'][$name]) {
                $null = Microsoft.PowerShell.Management\New-Item -Path 'Env:' -Name $name -Value $was['env'][$name] -Force -ErrorAction Ignore
            }
        }
        $pinnedDone += 'env'
    }
    if ($changed -contains 'vars') {
        foreach ($name in @($now['vars'].Keys)) {
            if (-not $was['vars'].ContainsKey($name)) {
                Microsoft.PowerShell.Utility\Remove-Variable -Name $name -Scope Global -Force -ErrorAction Ignore
            }
        }
        foreach ($name in @($was['vars'].Keys)) {
            $old = $was['vars'][$name]
            $current = $now['vars'][$name]
            if ($null -ne $current -and $current[2] -ceq $old[2]) { continue }
            $value = switch ($old[0]) {
                'null' { $null }
                's' { [string]$old[1] }
                'b' { $old[1] -eq 'True' }
                'i' { [int]$old[1] }
                'l' { [long]$old[1] }
                'd' { [double]$old[1] }
                'h' { @{} }
                default { [string]$old[1] }
            }
            Microsoft.PowerShell.Utility\Set-Variable -Name $name -Value $value -Scope Global -Force -ErrorAction Ignore
        }
        $pinnedDone += 'vars'
    }
    foreach ($pair in @(@('functions', 'Function:'), @('aliases', 'Alias:'))) {
        $category = $pair[0]
        if ($changed -notcontains $category) { continue }
        foreach ($name in @($now[$category].Keys)) {
            if (-not $was[$category].ContainsKey($name)) {
                Microsoft.PowerShell.Management\Remove-Item -LiteralPath "$($pair[1])$name" -Force -ErrorAction Ignore
            }
        }
        $pinnedDone += $category
    }
    if ($changed -contains 'drives') {
        foreach ($name in @($now['drives'].Keys)) {
            if (-not $was['drives'].ContainsKey($name)) {
                Microsoft.PowerShell.Management\Remove-PSDrive -Name $name -Scope Global -Force -ErrorAction Ignore
            }
        }
        $pinnedDone += 'drives'
    }
    if ($now['location'] -cne $base.location) {
        Microsoft.PowerShell.Management\Set-Location -LiteralPath $base.location
        $pinnedDone += 'location'
    }
    if ($pinnedDone.Count -gt 0) {
        $after = & $pinnedSnapshot
        foreach ($category in $pinnedCategories) {
            if ((& $pinnedDigest $after[$category]) -ne $base.digests.$category) { $pinnedWhy += "$category differ after the restore" }
        }
        if ($after['location'] -cne $base.location) { $pinnedWhy += 'the location could not be restored' }
    }
}
catch {
    $pinnedWhy += "the restore failed: $($_.Exception.Message)"
}
if ($global:Error.Count -gt 0) {
    if ($ExecutionContext.SessionState.LanguageMode -eq 'FullLanguage') { $global:Error.Clear(); $pinnedDone += 'errors' }
    else { $pinnedWhy += "`$Error cannot be emptied in $($ExecutionContext.SessionState.LanguageMode)" }
}
if ($pinnedWhy.Count -gt 0) { "$PinnedNonce recycle: $($pinnedWhy -join '; ')" }
else { "$PinnedNonce clean $($pinnedDone -join ',')" }
"""
)


def _with_volatile(script: str) -> str:
    return script.replace("'__VOLATILE__'", ", ".join(f"'{name}'" for name in _VOLATILE_VARIABLES))


BASELINE_SCRIPT = _with_volatile(BASELINE_SCRIPT)
RESTORE_SCRIPT = _with_volatile(RESTORE_SCRIPT)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the restore statement said about the state the task left."""

    clean: bool
    restored: tuple[str, ...] = ()  # the kinds of state it put back (env, vars, functions, ...)
    why: str = ""  # when not clean: what it could not put back


class Baseline:
    """The state of a new pool (BASELINE_SCRIPT's JSON), and the nonce its restore verdicts carry."""

    def __init__(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the host's state snapshot is not JSON: {text[:200]!r}") from exc
        if not isinstance(data, dict) or "digests" not in data:
            raise ValueError(f"the host's state snapshot lacks its digests: {text[:200]!r}")
        self.text = text
        self.data = data
        self.nonce = secrets.token_hex(16)  # one per pool: a task's output cannot fake a verdict it never saw

    def restore_arguments(self) -> list[str]:
        return [self.nonce, self.text]

    def verdict_of(self, value: t.Any) -> Verdict | None:
        """The verdict when `value` (an output object) is the restore's, else None (it is the task's output)."""
        if not isinstance(value, str) or not value.startswith(self.nonce + " "):
            return None
        rest = value[len(self.nonce) + 1:]
        if rest.startswith("clean"):
            done = rest[len("clean"):].strip()
            return Verdict(True, tuple(x for x in done.split(",") if x))
        return Verdict(False, why=rest.removeprefix("recycle:").strip() or rest)
