"""Ansible.Basic's argument handling, reproduced from ansible-core 2.21's Ansible.Basic.cs (AnsibleModule): the
argument spec's own validation and defaults, the option type parsers (Parse*), aliases, no_log values, and the
checks Create runs on the module's parameters. Messages are the C# source's, word for word.

`SpecError` is an ArgumentException raised while the spec is validated (the constructor reports it as
"internal error: ..."); `ModuleFailed` carries a FailJson message to the module object, which writes the
failure result and exits.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable

from tests.lab.pwsh.csharp.scripting import dotnet_str, dotnet_type
from tests.lab.pwsh.net.collections import DictionaryObj, GenericList
from tests.lab.pwsh.values import Hashtable, PSObject, ScriptBlock

BOOLEANS_TRUE = ["y", "yes", "on", "1", "true", "t", "1.0"]
BOOLEANS_FALSE = ["n", "no", "off", "0", "false", "f", "0.0"]

# The `_ansible_*` keys Ansible passes, and the module property each sets (None: accepted, not used).
PASS_VARS: dict[str, str | None] = {
    "check_mode": "CheckMode", "debug": "DebugMode", "diff": "DiffMode", "keep_remote_files": "KeepRemoteFiles",
    "ignore_unknown_opts": "ignoreUnknownOpts", "inject_invocation": "injectInvocation", "module_name": "ModuleName",
    "no_log": "NoLog", "remote_tmp": "remoteTmp", "selinux_special_fs": None, "shell_executable": None,
    "socket": None, "syslog_facility": None, "target_log_info": "TargetLogInfo", "tracebacks_for": "_tracebacksFor",
    "tmpdir": "tmpdir", "verbosity": "Verbosity", "version": "AnsibleVersion",
}
PASS_BOOLS = ("check_mode", "debug", "diff", "keep_remote_files", "ignore_unknown_opts", "inject_invocation", "no_log")
PASS_INTS = ("verbosity",)
PASS_STRING_ARRAYS = ("tracebacks_for",)


class SpecError(Exception):
    """An ArgumentException while the argument spec is checked: the module fails with `internal error: ...`."""


class ModuleFailed(Exception):
    """AnsibleModule.FailJson(message) called from inside the argument checks."""


class ParseError(Exception):
    """A Parse* method threw: the message is the inner exception's."""


# key -> (default factory, the type a given value must have: a checker and its .NET name, or None for any)
def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


SPEC_DEFAULTS: dict[str, tuple[Callable[[], object], tuple[Callable[[object], bool], str, str | None] | None]] = {
    "apply_defaults": (lambda: False, (_is_bool, "System.Boolean", None)),
    "aliases": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.String]]", "string")),
    "choices": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Object]]", "object")),
    "default": (lambda: None, None),
    "deprecated_aliases": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Collections."
                                                          "Hashtable]]", "hashtable")),
    "elements": (lambda: None, None),
    "mutually_exclusive": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Object]]",
                                         "object")),
    "no_log": (lambda: False, (_is_bool, "System.Boolean", None)),
    "options": (Hashtable, (lambda v: type(v) is Hashtable, "System.Collections.Hashtable", None)),
    "removed_in_version": (lambda: None, (lambda v: isinstance(v, str), "System.String", None)),
    "removed_at_date": (lambda: None, (lambda v: isinstance(v, dt.datetime), "System.DateTime", None)),
    "removed_from_collection": (lambda: None, (lambda v: isinstance(v, str), "System.String", None)),
    "required": (lambda: False, (_is_bool, "System.Boolean", None)),
    "required_by": (Hashtable, (lambda v: type(v) is Hashtable, "System.Collections.Hashtable", None)),
    "required_if": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Object]]", "object")),
    "required_one_of": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Object]]",
                                      "object")),
    "required_together": (GenericList, (lambda v: False, "System.Collections.Generic.List`1[[System.Object]]",
                                        "object")),
    "supports_check_mode": (lambda: False, (_is_bool, "System.Boolean", None)),
    "type": (lambda: "str", None),
}


def _cast_element(value: object, element: str) -> object:
    if element == "string" and not isinstance(value, str):
        raise SpecError(f"Unable to cast object of type '{dotnet_type(value)}' to type 'System.String'.")
    if element == "hashtable" and type(value) is not Hashtable:
        raise SpecError(f"Unable to cast object of type '{dotnet_type(value)}' to type 'System.Collections.Hashtable'.")
    return value


