"""Files as PowerShell and .NET see them on the lab host: path resolution with PowerShell's errors,
FileInfo/DirectoryInfo, FileStream, hashing a stream, and the [IO.File]/[IO.Directory]/[IO.Path] statics.

OS errors become the MethodInvocationException records .NET would raise (dotnet_io).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import re
import shutil
import uuid
from collections.abc import Callable

from tests.lab.pwsh.conversions import bytes_arg, no_static_method
from tests.lab.pwsh.dotnet_objects import EncodingObj
from tests.lab.pwsh.dotnet_types import registered
from tests.lab.pwsh.errors import ErrorRecord, method_exception, no_method, PSError
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.values import as_list, PSEnumerator, to_bool, to_str, TypeRef


def resolve_path(rt: Interpreter, path: object) -> pathlib.Path:
    """A Windows path to its host path, or a terminating error when it leaves the lab's C:\\."""
    try:
        return rt.host.fs.host_path(to_str(path), rt.cwd)
    except PathOutsideRoot as e:
        raise _drive_not_found(rt, path, e) from None


def win_full(rt: Interpreter, path: object) -> str:
    """A Windows path made absolute against the current location, or a terminating error outside C:\\."""
    try:
        return rt.host.fs.full_win(to_str(path), rt.cwd)
    except PathOutsideRoot as e:
        raise _drive_not_found(rt, path, e) from None


def _drive_not_found(rt: Interpreter, path: object, e: PathOutsideRoot) -> PSError:
    return PSError(rt.fill(ErrorRecord(str(e), category="ObjectNotFound", fq_error_id="DriveNotFound",
                                       exception_type="System.Management.Automation.DriveNotFoundException",
                                       target=to_str(path))))


def dotnet_io(rt: Interpreter, method: str, nargs: int, fn: Callable[[], object]) -> object:
    """Runs a .NET-style file operation, turning OS errors into MethodInvocationException records."""
    try:
        return fn()
    except PathOutsideRoot as e:
        raise method_exception(method, nargs, str(e), inner_type="System.NotSupportedException") from None
    except FileNotFoundError as e:
        win = rt.host.fs.win_of(pathlib.Path(e.filename)) if e.filename else ""
        if e.filename and not pathlib.Path(e.filename).parent.exists():
            raise method_exception(method, nargs, f"Could not find a part of the path '{win}'.",
                                   inner_type="System.IO.DirectoryNotFoundException") from None
        raise method_exception(method, nargs, f"Could not find file '{win}'.",
                               inner_type="System.IO.FileNotFoundException") from None
    except IsADirectoryError as e:
        win = rt.host.fs.win_of(pathlib.Path(e.filename)) if e.filename else ""
        raise method_exception(method, nargs, f"Access to the path '{win}' is denied.",
                               inner_type="System.UnauthorizedAccessException") from None
    except PermissionError as e:
        win = rt.host.fs.win_of(pathlib.Path(e.filename)) if e.filename else ""
        raise method_exception(method, nargs, f"Access to the path '{win}' is denied.",
                               inner_type="System.UnauthorizedAccessException") from None
    except OSError as e:
        raise method_exception(method, nargs, str(e.strerror or e), inner_type="System.IO.IOException") from None


class PathInfo:
    ps_type = "System.Management.Automation.PathInfo"

    def __init__(self, path: str) -> None:
        self.Path = path
        self.ProviderPath = path
        self.Drive = "C"

    def ps_tostring(self) -> str:
        return self.Path


