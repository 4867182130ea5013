"""The lab host's command engine: a documented subset of PowerShell and cmd (see docs/lab-engine.md).

The WS-Management service hands every WinRS command to `Engine.run_cmd` and every PSRP pipeline to
`Engine.run_powershell`; results are derived from the script, its arguments and the input received.
"""

from __future__ import annotations

import base64
import logging
import pathlib
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping

from tests.lab import _transfer, pwsh
from tests.lab.pwsh import ErrorInfo, Streams

log = logging.getLogger(__name__)

__all__ = ["Engine", "ErrorInfo", "Streams"]


_CLIXML_NS = "http://schemas.microsoft.com/powershell/2004/04"


def clixml_escape(text: str) -> str:
    """Escapes a string as PowerShell's CLIXML serializer does (_xHHHH_ for control characters)."""
    out = []
    for ch in text.replace("_x", "_x005F_x"):
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"_x{code:04X}_")
        elif ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        else:
            out.append(ch)
    return "".join(out)


class _TextStreams:
    """powershell.exe with redirected std handles: output as text, errors as CLIXML on stderr."""

    def __init__(self, stdout: Callable[[bytes], None], stderr: Callable[[bytes], None]) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self.clixml: list[str] = []
        self.exit_code: int | None = None
        self.had_error = False

    def output(self, value: object) -> None:
        text = pwsh.format_for_display([value])
        self._stdout((text + "\r\n").encode("utf-8", errors="surrogatepass"))

    def error(self, record: ErrorInfo) -> None:
        self.had_error = True
        text = pwsh.render_error_text(record)
        for line in text.split("\r\n"):
            self.clixml.append(f'<S S="Error">{clixml_escape(line + chr(13) + chr(10))}</S>')

    def terminating_error(self, record: ErrorInfo) -> None:
        self.error(record)

    def warning(self, message: str) -> None:
        self.clixml.append(f'<S S="warning">{clixml_escape(message + chr(13) + chr(10))}</S>')

    def verbose(self, message: str) -> None:
        self.clixml.append(f'<S S="verbose">{clixml_escape(message + chr(13) + chr(10))}</S>')

    def host_write(self, text: str, *, newline: bool = True, to_stderr: bool = False) -> None:
        data = (text + ("\r\n" if newline else "")).encode("utf-8", errors="surrogatepass")
        (self._stderr if to_stderr else self._stdout)(data)

    def set_should_exit(self, code: int) -> None:
        self.exit_code = code

    def flush(self) -> None:
        if self.clixml:
            body = "".join(self.clixml)
            self._stderr(f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="{_CLIXML_NS}">{body}</Objs>'.encode("utf-8"))
            self.clixml = []


def split_command_line(line: str) -> list[str]:
    """CommandLineToArgvW's rules, enough for the command lines clients build."""
    args: list[str] = []
    cur: list[str] = []
    in_quotes = False
    have = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            j = i
            while j < len(line) and line[j] == "\\":
                j += 1
            n = j - i
            if j < len(line) and line[j] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j
                have = True
                continue
            cur.append("\\" * n)
            i = j
            have = True
            continue
        if c == '"':
            in_quotes = not in_quotes
            have = True
        elif c in " \t" and not in_quotes:
            if have:
                args.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def _decode_encoded_arguments(b64: str) -> list[str]:
    xml = base64.b64decode(b64).decode("utf-16-le")
    root = ET.fromstring(xml[xml.index("<"):])
    out = []
    for el in root.iter():
        if el.tag.endswith("}S") or el.tag == "S":
            text = el.text or ""
            out.append(re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text))
    return out


def split_arguments(arguments: list[object]) -> tuple[list[object], dict[str, object]]:
    """PSRP arguments to (positional, named): `(name, value)` tuples, or "-Name" followed by its value."""
    positional: list[object] = []
    named: dict[str, object] = {}
    i = 0
    while i < len(arguments):
        a = arguments[i]
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str):
            named[a[0].lstrip("-")] = a[1]
        elif isinstance(a, str) and re.fullmatch(r"-[A-Za-z_][A-Za-z0-9_]*", a) and i + 1 < len(arguments):
            named[a[1:]] = arguments[i + 1]
            i += 1
        else:
            positional.append(a)
        i += 1
    return positional, named


