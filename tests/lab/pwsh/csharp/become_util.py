"""ansible-core 2.21.5's become C# utils (Ansible.AccessToken.cs, Ansible.Become.cs, Ansible.Process.cs, which
become_wrapper.ps1 compiles together), emulated: BecomeUtil.CreateProcessAsUser logs the account on against the
machine's accounts and runs the command line as a process of that user, waiting for it.

The logon is LogonUserW's: a wrong password fails "Failed to logon .\\<user> (The user name or password is
incorrect, Win32ErrorCode 1326 - 0x0000052E)"; SYSTEM needs none. The process gets the user's own logon
environment and profile (Engine.child with the user), and its output comes back as Ansible.Process.Result.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound, SimpleType
from tests.lab.pwsh.net.automation import method_failed, win32_exception
from tests.lab.pwsh.values import to_str

ACCESS_TOKEN_SHA256 = "4c83a9471e25bfd16584cc967c74b7d0220c46d337baa47cfaee91bf45f51d61"
BECOME_SHA256 = "8fcce415d034b9a435bfbe0b2fc2534ccf608ea286f8d7c8623b630c534969e8"
PROCESS_SHA256 = "6ce37a844c61481f92476a76af21598fa914ddae53c689c5bf8f7cc20d897bdf"


class ResultObj:
    ps_type = "Ansible.Process.Result"

    def __init__(self, stdout: str, stderr: str, rc: int) -> None:
        self.StandardOut = stdout
        self.StandardError = stderr
        self.ExitCode = rc & 0xFFFFFFFF


def create_process_as_user(rt: Any, args: list[object]) -> ResultObj:
    user = to_str(args[0])
    password = None if args[1] is None else to_str(args[1])
    application = to_str(args[4]) if len(args) > 4 and args[4] else None
    command_line = to_str(args[5]) if len(args) > 5 else to_str(args[2])
    cwd = to_str(args[6]) if len(args) > 6 and args[6] else None
    env = {to_str(k): to_str(v) for k, v in args[7].items()} if len(args) > 7 and isinstance(args[7], dict) else None
    stdin_text = to_str(args[8]) if len(args) > 8 and args[8] is not None else ""
    if stdin_text and not stdin_text.endswith("\r\n"):
        stdin_text += "\r\n"
    machine = rt.host.process.machine
    if machine is None:
        raise method_failed("CreateProcessAsUser", len(args), win32_exception(
            1326, f"Failed to logon {user}", "The lab host has no accounts to log on"))
    domain, sep, short = user.rpartition("\\")
    shown = user if sep else (user if "@" in user else f".\\{user}")
    try:
        account = machine.logon(user, password)
    except PermissionError as e:
        raise method_failed("CreateProcessAsUser", len(args), win32_exception(
            1326, f"Failed to logon {shown}", str(e).rstrip("."))) from None
    rc, out, err = rt.host.launch(application, command_line, cwd, env, stdin_text.encode("utf-8"),
                                  user=account.name)
    return ResultObj(out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace"), rc)


class BecomeUtilType(DotNetType):
    full_name = "Ansible.Become.BecomeUtil"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        if name.lower() == "createprocessasuser":
            return create_process_as_user(rt, args)
        raise MemberNotFound(name)


@emulates(BECOME_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible.Become.cs")
def define_become() -> list[DotNetType]:
    return [BecomeUtilType(),
            EnumType("Ansible.Become.LogonFlags", {"None": 0, "WithProfile": 1, "NetcredentialsOnly": 2}),
            EnumType("Ansible.Become.LogonType", {"Interactive": 2, "Network": 3, "Batch": 4, "Service": 5,
                                                  "Unlock": 7, "NetworkCleartext": 8, "NewCredentials": 9})]


@emulates(ACCESS_TOKEN_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible.AccessToken.cs")
def define_access_token() -> list[DotNetType]:
    return [SimpleType("Ansible.AccessToken.TokenUtil"), SimpleType("Ansible.AccessToken.SafeNativeHandle")]


@emulates(PROCESS_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible.Process.cs")
def define_process() -> list[DotNetType]:
    return [SimpleType("Ansible.Process.ProcessUtil"),
            SimpleType("Ansible.Process.Result", instance=lambda v: isinstance(v, ResultObj))]
