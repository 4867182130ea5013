"""Static members and constructors of .NET types: [Type]::Member, [Type]::Method(...), New-Object/[Type]::new.

Grouped by type family in call_static; the file system families live with the file objects
(tests/lab/pwsh/files.py). A type or member outside the subset fails with PowerShell's own error,
or with a LabUnsupported error naming what is missing.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import time
import uuid
from collections.abc import Callable

from tests.lab.pwsh import limits
from tests.lab.pwsh.conversions import bytes_arg, convert_value, ENUM_TYPES, format_string, no_static_method
from tests.lab.pwsh.dotnet_objects import EncodingObj, ExceptionObj, GuidValue, StringBuilderObj
from tests.lab.pwsh.dotnet_types import lookup, MemberNotFound
from tests.lab.pwsh.errors import (
    ErrorRecord, ExitScript, method_exception, no_method, parse_error_record, PSError, runtime_error, type_name_of,
)
from tests.lab.pwsh.files import (
    directory_static, dotnet_io, file_static, FileStreamObj, FileSystemItem, HashAlgo, path_static, resolve_path,
    win_full,
)
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.language import check_create, check_method
from tests.lab.pwsh.operators import dotnet_regex, dotnet_replacement
from tests.lab.pwsh.parser import Node, parse, ParseError
from tests.lab.pwsh.values import (
    as_list, canonical_type, EnumValue, Hashtable, PSObject, ScriptBlock, to_bool, to_str, TypeRef, Version,
)


def static_member(rt: Interpreter, obj: object, name: str) -> object:
    if not isinstance(obj, TypeRef):
        raise runtime_error(f"Unable to find static member '{name}'.", "StaticMemberNotFound")
    if obj.dotnet is not None:
        try:
            return obj.dotnet.get_static(rt, name)  # type: ignore[attr-defined]
        except MemberNotFound:
            pass  # a registered type may extend one dispatched by name below
    c = obj.canon.lower()
    low = name.lower()
    if c == "system.text.encoding":
        return {"utf8": EncodingObj("utf-8", "Unicode (UTF-8)", bom=True), "unicode": EncodingObj("utf-16-le", "Unicode"),
                "ascii": EncodingObj("ascii", "US-ASCII"), "bigendianunicode": EncodingObj("utf-16-be", "Unicode (Big-Endian)"),
                "utf32": EncodingObj("utf-32-le", "Unicode (UTF-32)"), "default": EncodingObj("cp1252", "Western European (Windows)")
                }.get(low) or _no_static(obj, name)
    if c == "system.environment":
        if low == "newline":
            return "\r\n"
        if low == "machinename":
            return rt.host.computer_name
        if low == "username":
            return rt.host.user
        if low == "userdomainname":
            return rt.host.computer_name
        if low == "currentdirectory":
            return rt.cwd
        if low == "osversion":
            return "Microsoft Windows NT 10.0.17763.0"
        if low == "is64bitprocess" or low == "is64bitoperatingsystem":
            return True
        if low == "processorcount":
            return 2
        if low == "tickcount":
            return int(time.monotonic() * 1000) & 0x7FFFFFFF
        if low == "systemdirectory":
            return "C:\\Windows\\system32"
    if c == "system.string" and low == "empty":
        return ""
    if c == "system.int32":
        return {"maxvalue": 2**31 - 1, "minvalue": -2**31}.get(low) if low in ("maxvalue", "minvalue") else _no_static(obj, name)
    if c == "system.int64":
        return {"maxvalue": 2**63 - 1, "minvalue": -2**63}.get(low) if low in ("maxvalue", "minvalue") else _no_static(obj, name)
    if c == "system.math" and low in ("pi", "e"):
        return math.pi if low == "pi" else math.e
    if c == "system.datetime":
        if low == "now":
            return dt.datetime.now()
        if low == "utcnow":
            return dt.datetime.now(dt.timezone.utc)
        if low == "today":
            return dt.datetime.combine(dt.date.today(), dt.time())
    if c == "system.io.path":
        if low == "directoryseparatorchar":
            return "\\"
        if low == "pathseparator":
            return ";"
    if c in ENUM_TYPES:
        for n in ENUM_TYPES[c]:
            if n.lower() == low:
                return EnumValue(obj.canon, n)
    if c == "system.guid" and low == "empty":
        return GuidValue(uuid.UUID(int=0))
    return _no_static(obj, name)


def set_static_member(rt: Interpreter, obj: object, name: str, value: object) -> None:
    """`[Type]::Member = value` on a registered type (the older name-dispatched types have no settable statics)."""
    dotnet = getattr(obj, "dotnet", None)
    if dotnet is not None:
        try:
            dotnet.set_static(rt, name, value)
            return
        except MemberNotFound:
            pass
    raise runtime_error(f"'{name}' is a ReadOnly property.", "PropertyAssignmentException")


# Static members .NET Framework 4.x does not have (scripts probe for them to tell .NET Core from Framework):
# reading one gives $null, as PowerShell does for a missing static member, instead of the lab's "not implemented".
ABSENT_IN_FRAMEWORK = {"system.io.directory": {"resolvelinktarget", "createsymboliclink"},
                       "system.io.file": {"resolvelinktarget", "createsymboliclink"},
                       "system.environment": {"processpath", "processid", "isprivilegedprocess"}}


def _no_static(obj: TypeRef, name: str) -> object:
    if name.lower() in ABSENT_IN_FRAMEWORK.get(obj.canon.lower(), ()):
        return None
    raise runtime_error(f"The lab engine does not implement [{obj.name}]::{name}.", "LabUnsupportedStaticMember",
                        "NotImplemented")


def call_static(rt: Interpreter, obj: object, name: str, args: list[object]) -> object:
    if not isinstance(obj, TypeRef):
        raise runtime_error(f"Method invocation failed because [{type_name_of(obj)}] does not contain a method named "
                            f"'{name}'.", "MethodNotFound")
    if obj.dotnet is not None:
        try:
            dotnet = obj.dotnet
            return dotnet.new(rt, args) if name.lower() == "new" else dotnet.call_static(rt, name, args)  # type: ignore[attr-defined]
        except MemberNotFound:
            pass  # a registered type may extend one dispatched by name below
    c = obj.canon.lower()
    low = name.lower()
    n = len(args)
    if low == "new":
        check_create(rt, obj.canon)
        return new_object(rt, obj.canon, args)
    check_method(rt, obj, name)
    if c == "system.convert":
        if low == "frombase64string":
            text = to_str(args[0]) if args else ""
            try:
                clean = re.sub(r"\s+", "", text)
                if len(clean) % 4:
                    raise ValueError
                return bytearray(base64.b64decode(clean, validate=True))
            except (ValueError, base64.binascii.Error):
                raise method_exception(name, n, "The input is not a valid Base-64 string as it contains a non-base "
                                                "64 character, more than two padding characters, or an illegal "
                                                "character among the padding characters. ") from None
        if low == "tobase64string":
            data = bytes_arg(rt, args[0], name, n)
            if n >= 3:
                off, cnt = rt.to_int(args[1]), rt.to_int(args[2])
                data = data[off:off + cnt]
            return base64.b64encode(bytes(data)).decode()
        if low in ("toint32", "toint64"):
            if n == 2:
                return int(to_str(args[0]), rt.to_int(args[1]))
            return convert_value(rt, args[0], "int")
        if low == "tostring":
            if n == 2:
                base = rt.to_int(args[1])
                v = rt.to_int(args[0])
                return {2: bin(v)[2:], 8: oct(v)[2:], 16: format(v, "x")}.get(base, str(v))
            return to_str(args[0])
        if low == "toboolean":
            return to_bool(args[0])
    if c == "system.text.encoding" and low == "getencoding":
        name2 = to_str(args[0]).lower()
        codec = {"utf-8": "utf-8", "65001": "utf-8", "utf-16": "utf-16-le", "unicode": "utf-16-le",
                 "us-ascii": "ascii", "ascii": "ascii", "windows-1252": "cp1252", "1252": "cp1252",
                 "437": "cp437", "ibm437": "cp437"}.get(name2)
        if codec is None:
            raise method_exception(name, n, f"'{to_str(args[0])}' is not a supported encoding name.")
        return EncodingObj(codec, name2)
    if c == "system.bitconverter":
        if low == "tostring":
            data = bytes_arg(rt, args[0], name, n)
            return "-".join(f"{b:02X}" for b in data)
        if low == "getbytes":
            return bytearray(rt.to_int(args[0]).to_bytes(4, "little", signed=True))
    if c == "system.guid" and low == "newguid":
        return GuidValue(uuid.uuid4())
    if c == "system.string":
        if low == "isnullorempty":
            return args[0] is None or to_str(args[0]) == ""
        if low == "isnullorwhitespace":
            return args[0] is None or to_str(args[0]).strip() == ""
        if low == "join":
            items = args[1:] if n > 2 else as_list(args[1]) if n == 2 else []
            return to_str(args[0]).join(to_str(x) for x in items)
        if low == "format":
            return format_string(rt, to_str(args[0]), as_list(args[1]) if n == 2 and isinstance(args[1], list) else args[1:])
        if low == "equals":
            if n == 3 and "ignorecase" in to_str(args[2]).lower():
                return to_str(args[0]).lower() == to_str(args[1]).lower()
            return args[0] == args[1] or (isinstance(args[0], str) and isinstance(args[1], str) and args[0] == args[1])
        if low == "concat":
            return "".join(to_str(x) for x in args)
        if low == "compare":
            a, b = to_str(args[0]), to_str(args[1])
            if n > 2 and to_bool(args[2]):
                a, b = a.lower(), b.lower()
            return (a > b) - (a < b)
    if c == "system.math":
        nums = [rt.to_num(x) for x in args]
        fns: dict[str, Callable[..., object]] = {
            "min": min, "max": max, "abs": abs, "floor": math.floor, "ceiling": math.ceil, "sqrt": math.sqrt,
            "pow": lambda a, b: float(a) ** b, "truncate": math.trunc, "log": math.log, "log10": math.log10,
            "exp": math.exp, "sign": lambda a: (a > 0) - (a < 0),
            "round": lambda a, d=0: round(a, int(d)) if d else round(a)}
        if low in fns:
            return fns[low](*nums)
    if c == "system.environment":
        if low == "expandenvironmentvariables":
            return re.sub(r"%([^%]+)%", lambda m: rt.host.env_get(m.group(1)) if rt.host.env_get(m.group(1))
                          is not None else m.group(0), to_str(args[0]))
        if low == "getenvironmentvariable":
            return rt.host.env_get(to_str(args[0]))
        if low == "setenvironmentvariable":
            rt.host.env_set(to_str(args[0]), None if args[1] is None else to_str(args[1]))
            return None
        if low == "getfolderpath":
            return {"applicationdata": rt.host.profile_dir + "\\AppData\\Roaming",
                    "localapplicationdata": rt.host.profile_dir + "\\AppData\\Local",
                    "mydocuments": rt.host.profile_dir + "\\Documents", "userprofile": rt.host.profile_dir,
                    "commonapplicationdata": "C:\\ProgramData", "windows": "C:\\Windows",
                    "system": "C:\\Windows\\system32", "programfiles": "C:\\Program Files"
                    }.get(to_str(args[0]).lower(), "")
        if low == "exit":
            raise ExitScript(rt.to_int(args[0]))
    if c == "system.io.path":
        return path_static(rt, obj, low, name, args)
    if c == "system.io.file":
        return file_static(rt, low, name, args)
    if c == "system.io.directory":
        return directory_static(rt, obj, low, name, args)
    if c == "system.security.cryptography.sha1" and low == "create":
        return HashAlgo("sha1")
    if c == "system.security.cryptography.sha256" and low == "create":
        return HashAlgo("sha256")
    if c == "system.security.cryptography.md5" and low == "create":
        return HashAlgo("md5")
    if c == "system.management.automation.scriptblock" and low == "create":
        text = to_str(args[0])
        try:
            return ScriptBlock(parse(text), text)
        except ParseError as e:
            raise method_exception(name, n, e.message) from None
    if c == "system.management.automation.language.parser" and low == "parseinput":
        text = to_str(args[0])
        file_name = to_str(args[1]) if n > 1 else None
        return ParsedAst(rt, text, file_name)
    if c == "system.io.fileinfo" or c == "system.io.directoryinfo":
        raise no_static_method(obj, name)
    if c == "system.datetime" and low in ("parse", "parseexact"):
        return convert_value(rt, args[0], "datetime")
    if c == "system.text.regularexpressions.regex":
        if low == "escape":
            return re.sub(r"([\\*+?|{\[()^$.#\s])", r"\\\1", to_str(args[0]))
        if low == "ismatch":
            return bool(re.search(dotnet_regex(to_str(args[1])), to_str(args[0])))
        if low == "replace":
            return re.sub(dotnet_regex(to_str(args[1])), dotnet_replacement(to_str(args[2])), to_str(args[0]))
    if c == "system.version" and low == "parse":
        return convert_value(rt, args[0], "version")
    if c == "system.threading.thread" and low == "sleep":
        time.sleep(min(limits.MAX_SLEEP_SECONDS, rt.to_num(args[0]) / 1000.0))
        return None
    raise no_static_method(obj, name)


class ParsedAst:
    """What [Parser]::ParseInput returns: only GetScriptBlock() is used by real scripts."""

    ps_type = "System.Management.Automation.Language.ScriptBlockAst"

    def __init__(self, rt: Interpreter, text: str, file_name: str | None) -> None:
        self.rt = rt
        self.text = text
        self.file_name = file_name
        try:
            self.body: Node | None = parse(text)
            self.error: ParseError | None = None
        except ParseError as e:
            self.body = None
            self.error = e

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "getscriptblock":
            if self.body is None:
                assert self.error is not None
                raise PSError(parse_error_record(self.text, self.error))
            return ScriptBlock(self.body, self.text, self.file_name)
        raise no_method(self, name)


def new_object(rt: Interpreter, type_name: str, args: list[object]) -> object:
    found = lookup(rt, type_name)
    if found is not None and found[1] is not None:
        try:
            return found[1].new(rt, args)
        except MemberNotFound:
            raise runtime_error(f"A constructor was not found. Cannot find an appropriate constructor for type "
                                f"{found[0]}.", "CannotFindAppropriateCtor", "ObjectNotFound",
                                "System.Management.Automation.PSArgumentException") from None
    if found is not None:
        type_name = found[0]
    canon = canonical_type(type_name)
    c = canon.lower()
    fs = rt.host.fs
    if c == "system.byte[]":
        size = rt.to_int(args[0]) if args else 0
        if size > limits.MAX_STRING_CHARS:
            raise method_exception("new", 1, "The lab engine does not allocate arrays that large.")
        return bytearray(size)
    if c.endswith("[]"):
        return [None] * rt.to_int(args[0])
    if c in ("system.io.fileinfo", "system.io.directoryinfo"):
        win = win_full(rt, args[0])
        return FileSystemItem(rt, resolve_path(rt, win), win)
    if c == "system.io.filestream":
        path = to_str(args[0])
        mode = to_str(args[1]).lower() if len(args) > 1 else "open"
        access = to_str(args[2]).lower() if len(args) > 2 else ("readwrite" if mode != "open" else "read")

        def opener() -> FileStreamObj:
            hp = fs.host_path(path, rt.cwd)
            exists = hp.is_file()
            if mode == "open" and not exists:
                raise FileNotFoundError(2, "No such file", str(hp))
            if mode == "createnew" and exists:
                raise OSError(17, f"The file '{fs.win_of(hp)}' already exists.")
            if mode in ("create", "createnew", "truncate"):
                pymode = "w+b"
            elif mode == "append":
                pymode = "ab"
            elif mode == "openorcreate":
                pymode = "r+b" if exists else "w+b"
            else:
                pymode = "rb" if access == "read" else "r+b"
            return FileStreamObj(rt, hp, fs.win_of(hp), pymode)
        return dotnet_io(rt, ".ctor", len(args), opener)
    if c in ("system.collections.arraylist", "system.collections.generic.list"):
        return []
    if c == "system.collections.hashtable":
        return Hashtable()
    if c == "system.text.utf8encoding":
        return EncodingObj("utf-8", "Unicode (UTF-8)", bom=bool(args and to_bool(args[0])))
    if c == "system.management.automation.psobject" or c == "system.object":
        return PSObject()
    if c == "system.guid":
        return convert_value(rt, args[0], "guid") if args else GuidValue(uuid.UUID(int=0))
    if c == "system.version":
        return Version(".".join(to_str(x) for x in args)) if len(args) > 1 else convert_value(rt, args[0], "version")
    if c == "system.security.cryptography.sha1":
        return HashAlgo("sha1")
    if c == "system.text.stringbuilder":
        return StringBuilderObj(to_str(args[0]) if args else "")
    if c == "system.exception":
        return ExceptionObj(ErrorRecord(to_str(args[0]) if args else "Exception of type 'System.Exception' was thrown.",
                                        exception_type="System.Exception", fq_error_id="System.Exception"))
    if c == "system.management.automation.errorrecord":
        exc = args[0]
        msg = exc.Message if isinstance(exc, ExceptionObj) else to_str(exc)
        return ErrorRecord(msg, fq_error_id=to_str(args[1]) if len(args) > 1 else "",
                           category=to_str(args[2]) if len(args) > 2 else "NotSpecified",
                           exception_type=exc.ps_type if isinstance(exc, ExceptionObj) else "System.Exception",
                           target=args[3] if len(args) > 3 else None)
    raise runtime_error(f'Cannot find type [{type_name}]: verify that the assembly containing this type is loaded.',
                        "TypeNotFound", "InvalidType",
                        "System.Management.Automation.PSArgumentException", target=type_name)
