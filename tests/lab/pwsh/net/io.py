"""System.IO members beyond the ones tests/lab/pwsh/files.py dispatches by name: [IO.Path]::HasExtension and the
invalid-character lists, [IO.File]::GetAttributes/SetAttributes/Open, [IO.Directory]::Enumerate*, and the
FileAttributes, SearchOption, FileMode/FileAccess/FileShare enums as registered types.

NTFS attributes the lab's files can have are derived from the host file system: Directory, Archive (a file
written since it was created), ReadOnly (no write permission), Hidden (the Windows `attrib` flag is kept in
the lab as a name starting with '.'), ReparsePoint (a symbolic link).
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
from typing import Any

from tests.lab.pwsh.dotnet_types import EnumType, register, registered, SimpleType
from tests.lab.pwsh.files import attributes_of, dotnet_io, FileStreamObj
from tests.lab.pwsh.values import to_str

FILE_ATTRIBUTES = {"ReadOnly": 1, "Hidden": 2, "System": 4, "Directory": 16, "Archive": 32, "Device": 64,
                   "Normal": 128, "Temporary": 256, "SparseFile": 512, "ReparsePoint": 1024, "Compressed": 2048,
                   "Offline": 4096, "NotContentIndexed": 8192, "Encrypted": 16384, "IntegrityStream": 32768,
                   "NoScrubData": 131072}
register(EnumType("System.IO.FileAttributes", FILE_ATTRIBUTES, flags=True))
register(EnumType("System.IO.SearchOption", {"TopDirectoryOnly": 0, "AllDirectories": 1}))


def file_attributes(value: int) -> object:
    enum = registered("System.IO.FileAttributes")
    return enum.value(value)  # type: ignore[union-attr]


def _host(rt: Any, path: object) -> pathlib.Path:
    return rt.host.fs.host_path(to_str(path), rt.cwd)


def _get_attributes(rt: Any, args: list[object]) -> object:
    def read() -> object:
        host = _host(rt, args[0])
        if not host.exists() and not host.is_symlink():
            raise FileNotFoundError(2, "No such file", str(host))
        return file_attributes(attributes_of(host))
    return dotnet_io(rt, "GetAttributes", 1, read)


def _set_attributes(rt: Any, args: list[object]) -> None:
    def write() -> None:
        host = _host(rt, args[0])
        value = getattr(args[1], "value", args[1])
        mode = host.stat().st_mode
        os.chmod(host, mode & ~0o222 if int(value) & 1 else mode | stat.S_IWUSR)  # type: ignore[call-overload]
    dotnet_io(rt, "SetAttributes", 2, write)


def _open(rt: Any, args: list[object]) -> FileStreamObj:
    mode = to_str(args[1]).lower() if len(args) > 1 else "open"
    access = to_str(args[2]).lower() if len(args) > 2 else ("readwrite" if mode != "open" else "read")

    def opener() -> FileStreamObj:
        host = _host(rt, args[0])
        exists = host.is_file()
        if mode == "open" and not exists:
            raise FileNotFoundError(2, "No such file", str(host))
        if mode == "createnew" and exists:
            raise OSError(17, f"The file '{rt.host.fs.win_of(host)}' already exists.")
        pymode = {"create": "w+b", "createnew": "w+b", "truncate": "w+b", "append": "ab",
                  "openorcreate": "r+b" if exists else "w+b"}.get(mode, "rb" if access == "read" else "r+b")
        return FileStreamObj(rt, host, rt.host.fs.win_of(host), pymode)
    return dotnet_io(rt, "Open", len(args), opener)  # type: ignore[return-value]


def _enumerate(kind: str) -> Any:
    def run(rt: Any, args: list[object]) -> list[str]:
        pattern = to_str(args[1]) if len(args) > 1 else "*"
        recurse = len(args) > 2 and to_str(args[2]).lower() == "alldirectories"
        rx = re.compile("^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$", re.I)

        def listing() -> list[str]:
            host = _host(rt, args[0])
            if not host.is_dir():
                raise FileNotFoundError(2, "No such directory", str(host / "x"))
            entries = host.rglob("*") if recurse else host.iterdir()
            out = []
            for e in sorted(entries, key=lambda p: str(p).lower()):
                if kind == "files" and not e.is_file() or kind == "directories" and not e.is_dir():
                    continue
                if rx.match(e.name):
                    out.append(rt.host.fs.win_of(e))
            return out
        return dotnet_io(rt, f"Enumerate{kind.capitalize()}", len(args), listing)  # type: ignore[return-value]
    return run


_INVALID_PATH = ['"', "<", ">", "|", "\0"] + [chr(c) for c in range(1, 32)]
_INVALID_NAME = _INVALID_PATH + [":", "*", "?", "\\", "/"]

# Each extends the name-dispatched type of the same name (statics.py/files.py) with what it lacks.
register(SimpleType("System.IO.Path", methods={
    "hasextension": lambda rt, a: bool(re.search(r"\.[^.\\/]+$", to_str(a[0]))),
    "getinvalidpathchars": lambda rt, a: list(_INVALID_PATH),
    "getinvalidfilenamechars": lambda rt, a: list(_INVALID_NAME),
    "getpathroot": lambda rt, a: to_str(a[0])[:3] if re.match(r"^[A-Za-z]:\\", to_str(a[0])) else "",
    "changeextension": lambda rt, a: re.sub(r"(\.[^.\\/]*)?$", ("." + to_str(a[1]).lstrip(".")) if a[1] else "",
                                            to_str(a[0]), count=1)}), "path")
register(SimpleType("System.IO.File", methods={
    "getattributes": _get_attributes, "setattributes": _set_attributes, "open": _open}), "file")
register(SimpleType("System.IO.Directory", methods={
    "enumeratefiles": _enumerate("files"), "enumeratedirectories": _enumerate("directories"),
    "enumeratefilesystementries": _enumerate("entries"), "getfilesystementries": _enumerate("entries")}),
    "directory")