# A new Runspace Pool's process (wsmprovhost.exe with Windows PowerShell loaded) before it holds anything.
PROCESS_BASELINE = 50 << 20

# The commands a RestrictedRemoteServer (JEA) session keeps (New-PSSessionConfigurationFile -SessionType).
RESTRICTED_REMOTE_SERVER_COMMANDS = ("Exit-PSSession", "Get-Command", "Get-FormatData", "Get-Help", "Measure-Object",
                                     "Out-Default", "Select-Object")


class Engine:
    """One simulated Windows host's command engine."""

    def __init__(self, root: pathlib.Path, computer_name: str, user: str) -> None:
        self.root = pathlib.Path(root)
        self.computer_name = computer_name
        self.user = user
        profile = self.root / "Users" / user
        for d in (self.root / "Windows" / "Temp", self.root / "Windows" / "System32", self.root / "ProgramData",
                  profile / "Documents", profile / "AppData" / "Local" / "Temp", profile / "Desktop"):
            d.mkdir(parents=True, exist_ok=True)
        temp = f"C:\\Users\\{user}\\AppData\\Local\\Temp"
        # process-wide environment: kept across runs, as a Runspace Pool's process keeps it
        self.env: dict[str, str] = {
            "ALLUSERSPROFILE": "C:\\ProgramData", "APPDATA": f"C:\\Users\\{user}\\AppData\\Roaming",
            "COMPUTERNAME": computer_name, "ComSpec": "C:\\Windows\\system32\\cmd.exe",
            "LOCALAPPDATA": f"C:\\Users\\{user}\\AppData\\Local", "NUMBER_OF_PROCESSORS": "2", "OS": "Windows_NT",
            "Path": "C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\",
            "PATHEXT": ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC;.CPL",
            "PROCESSOR_ARCHITECTURE": "AMD64", "ProgramData": "C:\\ProgramData", "ProgramFiles": "C:\\Program Files",
            "PSModulePath": f"C:\\Users\\{user}\\Documents\\WindowsPowerShell\\Modules;"
                            "C:\\Program Files\\WindowsPowerShell\\Modules;"
                            "C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules",
            # the rest of a Windows Server's machine environment (as recorded in test_client_execute_ps_environment)
            "CommonProgramFiles": "C:\\Program Files\\Common Files",
            "CommonProgramFiles(x86)": "C:\\Program Files (x86)\\Common Files",
            "CommonProgramW6432": "C:\\Program Files\\Common Files",
            "PROCESSOR_IDENTIFIER": "Intel64 Family 6 Model 70 Stepping 1, GenuineIntel",
            "PROCESSOR_LEVEL": "6", "PROCESSOR_REVISION": "4601",
            "ProgramFiles(x86)": "C:\\Program Files (x86)", "ProgramW6432": "C:\\Program Files",
            "PUBLIC": "C:\\Users\\Public", "SystemDrive": "C:", "SystemRoot": "C:\\Windows", "TEMP": temp,
            "TMP": temp, "USERDOMAIN": computer_name, "USERNAME": user, "USERPROFILE": f"C:\\Users\\{user}",
            "windir": "C:\\Windows",
        }

        # A WinRS process starts in the profile directory (or the shell's WorkingDirectory); PSRP in Documents.
        self.process_cwd = f"C:\\Users\\{user}"
        # One Engine is one process (wsmprovhost.exe for a Runspace Pool): a new pool is a new process.
        self.process_id = random.randint(1000, 65000) & ~3  # Windows process ids are multiples of 4
        self.language_mode = "FullLanguage"
        self.visible_commands: set[str] | None = None
        self.visible_providers: set[str] | None = None
        self.wsman_settings: Callable[[], Mapping[str, str]] | None = None
        self.runspaces: list[pwsh.Runspace] = []
        self.memory_watch: Callable[[], None] | None = None  # the PSRP host's MaxMemoryPerShellMB check

    def configure_shell(self, *, environment: dict[str, str] | None = None, working_directory: str | None = None,
                        no_profile: bool = False) -> None:
        """A WinRS shell's creation options: its environment variables and working directory."""
        for name, value in (environment or {}).items():
            for key in [k for k in self.env if k.lower() == name.lower()]:
                del self.env[key]
            self.env[name] = value
        if working_directory:
            self.process_cwd = working_directory

    def configure_host(self, *, language_mode: str = "FullLanguage",
                       wsman_settings: Callable[[], Mapping[str, str]] | None = None) -> None:
        """What the host gives every process: its language mode (ConstrainedLanguage under a lockdown policy) and
        the WinRM settings its WSMan: drive shows."""
        self.language_mode = language_mode
        self.wsman_settings = wsman_settings

    def configure_session(self, *, language_mode: str | None = None, restricted: bool = False,
                          visible_cmdlets: Iterable[str] | None = None,
                          visible_providers: Iterable[str] | None = None) -> None:
        """A session configuration's restrictions for this Runspace Pool's process (a JEA endpoint's)."""
        if language_mode:
            self.language_mode = language_mode
        if restricted or visible_cmdlets is not None:
            # RestrictedRemoteServer keeps only these proxy commands (New-PSSessionConfigurationFile), then the role's
            base = RESTRICTED_REMOTE_SERVER_COMMANDS if restricted else ()
            self.visible_commands = {c.lower() for c in (*base, *(visible_cmdlets or ()))}
        if visible_providers is not None:
            self.visible_providers = {p.lower() for p in visible_providers}

    def _host_context(self) -> pwsh.HostContext:
        """This host as one PowerShell run sees it: its programs include cmd.exe and powershell.exe on this engine."""
        return pwsh.HostContext(self.root, self.computer_name, self.user, self.env,
                                 native_commands={**pwsh.BUILTIN_NATIVE_COMMANDS, "cmd": _cmd_exe,
                                                  "powershell": _powershell_exe},
                                 script_emulation=_transfer.native_script, language_mode=self.language_mode,
                                 visible_commands=self.visible_commands, visible_providers=self.visible_providers,
                                 wsman_settings=self.wsman_settings, memory_check=self.memory_watch)

    # ---- PowerShell ------------------------------------------------------------------------------
    def new_runspace(self) -> pwsh.Runspace:
        """A runspace of this process, as a Runspace Pool opens one: it starts in the user's Documents."""
        runspace = pwsh.Runspace(f"C:\\Users\\{self.user}\\Documents", self.process_id)
        self.runspaces.append(runspace)
        return runspace

    def memory_bytes(self) -> int:
        """What this process holds: a wsmprovhost.exe with PowerShell loaded (about 50 MB, as Windows reports a
        new pool's MemoryUsed in test_psrp_disconnected_commands) and what its runspaces keep."""
        return PROCESS_BASELINE + sum(rs.memory_bytes() for rs in list(self.runspaces))

    def watch_memory(self, check: Callable[[], None]) -> None:
        """Called when a run takes much more memory; the PSRP host weighs the process against MaxMemoryPerShellMB."""
        self.memory_watch = check

    def run_powershell(self, script: str, arguments: list[object], input: Iterable[object], streams: Streams, *,
                       is_command: bool = False, runspace: pwsh.Runspace | None = None,
                       local_scope: bool = True) -> None:
        """Runs a PSRP pipeline: `script` (AddScript) or a command name (AddCommand) with `arguments`.

        An argument given as a 2-tuple `(name, value)` is a named parameter (AddParameter; `True` or `None`
        for a switch: PSRP sends AddParameter(name) without argument as null), as is a string "-Name"
        followed by its value; anything else is positional (AddArgument). `runspace` is the session state
        the pipeline runs in (a fresh one when None); a script runs in the global scope unless `local_scope`
        (AddScript's useLocalScope; PSRP's default is the global scope).
        """
        host = self._host_context()
        if runspace is not None and runspace.language_mode:
            host.language_mode = runspace.language_mode  # a script locked this runspace down
        if not is_command and host.language_mode == "NoLanguage":
            # Command.CreateCommandProcessor refuses a script in a no-language runspace (recorded from a JEA
            # endpoint: test_psrp_with_jea_configuration)
            failed = getattr(streams, "terminating_error", None)
            (failed or streams.error)(ErrorInfo(
                "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode.",
                category="ParserError", fq_error_id="ScriptsNotAllowed", target=script,
                exception_type="System.Management.Automation.ParseException"))
            return
        rt = pwsh.Runtime(host, streams, runspace)
        rt.runspace.running.append(rt)
        try:
            self._run(rt, script, arguments, input, streams, is_command, local_scope)
        finally:
            rt.runspace.running.remove(rt)

    def _run(self, rt: pwsh.Runtime, script: str, arguments: list[object], input: Iterable[object],
             streams: Streams, is_command: bool, local_scope: bool) -> None:
        # Each PIPELINE_INPUT is one input object, an array too: PowerShell does not enumerate input objects
        # (recorded in test_psrp_run_protocol_version_2.2: ["3", 3] comes back whole from `$input`).
        source = _peekable(iter(input))
        input_iter = source if source.has_any() else None
        out = self._sink(streams)
        try:
            try:
                positional, named = split_arguments(arguments)
                # PSRP carries AddParameter(name) with no argument as a null value: a switch that is present.
                named = {k: pwsh.SWITCH_PRESENT if v is None else v for k, v in named.items()}
                if is_command:
                    rt.src = script
                    rt.scope = rt.global_scope
                    node = pwsh.Node("command", 0, name=script, args=[], redirs=[], invoke=None)
                    node.end = len(script)
                    stage = pwsh.resolve_command(rt, script, positional, named, node)
                    stage.sink = out
                    stage.where = (0, len(script))
                    pwsh.run_stage(stage, input_iter)
                else:
                    rt.run_script(script, positional, named, input_iter, out, local_scope=local_scope)
            except pwsh.ParseError as e:
                raise pwsh.PSError(pwsh.parse_error_record(script, e)) from None
        except pwsh.ExitScript as e:
            streams.set_should_exit(e.code)
        except pwsh.PSError as e:
            info = e.record.to_info()
            failed = getattr(streams, "terminating_error", None)
            (failed or streams.error)(info)
        except (pwsh.BreakSignal, pwsh.ContinueSignal, pwsh.ReturnSignal):
            pass
        except RecursionError:
            streams.error(ErrorInfo("The script failed due to call depth overflow.", category="InvalidOperation",
                                    fq_error_id="CallDepthOverflow",
                                    exception_type="System.Management.Automation.ScriptCallDepthException"))

    @staticmethod
    def _sink(streams: Streams) -> Callable[[object], None]:
        # Output that feeds the next command of the same statement stays the object it is (a host sets
        # raw_output for that); output leaving the host becomes what PSRP serialises (display_value).
        if getattr(streams, "raw_output", False):
            return streams.output

        def out(v: object) -> None:
            streams.output(pwsh.display_value(v))
        return out

    # ---- WinRS (cmd shell) -----------------------------------------------------------------------
    def run_cmd(self, command: str, arguments: list[str], stdin: Iterable[bytes], stdout: Callable[[bytes], None],
                stderr: Callable[[bytes], None]) -> int:
        """Runs a WinRS command line (command and arguments joined verbatim) as cmd.exe would; returns the exit code."""
        # WinRS appends each rsp:Arguments verbatim after one space, no quoting: clients (ansible's winrm
        # plugin through pywinrm) send a whole '-NoProfile ... -EncodedCommand X' tail as one Arguments.
        line = " ".join([command, *arguments])
        return CmdShell(self, stdin, stdout, stderr).run_line(line)

    def run_powershell_exe(self, argv: list[str], stdin: Iterable[bytes], stdout: Callable[[bytes], None],
                           stderr: Callable[[bytes], None], cwd: str | None = None) -> int:
        """powershell.exe's command line: -EncodedCommand/-EncodedArguments/-Command/-File."""
        script: str | None = None
        args: list[object] = []
        input_none = False
        i = 0
        while i < len(argv):
            a = argv[i]
            low = a.lower()
            if low in ("-noprofile", "-nop", "-noninteractive", "-noni", "-nologo", "-mta", "-sta"):
                i += 1
            elif low in ("-executionpolicy", "-ep", "-ex", "-windowstyle", "-w", "-outputformat", "-of", "-version"):
                i += 2
            elif low in ("-inputformat", "-if", "-inputf"):
                input_none = i + 1 < len(argv) and argv[i + 1].lower() == "none"
                i += 2
            elif low in ("-encodedcommand", "-enc", "-e", "-ec"):
                script = base64.b64decode(argv[i + 1]).decode("utf-16-le")
                i += 2
            elif low in ("-encodedarguments", "-encodeda", "-ea"):
                args = list(_decode_encoded_arguments(argv[i + 1]))
                i += 2
            elif low in ("-command", "-c"):
                rest = argv[i + 1:]
                if rest == ["-"]:
                    script = "\n".join(_transfer.iter_lines(stdin))
                    input_none = True
                else:
                    script = " ".join(rest)
                break
            elif low in ("-file", "-f"):
                path = argv[i + 1]
                rt_fs = pwsh.FileSystem(self.root)
                try:
                    script = rt_fs.host_path(path, f"C:\\Users\\{self.user}").read_text(encoding="utf-8-sig")
                except (OSError, pwsh.PathOutsideRoot):
                    stderr((f"The argument '{path}' to the -File parameter does not exist. Provide the path to an "
                            f"existing '.ps1' file as an argument to the -File parameter.\r\n").encode())
                    return -196608  # 0xFFFD0000: powershell.exe's exit code when the -File script does not exist
                args = list(argv[i + 2:])
                break
            elif low.startswith("-"):
                stderr(f"-{low.lstrip('-')} : The term '{a}' is not recognized as a parameter of powershell.exe.\r\n"
                       .encode())
                return 1
            else:
                script = " ".join(argv[i:])
                break
        if script is None:
            stdout(b"Windows PowerShell\r\nCopyright (C) Microsoft Corporation. All rights reserved.\r\n\r\n")
            return 0
        streams = _TextStreams(stdout, stderr)
        lines: Iterable[object] = [] if input_none else _transfer.iter_lines(stdin)
        state: dict[str, object] = {}
        self._run_ps_text(script, args, lines, streams, state, cwd or self.process_cwd)
        streams.flush()
        if streams.exit_code is not None:
            return streams.exit_code
        return 1 if state.get("failed") or streams.had_error and state.get("last_failed") else 0

    def _run_ps_text(self, script: str, args: list[object], lines: Iterable[object], streams: _TextStreams,
                     state: dict[str, object], cwd: str) -> None:
        rt = pwsh.Runtime(self._host_context(), streams)
        rt.cwd = cwd
        source = _peekable(iter(lines))
        try:
            try:
                # A script without a process block reads stdin only if it enumerates $input: waiting for
                # stdin first would hang a WinRS command whose client never sends any (powershell.exe does not).
                lazy = "process" not in pwsh.parse(script).blocks
                rt.run_script(script, args, {}, source if lazy or source.has_any() else None,
                              lambda v: streams.output(v))
            except pwsh.ParseError as e:
                raise pwsh.PSError(pwsh.parse_error_record(script, e)) from None
        except pwsh.ExitScript as e:
            streams.set_should_exit(e.code)
        except pwsh.PSError as e:
            streams.error(e.record.to_info())
            state["failed"] = True
        state["last_failed"] = not rt.last_ok


