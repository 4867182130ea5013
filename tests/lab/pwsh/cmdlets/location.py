"""Location and path cmdlets: Get-Location, Set-Location, Test-Path, Join-Path, Split-Path, and Env: drive paths."""

from __future__ import annotations

import re

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, LITERAL_PATH_ALIASES
from tests.lab.pwsh.cmdlets.registry import registry_exists
from tests.lab.pwsh.files import PathInfo, resolve_path, win_full
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.registry import registry_path
from tests.lab.pwsh.values import as_list, PSObject, to_str


@cmdlet("Get-Location", "pwd", "gl", params=("PSProvider", "PSDrive", "StackName"), switches=("Stack",))
class GetLocation(Cmdlet):
    def process(self, item: object) -> None:
        self.emit(PathInfo(self.rt.cwd))


@cmdlet("Set-Location", "cd", "sl", "chdir", positional=("Path",), params=("LiteralPath",))
class SetLocation(Cmdlet):
    def process(self, item: object) -> None:
        path = to_str(self.p.get("Path", self.p.get("LiteralPath", "~")))
        hp = resolve_path(self.rt, path)
        if not hp.is_dir():
            raise self.terminate(f"Cannot find path '{win_full(self.rt, path)}' because it does not exist.",
                                 "PathNotFound", "ObjectNotFound", "System.Management.Automation.ItemNotFoundException")
        self.rt.cwd = self.rt.host.fs.win_of(hp)


def env_path(path: str) -> str | None:
    low = path.lower()
    for prefix in ("env:\\", "env:/", "env:"):
        if low.startswith(prefix):
            return path[len(prefix):]
    return None


@cmdlet("Test-Path", positional=("Path",), params=("LiteralPath", "PathType"), switches=("IsValid",),
        aliases={**LITERAL_PATH_ALIASES, "type": "PathType"})
class TestPath(Cmdlet):
    def process(self, item: object) -> None:
        paths = self.path_args(item)
        kind = to_str(self.p.get("PathType", "Any")).lower()
        if not paths:
            raise self.terminate("Cannot bind argument to parameter 'Path' because it is null.",
                                 "ParameterArgumentValidationErrorNullNotAllowed")
        for path in paths:
            sp = to_str(path)
            if self.p.get("IsValid"):  # the syntax only: a known drive and no characters NTFS refuses
                self.emit(not any(c in sp[2:] if len(sp) > 1 and sp[1] == ":" else c in sp for c in '<>"|?*')
                          and not (len(sp) > 1 and sp[1] == ":" and sp[0].upper() != "C"))
                continue
            if registry_path(sp) is not None:
                self.emit(registry_exists(self.rt, sp))
                continue
            env = env_path(sp)
            if env is not None:
                self.emit(env == "" or self.rt.host.env_get(env) is not None)
                continue
            try:
                hp = self.rt.host.fs.host_path(sp, self.rt.cwd)
            except PathOutsideRoot:
                self.emit(False)
                continue
            if kind == "leaf":
                self.emit(hp.is_file())
            elif kind == "container":
                self.emit(hp.is_dir())
            else:
                self.emit(hp.exists())


def env_entry(name: str, value: str) -> PSObject:
    o = PSObject({"Name": name, "Key": name, "Value": value})
    return o


@cmdlet("Join-Path", positional=("Path", "ChildPath", "AdditionalChildPath"), switches=("Resolve",))
class JoinPath(Cmdlet):
    def process(self, item: object) -> None:
        child = to_str(self.p.get("ChildPath", ""))
        extra = [to_str(x) for x in as_list(self.p.get("AdditionalChildPath"))]
        for base in as_list(self.input_or(item, "Path")):
            out = to_str(base)
            for part in [child, *extra]:
                if part:
                    out = out.rstrip("\\/") + "\\" + part.lstrip("\\/")
            self.emit(out)


@cmdlet("Split-Path", positional=("Path",), params=("LiteralPath",),
        switches=("Parent", "Leaf", "Qualifier", "NoQualifier", "IsAbsolute", "Extension", "LeafBase"))
class SplitPath(Cmdlet):
    def process(self, item: object) -> None:
        for path in as_list(self.input_or(item, "Path") or self.p.get("LiteralPath")):
            p = to_str(path).replace("/", "\\")
            if self.p.get("Leaf"):
                self.emit(p.rstrip("\\").rsplit("\\", 1)[-1])
            elif self.p.get("LeafBase"):
                leaf = p.rstrip("\\").rsplit("\\", 1)[-1]
                self.emit(leaf.rsplit(".", 1)[0] if "." in leaf else leaf)
            elif self.p.get("Extension"):
                leaf = p.rstrip("\\").rsplit("\\", 1)[-1]
                self.emit("." + leaf.rsplit(".", 1)[1] if "." in leaf else "")
            elif self.p.get("Qualifier"):
                self.emit(p[:2] if re.match(r"^[A-Za-z]:", p) else "")
            elif self.p.get("NoQualifier"):
                self.emit(p[2:] if re.match(r"^[A-Za-z]:", p) else p)
            elif self.p.get("IsAbsolute"):
                self.emit(bool(re.match(r"^[A-Za-z]:\\|^\\\\", p)))
            else:
                stripped = p.rstrip("\\")
                if "\\" not in stripped:
                    self.emit("")
                    continue
                parent = stripped.rsplit("\\", 1)[0]
                self.emit(parent + "\\" if re.fullmatch(r"[A-Za-z]:", parent) else parent)