class FileSystemItem:
    """A FileInfo or DirectoryInfo."""

    def __init__(self, rt: Interpreter, host: pathlib.Path, win: str) -> None:
        self.rt = rt
        self.host = host
        self.FullName = win
        self.Name = win.rstrip("\\").rsplit("\\", 1)[-1] if win.rstrip("\\") != "C:" else "C:\\"
        self.ps_type = "System.IO.DirectoryInfo" if host.is_dir() else "System.IO.FileInfo"

    @classmethod
    def of(cls, rt: Interpreter, host: pathlib.Path) -> FileSystemItem:
        """The FileInfo/DirectoryInfo of a host path inside the lab's C:\\."""
        return cls(rt, host, rt.host.fs.win_of(host))

    def ps_tostring(self) -> str:
        return self.Name if self.ps_type == "System.IO.DirectoryInfo" else self.FullName

    def ps_get(self, name: str) -> object:
        low = name.lower()
        h = self.host
        st = h.stat() if h.exists() else None
        if low == "exists":
            return h.is_file() if self.ps_type == "System.IO.FileInfo" else h.is_dir()
        if low == "length":
            if self.ps_type != "System.IO.FileInfo":
                raise KeyError(name)
            if st is None:
                raise method_exception("Length", 0, f"Could not find file '{self.FullName}'.")
            return st.st_size
        if low == "psiscontainer":
            return h.is_dir()
        if low in ("extension",):
            return "." + self.Name.rsplit(".", 1)[1] if "." in self.Name else ""
        if low == "basename":
            return self.Name.rsplit(".", 1)[0] if "." in self.Name and not h.is_dir() else self.Name
        if low in ("directoryname",):
            return self.FullName.rsplit("\\", 1)[0] if self.FullName.count("\\") > 1 else "C:\\"
        if low in ("directory", "parent"):
            parent = self.FullName.rsplit("\\", 1)[0] if self.FullName.count("\\") > 1 else "C:\\"
            return FileSystemItem(self.rt, h.parent, parent)
        if low in ("lastwritetime", "creationtime", "lastaccesstime"):
            return dt.datetime.fromtimestamp(st.st_mtime) if st else None
        if low in ("lastwritetimeutc",):
            return dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc) if st else FILETIME_ZERO
        if low == "mode":
            return "d-----" if h.is_dir() else "-a----"
        if low == "attributes":
            if st is None and not h.is_symlink():
                return registered("System.IO.FileAttributes").value(-1)  # type: ignore[union-attr]
            return registered("System.IO.FileAttributes").value(attributes_of(h))  # type: ignore[union-attr]
        if low in ("creationtimeutc", "lastaccesstimeutc"):
            return dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc) if st else FILETIME_ZERO
        if low == "linktype":
            return "SymbolicLink" if h.is_symlink() else "HardLink" if st and h.is_file() and st.st_nlink > 1 else None
        if low == "target":
            return [os.readlink(h)] if h.is_symlink() else None
        if low == "isreadonly" and self.ps_type == "System.IO.FileInfo":
            return bool(st and not st.st_mode & 0o200)
        if low == "pspath":
            return "Microsoft.PowerShell.Core\\FileSystem::" + self.FullName
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "openread":
            return dotnet_io(self.rt, name, 0, lambda: FileStreamObj(self.rt, self.host, self.FullName, "rb"))
        if low == "delete":
            dotnet_io(self.rt, name, 0, lambda: self.host.unlink() if self.host.is_file() else self.host.rmdir())
            return None
        if low == "tostring":
            return self.ps_tostring()
        if low == "refresh":
            return None
        if low in ("enumeratefiles", "getfiles", "enumeratedirectories", "getdirectories", "enumeratefilesysteminfos",
                   "getfilesysteminfos"):
            return self._children(name, args)
        if low == "getaccesscontrol":
            return FileSecurityObj(self.rt, self.host)
        if low == "create" and self.ps_type == "System.IO.DirectoryInfo":
            dotnet_io(self.rt, name, 0, lambda: self.host.mkdir(parents=True, exist_ok=True))
            return None
        raise no_method(self, name)

    def _children(self, name: str, args: list[object]) -> list[FileSystemItem]:
        low = name.lower()
        pattern = to_str(args[0]) if args else "*"
        recurse = len(args) > 1 and to_str(args[1]).lower() == "alldirectories"
        rx = re.compile("^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$", re.I)

        def listing() -> list[FileSystemItem]:
            if not self.host.is_dir():
                raise FileNotFoundError(2, "No such directory", str(self.host / "x"))
            found = self.host.rglob("*") if recurse else self.host.iterdir()
            out = []
            for e in sorted(found, key=lambda p: str(p).lower()):
                if "files" in low and not e.is_file() or "directories" in low and not e.is_dir():
                    continue
                if rx.match(e.name):
                    out.append(FileSystemItem.of(self.rt, e))
            return out
        return dotnet_io(self.rt, name, len(args), listing)  # type: ignore[return-value]


FILETIME_ZERO = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)  # what .NET answers for a missing file's times
FILE_ATTRIBUTE_BITS = {"ReadOnly": 1, "Hidden": 2, "Directory": 16, "Archive": 32, "ReparsePoint": 1024}


