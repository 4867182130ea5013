"""Ansible.Basic.AnsibleModule, the C# module util nearly every ansible.windows module uses, emulated from
ansible-core 2.21.5's lib/ansible/module_utils/csharp/Ansible.Basic.cs.

What the C# does through PowerShell, the emulation does through the engine the same way: the parameters
are `$complex_args` read by running that script, results are serialised by running `ConvertTo-Json
-InputObject $args[0] -Depth 99 -Compress`, and exiting runs `Set-Variable -Name LASTEXITCODE -Value
$args[0] -Scope Global; exit $args[0]` in the module's runspace. The result line goes to Console.Out, which
module_wrapper.ps1 redirected to its StringBuilder. The event log entries LogEvent writes are kept in the
machine's Application log (`Machine.event_log`, or the process's when the lab host has no machine state).
Argument checks live in ansible_basic_spec.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import shutil
from typing import Any

from tests.lab.pwsh.csharp import ansible_basic_spec as spec_mod
from tests.lab.pwsh.csharp.ansible_basic_checks import check_arguments
from tests.lab.pwsh.csharp.ansible_basic_spec import ModuleFailed, ParseError, SpecError, with_context
from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.csharp.scripting import dotnet_str, expand_env, invoke_script
from tests.lab.pwsh.dotnet_types import DotNetType, MemberNotFound
from tests.lab.pwsh.errors import ErrorRecord, no_method
from tests.lab.pwsh.host import PathOutsideRoot
from tests.lab.pwsh.net.collections import DictionaryObj, GenericList
from tests.lab.pwsh.values import as_list, Hashtable, to_str

SOURCE_SHA256 = "4863c7433dfe58f8c36768e26e2f18c154fbc3b12155b050cb480a644440ed6d"
MAX_EVENT_LOG = 1000  # entries kept in the lab's Application log


class AnsibleModuleType(DotNetType):
    """[Ansible.Basic.AnsibleModule]: Create and the static helpers; its static fields live per process."""

    full_name = "Ansible.Basic.AnsibleModule"

    def __init__(self) -> None:
        super().__init__()
        self.wrapper_warnings: object = None   # _WrapperWarnings, set by exec_wrapper.ps1's Import-CSharpUtil
        self.debug_arg_spec = False

    def is_instance(self, value: object) -> bool:
        return isinstance(value, AnsibleModuleObj)

    def new(self, rt: Any, args: list[object]) -> object:
        return AnsibleModuleObj(rt, self, args)

    def get_static(self, rt: Any, name: str) -> object:
        low = name.lower()
        if low == "_wrapperwarnings":
            return self.wrapper_warnings
        if low == "_debugargspec":
            return self.debug_arg_spec
        raise MemberNotFound(name)

    def set_static(self, rt: Any, name: str, value: object) -> None:
        low = name.lower()
        if low == "_wrapperwarnings":
            self.wrapper_warnings = value
        elif low == "_debugargspec":
            self.debug_arg_spec = bool(value)
        else:
            raise MemberNotFound(name)

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        one = args[0] if args else None
        if low == "create":
            return AnsibleModuleObj(rt, self, args)
        if low == "fromjson":
            return spec_mod.from_json_value(json.loads(to_str(one)))
        if low == "tojson":
            return to_json(rt, one)
        if low == "getparams":
            return get_params(rt, as_list(one))
        parsers = {"parsebool": spec_mod.parse_bool, "parsedict": spec_mod.parse_dict,
                   "parsefloat": spec_mod.parse_float, "parseint": spec_mod.parse_int,
                   "parselist": spec_mod.parse_list, "parsestr": spec_mod.parse_str, "parseraw": lambda v: v,
                   "parsepath": lambda v: spec_mod.parse_path(v, lambda s: expand_env(rt, s)),
                   "parsejson": lambda v: spec_mod.parse_json(v, lambda o: to_json(rt, o))}
        if low in parsers:
            try:
                return parsers[low](one)
            except ParseError as e:
                from tests.lab.pwsh.errors import method_exception
                raise method_exception(name, len(args), str(e)) from None
        raise MemberNotFound(name)


def to_json(rt: Any, value: object) -> str:
    return to_str(invoke_script(rt, "ConvertTo-Json -InputObject $args[0] -Depth 99 -Compress", value)[0])


def get_params(rt: Any, args: list[object]) -> object:
    if args:
        text = rt.host.fs.read_text(to_str(args[0]), rt.cwd)
        raw = spec_mod.from_json_value(json.loads(text))
        if not isinstance(raw, dict) or "ANSIBLE_MODULE_ARGS" not in raw:
            raise SpecError("Module was unable to get ANSIBLE_MODULE_ARGS value from the argument path json")
        return raw["ANSIBLE_MODULE_ARGS"]
    out = invoke_script(rt, "$complex_args")
    value = out[0] if out else None
    return value if type(value) is Hashtable else None


class AnsibleModuleObj:
    """An AnsibleModule instance: Params, Result, Diff, the mode properties, and ExitJson/FailJson/Warn/..."""

    ps_type = "Ansible.Basic.AnsibleModule"

    def __init__(self, rt: Any, cls: AnsibleModuleType, args: list[object]) -> None:
        self.rt = rt
        self.cls = cls
        self.Params: Any = None
        self.Result = DictionaryObj()
        self.Result["changed"] = False
        self.Diff = DictionaryObj()
        self.props: dict[str, object] = {"CheckMode": False, "DebugMode": False, "DiffMode": False,
                                         "KeepRemoteFiles": False, "ModuleName": "undefined win module",
                                         "NoLog": False, "TargetLogInfo": "", "Verbosity": 0,
                                         "AnsibleVersion": None}
        self.ignore_unknown_opts = False
        self.inject_invocation = False
        self.remote_tmp = to_str(rt.host.env_get("TEMP") or "C:\\Windows\\Temp") + "\\"
        self.tmpdir: str | None = None
        self.tracebacks_for: list[str] = []
        self.no_log_values: set[str] = set()
        self.context: list[str] = []
        self.warnings: list[str] = []
        self.deprecations: list[dict[str, object]] = []
        self.cleanup: list[str] = []
        module_args = as_list(args[0]) if args else []
        spec = args[1] if len(args) > 1 else None
        fragments = as_list(args[2]) if len(args) > 2 else []
        aliases: dict[str, str] = {}
        try:
            if not isinstance(spec, dict):
                raise SpecError("Object reference not set to an instance of an object.")
            spec_mod.validate_spec(spec, self.context)
            for fragment in fragments:
                spec_mod.validate_spec(fragment, self.context)
                spec_mod.merge_fragment(spec, fragment)
            if cls.debug_arg_spec:
                invoke_script(rt, "Set-Variable -Name ansibleTestArgSpec -Value $args[0] -Scope Global", spec)
                self.exit(0)
            spec_mod.set_spec_defaults(spec, self.context)
            self.Params = get_params(rt, module_args)
            if self.Params is None:
                raise SpecError("Object reference not set to an instance of an object.")
            aliases = self.get_aliases(spec, self.Params)
            self.set_no_log_values(spec, self.Params)
        except (SpecError, ParseError, ValueError) as e:
            self.write_line(to_json(rt, {"failed": True, "msg": f"internal error: {e}",
                                         "exception": f"System.ArgumentException: {e}"}))
            self.exit(1)
        self.props["NoLog"] = bool(spec["no_log"])  # type: ignore[index]
        legal = [f"_ansible_{k}" for k in spec_mod.PASS_VARS] + [str(k) for k in spec["options"]] + list(aliases)  # type: ignore[index]
        self.guard(lambda: self.check_arguments(spec, self.Params, legal))
        if self.inject_invocation:
            self.Result["invocation"] = spec_mod.remove_no_log({"module_args": self.Params}, self.no_log_values)
        if not self.props["NoLog"]:
            self.log_event("Invoked with:\r\n  " + spec_mod.format_log_data(self.Params, 2, self.no_log_values),
                           sanitise=False)

    # ---- members PowerShell sees -------------------------------------------------------------------------------
    def ps_get(self, name: str) -> object:
        low = name.lower()
        for key, value in self.props.items():
            if key.lower() == low:
                return value
        if low == "tracebacksfor":
            return list(self.tracebacks_for)
        if low == "tmpdir":
            return self.get_tmpdir()
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "exitjson":
            self.exit_json()
        elif low == "failjson":
            self.fail_json(to_str(args[0]) if args else "", args[1] if len(args) > 1 else None)
        elif low == "warn":
            self.warn(to_str(args[0]))
        elif low == "deprecate":
            self.deprecate(to_str(args[0]), args[1] if len(args) > 1 else None,
                           to_str(args[2]) if len(args) > 2 and args[2] is not None else None)
        elif low == "debug":
            if self.props["DebugMode"]:
                self.log_event(f"[DEBUG] {to_str(args[0])}")
        elif low == "logevent":
            self.log_event(to_str(args[0]), to_str(args[1]) if len(args) > 1 else "Information",
                           bool(args[2]) if len(args) > 2 else True)
        elif low == "tostring":
            return self.ps_type
        else:
            raise no_method(self, name)
        return None

    # ---- what the C# methods do --------------------------------------------------------------------------------
    def guard(self, fn: Any) -> None:
        try:
            fn()
        except ModuleFailed as e:
            self.fail_json(str(e))

    def exit(self, rc: int) -> None:
        invoke_script(self.rt, "Set-Variable -Name LASTEXITCODE -Value $args[0] -Scope Global; exit $args[0]", rc)

    def write_line(self, line: str) -> None:
        self.rt.host.process.console_out.write(line + "\r\n")

    def exit_json(self) -> None:
        self.cleanup_files()
        self.write_line(self.formatted_results())
        self.exit(0)

    def fail_json(self, message: str, error: object = None) -> None:
        self.Result["failed"] = True
        self.Result["msg"] = spec_mod.remove_no_log(message, self.no_log_values)
        if "exception" not in self.Result and (int(self.props["Verbosity"]) > 2 or self.props["DebugMode"]):  # type: ignore[call-overload]
            if isinstance(error, ErrorRecord):
                self.Result["exception"] = (f"{error.ps_tostring()}\r\n{error.position or ''}"
                                            f"\r\n    + CategoryInfo          : {error.category_info()}"
                                            f"\r\n    + FullyQualifiedErrorId : {error.fq_error_id}"
                                            f"\r\n\r\nScriptStackTrace:\r\nat <ScriptBlock>, <No file>: line "
                                            f"{error.line or 1}")
            elif error is not None:
                self.Result["exception"] = to_str(error)
        self.cleanup_files()
        self.write_line(self.formatted_results())
        self.exit(1)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log_event(f"[WARNING] {message}", "Warning")

    def deprecate(self, message: str, when: object, collection: str | None) -> None:
        entry: dict[str, object] = {"msg": message}
        if isinstance(when, dt.datetime):
            entry["date"] = when.strftime("%Y-%m-%d")
        else:
            entry["version"] = None if when is None else to_str(when)
        entry["collection_name"] = collection
        self.deprecations.append(entry)
        self.log_event(f"[DEPRECATION WARNING] {message} {entry.get('date', entry.get('version'))}")

    def log_event(self, message: str, kind: str = "Information", sanitise: bool = True) -> None:
        if self.props["NoLog"]:
            return
        info = self.props["TargetLogInfo"]
        prefix = f"{self.props['ModuleName']} {info}" if to_str(info).strip() else to_str(self.props["ModuleName"])
        text = f"{prefix} - {message}"
        if sanitise:
            text = to_str(spec_mod.remove_no_log(text, self.no_log_values))
        process = self.rt.host.process
        log = getattr(process.machine, "event_log", None)
        if log is None:
            log = process.event_log
        log.append({"log": "Application", "source": "Ansible", "type": kind, "message": text})
        del log[:-MAX_EVENT_LOG]

    def formatted_results(self) -> str:
        result = self.Result
        if self.inject_invocation and "invocation" not in result:
            result["invocation"] = {"module_args": spec_mod.remove_no_log(self.Params, self.no_log_values)}
        for warning in as_list(self.cls.wrapper_warnings):
            self.warnings.append(to_str(warning))
        if self.warnings:
            result["warnings"] = GenericList(self.warnings)
        if self.deprecations:
            result["deprecations"] = GenericList(self.deprecations)
        if self.Diff and self.props["DiffMode"]:
            result["diff"] = self.Diff
        return to_json(self.rt, result)

    def get_tmpdir(self) -> str:
        if self.tmpdir is None:
            rt = self.rt
            fs = rt.host.fs
            base = fs.full_win(expand_env(rt, self.remote_tmp), rt.cwd)
            if not fs.host_path(base, rt.cwd).is_dir():
                try:
                    fs.host_path(base, rt.cwd).mkdir(parents=True)
                except (OSError, PathOutsideRoot) as e:
                    env_tmp = (rt.host.env_get("TEMP") or "C:\\Windows\\Temp") + "\\"
                    self.warn(f"Unable to use '{base}' as temporary directory, falling back to system tmp "
                              f"'{env_tmp}': Failed to create base tmpdir '{base}': {e}")
                    base = env_tmp
                else:
                    self.warn(f"Module remote_tmp {base} did not exist and was created with FullControl to "
                              f"{rt.host.user}, this may cause issues when running as another user. To avoid this, "
                              f"create the remote_tmp dir with the correct permissions manually")
            stamp = int((dt.datetime.now(dt.timezone.utc).timestamp() + 11644473600) * 10**7)
            name = f"ansible-moduletmp-{stamp}-{rt.get_var('PID', 'global')}-{random.randint(0, 2**31 - 2)}"
            path = base.rstrip("\\") + "\\" + name
            fs.host_path(path, rt.cwd).mkdir(parents=True)
            self.tmpdir = path
            if not self.props["KeepRemoteFiles"]:
                self.cleanup.append(path)
        return self.tmpdir

    def cleanup_files(self) -> None:
        for path in self.cleanup:
            try:
                host = self.rt.host.fs.host_path(path, self.rt.cwd)
                if host.is_dir():
                    shutil.rmtree(host)
                elif host.exists():
                    host.unlink()
            except (OSError, PathOutsideRoot) as e:
                self.warn(f"Failure cleaning temp path '{path}': {type(e).__name__} {e}")
        self.cleanup = []

    # ---- the argument checks (Ansible.Basic.cs, CheckArguments and the methods it calls) -------------------------
    def get_aliases(self, spec: dict, params: dict) -> dict[str, str]:  # type: ignore[type-arg]
        results: dict[str, str] = {}
        for key, meta in spec["options"].items():
            if meta["default"] is not None and meta["required"]:
                raise SpecError(f"required and default are mutually exclusive for {key}")
            for alias in meta["aliases"]:
                if alias in results:
                    raise SpecError("An item with the same key has already been added.")
                results[alias] = key
                if alias in params:
                    params[key] = params[alias]
            for dep in meta["deprecated_aliases"]:
                if "name" not in dep:
                    raise SpecError(with_context("name is required in a deprecated_aliases entry", self.context, " - "))
                if "version" not in dep and "date" not in dep:
                    raise SpecError(with_context("One of version or date is required in a deprecated_aliases entry",
                                                 self.context, " - "))
                if "version" in dep and "date" in dep:
                    raise SpecError(with_context("Only one of version or date is allowed in a deprecated_aliases entry",
                                                 self.context, " - "))
                if "date" in dep and not isinstance(dep["date"], dt.datetime):
                    raise SpecError(with_context("A deprecated_aliases date must be a DateTime object", self.context,
                                                 " - "))
                if dep["name"] in params:
                    msg = with_context(f"Alias '{dep['name']}' is deprecated. See the module docs for more information",
                                       self.context, " - ")
                    self.deprecate(msg, dep["version"] if "version" in dep else dep["date"],
                                   dep["collection_name"] if "collection_name" in dep else None)
        return results

    def set_no_log_values(self, spec: dict, params: dict) -> None:  # type: ignore[type-arg]
        for key, meta in spec["options"].items():
            if meta["no_log"]:
                value = params[key] if key in params else None
                text = "" if value is None else dotnet_str(value)
                if text:
                    self.no_log_values.add(text)
            collection = meta["removed_from_collection"] if "removed_from_collection" in meta else None
            if meta["removed_in_version"] is not None and key in params:
                self.deprecate(f"Param '{key}' is deprecated. See the module docs for more information",
                               to_str(meta["removed_in_version"]), collection)
            if meta["removed_at_date"] is not None and key in params:
                self.deprecate(f"Param '{key}' is deprecated. See the module docs for more information",
                               meta["removed_at_date"], collection)

    def check_arguments(self, spec: dict, param: dict, legal: list[str]) -> None:  # type: ignore[type-arg]
        check_arguments(self, spec, param, legal)


@emulates(SOURCE_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible.Basic.cs")
def define() -> list[DotNetType]:
    return [AnsibleModuleType()]