class _peekable(Iterator[object]):
    """An iterator whose first item can be waited for without losing it."""

    _EMPTY = object()

    def __init__(self, it: Iterator[object]) -> None:
        self._it = it
        self._head: object = self._EMPTY
        self._done = False

    def has_any(self) -> bool:
        if self._head is self._EMPTY and not self._done:
            try:
                self._head = next(self._it)
            except StopIteration:
                self._done = True
        return self._head is not self._EMPTY

    def __iter__(self) -> Iterator[object]:
        return self

    def __next__(self) -> object:
        if self._head is not self._EMPTY:
            v, self._head = self._head, self._EMPTY
            return v
        if self._done:
            raise StopIteration
        return next(self._it)


# ---- cmd.exe and powershell.exe as native commands of a PowerShell run ---------------------------

def _native_line(args: list[str]) -> str:
    """The command line PowerShell 5.1 builds for an executable: arguments with blanks are quoted."""
    return " ".join(f'"{a}"' if (not a or any(c in a for c in " \t")) and not a.startswith('"') else a for a in args)


def _run_child(host: pwsh.HostContext, run: Callable[[Engine, Callable[[bytes], None], Callable[[bytes], None]], int],
               encoding: str) -> pwsh.NativeResult:
    """Runs cmd.exe/powershell.exe on the lab engine's own emulation, capturing both handles as lines."""
    engine = Engine(host.fs.root, host.computer_name, host.user)
    engine.env = host.env  # the child inherits the session's environment, and cmd's `set` changes it
    out, err = bytearray(), bytearray()
    rc = run(engine, out.extend, err.extend)

    def lines(data: bytearray) -> list[str]:
        text = bytes(data).decode(encoding, errors="replace")
        return text.replace("\r\n", "\n").removesuffix("\n").split("\n") if text else []
    return rc, lines(out), lines(err)