def attributes_of(host: pathlib.Path) -> int:
    """The NTFS attributes of a file or directory of the lab host: Directory or Archive; ReadOnly without write
    permission; Hidden for a name starting with '.'; ReparsePoint for a symbolic link."""
    if host.is_symlink():
        return FILE_ATTRIBUTE_BITS["ReparsePoint"] | (FILE_ATTRIBUTE_BITS["Directory"] if host.is_dir() else 0)
    st = host.stat()
    value = FILE_ATTRIBUTE_BITS["Directory"] if host.is_dir() else FILE_ATTRIBUTE_BITS["Archive"]
    if not st.st_mode & 0o200:
        value |= FILE_ATTRIBUTE_BITS["ReadOnly"]
    if host.name.startswith("."):
        value |= FILE_ATTRIBUTE_BITS["Hidden"]
    return value


class FileSecurityObj:
    """What GetAccessControl() returns: the owner Windows gives a file (TrustedInstaller for the OS's own files,
    the Administrators group for what an administrator created, else the creating user)."""

    ps_type = "System.Security.AccessControl.FileSecurity"

    def __init__(self, rt: Interpreter, host: pathlib.Path) -> None:
        win = rt.host.fs.win_of(host).lower()
        machine = rt.host.process.machine
        account = machine.account(rt.host.user) if machine is not None else None
        if win.startswith(("c:\\windows", "c:\\program files")):
            self.Owner = "NT SERVICE\\TrustedInstaller"
        elif account is None or account.is_admin:
            self.Owner = "BUILTIN\\Administrators"
        else:
            self.Owner = f"{rt.host.computer_name}\\{account.name}"
        self.Group = "NT AUTHORITY\\SYSTEM"


class FileStreamObj:
    ps_type = "System.IO.FileStream"

    def __init__(self, rt: Interpreter, host: pathlib.Path, win: str, mode: str) -> None:
        self.rt = rt
        self.Name = win
        if "w" in mode or "a" in mode or "+" in mode:
            if not host.parent.is_dir():
                raise FileNotFoundError(2, "No such file or directory", str(host))
        self.f = open(host, mode)  # noqa: SIM115 - closed by Dispose/Close as in .NET
        self.closed = False

    def ps_get(self, name: str) -> object:
        low = name.lower()
        if low == "length":
            pos = self.f.tell()
            self.f.seek(0, 2)
            n = self.f.tell()
            self.f.seek(pos)
            return n
        if low == "position":
            return self.f.tell()
        if low in ("canread", "canwrite", "canseek"):
            return not self.closed
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        rt = self.rt
        if low in ("close", "dispose"):
            if not self.closed:
                self.f.close()
                self.closed = True
            return None
        if self.closed:
            raise method_exception(name, len(args), "Cannot access a closed file.")
        if low == "read" and len(args) == 3:
            buf = args[0]
            if not isinstance(buf, bytearray):
                raise method_exception(name, 3, "Buffer cannot be null.")
            off, cnt = rt.to_int(args[1]), rt.to_int(args[2])
            if off < 0 or cnt < 0 or off + cnt > len(buf):
                raise method_exception(name, 3, "Offset and length were out of bounds for the array or count is "
                                                "greater than the number of elements from index to the end of the "
                                                "source collection.")
            data = self.f.read(cnt)
            buf[off:off + len(data)] = data
            return len(data)
        if low == "write" and len(args) == 3:
            buf = args[0]
            data = bytes(buf) if isinstance(buf, (bytes, bytearray)) else bytes(rt.to_int(x) & 0xFF for x in as_list(buf))
            off, cnt = rt.to_int(args[1]), rt.to_int(args[2])
            self.f.write(data[off:off + cnt])
            return None
        if low == "writebyte":
            self.f.write(bytes([rt.to_int(args[0]) & 0xFF]))
            return None
        if low == "seek":
            origin = {"begin": 0, "current": 1, "end": 2}.get(to_str(args[1]).lower(), 0) if len(args) > 1 else 0
            return self.f.seek(rt.to_int(args[0]), origin)
        if low == "flush":
            self.f.flush()
            return None
        if low == "setlength":
            self.f.truncate(rt.to_int(args[0]))
            return None
        if low == "copyto":
            dest = args[0]
            while True:
                chunk = self.f.read(1 << 20)
                if not chunk:
                    break
                dest.f.write(chunk)  # type: ignore[attr-defined]
            return None
        raise no_method(self, name)


