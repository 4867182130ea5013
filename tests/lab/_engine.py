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

from tests.lab import _internal, _transfer, pwsh
from tests.lab._cmd import CmdShell
from tests.lab.pwsh import ErrorInfo, Streams
from tests.lab.pwsh.command_line import split_program, split_tail

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


# Executables of the lab host, relative to its C:\ (the engine emulates each; tests/lab/_cmd.py CmdShell).
_EXECUTABLES = ("Windows/System32/cmd.exe", "Windows/System32/WindowsPowerShell/v1.0/powershell.exe",
                "Windows/System32/whoami.exe", "Windows/System32/hostname.exe", "Windows/System32/shutdown.exe")


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
        for exe in _EXECUTABLES:  # the files of the executables the host runs (scripts Get-Item them)
            path = self.root / exe
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"MZ lab executable: the engine runs this program's emulation\r\n")
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
        # what the runs of this process share: compiled C# types, the console, the machine it runs on
        self.process = pwsh.ProcessState()
        # One Engine is one process (wsmprovhost.exe for a Runspace Pool): a new pool is a new process.
        self.process_id = random.randint(1000, 65000) & ~3  # Windows process ids are multiples of 4
        self.language_mode = "FullLanguage"
        self.visible_commands: set[str] | None = None
        self.visible_providers: set[str] | None = None
        self.wsman_settings: Callable[[], Mapping[str, str]] | None = None
        self.runspaces: list[pwsh.Runspace] = []
        self.memory_watch: Callable[[], None] | None = None  # the PSRP host's MaxMemoryPerShellMB check

    def attach_machine(self, machine: object) -> None:
        """Runs this process on the host's OS state (tests/lab/_machine.py): its services, accounts and reboots, and
        the environment a new logon process gets, the machine's and the user's variables (Path joined)."""
        self.process.machine = machine
        system = machine.environment("machine", self.user)  # type: ignore[attr-defined]
        user = machine.environment("user", self.user)  # type: ignore[attr-defined]
        merged = {**system, **{k: v for k, v in user.items() if k.lower() != "path"}}
        user_path = next((v for k, v in user.items() if k.lower() == "path"), "")
        system_path = next((v for k, v in system.items() if k.lower() == "path"), "")
        merged["Path"] = f"{system_path};{user_path}" if user_path else system_path
        # PowerShell puts the user's own module folder first when it starts (ModuleIntrinsics.GetModulePath;
        # recorded: test_client_execute_ps_environment)
        system_modules = next((v for k, v in system.items() if k.lower() == "psmodulepath"), "")
        merged["PSModulePath"] = f"C:\\Users\\{self.user}\\Documents\\WindowsPowerShell\\Modules;{system_modules}"
        for key, value in merged.items():
            if key.upper() == "USERNAME":
                continue  # the logon's own, not the machine's SYSTEM
            for existing in [k for k in self.env if k.lower() == key.lower()]:
                del self.env[existing]
            self.env[key] = value

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

    def host_context(self) -> pwsh.HostContext:
        """This host as one PowerShell run sees it: its programs include cmd.exe and powershell.exe on this engine."""
        return pwsh.HostContext(self.root, self.computer_name, self.user, self.env,
                                 native_commands={**pwsh.BUILTIN_NATIVE_COMMANDS, "cmd": _cmd_exe,
                                                  "powershell": _powershell_exe},
                                 process=self.process, launch=self.create_process, run_process=self.run_process,
                                 language_mode=self.language_mode, visible_commands=self.visible_commands,
                                 visible_providers=self.visible_providers, wsman_settings=self.wsman_settings,
                                 memory_check=self.memory_watch)

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
        host = self.host_context()
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

    # ---- processes ---------------------------------------------------------------------------------
    def child(self, env: dict[str, str] | None = None, user: str | None = None) -> Engine:
        """A new process of this host: its own environment (a copy of this one's unless given), same machine.

        A process of another user (CreateProcessAsUser) gets that user's logon environment and profile instead."""
        engine = Engine(self.root, self.computer_name, user or self.user)
        if user is not None and user.lower() != self.user.lower() and self.process.machine is not None:
            engine.attach_machine(self.process.machine)
            if env is not None:
                engine.env = dict(env)
            engine.process.has_console = True
            return engine
        engine.env = dict(self.env) if env is None else dict(env)
        engine.process.machine = self.process.machine
        engine.process.has_console = True  # CreateProcess children of the lab's hosts get (or inherit) a console
        return engine

    def run_process(self, application: str | None, command_line: str, stdin: Iterable[bytes],
                    stdout: Callable[[bytes], None], stderr: Callable[[bytes], None]) -> int:
        """A child process with streamed standard handles (async_wrapper's CreateAsyncProcess), run to its exit.

        It shares this process's handle table, as a child inherits handles with their values."""
        program, tail = split_program(command_line.lstrip())
        exe = application or program
        base = re.split(r"[\\/]", exe)[-1].lower().removesuffix(".exe")
        child = self.child()
        child.process.handles = getattr(self.process, "handles", None)
        if base != "powershell":
            raise FileNotFoundError(2, "The lab starts only powershell.exe with streamed handles.", exe)
        try:
            return child.run_powershell_exe(split_tail(tail), stdin, stdout, stderr, cwd=child.process_cwd)
        except Exception as e:  # powershell.exe reports its own failures as its exit code: this is the lab's bug
            _internal.lab_bug("a child powershell.exe with streamed handles", e)
            return 1

    def create_process(self, application: str | None, command_line: str, cwd: str | None,
                       env: dict[str, str] | None, stdin: bytes = b"", user: str | None = None
                       ) -> tuple[int, bytes, bytes]:
        """CreateProcess on the lab host, waiting for the process: (exit code, stdout bytes, stderr bytes).

        The executable is `application`, else the command line's first argument (CommandLineToArgvW's rules);
        the lab host has cmd.exe, powershell.exe, whoami.exe, hostname.exe and shutdown.exe in System32.
        Anything else fails as CreateProcess does: FileNotFoundError (ERROR_FILE_NOT_FOUND, 2).
        """
        program, tail = split_program(command_line.lstrip())
        exe = application or program
        base = re.split(r"[\\/]", exe)[-1].lower().removesuffix(".exe")
        child = self.child(env, user)
        if cwd:
            child.process_cwd = cwd
        out, err = bytearray(), bytearray()
        if base == "cmd":
            shell = CmdShell(child, [stdin] if stdin else [], out.extend, err.extend)
            shell.cwd = child.process_cwd
            return shell.cmd_exe(tail, out.extend, err.extend), bytes(out), bytes(err)
        if base == "powershell":
            rc = child.run_powershell_exe(split_tail(tail), [stdin] if stdin else [], out.extend, err.extend,
                                          cwd=child.process_cwd)
            return rc, bytes(out), bytes(err)
        native = child.host_context().native_command(base)
        if native is None or base in ("cmd", "powershell"):
            raise FileNotFoundError(2, "The system cannot find the file specified.", exe)
        rc, lines, errors = native(child.host_context(), child.process_cwd, split_tail(tail))
        return (rc, "".join(line + "\r\n" for line in lines).encode("utf-8"),
                "".join(line + "\r\n" for line in errors).encode("utf-8"))

    def _run_ps_text(self, script: str, args: list[object], lines: Iterable[object], streams: _TextStreams,
                     state: dict[str, object], cwd: str) -> None:
        rt = pwsh.Runtime(self.host_context(), streams)
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
