"""PowerShell values as the interpreter holds them, and the conversions every part uses (to_str, to_bool).

Python's str, int, float, bool, None, list and bytearray stand for their .NET counterparts; the
classes here are the PowerShell types that need more (case-insensitive hashtables, PSCustomObject,
[version], [type] literals, enum values, script blocks, lazy enumerators such as $input).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tests.lab.pwsh.parser import Node


class Hashtable(dict):
    """A PowerShell hashtable: keys compared case-insensitively, insertion order kept.

    A key is found through an index of the keys' lower-case forms (a .NET Hashtable with its
    case-insensitive comparer hashes the folded key too), not by comparing it with every key: the isolation
    script fills tables of hundreds of entries every task, and a scan per lookup made that quadratic. Every
    dict method that adds or removes a key keeps the index in step; an index whose size and the table's disagree
    is rebuilt, which covers a dict method called past these (dict.__init__ of a copy, a dict.pop). Two such
    calls in a row, one removing and one adding a key, would leave it stale: nothing here makes them.
    """

    def _index(self) -> dict[object, object]:
        index = self.__dict__.get("_folded")
        if index is None or len(index) != dict.__len__(self):
            index = {}
            for existing in dict.keys(self):
                index.setdefault(_fold(existing), existing)
            self.__dict__["_folded"] = index
        return index

    def _k(self, key: object) -> object:
        if isinstance(key, str):
            return self._index().get(key.lower(), key)
        return key

    def __getitem__(self, key: object) -> object:
        return dict.get(self, self._k(key))

    def __setitem__(self, key: object, value: object) -> None:
        index = self._index()
        existing = index.get(_fold(key), key) if isinstance(key, str) else key
        dict.__setitem__(self, existing, value)
        index.setdefault(_fold(existing), existing)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._k(key))

    def __delitem__(self, key: object) -> None:
        existing = self._k(key)
        dict.__delitem__(self, existing)
        self._index().pop(_fold(existing), None)

    def remove(self, key: object) -> None:
        self.pop(key, None)

    def pop(self, key: object, *default: object) -> object:
        existing = self._k(key)
        if not dict.__contains__(self, existing):
            return dict.pop(self, existing, *default)
        value = dict.pop(self, existing)
        self._index().pop(_fold(existing), None)
        return value

    def popitem(self) -> tuple[object, object]:
        item = dict.popitem(self)
        self._index().pop(_fold(item[0]), None)
        return item

    def clear(self) -> None:
        dict.clear(self)
        self.__dict__["_folded"] = {}

    def setdefault(self, key: object, default: object = None) -> object:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: object, **kwargs: object) -> None:
        for k, v in dict(*args, **kwargs).items():  # type: ignore[call-overload]
            self[k] = v


def _fold(key: object) -> object:
    """A key's form in the index: a string's lower case; any other key as itself, apart from every string."""
    return key.lower() if isinstance(key, str) else (None, key)


class PSObject:
    """A PSCustomObject: ordered note properties."""

    def __init__(self, props: dict | None = None) -> None:
        self.methods: Hashtable = Hashtable()  # script methods added with Add-Member or .PSObject.Members.Add
        self.props: Hashtable = Hashtable()
        for k, v in (props or {}).items():
            self.props[k] = v


class Version:
    def __init__(self, text: str) -> None:
        parts = [int(p) for p in str(text).split(".")]
        if not 2 <= len(parts) <= 4:
            raise ValueError(text)
        self.parts = tuple(parts)

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)

    def key(self) -> tuple[int, ...]:
        return self.parts + (-1,) * (4 - len(self.parts))


class TypeRef:
    """A [type] literal; `dotnet` is its registered type (tests/lab/pwsh/dotnet_types.py) when it has one."""

    def __init__(self, name: str, canon: str | None = None, dotnet: object = None) -> None:
        self.name = name
        self.canon = canon or canonical_type(name)
        self.dotnet = dotnet

    def __str__(self) -> str:
        return self.canon


class EnumValue:
    def __init__(self, type_name: str, name: str) -> None:
        self.type_name = type_name
        self.name = name

    def __str__(self) -> str:
        return self.name


class ScriptBlock:
    """A script block: its AST, the source it came from, and the `using namespace` lines of that source."""

    def __init__(self, body: Node, src: str, file_name: str | None = None, usings: list[str] | None = None,
                 module: object = None) -> None:
        self.body = body
        self.src = src
        self.file_name = file_name
        self.usings = usings if usings is not None else list(getattr(body, "usings", None) or [])
        self.module = module  # the ModuleInfo whose scope the block runs in (functions of an imported module)

    def __str__(self) -> str:
        return str(self.body.a.get("text", ""))


class PSEnumerator:
    """$input and other enumerators: consumed lazily, once."""

    def __init__(self, it: Iterable[object]) -> None:
        self.it = iter(it)
        self.current: object = None

    def __iter__(self) -> Iterator[object]:
        for item in self.it:
            self.current = item
            yield item


class Ref:
    def __init__(self, value: object = None) -> None:
        self.Value = value


TYPE_ALIASES = {
    "string": "System.String", "int": "System.Int32", "int32": "System.Int32", "long": "System.Int64",
    "int64": "System.Int64", "bool": "System.Boolean", "boolean": "System.Boolean", "double": "System.Double",
    "float": "System.Single", "single": "System.Single", "decimal": "System.Decimal", "byte": "System.Byte",
    "char": "System.Char", "object": "System.Object", "psobject": "System.Management.Automation.PSObject",
    "pscustomobject": "System.Management.Automation.PSObject", "hashtable": "System.Collections.Hashtable",
    "array": "System.Array", "scriptblock": "System.Management.Automation.ScriptBlock",
    "switch": "System.Management.Automation.SwitchParameter", "version": "System.Version",
    "guid": "System.Guid", "datetime": "System.DateTime", "void": "System.Void", "ref": "System.Management.Automation.PSReference",
    "type": "System.Type", "regex": "System.Text.RegularExpressions.Regex", "uint32": "System.UInt32",
    "uint64": "System.UInt64", "int16": "System.Int16", "ordered": "System.Collections.Specialized.OrderedDictionary",
    "errorrecord": "System.Management.Automation.ErrorRecord", "securestring": "System.Security.SecureString",
    "idictionary": "System.Collections.IDictionary", "text.encoding": "System.Text.Encoding",
    "encoding": "System.Text.Encoding", "convert": "System.Convert", "math": "System.Math",
    "environment": "System.Environment", "bitconverter": "System.BitConverter", "file": "System.IO.File",
    "io.file": "System.IO.File", "path": "System.IO.Path", "io.path": "System.IO.Path",
    "directory": "System.IO.Directory", "io.directory": "System.IO.Directory", "filestream": "System.IO.FileStream",
    "io.filestream": "System.IO.FileStream", "filemode": "System.IO.FileMode", "fileaccess": "System.IO.FileAccess",
    "fileshare": "System.IO.FileShare", "seekorigin": "System.IO.SeekOrigin", "io.fileinfo": "System.IO.FileInfo",
    "fileinfo": "System.IO.FileInfo", "sha1": "System.Security.Cryptography.SHA1",
    "sha256": "System.Security.Cryptography.SHA256", "md5": "System.Security.Cryptography.MD5",
    "security.cryptography.sha1": "System.Security.Cryptography.SHA1",
    "security.cryptography.sha256": "System.Security.Cryptography.SHA256",
    "bindingflags": "System.Reflection.BindingFlags", "reflection.bindingflags": "System.Reflection.BindingFlags",
    "text.utf8encoding": "System.Text.UTF8Encoding", "collections.arraylist": "System.Collections.ArrayList",
    "arraylist": "System.Collections.ArrayList", "exception": "System.Exception",
    "management.automation.language.parser": "System.Management.Automation.Language.Parser",
}


def canonical_type(name: str) -> str:
    n = name.strip()
    if n.endswith("[]"):
        return canonical_type(n[:-2]) + "[]"
    low = n.lower()
    if low.startswith("system."):
        low_short = low[7:]
    else:
        low_short = low
    if low_short in TYPE_ALIASES:
        return TYPE_ALIASES[low_short]
    if low in TYPE_ALIASES:
        return TYPE_ALIASES[low]
    if low.startswith("collections.generic.list[") or low.startswith("system.collections.generic.list["):
        return "System.Collections.Generic.List"
    for alg in ("sha1", "sha256", "md5"):
        if low_short in (f"security.cryptography.{alg}cryptoserviceprovider", f"security.cryptography.{alg}managed"):
            return f"System.Security.Cryptography.{alg.upper()}"
    if low.startswith("system."):
        return n
    return "System." + n if low_short.split(".")[0] in ("io", "text", "security", "management", "collections",
                                                         "reflection", "net", "diagnostics") else n


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def to_str(v: object) -> str:
    """PowerShell's string conversion (arrays joined by $OFS)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v).replace("e+", "E+").replace("e-", "E-")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return " ".join(to_str(x) for x in v)
    if isinstance(v, (bytes, bytearray)):
        return " ".join(str(b) for b in v)
    if isinstance(v, Hashtable):
        return "System.Collections.Hashtable"
    if isinstance(v, PSObject):
        return "@{" + "; ".join(f"{k}={to_str(val)}" for k, val in v.props.items()) + "}"
    if isinstance(v, dict):
        return "System.Collections.Hashtable"
    if isinstance(v, PSEnumerator):
        return " ".join(to_str(x) for x in v)  # enumerated and joined with $OFS, as LanguagePrimitives does
    tostr = getattr(v, "ps_tostring", None)
    if tostr is not None:
        return tostr()
    if type(v).__str__ is object.__str__ and isinstance(getattr(v, "ps_type", None), str):
        return str(getattr(v, "ps_type"))  # Object.ToString(): the full name of the object's type
    return str(v)