class HashAlgo:
    """SHA1/SHA256/MD5 with .NET's TransformBlock/TransformFinalBlock/Hash/ComputeHash."""

    def __init__(self, name: str) -> None:
        self.alg = name
        self.h = hashlib.new(name)
        self.hash: bytearray | None = None
        self.ps_type = {"sha1": "System.Security.Cryptography.SHA1CryptoServiceProvider",
                        "sha256": "System.Security.Cryptography.SHA256Managed",
                        "md5": "System.Security.Cryptography.MD5CryptoServiceProvider"}[name]

    def ps_get(self, name: str) -> object:
        if name.lower() == "hash":
            if self.hash is None:
                raise method_exception("Hash", 0, "Hash must be finalized before the hash value is retrieved.")
            return bytearray(self.hash)
        if name.lower() == "hashsize":
            return self.h.digest_size * 8
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low in ("transformblock", "transformfinalblock"):
            buf = args[0] if args else None
            if isinstance(buf, list):  # an object[] converts to byte[] as .NET method binding does
                buf = bytearray(int(x) & 0xFF for x in buf)  # type: ignore[call-overload]
            if not isinstance(buf, (bytes, bytearray)):
                raise method_exception(name, len(args), "Value cannot be null.\r\nParameter name: inputBuffer")
            off, cnt = int(args[1]), int(args[2])  # type: ignore[call-overload]
            if off < 0 or cnt < 0 or off + cnt > len(buf):
                raise method_exception(name, len(args), "Value was invalid.\r\nParameter name: inputCount")
            if self.hash is not None:
                self.h = hashlib.new(self.alg)
                self.hash = None
            self.h.update(bytes(buf[off:off + cnt]))
            if low == "transformfinalblock":
                self.hash = bytearray(self.h.digest())
                return bytearray(buf[off:off + cnt])
            return cnt
        if low == "computehash":
            src = args[0]
            h = hashlib.new(self.alg)
            if isinstance(src, FileStreamObj):
                while True:
                    chunk = src.f.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
            elif isinstance(src, (bytes, bytearray)):
                h.update(bytes(src))
            else:
                raise method_exception(name, len(args), "Value cannot be null.")
            self.hash = bytearray(h.digest())
            return bytearray(self.hash)
        if low in ("dispose", "clear", "initialize"):
            self.h = hashlib.new(self.alg)
            return None
        raise no_method(self, name)


def file_static(rt: Interpreter, low: str, name: str, args: list[object]) -> object:
    fs = rt.host.fs
    n = len(args)

    def hp(i: int = 0) -> pathlib.Path:
        return fs.host_path(to_str(args[i]), rt.cwd)

    def enc(i: int) -> str:
        if n > i and isinstance(args[i], EncodingObj):
            return args[i].codec  # type: ignore[union-attr]
        return "utf-8"

    if low == "exists":
        try:
            return hp().is_file()
        except PathOutsideRoot:
            return False
    ops: dict[str, Callable[[], object]] = {
        "create": lambda: FileStreamObj(rt, hp(), fs.win_of(hp()), "w+b"),
        "openread": lambda: FileStreamObj(rt, hp(), fs.win_of(hp()), "rb"),
        "openwrite": lambda: FileStreamObj(rt, hp(), fs.win_of(hp()), "r+b" if hp().exists() else "w+b"),
        "readallbytes": lambda: bytearray(hp().read_bytes()),
        "readalltext": lambda: decode_text(hp().read_bytes(), enc(1)),
        "readalllines": lambda: decode_text(hp().read_bytes(), enc(1)).splitlines(),
        "readlines": lambda: PSEnumerator(decode_text(hp().read_bytes(), enc(1)).splitlines()),
        "writeallbytes": lambda: _write(hp(), bytes(bytes_arg(rt, args[1], name, n))),
        "writealltext": lambda: _write(hp(), to_str(args[1]).encode(enc(2))),
        "writealllines": lambda: _write(hp(), "".join(to_str(x) + "\r\n" for x in as_list(args[1])).encode(enc(2))),
        "appendalltext": lambda: _write(hp(), to_str(args[1]).encode(enc(2)), append=True),
        "delete": lambda: hp().unlink() if hp().is_file() else (_raise_dir(hp()) if hp().is_dir() else
                                                                (_check_parent(hp()))),
        "move": lambda: _move(hp(0), hp(1)),
        "copy": lambda: _copy(hp(0), hp(1), n > 2 and to_bool(args[2])),
    }
    if low in ops:
        return dotnet_io(rt, name, n, ops[low])
    raise no_static_method(TypeRef("System.IO.File"), name)


def _raise_dir(p: pathlib.Path) -> None:
    raise PermissionError(13, "Access denied", str(p))


def _check_parent(p: pathlib.Path) -> None:
    if not p.parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(p))


def _write(p: pathlib.Path, data: bytes, append: bool = False) -> None:
    if not p.parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(p))
    with open(p, "ab" if append else "wb") as f:
        f.write(data)


