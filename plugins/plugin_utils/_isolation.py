"""T1 Isolation: every pipeline of a pinned pool leaves its runspace and process as the pool opened them.

ansible.builtin.psrp runs each task in a fresh Runspace Pool (a fresh wsmprovhost.exe); a pinned pool lives
on, and PowerShell keeps a runspace's session state and its process' environment from one pipeline to the
next. So when a pool opens, the Session runs baseline_script() once (a pipeline of its own): it defines, in the
pool's global scope, a restore function and a data variable under names no task guesses (a random suffix per
pool), and the function captures the new pool's state into that variable and answers with its seal (a digest of
what it captured). Every pipeline then ends with a short second statement, Baseline.restore_statement(), that
calls the function with the seal; the function puts back what the first statement (the task) changed:

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
a constant variable, `$Error` under Constrained Language (no method can clear it there), and its own function
or data removed or changed by the task (the call fails, or the data no longer has the seal the Session keeps).
Its verdict is the pipeline's last output object, `"<nonce> clean ..."` or `"<nonce> recycle: <why>"`, under a
nonce the task never saw (it is in the call, never stored on the host); the Session takes it out of the task's
output and recycles the pool before the next task when the verdict is not clean or never came (a task that
failed or was stopped ends its pipeline before the restore; a task that redefined the function gets none).

The function uses cmdlets by their module-qualified names (a task's function or alias named like one does not
shadow them), sets its own preference variables, and touches only core .NET types, so it also runs in
Constrained Language Mode. Its own function and variable are left out of what it compares.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import typing as t

# Variables that are not state: PowerShell sets them for each statement, scope or command.
_VOLATILE_VARIABLES = (
    "$", "?", "^", "_", "args", "input", "MyInvocation", "PSBoundParameters", "PSCmdlet", "PSItem",
    "PSCommandPath", "PSScriptRoot", "Error", "StackTrace", "Matches", "foreach", "switch", "this",
)

# The restore function's body: with -Capture it snapshots the new pool into its data variable and answers with the
# seal (a digest of the snapshot's digests, location and language mode); else it puts the runspace back as that
# snapshot says, after checking the data still carries the seal the Session passes, and answers with its verdict.
# __FUNCTION__ and __DATA__ are the pool's names, __VOLATILE__ the variables that are not state.
_RESTORE_FUNCTION = r"""
function global:__FUNCTION__ {
param([string]$PinnedNonce, [string]$PinnedSeal, [switch]$Capture)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$VerbosePreference = 'SilentlyContinue'
$DebugPreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$ConfirmPreference = 'None'
$WhatIfPreference = $false
$PSDefaultParameterValues = @{}
# not state: PowerShell's per-scope variables, and this pool's own function and data (never "left by a task")
$pinnedSkip = @('__VOLATILE__', '__DATA__')
$pinnedOwn = '__FUNCTION__'
$pinnedSnapshot = {
    $state = @{}
    $environment = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-ChildItem -LiteralPath 'Env:') { $environment[[string]$item.Name] = [string]$item.Value }
    $state['env'] = $environment
    $vars = @{}
    foreach ($item in Microsoft.PowerShell.Utility\Get-Variable -Scope Global) {
        $name = [string]$item.Name
        if ($pinnedSkip -contains $name) { continue }
        $value = $item.Value
        # its options too: a task that makes a variable ReadOnly leaves it unwritable for the next task
        $options = [string]$item.Options
        if ($null -eq $value) { $vars[$name] = @('null', '', "null|$options"); continue }
        $type = [string]$value.PSObject.TypeNames[0]
        $kind = 'o'
        if ($value -is [string]) { $kind = 's' }
        elseif ($value -is [bool]) { $kind = 'b' }
        elseif ($value -is [int]) { $kind = 'i' }
        elseif ($value -is [long]) { $kind = 'l' }
        elseif ($value -is [double]) { $kind = 'd' }
        elseif ($value -is [hashtable]) { $kind = 'h' }
        $text = if ($kind -eq 'h') { [string]$value.Count } else { $value.ToString() }
        $vars[$name] = @($kind, $text, "$type|$text|$options")
    }
    $state['vars'] = $vars
    $functions = @{}
    foreach ($item in Microsoft.PowerShell.Management\Get-ChildItem -LiteralPath 'Function:') {
        $name = [string]$item.Name
        if ($name -ne $pinnedOwn) { $functions[$name] = [string]$item.Definition }
    }
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
# and the capture and every restore run in the same process).
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
# The seal: what the snapshot says, in one digest; the Session keeps it, so data a task changed is found out.
$pinnedSealOf = {
    param($state)
    $parts = @{ 'location' = $state['location']; 'language' = $state['language'] }
    foreach ($category in $pinnedCategories) { $parts[$category] = $state['digests'][$category] }
    & $pinnedDigest $parts
}
if ($Capture) {
    $state = & $pinnedSnapshot
    $digests = @{}
    foreach ($category in $pinnedCategories) { $digests[$category] = & $pinnedDigest $state[$category] }
    $state['digests'] = $digests
    Microsoft.PowerShell.Utility\Set-Variable -Name '__DATA__' -Value $state -Scope Global -Force
    $answer = @{ 'seal' = (& $pinnedSealOf $state); 'functions' = $state['functions'].Count; 'vars' = $state['vars'].Count }
    Microsoft.PowerShell.Utility\ConvertTo-Json -Compress -InputObject $answer
}
else {
$pinnedWhy = @()
$pinnedDone = @()
# Strict mode set in the global scope cannot be turned off from here (Set-StrictMode has no -Scope); this script
# reads no unset variable, so it runs under strict mode too, and says so.
try { $null = $pinnedNeverSet } catch { $pinnedWhy += 'strict mode is set in the global scope' }
try {
    $base = Microsoft.PowerShell.Utility\Get-Variable -Name '__DATA__' -Scope Global -ValueOnly -ErrorAction Ignore
    if ($base -isnot [hashtable] -or $base['digests'] -isnot [hashtable]) { throw "the pool's baseline variable `$__DATA__ is gone" }
    if ((& $pinnedSealOf $base) -cne $PinnedSeal) { throw "the pool's baseline variable `$__DATA__ was changed" }
    $now = & $pinnedSnapshot
    if ($now['language'] -ne $base['language']) { $pinnedWhy += "the language mode is $($now['language'])" }
    $changed = @(foreach ($category in $pinnedCategories) {
        if ((& $pinnedDigest $now[$category]) -ne $base['digests'][$category]) { $category }
    })
    $was = $base
    if ($changed -contains 'modules') {
        foreach ($module in @(Microsoft.PowerShell.Core\Get-Module)) {
            if (-not $was['modules'].ContainsKey([string]$module.Name)) {
                $module | Microsoft.PowerShell.Core\Remove-Module -Force -ErrorAction Ignore
            }
        }
        $now['functions'] = (& $pinnedSnapshot)['functions']
        if ((& $pinnedDigest $now['functions']) -ne $base['digests']['functions'] -and $changed -notcontains 'functions') {
            $changed += 'functions'
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
    if ($now['location'] -cne $base['location']) {
        Microsoft.PowerShell.Management\Set-Location -LiteralPath $base['location']
        $pinnedDone += 'location'
    }
    if ($pinnedDone.Count -gt 0) {
        $after = & $pinnedSnapshot
        foreach ($category in $pinnedCategories) {
            if ((& $pinnedDigest $after[$category]) -ne $base['digests'][$category]) { $pinnedWhy += "$category differ after the restore" }
        }
        if ($after['location'] -cne $base['location']) { $pinnedWhy += 'the location could not be restored' }
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
}
}
"""

# A name no task guesses: the function and its data live in the pool's global scope (docs/pinning.md says what a
# task can see of them).
_NAME = re.compile(r"^[0-9a-f]{32}$")
_SEAL = re.compile(r"^[0-9]+:-?[0-9]+$")


def baseline_script(pool_key: str) -> str:
    """The pool's first pipeline: define its restore function and capture its state; answers with the seal."""
    if not _NAME.match(pool_key):
        raise ValueError(f"not a pool key: {pool_key!r}")
    function, data = _names(pool_key)
    body = (_RESTORE_FUNCTION.replace("__FUNCTION__", function).replace("__DATA__", data)
            .replace("'__VOLATILE__'", ", ".join(f"'{name}'" for name in _VOLATILE_VARIABLES)))
    return "$ErrorActionPreference = 'Stop'\n" + body + f"{function} -Capture\n"


def _names(pool_key: str) -> tuple[str, str]:
    return f"PinnedRestore_{pool_key}", f"PinnedBaseline_{pool_key}"


def new_pool_key() -> str:
    """A fresh unguessable suffix for one pool's restore function and data."""
    return secrets.token_hex(16)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the restore statement said about the state the task left."""

    clean: bool
    restored: tuple[str, ...] = ()  # the kinds of state it put back (env, vars, functions, ...)
    why: str = ""  # when not clean: what it could not put back


class Baseline:
    """A pool's captured state, as the Session knows it: its restore function's name, the seal of the data that
    function reads, and the nonce its verdicts carry; the state itself stays in the pool's runspace."""

    def __init__(self, text: str, pool_key: str) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the host's state snapshot is not JSON: {text[:200]!r}") from exc
        seal = data.get("seal") if isinstance(data, dict) else None
        if not isinstance(seal, str) or not _SEAL.match(seal):
            raise ValueError(f"the host's state snapshot lacks its seal: {text[:200]!r}")
        self.function = _names(pool_key)[0]
        self.seal = seal
        self.nonce = secrets.token_hex(16)  # one per pool, never stored on the host: a task cannot fake a verdict

    def restore_statement(self) -> str:
        """The statement that ends every pipeline: a call of the pool's restore function; when a task removed or
        broke it, a verdict that recycles the pool (no verdict at all recycles it too)."""
        return (f"try {{ {self.function} '{self.nonce}' '{self.seal}' }} catch {{ "
                f"'{self.nonce} recycle: the restore function failed or is gone: ' + $_.Exception.Message }}")

    def verdict_of(self, value: t.Any) -> Verdict | None:
        """The verdict when `value` (an output object) is the restore's, else None (it is the task's output)."""
        if not isinstance(value, str) or not value.startswith(self.nonce + " "):
            return None
        rest = value[len(self.nonce) + 1:]
        if rest.startswith("clean"):
            done = rest[len("clean"):].strip()
            return Verdict(True, tuple(x for x in done.split(",") if x))
        return Verdict(False, why=rest.removeprefix("recycle:").strip() or rest)
