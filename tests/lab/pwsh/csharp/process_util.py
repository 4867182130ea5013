"""ansible.windows' Process.cs (module_utils/Process.cs, ansible.windows 3.8.0), emulated: ProcessUtil's
CommandLineToArgv and CreateProcess, which win_command and win_shell reach through Process.psm1.

CreateProcess starts the process on the lab host (HostContext.launch: the Engine runs cmd.exe, powershell.exe
and the host's other executables as a child process with its own copy of the environment) and waits for it,
decoding its output as UTF-8 unless told otherwise, as the C# does. An executable the host does not have
fails as CreateProcessW does (Win32 error 2). The other types the source's //TypeAccelerator lines name
exist so Add-CSharpType registers them, and answer nothing more.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh import command_line
from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, MemberNotFound, SimpleType
from tests.lab.pwsh.net.automation import method_failed, win32_exception
from tests.lab.pwsh.values import to_str

SOURCE_SHA256 = "7f4068507df62740adf22b54e590488b77f54c454da551e959790115b0b34d3f"
NAMESPACE = "ansible_collections.ansible.windows.plugins.module_utils.Process"

_CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "unicode": "utf-16-le", "utf-16": "utf-16-le", "ascii": "ascii",
           "windows-1252": "cp1252", "ibm437": "cp437", "437": "cp437", "65001": "utf-8", "1252": "cp1252"}


def command_line_to_argv(line: str) -> list[str]:
    """ProcessUtil.CommandLineToArgv: CommandLineToArgvW's split (pwsh/command_line.py); for an empty line
    CommandLineToArgvW names the running program, here powershell.exe."""
    if not line:
        return ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"]
    return command_line.command_line_to_argv(line)


class ResultObj:
    ps_type = f"{NAMESPACE}.Result"

    def __init__(self, stdout: str, stderr: str, rc: int) -> None:
        self.StandardOut = stdout
        self.StandardError = stderr
        self.ExitCode = rc & 0xFFFFFFFF


def create_process(rt: Any, args: list[object]) -> ResultObj:
    app = to_str(args[0]) if args and args[0] is not None else ""
    command_line = to_str(args[1]) if len(args) > 1 and args[1] is not None else ""
    cwd = to_str(args[2]) if len(args) > 2 and args[2] is not None else ""
    env_arg = args[3] if len(args) > 3 else None
    stdin = args[4] if len(args) > 4 else None
    encoding = to_str(args[5]) if len(args) > 5 and args[5] is not None else ""
    env = {to_str(k): to_str(v) for k, v in env_arg.items()} if isinstance(env_arg, dict) else None
    data = bytes(stdin) if isinstance(stdin, (bytes, bytearray)) else b""
    try:
        rc, out, err = rt.host.launch(app.strip() or None, command_line, cwd.strip() or None, env, data)
    except FileNotFoundError:
        raise method_failed("CreateProcess", len(args), win32_exception(
            2, "CreateProcessW() failed", "The system cannot find the file specified")) from None
    codec = _CODECS.get(encoding.lower(), "utf-8") if encoding else "utf-8"
    return ResultObj(out.decode(codec, errors="replace"), err.decode(codec, errors="replace"), rc)


class ProcessUtilType(DotNetType):
    full_name = f"{NAMESPACE}.ProcessUtil"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "commandlinetoargv":
            return command_line_to_argv(to_str(args[0]) if args else "")
        if low == "createprocess" and len(args) == 7:
            return create_process(rt, args)
        raise MemberNotFound(name)


@emulates(SOURCE_SHA256, "ansible.windows 3.8.0 plugins/module_utils/Process.cs")
def define() -> list[DotNetType]:
    return [ProcessUtilType(), SimpleType(f"{NAMESPACE}.Result", instance=lambda v: isinstance(v, ResultObj)),
            SimpleType(f"{NAMESPACE}.ProcessInformation"), SimpleType(f"{NAMESPACE}.SecurityAttributes"),
            SimpleType(f"{NAMESPACE}.StartupInfo")]