def _cmd_exe(host: pwsh.HostContext, cwd: str, args: list[str]) -> pwsh.NativeResult:
    def run(engine: Engine, out: Callable[[bytes], None], err: Callable[[bytes], None]) -> int:
        shell = CmdShell(engine, [], out, err)
        shell.cwd = cwd
        return shell.run_line(f"cmd.exe {_native_line(args)}")
    return _run_child(host, run, "cp437")


def _powershell_exe(host: pwsh.HostContext, cwd: str, args: list[str]) -> pwsh.NativeResult:
    def run(engine: Engine, out: Callable[[bytes], None], err: Callable[[bytes], None]) -> int:
        return engine.run_powershell_exe(list(args), [], out, err, cwd=cwd)
    return _run_child(host, run, "utf-8")


# ---- cmd.exe subset ------------------------------------------------------------------------------

_NOT_RECOGNIZED = "'{0}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"


class CmdShell:
    """cmd.exe's subset: echo, type, dir, set, ver, cd, hostname, whoami, exit [/b] N, powershell, cmd /c,
    `&`, `&&`, `||`, `>`/`>>`/`2>`/`2>&1` redirection and %VAR% expansion. Output in code page 437."""

    MAX_DEPTH = 8

    def __init__(self, engine: Engine, stdin: Iterable[bytes], stdout: Callable[[bytes], None],
                 stderr: Callable[[bytes], None], depth: int = 0) -> None:
        self.engine = engine
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.depth = depth
        self.cwd = getattr(engine, "process_cwd", f"C:\\Users\\{engine.user}")
        self.errorlevel = 0

    def expand(self, text: str) -> str:
        def rep(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.lower() == "errorlevel":
                return str(self.errorlevel)
            if name.lower() == "cd":
                return self.cwd
            for k, v in self.engine.env.items():
                if k.lower() == name.lower():
                    return v
            return m.group(0)
        return re.sub(r"%([^%\s]+)%", rep, text)

    @staticmethod
    def split_ops(line: str) -> list[tuple[str, str]]:
        """Splits on &, && and || outside quotes: [(operator_before, command)]."""
        parts: list[tuple[str, str]] = []
        cur: list[str] = []
        op = ""
        quoted = False
        i = 0
        while i < len(line):
            c = line[i]
            if c == '"':
                quoted = not quoted
            if not quoted and c == "^" and i + 1 < len(line):
                cur.append(line[i:i + 2])
                i += 2
                continue
            if not quoted and (line.startswith("&&", i) or line.startswith("||", i)):
                parts.append((op, "".join(cur)))
                op, cur = line[i:i + 2], []
                i += 2
                continue
            if not quoted and c == "&" and not (i > 0 and line[i - 1] == ">"):
                parts.append((op, "".join(cur)))
                op, cur = "&", []
                i += 1
                continue
            cur.append(c)
            i += 1
        parts.append((op, "".join(cur)))
        return [(o, p) for o, p in parts if p.strip()]

    def run_line(self, line: str) -> int:
        if self.depth > self.MAX_DEPTH:
            self.stderr(b"The lab's cmd nesting bound was reached.\r\n")
            return 1
        rc = 0
        for op, part in self.split_ops(line):
            if op == "&&" and rc != 0 or op == "||" and rc == 0:
                continue
            try:
                rc = self.run_simple(part.lstrip())
            except _CmdExit as e:
                return e.code
            self.errorlevel = rc
        return rc

    def run_simple(self, text: str) -> int:
        text = self.expand(text)
        out, err = self.stdout, self.stderr
        # redirections
        redir = re.compile(r'(\d?)(>>|>)(&\d|\s*"[^"]*"|\s*[^\s&|<>]+)')
        stripped = text
        for m in list(redir.finditer(text)):
            stream, kind, target = m.group(1) or "1", m.group(2), m.group(3).strip().strip('"')
            if target == "&1":
                dest = self.stdout
            elif target == "&2":
                dest = self.stderr
            elif target.lower() == "nul":
                dest = lambda b: None  # noqa: E731
            else:
                try:
                    hp = pwsh.FileSystem(self.engine.root).host_path(target, self.cwd)
                except pwsh.PathOutsideRoot:
                    self.stderr(b"The system cannot find the path specified.\r\n")
                    return 1
                if not hp.parent.is_dir():
                    self.stderr(b"The system cannot find the path specified.\r\n")
                    return 1
                if kind == ">":
                    hp.write_bytes(b"")

                def dest(b: bytes, _hp: pathlib.Path = hp) -> None:
                    with open(_hp, "ab") as f:
                        f.write(b)
            if stream == "2":
                err = dest
            else:
                out = dest
            stripped = stripped.replace(m.group(0), "", 1)
        text = stripped.lstrip()  # cmd keeps the blanks before a redirection: `echo a > f` writes "a "
        if not text:
            return 0
        m = re.match(r'^("[^"]*"|[^\s/]+)(.*)$', text, re.S)
        assert m
        name = m.group(1).strip('"')
        rest = m.group(2)
        low = name.lower()
        base = re.split(r"[\\/]", low)[-1]
        args = rest.strip()
        enc = "cp437"

        def w(s: str) -> None:
            out(s.encode(enc, errors="replace"))

        if low == "echo." or (low == "echo" and not args):
            w("\r\n" if low == "echo." else "ECHO is on.\r\n")
            return 0
        if low == "echo":
            w(rest[1:] + "\r\n" if rest.startswith(" ") else rest + "\r\n")
            return 0
        if low in ("type",):
            path = args.strip('"')
            try:
                hp = pwsh.FileSystem(self.engine.root).host_path(path, self.cwd)
            except pwsh.PathOutsideRoot:
                err(b"The system cannot find the path specified.\r\n")
                return 1
            if not hp.is_file():
                # cmd tells a missing directory on the way from a missing file
                missing = b"file" if hp.parent.is_dir() else b"path"
                err(b"The system cannot find the " + missing + b" specified.\r\n")
                return 1
            out(hp.read_bytes())
            return 0
        if low == "dir":
            return self.dir(args, w, err)
        if low == "ver":
            w("\r\nMicrosoft Windows [Version 10.0.17763.1007]\r\n")
            return 0
        if low in ("cd", "chdir") and not args:
            w(self.cwd + "\r\n")
            return 0
        if low in ("cd", "chdir"):
            path = args.strip('"').removeprefix("/d ").strip()
            try:
                hp = pwsh.FileSystem(self.engine.root).host_path(path, self.cwd)
            except pwsh.PathOutsideRoot:
                hp = None
            if hp is None or not hp.is_dir():
                err(b"The system cannot find the path specified.\r\n")
                return 1
            self.cwd = pwsh.FileSystem(self.engine.root).win_of(hp)
            return 0
        if low == "set":
            if not args:
                # cmd.exe defines PROMPT in its own environment when it starts without one
                listing = {"PROMPT": "$P$G", **self.engine.env} if not any(
                    k.lower() == "prompt" for k in self.engine.env) else dict(self.engine.env)
                for k in sorted(listing, key=str.lower):
                    w(f"{k}={listing[k]}\r\n")
                return 0
            if "=" in args:
                k, v = args.split("=", 1)
                for key in list(self.engine.env):
                    if key.lower() == k.lower():
                        del self.engine.env[key]
                if v:
                    self.engine.env[k] = v
                return 0
            found = [k for k in self.engine.env if k.lower().startswith(args.lower())]
            if not found:
                err(f"Environment variable {args} not defined\r\n".encode(enc, errors="replace"))
                return 1
            for k in sorted(found, key=str.lower):
                w(f"{k}={self.engine.env[k]}\r\n")
            return 0
        if low == "exit":
            parts = args.split()
            is_b = bool(parts) and parts[0].lower() == "/b"
            if is_b:
                parts = parts[1:]
            try:
                code = int(parts[0]) if parts else (self.errorlevel if is_b else 0)
            except ValueError:
                code = 0
            raise _CmdExit(code)
        if base in ("hostname", "hostname.exe"):
            if args:
                err(b"sethostname: Use the Network Control Panel Applet to set hostname.\r\n")
                return 1
            w(self.engine.computer_name + "\r\n")
            return 0
        if base in ("whoami", "whoami.exe"):
            if args:
                err(f"ERROR: Invalid argument/option - '{args.split()[0]}'.\r\nType \"WHOAMI /?\" for usage.\r\n"
                    .encode(enc, errors="replace"))
                return 1
            w(f"{self.engine.computer_name.lower()}\\{self.engine.user.lower()}\r\n")
            return 0
        if base in ("cmd", "cmd.exe"):
            mm = re.match(r"^\s*(?:/[a-bd-jl-z]\S*\s+)*/[ck]\s+(.*)$", rest, re.I | re.S)
            if not mm:
                w("Microsoft Windows [Version 10.0.17763.1007]\r\n(c) 2018 Microsoft Corporation. All rights reserved.\r\n")
                return 0
            # cmd keeps trailing blanks of its /c line (`cmd /c echo a || ...` runs "echo a "), but drops quotes
            inner = mm.group(1).lstrip()
            quoted = inner.rstrip()
            if quoted.startswith('"') and quoted.endswith('"') and quoted.count('"') == 2:
                inner = quoted[1:-1]
            return CmdShell(self.engine, self.stdin, out, err, self.depth + 1).run_line(inner)
        if base in ("powershell", "powershell.exe", "pwsh", "pwsh.exe"):
            return self.engine.run_powershell_exe(split_command_line(rest), self.stdin, out, err, cwd=self.cwd)
        err(_NOT_RECOGNIZED.format(name).encode(enc, errors="replace"))
        return 9009

    def dir(self, args: str, w: Callable[[str], None], err: Callable[[bytes], None]) -> int:
        import datetime as dt
        fs = pwsh.FileSystem(self.engine.root)
        bare = "/b" in args.lower().split()
        path = " ".join(a for a in args.split() if not a.startswith("/")).strip('"') or "."
        try:
            hp = fs.host_path(path, self.cwd)
        except pwsh.PathOutsideRoot:
            err(b"The system cannot find the path specified.\r\n")
            return 1
        if not hp.exists():
            w(" Volume in drive C has no label.\r\n Volume Serial Number is 4C4B-1D2E\r\n\r\n")
            err(b"File Not Found\r\n")
            return 1
        entries = sorted(hp.iterdir(), key=lambda e: e.name.lower()) if hp.is_dir() else [hp]
        if bare:
            for e in entries:
                w(e.name + "\r\n")
            return 0
        w(" Volume in drive C has no label.\r\n Volume Serial Number is 4C4B-1D2E\r\n\r\n")
        w(f" Directory of {fs.win_of(hp if hp.is_dir() else hp.parent)}\r\n\r\n")
        files = dirs = size = 0

        def stamp(p: pathlib.Path) -> str:
            return dt.datetime.fromtimestamp(p.stat().st_mtime).strftime("%m/%d/%Y  %I:%M %p")
        if hp.is_dir():
            for dot in (".", ".."):
                w(f"{stamp(hp)}    <DIR>          {dot}\r\n")
                dirs += 1
        for e in entries:
            if e.is_dir():
                dirs += 1
                w(f"{stamp(e)}    <DIR>          {e.name}\r\n")
            else:
                files += 1
                n = e.stat().st_size
                size += n
                w(f"{stamp(e)}    {n:>14,} {e.name}\r\n")
        w(f"{files:>16} File(s) {size:>14,} bytes\r\n{dirs:>16} Dir(s)  53,687,091,200 bytes free\r\n")
        return 0


class _CmdExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