def to_bool(v: object) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if is_number(v):
        return v != 0
    if isinstance(v, str):
        return v != ""
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            return False
        if len(v) == 1:
            return to_bool(v[0]) if not isinstance(v[0], (list, tuple)) else len(v[0]) > 0
        return True
    if isinstance(v, (bytes, bytearray)):
        return len(v) > 0
    if isinstance(v, SwitchValue):
        return v.present
    return True


class SwitchValue:
    def __init__(self, present: bool) -> None:
        self.present = present

    @property
    def IsPresent(self) -> bool:  # noqa: N802
        return self.present

    def ps_tostring(self) -> str:
        return "True" if self.present else "False"


def parse_number(s: str) -> int | float | None:
    t = s.strip()
    if not t:
        return 0
    try:
        if t.lower().startswith("0x"):
            return int(t, 16)
        return int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            return None
        return f


def enumerate_value(v: object) -> Iterator[object]:
    """How the pipeline unrolls a value written to output."""
    if isinstance(v, (list, tuple)):
        yield from v
    elif isinstance(v, (bytes, bytearray)):
        yield from v
    elif isinstance(v, PSEnumerator):
        yield from v
    else:
        yield v


def as_list(v: object) -> list[object]:
    if v is None:
        return []
    return list(enumerate_value(v))

# What a stage's process_item receives when it runs without pipeline input (process block runs once).
NO_INPUT = object()
# A switch parameter given without a value (`-Force`), before binding decides what it means.
SWITCH_PRESENT = object()
