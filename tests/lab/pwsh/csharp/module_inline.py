"""C# sources ansible.windows 3.8.0 modules carry inline (here-strings passed to Add-CSharpType), emulated:
win_file.ps1's Ansible.Command.SymLinkHelper and win_environment.ps1's Ansible.Windows.WinEnvironment.Native.

SymLinkHelper deletes a symbolic link itself (DeleteFileW/RemoveDirectoryW on the link, not its target);
SendMessageTimeout broadcasts WM_SETTINGCHANGE, which nothing in the lab listens to, so it answers 0 (the
lpdwResult of a broadcast every window handled).
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound
from tests.lab.pwsh.errors import method_exception
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.net.primitives import IntPtrValue
from tests.lab.pwsh.values import to_str

SYMLINK_HELPER_SHA256 = "0967cb05daee6d26883b60da28e81db6f1d72bf4a1f7e1bca90db3abf92bdf90"
WIN_ENVIRONMENT_SHA256 = "0757af095afe01602edd449afff923e87842caba65c5f65ea819fb3af15a6586"


class SymLinkHelperType(DotNetType):
    full_name = "Ansible.Command.SymLinkHelper"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        if low not in ("deletedirectory", "deletefile"):
            raise MemberNotFound(name)
        path = to_str(args[0])
        api = "RemoveDirectoryW" if low == "deletedirectory" else "DeleteFileW"
        try:
            host = rt.host.fs.host_path(path, rt.cwd)
        except PathOutsideRoot:
            host = None
        if host is None or not (host.is_symlink() or host.exists()):
            raise method_exception(name, 1, f"{api}({path}) failed: The system cannot find the file specified")
        if low == "deletedirectory" and not host.is_symlink() and any(host.iterdir()):
            raise method_exception(name, 1, f"{api}({path}) failed: The directory is not empty")
        if host.is_symlink() or host.is_file():
            host.unlink()
        else:
            host.rmdir()
        return None


class WinEnvironmentNativeType(DotNetType):
    full_name = "Ansible.Windows.WinEnvironment.Native"

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        if name.lower() == "sendmessagetimeout":
            return IntPtrValue(0, "System.UIntPtr")
        raise MemberNotFound(name)


@emulates(SYMLINK_HELPER_SHA256, "ansible.windows 3.8.0 plugins/modules/win_file.ps1 (inline SymLinkHelper)")
def define_symlink_helper() -> list[DotNetType]:
    return [SymLinkHelperType()]


@emulates(WIN_ENVIRONMENT_SHA256, "ansible.windows 3.8.0 plugins/modules/win_environment.ps1 (inline Native)")
def define_win_environment() -> list[DotNetType]:
    return [WinEnvironmentNativeType(),
            EnumType("Ansible.Windows.WinEnvironment.SendMessageFlags",
                     {"Normal": 0, "Block": 1, "AbortIfHung": 2, "NoTimeoutIfNotHung": 8, "ErrorOnExit": 0x20},
                     flags=True)]