def validate_spec(spec: dict, context: list[str]) -> None:  # type: ignore[type-arg]
    """ValidateArgumentSpec: known keys, value types (a single value of a list's element type becomes a list)."""
    changed: dict[str, object] = {}
    for key, value in list(spec.items()):
        key = str(key)
        if key not in SPEC_DEFAULTS:
            raise SpecError(with_context(f"argument spec entry contains an invalid key '{key}', valid keys: "
                                         f"{', '.join(SPEC_DEFAULTS)}", context, " - "))
        check = SPEC_DEFAULTS[key][1] if value is not None else None
        if check is not None:
            accepts, type_name, element = check
            if element is not None:
                single = element == "object" or (element == "string" and isinstance(value, str)) or (
                    element == "hashtable" and type(value) is Hashtable)
                if isinstance(value, (list, tuple)) and not isinstance(value, str):
                    changed[key] = GenericList(_cast_element(v, element) for v in value)
                elif single and not isinstance(value, (list, tuple)):
                    changed[key] = GenericList([value])
                else:
                    raise SpecError(with_context(f"argument spec for '{key}' did not match expected type {type_name}: "
                                                 f"actual type {dotnet_type(value)}", context, " - "))
            elif not accepts(value):
                raise SpecError(with_context(f"argument spec for '{key}' did not match expected type {type_name}: "
                                             f"actual type {dotnet_type(value)}", context, " - "))
        if key == "options" and value is not None:
            for opt_name, opt_meta in value.items():
                context.append(str(opt_name))
                if not isinstance(opt_meta, dict):
                    raise SpecError(f"Unable to cast object of type '{dotnet_type(opt_meta)}' to type "
                                    f"'System.Collections.IDictionary'.")
                validate_spec(opt_meta, context)
                context.pop()
        if key == "type" and value is None:
            raise SpecError("Object reference not set to an instance of an object.")
        if key in ("type", "elements") and value is not None:
            if isinstance(value, str):
                if value not in OPTION_TYPES:
                    msg = with_context(f"{key} '{value}' is unsupported", context, " - ")
                    raise SpecError(f"{msg}. Valid types are: {', '.join(OPTION_TYPES)}")
            elif not hasattr(value, "invoke"):  # a delegate ([Func[[Object], [T]]]{...}) converts the value itself
                raise SpecError(with_context(f"{key} must either be a string or delegate, was: {dotnet_type(value)}",
                                             context, " - "))
    for key, value in changed.items():
        spec[key] = value


def set_spec_defaults(spec: dict, context: list[str]) -> None:  # type: ignore[type-arg]
    for key, (default, _) in SPEC_DEFAULTS.items():
        if key not in spec:
            spec[key] = default()
    for key, value in list(spec.items()):
        if value is None or str(key) != "options":
            continue
        for opt_name, opt_meta in value.items():
            context.append(str(opt_name))
            set_spec_defaults(opt_meta, context)
            context.pop()


def merge_fragment(spec: dict, fragment: dict) -> None:  # type: ignore[type-arg]
    for key, value in fragment.items():
        if key in spec:
            if isinstance(value, dict):
                merge_fragment(spec[key], value)
            elif isinstance(value, list):
                spec[key].extend(value)
        else:
            spec[key] = value


def with_context(msg: str, context: list[str], prefix: str = " ") -> str:
    """FormatOptionsContext."""
    if context:
        msg += f"{prefix}found in {' -> '.join(context)}"
    return msg


# ---- the option type parsers (AnsibleModule.Parse*) -------------------------------------------------------------

def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = parse_str(value).lower().strip()
    if text in BOOLEANS_TRUE:
        return True
    if text in BOOLEANS_FALSE:
        return False
    raise ParseError(f"The value '{text}' is not a valid boolean. Valid booleans include: "
                     f"{', '.join(BOOLEANS_TRUE + BOOLEANS_FALSE)}")


def parse_dict(value: object) -> DictionaryObj:
    if isinstance(value, DictionaryObj):
        return value
    if isinstance(value, dict):
        out = DictionaryObj()
        for k, v in value.items():
            out[k] = v
        return out
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}"):
            return _json_dict(value)
        if "=" in value:
            return _key_value_dict(value)
        raise ParseError("string cannot be converted to a dict, must either be a JSON string or in the key=value form")
    raise ParseError(f"{dotnet_type(value)} cannot be converted to a dict")


def _json_dict(text: str) -> DictionaryObj:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ParseError(f"Invalid JSON primitive: {e.msg}.") from None
    if not isinstance(data, dict):
        raise ParseError(f"Cannot convert object of type '{dotnet_type(data)}' to type "
                         f"'System.Collections.Generic.Dictionary`2[System.String,System.Object]'")
    return from_json_value(data)  # type: ignore[return-value]