def _move(src: pathlib.Path, dst: pathlib.Path) -> None:
    if not src.exists():
        raise FileNotFoundError(2, "No such file", str(src))
    if dst.exists():
        raise OSError(17, "Cannot create a file when that file already exists")
    if not dst.parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(dst))
    os.replace(src, dst)


def _copy(src: pathlib.Path, dst: pathlib.Path, overwrite: bool) -> None:
    if not src.is_file():
        raise FileNotFoundError(2, "No such file", str(src))
    if dst.exists() and not overwrite:
        raise OSError(17, f"The file '{dst.name}' already exists.")
    shutil.copyfile(src, dst)


def decode_text(data: bytes, default: str = "utf-8") -> str:
    """Reads text as .NET does: a BOM wins, otherwise the default encoding."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode(default, errors="replace")


def path_static(rt: Interpreter, obj: TypeRef, low: str, name: str, args: list[object]) -> object:
    """[System.IO.Path]::Method(args): names of temp files, combining and splitting paths."""
    fs = rt.host.fs
    n = len(args)
    if low == "gettempfilename":
        tmp = rt.host.env_get("TEMP") or "C:\\Windows\\Temp"
        def make() -> str:
            for _ in range(100):
                cand = f"{tmp}\\tmp{uuid.uuid4().hex[:4].upper()}.tmp"
                hp = fs.host_path(cand, rt.cwd)
                if not hp.exists():
                    hp.parent.mkdir(parents=True, exist_ok=True)
                    hp.write_bytes(b"")
                    return cand
            raise OSError("The file exists.")
        return dotnet_io(rt, name, n, make)
    if low == "gettemppath":
        return (rt.host.env_get("TEMP") or "C:\\Windows\\Temp") + "\\"
    if low == "combine":
        out = ""
        for part in (to_str(x) for x in args):
            if re.match(r"^[A-Za-z]:|^\\", part) or not out:
                out = part
            else:
                out = out.rstrip("\\/") + "\\" + part if not out.endswith(("\\", "/")) else out + part
        return out
    if low == "getfilename":
        return re.split(r"[\\/]", to_str(args[0]))[-1]
    if low == "getfilenamewithoutextension":
        base = re.split(r"[\\/]", to_str(args[0]))[-1]
        return base.rsplit(".", 1)[0] if "." in base else base
    if low == "getextension":
        base = re.split(r"[\\/]", to_str(args[0]))[-1]
        return "." + base.rsplit(".", 1)[1] if "." in base else ""
    if low == "getdirectoryname":
        p = to_str(args[0])
        idx = max(p.rfind("\\"), p.rfind("/"))
        if idx < 0:
            return ""
        d = p[:idx]
        return d + "\\" if re.fullmatch(r"[A-Za-z]:", d) else d
    if low == "getfullpath":
        return win_full(rt, args[0])
    if low == "getrandomfilename":
        h = uuid.uuid4().hex
        return f"{h[:8]}.{h[8:11]}"
    if low == "ispathrooted":
        return bool(re.match(r"^([A-Za-z]:)?[\\/]", to_str(args[0])))
    raise no_static_method(obj, name)


def directory_static(rt: Interpreter, obj: TypeRef, low: str, name: str, args: list[object]) -> object:
    """[System.IO.Directory]::Method(args) on the lab host's file system."""
    fs = rt.host.fs
    n = len(args)
    if low == "exists":
        try:
            return fs.host_path(to_str(args[0]), rt.cwd).is_dir()
        except PathOutsideRoot:
            return False
    if low == "createdirectory":
        def mk() -> object:
            hp = fs.host_path(to_str(args[0]), rt.cwd)
            hp.mkdir(parents=True, exist_ok=True)
            return FileSystemItem(rt, hp, fs.win_of(hp))
        return dotnet_io(rt, name, n, mk)
    if low == "delete":
        def rm() -> None:
            hp = fs.host_path(to_str(args[0]), rt.cwd)
            if n > 1 and to_bool(args[1]):
                shutil.rmtree(hp)
            else:
                hp.rmdir()
        dotnet_io(rt, name, n, rm)
        return None
    if low in ("getfiles", "getdirectories"):
        def ls() -> list[str]:
            hp = fs.host_path(to_str(args[0]), rt.cwd)
            return sorted(fs.win_of(e) for e in hp.iterdir() if (e.is_file() if low == "getfiles" else e.is_dir()))
        return dotnet_io(rt, name, n, ls)
    raise no_static_method(obj, name)
