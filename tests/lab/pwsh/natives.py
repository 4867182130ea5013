"""Native commands run from PowerShell: an executable as a pipeline stage, and the ones every lab host has.

What a host can run is its HostContext.native_commands, passed in by the Engine (which adds cmd.exe
and powershell.exe, run on an Engine of their own); output lines go down the pipeline, stderr lines
become NativeCommandError records, and the exit code sets $LASTEXITCODE.
"""

from __future__ import annotations

from tests.lab.pwsh.errors import ErrorRecord
from tests.lab.pwsh.host import HostContext, NativeCommandFn, NativeResult
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.stages import Stage
from tests.lab.pwsh.values import NO_INPUT, SWITCH_PRESENT, to_str


def _native_hostname(host: HostContext, cwd: str, args: list[str]) -> NativeResult:
    """hostname.exe: the computer name; any argument is refused as Windows refuses it."""
    if args:
        return 1, [], ["sethostname: Use the Network Control Panel Applet to set hostname.",
                       "hostname -s is not supported."]
    return 0, [host.computer_name], []


def _native_whoami(host: HostContext, cwd: str, args: list[str]) -> NativeResult:
    """whoami.exe: computer\\user in lower case; /upn fails for a local account."""
    if not args:
        return 0, [f"{host.computer_name.lower()}\\{host.user.lower()}"], []
    if [a.lower() for a in args] == ["/upn"]:
        return 1, [], ["ERROR: Unable to get User Principal Name (UPN) as the current logged-on user", "is not a domain user."]
    return 1, [], [f"ERROR: Invalid argument/option - '{args[0]}'.", 'Type "WHOAMI /?" for usage.']


_SHUTDOWN_USAGE = ("Usage: shutdown [/i | /l | /s | /sg | /r | /g | /a | /p | /h | /e | /o] [/hybrid] [/soft] [/fw] "
                   "[/f]\r\n    [/m \\\\computer][/t xxx][/d [p|u:]xx:yy [/c \"comment\"]]")


def _native_shutdown(host: HostContext, cwd: str, args: list[str]) -> NativeResult:
    """shutdown.exe /r|/s [/t N] [/c "comment"] [/f] [/d ...] and /a, on the machine's power state (Windows Commands
    reference: shutdown): exit 0, or the Win32 error it reports as "<computer>: <message>(<code>)" on stderr."""
    machine = host.process.machine
    if machine is None:
        return 1, [], ["The lab host has no machine state to shut down."]
    opts = [a.lower() for a in args]
    delay, comment = 30, ""
    try:
        if "/t" in opts:
            delay = int(args[opts.index("/t") + 1])
        if "/c" in opts:
            comment = args[opts.index("/c") + 1]
    except (IndexError, ValueError):
        return 87, [], [_SHUTDOWN_USAGE, "The parameter is incorrect.(87)"]
    if "/a" in opts:
        code = machine.abort_shutdown()
    elif "/r" in opts or "/s" in opts:
        if not 0 <= delay <= 315_360_000:
            return 87, [], [_SHUTDOWN_USAGE, "The parameter is incorrect.(87)"]
        code = machine.schedule_shutdown(delay, restart="/r" in opts, comment=comment, by=host.user)
    else:
        return 0, [_SHUTDOWN_USAGE], []
    if code:
        messages = {1190: "A system shutdown has already been scheduled.", 1115: "A system shutdown is in progress.",
                    1116: "Unable to abort the system shutdown because no shutdown was in progress."}
        return code, [], [f"{host.computer_name}: {messages.get(code, f'Win32 error {code}')}({code})"]
    return 0, [], []


# The executables every lab host has whatever its Engine adds (the Engine adds cmd.exe and powershell.exe).
BUILTIN_NATIVE_COMMANDS: dict[str, NativeCommandFn] = {"hostname": _native_hostname, "whoami": _native_whoami,
                                                       "shutdown": _native_shutdown}


class NativeCommand(Stage):
    """An executable: output lines to the pipeline, stderr lines as NativeCommandError, sets $LASTEXITCODE."""

    def __init__(self, rt: Interpreter, name: str, positional: list[object], named: dict[str, object]) -> None:
        self.rt = rt
        self.name = name
        args = [to_str(a) for a in positional]
        for k, v in named.items():
            args.append(f"-{k}" if v is SWITCH_PRESENT else f"-{k}:{to_str(v)}")
        self.args = args

    def process_item(self, item: object) -> None:
        if item is not NO_INPUT:
            return

    def end(self) -> None:
        rt = self.rt
        run = rt.host.native_command(self.name)
        assert run is not None  # resolve_command only makes a NativeCommand for a name the host has
        rc, out, err = run(rt.host, rt.cwd, self.args)
        for line in out:
            self.sink(line)
        for idx, line in enumerate(err):
            rec = ErrorRecord(line, category="NotSpecified",
                              fq_error_id="NativeCommandError" if idx == 0 else "NativeCommandErrorMessage",
                              exception_type="System.Management.Automation.RemoteException", target=line,
                              command_name=f"{self.name}.exe", reason="RemoteException")
            rt.write_error(rec, "Continue" if to_str(rt.get_var("ErrorActionPreference")).lower() == "stop" else None)
        rt.global_scope.vars["lastexitcode"] = rc
        rt.last_ok = rc == 0
