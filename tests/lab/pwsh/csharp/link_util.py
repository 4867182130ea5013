"""The C# source Ansible.ModuleUtils.LinkUtil.psm1 (ansible-core 2.21.5) compiles with Add-Type, emulated:
Ansible.LinkUtil's GetLinkInfo, CreateLink and DeleteLink on the lab host's file system.

A symbolic link of the lab host is a symbolic link of the root directory it lives in (its target mapped back
to a Windows path); a file with more than one name is a hard link whose names GetLinkInfo lists
(FindFirstFileNameW), found by walking the host's C:\\ (bounded). The lab's file system has no junction
points: creating one fails with the error CreateFile gives on a volume without reparse point support.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound, SimpleType
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.net.automation import method_failed, win32_exception
from tests.lab.pwsh.values import to_str

SOURCE_SHA256 = "be662282f679646828fa7ae038726fa9f348124df161e614daad18d01a7fe4cc"
MAX_HARD_LINK_SCAN = 200_000  # files walked looking for a hard link's other names


class LinkInfoObj:
    ps_type = "Ansible.LinkInfo"

    def __init__(self, kind: object, print_name: str | None = None, substitute: str | None = None,
                 absolute: str | None = None, target: str | None = None, hard: list[str] | None = None) -> None:
        self.Type = kind
        self.PrintName = print_name
        self.SubstituteName = substitute
        self.AbsolutePath = absolute
        self.TargetPath = target
        self.HardTargets = hard


def _link_error(method: str, nargs: int, code: int, message: str, text: str) -> Exception:
    exc = win32_exception(code, message, text)
    exc.Message = f"{message} ({text}, Win32ErrorCode {code})"  # LinkUtilWin32Exception's format
    return method_failed(method, nargs, exc)


class LinkUtilType(DotNetType):
    full_name = "Ansible.LinkUtil"

    def __init__(self, link_type: EnumType) -> None:
        super().__init__()
        self.link_type = link_type

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        fs = rt.host.fs
        path = to_str(args[0]) if args else ""
        try:
            host = fs.host_path(path, rt.cwd)
        except PathOutsideRoot:
            raise _link_error(name, len(args), 3, f"Failed to get info for {path}", "The system cannot find the path "
                                                                                     "specified") from None
        if low == "getlinkinfo":
            if not host.is_symlink() and not host.exists():
                raise _link_error(name, 1, 2, f"GetFileAttributes({path}) failed", "The system cannot find the file "
                                                                                   "specified")
            if host.is_symlink():
                raw = os.readlink(host)
                target = pathlib.Path(raw) if os.path.isabs(raw) else host.parent / raw
                try:
                    win_target = fs.win_of(pathlib.Path(os.path.normpath(target)))
                except ValueError:
                    win_target = raw
                shown = win_target if os.path.isabs(raw) else raw.replace("/", "\\")
                return LinkInfoObj(self.link_type.by_name("SymbolicLink"), shown, "\\??\\" + win_target if
                                   os.path.isabs(raw) else shown, win_target, shown)
            if host.is_file() and host.stat().st_nlink > 1:
                return LinkInfoObj(self.link_type.by_name("HardLink"), hard=_hard_links(rt, host))
            return None
        if low == "deletelink":
            if host.is_symlink() or host.is_file():
                host.unlink()
            elif host.is_dir():
                host.rmdir()
            else:
                raise _link_error(name, 1, 2, f"Failed to delete link at {path}", "The system cannot find the file "
                                                                                   "specified")
            return None
        if low == "createlink":
            return self._create(rt, host, path, to_str(args[1]), to_str(args[2]))
        raise MemberNotFound(name)

    def _create(self, rt: Any, host: pathlib.Path, path: str, target: str, kind: str) -> None:
        fs = rt.host.fs
        target_host = fs.host_path(target, rt.cwd)
        if host.exists() or host.is_symlink():
            raise _link_error("CreateLink", 3, 183, f"CreateSymbolicLink({path}, {target}, 0) failed",
                              "Cannot create a file when that file already exists")
        if kind.lower() == "symboliclink":
            os.symlink(target_host, host, target_is_directory=target_host.is_dir())
        elif kind.lower() == "hardlink":
            os.link(target_host, host)
        else:
            raise _link_error("CreateLink", 3, 50, f"CreateFile({path}) failed", "The request is not supported")


def _hard_links(rt: Any, host: pathlib.Path) -> list[str]:
    inode = host.stat().st_ino
    root = rt.host.fs.root
    names: list[str] = []
    seen = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            seen += 1
            if seen > MAX_HARD_LINK_SCAN:
                return names
            p = pathlib.Path(dirpath) / f
            try:
                if not p.is_symlink() and p.stat().st_ino == inode:
                    names.append(rt.host.fs.win_of(p))
            except OSError:
                continue
    return names


@emulates(SOURCE_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/powershell/Ansible.ModuleUtils.LinkUtil.psm1")
def define() -> list[DotNetType]:
    link_type = EnumType("Ansible.LinkType", {"SymbolicLink": 0, "JunctionPoint": 1, "HardLink": 2})
    return [LinkUtilType(link_type), link_type,
            SimpleType("Ansible.LinkInfo", instance=lambda v: isinstance(v, LinkInfoObj)),
            SimpleType("Ansible.LinkUtilWin32Exception")]