def _key_value_dict(text: str) -> DictionaryObj:
    fields: list[str] = []
    buf: list[str] = []
    in_quote: str | None = None
    in_escape = False
    for c in text:
        if in_escape:
            buf.append(c)
            in_escape = False
        elif c == "\\":
            in_escape = True
        elif in_quote is None and c in "'\"":
            in_quote = c
        elif in_quote is not None and c == in_quote:
            in_quote = None
        elif in_quote is None and c in ", ":
            field = "".join(buf)
            if field:
                fields.append(field)
            buf = []
        else:
            buf.append(c)
    field = "".join(buf)
    if field:
        fields.append(field)
    out = DictionaryObj()
    for f in dict.fromkeys(fields):
        k, sep, v = f.partition("=")
        if k in out:
            raise ParseError("An item with the same key has already been added.")
        out[k] = v if sep else None
    return out


def from_json_value(data: object) -> object:
    """JavaScriptSerializer.Deserialize: objects become Dictionary<string, object>, arrays ArrayList (object[] here)."""
    if isinstance(data, dict):
        out = DictionaryObj()
        for k, v in data.items():
            out[k] = from_json_value(v)
        return out
    if isinstance(data, list):
        return [from_json_value(v) for v in data]
    return data


def parse_float(value: object) -> float:
    if isinstance(value, float):
        return value
    text = parse_str(value).strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise ParseError("Input string was not in a correct format.")
    return float(text)


def parse_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31:
        return value
    text = parse_str(value).strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ParseError("Input string was not in a correct format.")
    n = int(text)
    if not -2**31 <= n < 2**31:
        raise ParseError("Value was either too large or too small for an Int32.")
    return n


def parse_list(value: object) -> GenericList | None:
    if value is None:
        return None
    if isinstance(value, GenericList):
        return value
    if isinstance(value, (list, tuple)):
        return GenericList(value)
    if isinstance(value, str):
        return GenericList(s.strip() for s in value.split(","))
    if isinstance(value, int) and not isinstance(value, bool):
        return GenericList([value])
    raise ParseError(f"{dotnet_type(value)} cannot be converted to a list")


_INVALID_PATH_CHARS = set('"<>|\0') | {chr(c) for c in range(1, 32)}


def parse_path(value: object, expand: Callable[[str], str]) -> str:
    text = parse_str(value)
    if text.startswith("\\\\?\\"):
        return text
    text = expand(text)
    if any(c in _INVALID_PATH_CHARS for c in text):
        raise ParseError("string value contains invalid path characters, cannot convert to path")
    if any(c in "*?" for c in text):  # Path.GetFullPath on .NET Framework 4.x
        raise ParseError("Illegal characters in path.")
    if ":" in text[2:] or (":" in text[:2] and not re.match(r"^[A-Za-z]:", text)):
        raise ParseError("The given path's format is not supported.")
    return text


def parse_json(value: object, to_json: Callable[[object], str]) -> str:
    if isinstance(value, dict):
        return to_json(value)
    if isinstance(value, str):
        return value
    raise ParseError(f"{dotnet_type(value)} cannot be converted to json")


def parse_str(value: object) -> str:
    return dotnet_str(value)


OPTION_TYPES = ("bool", "dict", "float", "int", "json", "list", "path", "raw", "sid", "str")


def remove_no_log(value: object, no_log: set[str]) -> object:
    """RemoveNoLogValues: no_log values masked in strings, nested lists and dictionaries copied."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (int, float)):
        text = dotnet_str(value)
        if text in no_log or any(v in text for v in no_log):
            return "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return GenericList(remove_no_log(v, no_log) for v in value)
    if isinstance(value, dict):
        out = Hashtable()
        for k, v in value.items():
            out[k] = remove_no_log(v, no_log)
        return out
    text = dotnet_str(value) if not isinstance(value, (PSObject, ScriptBlock)) else str(value)
    if text in no_log:
        return "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    for omit in no_log:
        if omit in text:
            return text.replace(omit, "********")
    return text


def format_log_data(data: object, indent: int, no_log: set[str]) -> str:
    """FormatLogData: the parameters as the event log's "Invoked with:" entry shows them."""
    if data is None:
        return "$null"
    if isinstance(data, (list, tuple)):
        return "".join(f"\r\n{' ' * indent}- {format_log_data(v, indent + 2, no_log)}" for v in data)
    if isinstance(data, dict):
        parts = [f"{k}: {format_log_data(v, indent + 2, no_log)}" for k, v in data.items()]
        return f"\r\n{' ' * indent}".join(parts)
    return str(remove_no_log(dotnet_str(data), no_log))

