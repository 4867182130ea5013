"""The host a run executes on: its names, its environment and a case-insensitive C:\\ mapped under a root directory.

Everything the interpreter learns about the machine comes from HostContext, which the Engine builds
for each run; the file system is the engine's root directory seen as NTFS sees it.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterable, Mapping

from tests.lab.pwsh.process import ProcessState

# A native command's result: exit code, stdout lines, stderr lines.
NativeResult = tuple[int, list[str], list[str]]
# A native command (hostname.exe, cmd.exe...): called with the host, the current location and its argv.
NativeCommandFn = Callable[["HostContext", str, list[str]], NativeResult]
# CreateProcess: (application or None, command line, working directory, environment or None to inherit, stdin,
# user=None for this process's user) -> (exit code, stdout bytes, stderr bytes); FileNotFoundError when there is no
# such executable.
LaunchFn = Callable[..., tuple[int, bytes, bytes]]


class PathOutsideRoot(Exception):
    """A path that names no place on the lab host's C:\\ (another drive, a UNC path, an escape from the root)."""


class FileSystem:
    """Maps Windows paths (C:\\..., C:/..., relative) onto `root`, case-insensitively like NTFS."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root.resolve()
        # PS drives the running session defined (New-PSDrive): drive name -> its root as a C:\\ path.
        self.drive_root: Callable[[str], str | None] = lambda name: None

    def full_win(self, path: str, cwd: str) -> str:
        p = path.strip()
        for prefix in ("microsoft.powershell.core\\filesystem::", "filesystem::"):
            if p.lower().startswith(prefix):
                p = p[len(prefix):]
        p = p.replace("/", "\\")
        named = re.match(r"^([A-Za-z][A-Za-z0-9_]+|[A-Za-z]):(.*)$", p)
        if named and named.group(1).lower() != "c":
            root = self.drive_root(named.group(1).lower())
            if root is None:
                raise PathOutsideRoot(f"Cannot find drive. A drive with the name '{named.group(1)}' does not exist.")
            p = root.rstrip("\\") + "\\" + named.group(2).lstrip("\\")
        if re.match(r"^[A-Za-z]:", p):
            rest = p[2:]
            if not rest.startswith("\\"):
                rest = cwd[2:] + "\\" + rest
        elif p.startswith("\\\\"):
            raise PathOutsideRoot(f"The network path '{path}' is outside the lab host.")
        elif p.startswith("\\"):
            rest = p
        elif p.startswith("~"):
            rest = "\\Users\\" + cwd.split("\\")[2] + p[1:] if cwd.lower().startswith("c:\\users\\") else p[1:]
        else:
            rest = cwd[2:] + "\\" + p
        parts: list[str] = []
        for comp in rest.split("\\"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(comp.rstrip(" ."))
        return "C:\\" + "\\".join(parts)

    def host_path(self, path: str, cwd: str) -> pathlib.Path:
        win = self.full_win(path, cwd)
        cur = self.root
        for comp in win[3:].split("\\"):
            if not comp:
                continue
            if any(ch in comp for ch in '<>:"|?*\0'):
                raise PathOutsideRoot(f"Illegal characters in path '{path}'.")
            nxt = cur / comp
            if not nxt.exists() and cur.is_dir():
                low = comp.lower()
                for entry in cur.iterdir():
                    if entry.name.lower() == low:
                        nxt = entry
                        break
            cur = nxt
        resolved = cur.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise PathOutsideRoot(f"The path '{path}' is outside the lab host's file system.")
        return cur

    def read_text(self, path: str, cwd: str) -> str:
        """A script file as Windows PowerShell 5.1 reads one: UTF-8 (or UTF-16) by its BOM, else the ANSI code page."""
        data = self.host_path(path, cwd).read_bytes()
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8")
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("cp1252", errors="replace")

    def win_of(self, host: pathlib.Path) -> str:
        rel = host.relative_to(self.root)
        return "C:\\" + "\\".join(rel.parts)


class HostContext:
    """What a run needs from its Engine: names, environment, file system, the programs the host has beyond the
    interpreter (native commands by name) and the process it runs in, all passed in."""

    def __init__(self, root: pathlib.Path, computer_name: str, user: str, env: dict[str, str], *,
                 native_commands: Mapping[str, NativeCommandFn] | None = None,
                 process: ProcessState | None = None, launch: LaunchFn | None = None,
                 run_process: Callable[..., int] | None = None,
                 language_mode: str = "FullLanguage", visible_commands: set[str] | None = None,
                 visible_providers: set[str] | None = None,
                 wsman_settings: Callable[[], Mapping[str, str]] | None = None,
                 memory_check: Callable[[], None] | None = None) -> None:
        self.fs = FileSystem(root)
        self.computer_name = computer_name
        self.user = user
        self.env = env
        self.profile_dir = f"C:\\Users\\{user}"
        self.native_commands: dict[str, NativeCommandFn] = dict(native_commands or {})  # lower-case, no ".exe"
        self.process = process if process is not None else ProcessState()  # shared by the runs of one process
        self._launch = launch
        self._run_process = run_process
        # about_Language_Modes: FullLanguage, ConstrainedLanguage (a WDAC/AppLocker lockdown), NoLanguage (JEA)
        self.language_mode = language_mode
        # a JEA endpoint's visible commands and providers, lower-case (None: everything the host has)
        self.visible_commands = visible_commands
        self.visible_providers = visible_providers
        self._wsman_settings = wsman_settings
        self._memory_check = memory_check

    def check_memory(self) -> None:
        """Tells the process' host the run just took more memory (it may end the process: MaxMemoryPerShellMB)."""
        if self._memory_check is not None:
            self._memory_check()

    def provider_visible(self, name: str) -> bool:
        return self.visible_providers is None or name.lower() in self.visible_providers

    def command_visible(self, name: str) -> bool:
        return self.visible_commands is None or name.lower() in self.visible_commands

    def wsman_settings(self) -> Mapping[str, str]:
        """The WinRM settings the WSMan: drive shows, by path under WSMan:\\localhost (case-insensitive)."""
        return self._wsman_settings() if self._wsman_settings is not None else {}

    def native_command(self, name: str) -> NativeCommandFn | None:
        """The executable `name` (with or without .exe, any case, bare or by its path in C:\\Windows\\System32)
        runs, or None when the host has none."""
        low = name.lower().replace("/", "\\")
        folder, _, base = low.rpartition("\\")
        if folder and folder not in ("c:\\windows\\system32", "c:\\windows\\system32\\windowspowershell\\v1.0"):
            return None
        return self.native_commands.get(base.removesuffix(".exe"))

    def launch(self, application: str | None, command_line: str, cwd: str | None, env: dict[str, str] | None,
               stdin: bytes = b"", user: str | None = None) -> tuple[int, bytes, bytes]:
        """Starts a process on the host and waits for it (the Engine's create_process); `user` runs it as another
        account (already logged on by the caller)."""
        if self._launch is None:
            raise FileNotFoundError(2, "The lab host has no process launcher.", command_line)
        return self._launch(application, command_line, cwd, env, stdin, user=user)

    def run_process(self, application: str | None, command_line: str, stdin: Iterable[bytes],
                    stdout: Callable[[bytes], None], stderr: Callable[[bytes], None]) -> int:
        """Runs a child process with streamed handles to its exit (the Engine's run_process); its exit code."""
        if self._run_process is None:
            raise FileNotFoundError(2, "The lab host has no process launcher.", command_line)
        return self._run_process(application, command_line, stdin, stdout, stderr)

    def env_get(self, name: str) -> str | None:
        for k, v in self.env.items():
            if k.lower() == name.lower():
                return v
        return None

    def env_set(self, name: str, value: str | None) -> None:
        for k in list(self.env):
            if k.lower() == name.lower():
                del self.env[k]
        if value:
            self.env[name] = value
