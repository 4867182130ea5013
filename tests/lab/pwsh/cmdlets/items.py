"""Item cmdlets on the FileSystem and Env: drives (and the Registry provider's keys, cmdlets/registry.py; the
Function: and Alias: drives, cmdlets/session_drives.py).

Get-Item, Get-ChildItem, New-Item, Remove-Item, Copy-Item, Move-Item and Get-FileHash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
from typing import Any

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, LITERAL_PATH_ALIASES
from tests.lab.pwsh.cmdlets.location import env_entry, env_path
from tests.lab.pwsh.cmdlets.registry import registry_children, registry_item, registry_new, registry_remove
from tests.lab.pwsh.cmdlets.session_drives import list_items, remove_items, session_drive
from tests.lab.pwsh.config_drives import certificate, drive_of, wsman_items
from tests.lab.pwsh.registry import registry_path
from tests.lab.pwsh.files import FileSystemItem, resolve_path, win_full
from tests.lab.pwsh.values import as_list, PSObject, to_str


@cmdlet("Get-Item", "gi", positional=("Path",), params=("LiteralPath",), switches=("Force",),
        aliases=LITERAL_PATH_ALIASES)
class GetItem(Cmdlet):
    def process(self, item: object) -> None:
        for path in self.path_args(item):
            sp = to_str(path)
            drive = drive_of(sp)
            provider = ("Registry" if registry_path(sp) is not None else "WSMan" if drive == "wsman" else
                        "Certificate" if drive == "cert" else "Environment" if env_path(sp) is not None else
                        "FileSystem")
            if not self.rt.host.provider_visible(provider):
                # a JEA endpoint's VisibleProviders (recorded: test_psrp_with_jea_configuration)
                self.error(f"Cannot find a provider with the name '{provider}'.", "ProviderNotFound",
                           exc="System.Management.Automation.ProviderNotFoundException", target=provider)
                continue
            if provider == "Registry":
                registry_item(self, sp)
                continue
            if provider == "Certificate" or provider == "WSMan" and wsman_items(self.rt, sp, children=False):
                self.config_item(sp)  # the listeners and their certificate (config_drives.py)
                continue
            if provider == "WSMan":
                self._wsman_item(sp)  # a WinRM setting of the host
                continue
            env = env_path(sp)
            if env is not None:
                v = self.rt.host.env_get(env)
                if v is None:
                    self.error(f"Cannot find path '{env}' because it does not exist.", "PathNotFound", target=env)
                else:
                    self.emit(env_entry(env, v))
                continue
            hp = resolve_path(self.rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            self.emit(FileSystemItem.of(self.rt, hp))


    def config_item(self, path: str) -> None:
        """Get-Item on the WSMan: and Cert: drives (tests/lab/pwsh/config_drives.py)."""
        found: object = wsman_items(self.rt, path, children=False) if drive_of(path) == "wsman" else \
            certificate(self.rt, path)
        if not found:
            self.error(f"Cannot find path '{path}' because it does not exist.", "PathNotFound", target=path)
            return
        for entry in found if isinstance(found, list) else [found]:
            self.emit(entry)

    def _wsman_item(self, path: str) -> None:
        """A WSMan:\\localhost\\... leaf: the host's WinRM setting as a WSManConfigLeafElement's properties."""
        rel = path[len("wsman:"):].strip("\\")
        host_part, _, leaf = rel.partition("\\")
        settings = {k.lower(): (k, v) for k, v in self.rt.host.wsman_settings().items()}
        found = settings.get(leaf.lower()) if host_part.lower() == "localhost" else None
        if found is None:
            self.error(f"Cannot find path '{path}' because it does not exist.", "PathNotFound", target=path)
            return
        name, value = found
        parent = "\\".join(["localhost", *name.split("\\")[:-1]])
        self.emit(PSObject({"Name": name.rsplit("\\", 1)[-1], "Value": value, "Type": "System.String",
                            "TypeNameOfElement": "System.String", "SourceOfValue": None,
                            "PSPath": f"Microsoft.WSMan.Management\\WSMan::localhost\\{name}",
                            "PSParentPath": f"Microsoft.WSMan.Management\\WSMan::{parent}"}))


@cmdlet("Get-ChildItem", "gci", "dir", "ls", positional=("Path", "Filter"),
        params=("LiteralPath", "Include", "Exclude", "Depth"),
        switches=("Recurse", "Force", "File", "Directory", "Name"))
class GetChildItem(Cmdlet):
    def process(self, item: object) -> None:
        path = to_str(self.input_or(item, "Path") or self.p.get("LiteralPath") or ".")
        if (drive := session_drive(path)) is not None:
            list_items(self, *drive)
            return
        if registry_path(path) is not None:
            registry_children(self, path)
            return
        if drive_of(path) == "wsman":
            found = wsman_items(self.rt, path, children=not path.rstrip().endswith("*"))
            if found is None:
                self.path_not_found(path)
            for entry in found or []:
                self.emit(entry)
            return
        env = env_path(path)
        if env is not None:
            for k, v in sorted(self.rt.host.env.items(), key=lambda kv: kv[0].lower()):
                if not env or fnmatch.fnmatch(k.lower(), env.lower()):
                    self.emit(env_entry(k, v))
            return
        hp = resolve_path(self.rt, path)
        pattern = None
        if not hp.exists() and any(ch in path for ch in "*?"):
            pattern = hp.name
            hp = hp.parent
        if not hp.exists():
            self.path_not_found(path)
            return
        filt = to_str(self.p.get("Filter") or pattern or "*").lower()
        entries = [hp] if hp.is_file() else sorted(hp.rglob("*") if self.p.get("Recurse") else hp.iterdir(),
                                                   key=lambda e: (e.is_file(), str(e).lower()))
        for e in entries[:100000]:
            if not fnmatch.fnmatch(e.name.lower(), filt):
                continue
            if self.p.get("File") and not e.is_file() or self.p.get("Directory") and not e.is_dir():
                continue
            self.emit(e.name if self.p.get("Name") else FileSystemItem.of(self.rt, e))


@cmdlet("New-Item", "ni", positional=("Path",), params=("Name", "ItemType", "Value"), switches=("Force",),
        aliases={"type": "ItemType"}, should_process=True)
class NewItem(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        base = to_str(self.p.get("Path", "."))
        name = self.p.get("Name")
        env = env_path(base)
        if env is not None:
            var = to_str(name) if name is not None else env
            if rt.host.env_get(var) is not None and not self.p.get("Force"):
                self.error(f"A variable with name '{var}' already exists.", "EnvironmentVariableAlreadyExists",
                           "ResourceExists", "System.Management.Automation.SessionStateException", var)
                return
            if not self.should_process(f"Item: {var} Value: {to_str(self.p.get('Value', ''))}", "New Item"):
                return
            rt.host.env_set(var, to_str(self.p.get("Value", "")))
            self.emit(env_entry(var, to_str(self.p.get("Value", ""))))
            return
        path = base + "\\" + to_str(name) if name is not None else base
        if registry_path(path) is not None:
            registry_new(self, path)
            return
        hp = resolve_path(rt, path)
        kind = to_str(self.p.get("ItemType", "File")).lower()
        full = rt.host.fs.win_of(hp)
        if hp.exists() and not self.p.get("Force"):
            self.error(f"The file '{full}' already exists.", "NewItemIOError", "WriteError", "System.IO.IOException",
                       full)
            return
        if kind in ("directory", "dir", "d", "file", "f") and not self.should_process(
                f"Destination: {full}", "Create Directory" if kind.startswith("d") else "Create File"):
            return
        if kind in ("directory", "dir", "d"):
            if hp.exists() and hp.is_file():
                self.error(f"An item with the specified name {full} already exists.", "DirectoryExist",
                           "ResourceExists", "System.IO.IOException", full)
                return
            hp.mkdir(parents=True, exist_ok=True)
        elif kind in ("file", "f"):
            if not hp.parent.is_dir():
                if self.p.get("Force"):
                    hp.parent.mkdir(parents=True, exist_ok=True)
                else:
                    self.error(f"Could not find a part of the path '{full}'.", "NewItemIOError", "WriteError",
                               "System.IO.DirectoryNotFoundException", full)
                    return
            value = self.p.get("Value")
            hp.write_bytes(b"" if value is None else to_str(value).encode("utf-8"))
        else:
            raise self.terminate(f"The lab engine supports -ItemType File and Directory, not '{kind}'.",
                                 "LabUnsupportedItemType")
        self.emit(FileSystemItem(rt, hp, full))


@cmdlet("Remove-Item", "rm", "del", "ri", "erase", "rd", "rmdir", positional=("Path",),
        params=("LiteralPath", "Include", "Exclude", "Filter"), switches=("Recurse", "Force"),
        aliases=LITERAL_PATH_ALIASES, should_process=True)
class RemoveItem(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        src = self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]
        if isinstance(src, FileSystemItem):
            src = src.FullName
        for path in as_list(src):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            if (drive := session_drive(sp)) is not None:
                remove_items(self, *drive, literal="LiteralPath" in self.p)
                continue
            if registry_path(sp) is not None:
                registry_remove(self, sp)
                continue
            env = env_path(sp)
            if env is not None:
                if rt.host.env_get(env) is None:
                    self.path_not_found(sp)
                elif self.should_process(f"Item: {env}", "Remove Item"):
                    rt.host.env_set(env, None)
                continue
            hp = resolve_path(rt, sp)
            if hp == rt.host.fs.root:
                raise self.terminate("The lab engine refuses to remove C:\\.", "LabRefusedRemoveRoot")
            if not hp.exists():
                self.path_not_found(sp)
                continue
            if not self.should_process(rt.host.fs.win_of(hp), "Remove Directory" if hp.is_dir() else "Remove File"):
                continue
            if hp.is_dir():
                if any(hp.iterdir()) and not self.p.get("Recurse"):
                    raise self.terminate(f"The item at {win_full(rt, sp)} has children and the Recurse parameter was "
                                         f"not specified.", "RemoveItemChildren", "InvalidOperation")
                shutil.rmtree(hp)
            else:
                hp.unlink()


_COPY_MOVE_PARAMETERS: dict[str, Any] = {
    "positional": ("Path", "Destination"), "params": ("LiteralPath",), "switches": ("Force", "Recurse", "PassThru"),
    "aliases": LITERAL_PATH_ALIASES, "should_process": True}


class _CopyMove(Cmdlet):
    """Copy-Item and Move-Item: one or more items to a destination file or directory."""

    move = False

    def process(self, item: object) -> None:
        rt = self.rt
        src_v = self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"]
        dest = to_str(self.p.get("Destination", "."))
        for path in as_list(src_v):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            hp = resolve_path(rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            dp = resolve_path(rt, dest)
            if dp.is_dir():
                dp = dp / hp.name
            if dp.exists() and not self.p.get("Force") and self.move:
                self.error("Cannot create a file when that file already exists.", "MoveFileInfoItemIOError",
                           "WriteError", "System.IO.IOException", sp)
                continue
            if not dp.parent.is_dir():
                self.error(f"Could not find a part of the path '{rt.host.fs.win_of(dp)}'.", "CopyItemIOError" if not self.move
                           else "MoveFileInfoItemIOError", "WriteError", "System.IO.DirectoryNotFoundException", sp)
                continue
            kind = "Directory" if hp.is_dir() else "File"
            if not self.should_process(f"Item: {rt.host.fs.win_of(hp)} Destination: {rt.host.fs.win_of(dp)}",
                                       f"{'Move' if self.move else 'Copy'} {kind}"):
                continue
            if self.move:
                if dp.exists() and dp.is_file():
                    dp.unlink()
                os.replace(hp, dp)
            elif hp.is_dir():
                shutil.copytree(hp, dp, dirs_exist_ok=True)
            else:
                shutil.copyfile(hp, dp)
            if self.p.get("PassThru"):
                self.emit(FileSystemItem.of(rt, dp))


@cmdlet("Copy-Item", "copy", "cp", "cpi", **_COPY_MOVE_PARAMETERS)
class CopyItem(_CopyMove):
    pass


@cmdlet("Move-Item", "move", "mv", "mi", **_COPY_MOVE_PARAMETERS)
class MoveItem(_CopyMove):
    move = True


@cmdlet("Get-FileHash", positional=("Path",), params=("LiteralPath", "Algorithm", "InputStream"),
        aliases=LITERAL_PATH_ALIASES)
class GetFileHash(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        alg = to_str(self.p.get("Algorithm", "SHA256")).upper()
        if alg not in ("SHA1", "SHA256", "SHA384", "SHA512", "MD5"):
            raise self.terminate(f"Cannot validate argument on parameter 'Algorithm'. The argument \"{alg}\" does not "
                                 f"belong to the set \"SHA1,SHA256,SHA384,SHA512,MACTripleDES,MD5,RIPEMD160\".",
                                 "ParameterArgumentValidationError")
        for path in self.path_args(item):
            sp = to_str(path.FullName if isinstance(path, FileSystemItem) else path)
            hp = resolve_path(rt, sp)
            if not hp.is_file():
                self.error(f"Cannot find path '{win_full(rt, sp)}' because it does not exist.", "FileNotFound",
                           target=win_full(rt, sp))
                continue
            h = hashlib.new(alg.lower())
            with open(hp, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self.emit(PSObject({"Algorithm": alg, "Hash": h.hexdigest().upper(), "Path": rt.host.fs.win_of(hp)}))
