"""Content cmdlets: Get-Content, Set-Content, Add-Content and Out-File, with Windows PowerShell 5.1's encodings."""

from __future__ import annotations

import re
from typing import Any

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, LITERAL_PATH_ALIASES
from tests.lab.pwsh.cmdlets.location import env_path
from tests.lab.pwsh.display import format_for_display
from tests.lab.pwsh.files import decode_text, resolve_path, win_full
from tests.lab.pwsh.values import as_list, NO_INPUT, to_str


_PS_ENCODINGS = {"utf8": "utf-8-sig", "utf8bom": "utf-8-sig", "utf8nobom": "utf-8", "unicode": "utf-16",
                 "bigendianunicode": "utf-16-be", "ascii": "ascii", "default": "cp1252", "oem": "cp437",
                 "utf32": "utf-32", "string": "utf-16", "unknown": "utf-16"}


def ps_encode(text: str, encoding: str | None, default: str) -> bytes:
    name = (encoding or default).lower()
    if name == "byte":
        raise ValueError("byte")
    codec = _PS_ENCODINGS.get(name, name)
    if codec == "utf-16":
        return b"\xff\xfe" + text.encode("utf-16-le", errors="surrogatepass")
    if codec in ("ascii", "cp1252", "cp437"):
        return text.encode(codec, errors="replace")
    return text.encode(codec, errors="surrogatepass")


_WRITER_PARAMETERS: dict[str, Any] = {
    "positional": ("Path", "Value"), "params": ("LiteralPath", "Encoding", "FilePath", "InputObject", "Width"),
    "switches": ("NoNewline", "Force", "PassThru", "Append", "NoClobber"), "aliases": LITERAL_PATH_ALIASES,
    "should_process": True}


class _ContentWriter(Cmdlet):
    """Set-Content, Add-Content and Out-File: the values (or pipeline input) written to one file at the end."""

    append = False
    default_encoding = "default"
    what_if = ("Set Content", "Path: {}")  # the ShouldProcess action, and the target around the path


    def begin(self) -> None:
        self.values: list[object] = []

    def process(self, item: object) -> None:
        if item is not NO_INPUT:
            self.values.append(item)
        elif "Value" in self.p:
            self.values.extend(as_list(self.p["Value"]) if isinstance(self.p["Value"], list) else [self.p["Value"]])
        elif "InputObject" in self.p:
            self.values.append(self.p["InputObject"])

    def text(self) -> str:
        sep = "" if self.p.get("NoNewline") else "\r\n"
        return "".join(to_str(v) + sep for v in self.values)

    def end(self) -> None:
        rt = self.rt
        path = to_str(self.p.get("Path") or self.p.get("LiteralPath") or self.p.get("FilePath") or "")
        if not path:
            raise self.terminate("Cannot bind argument to parameter 'Path' because it is an empty string.",
                                 "ParameterArgumentValidationErrorEmptyStringNotAllowed")
        hp = resolve_path(rt, path)
        enc = to_str(self.p["Encoding"]) if "Encoding" in self.p else None
        try:
            if enc and enc.lower() == "byte":
                data = bytes(rt.to_int(x) & 0xFF for v in self.values for x in as_list(v))
            else:
                data = ps_encode(self.text(), enc, self.default_encoding)
        except LookupError:
            raise self.terminate(f"Cannot bind parameter 'Encoding'. Cannot convert value \"{enc}\".",
                                 "CannotConvertArgumentNoMessage") from None
        if not hp.parent.is_dir():
            self.error(f"Could not find a part of the path '{win_full(rt, path)}'.",
                       "GetContentWriterDirectoryNotFoundError", "ObjectNotFound", "System.IO.DirectoryNotFoundException",
                       win_full(rt, path))
            return
        if hp.is_dir():
            self.error(f"Access to the path '{win_full(rt, path)}' is denied.", "GetContentWriterUnauthorizedAccessError",
                       "PermissionDenied", "System.UnauthorizedAccessException", win_full(rt, path))
            return
        action, target = self.what_if
        if not self.should_process(target.format(win_full(rt, path)), action):
            return
        append = self.append or bool(self.p.get("Append"))
        if append and hp.exists() and data.startswith((b"\xff\xfe", b"\xef\xbb\xbf")) and hp.stat().st_size:
            data = data[2:] if data.startswith(b"\xff\xfe") else data[3:]
        with open(hp, "ab" if append else "wb") as f:
            f.write(data)
        if self.p.get("PassThru"):
            for v in self.values:
                self.emit(v)


@cmdlet("Set-Content", "sc", **_WRITER_PARAMETERS)
class SetContent(_ContentWriter):
    pass


@cmdlet("Add-Content", "ac", **_WRITER_PARAMETERS)
class AddContent(_ContentWriter):
    append = True
    what_if = ("Add Content", "Path: {}")


@cmdlet("Out-File", **{**_WRITER_PARAMETERS, "positional": ("FilePath", "Encoding"),
                       "params": ("Path", "LiteralPath", "Value", "InputObject", "Width")})
class OutFile(_ContentWriter):
    default_encoding = "unicode"
    what_if = ("Output to File", "{}")

    def text(self) -> str:
        return format_for_display(self.values) + ("" if self.p.get("NoNewline") else "\r\n") if self.values else ""


@cmdlet("Get-Content", "gc", "cat", "type", positional=("Path",),
        params=("LiteralPath", "Encoding", "TotalCount", "Tail", "ReadCount", "Delimiter"),
        switches=("Raw", "Force", "Wait"),
        aliases={**LITERAL_PATH_ALIASES, "first": "TotalCount", "head": "TotalCount", "last": "Tail"})
class GetContent(Cmdlet):
    def process(self, item: object) -> None:
        rt = self.rt
        for path in self.path_args(item):
            sp = to_str(path)
            env = env_path(sp)
            if env is not None:
                v = rt.host.env_get(env)
                if v is None:
                    self.path_not_found(sp)
                else:
                    self.emit(v)
                continue
            hp = resolve_path(rt, sp)
            if not hp.exists():
                self.path_not_found(sp)
                continue
            if hp.is_dir():
                self.error(f"Unable to get content because it is a directory: '{win_full(rt, sp)}'. Please use "
                           f"'Get-ChildItem' instead.", "GetContainerContentException", "InvalidOperation",
                           "System.Management.Automation.PSInvalidOperationException", win_full(rt, sp))
                continue
            data = hp.read_bytes()
            enc = to_str(self.p.get("Encoding", "default")).lower()
            if enc == "byte":
                if self.p.get("Raw"):
                    self.emit(bytearray(data))
                else:
                    for b in data:
                        self.emit(b)
                continue
            codec = _PS_ENCODINGS.get(enc, enc)
            text = decode_text(data, "utf-16-le" if codec == "utf-16" else codec.replace("-sig", ""))
            if self.p.get("Raw"):
                self.emit(text)
                continue
            lines = re.split(r"\r\n|\n|\r", text)
            if lines and lines[-1] == "":
                lines.pop()
            if "TotalCount" in self.p:
                lines = lines[:rt.to_int(self.p["TotalCount"])]
            if "Tail" in self.p:
                n = rt.to_int(self.p["Tail"])
                lines = lines[-n:] if n else []
            for line in lines:
                self.emit(line)
