"""AnsibleModule's checks of a module's parameters against its spec (Ansible.Basic.cs: CheckArguments and the
Check* methods it calls): unsupported and `_ansible_*` parameters, check mode, mutually exclusive and required
options, defaults, type conversion and choices, required_together/one_of/if/by, sub-options.

A failed check raises ModuleFailed(message); the module object turns it into FailJson(message).
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp import ansible_basic_spec as spec_mod
from tests.lab.pwsh.csharp.ansible_basic_spec import ModuleFailed, ParseError, with_context
from tests.lab.pwsh.csharp.scripting import dotnet_str, dotnet_type, expand_env, invoke_script
from tests.lab.pwsh.errors import PSError
from tests.lab.pwsh.net.collections import DictionaryObj, GenericList
from tests.lab.pwsh.values import as_list, to_str


def _contains(param: dict, key: str) -> bool:  # type: ignore[type-arg]
    return key in param


def check_arguments(module: Any, spec: dict, param: dict, legal: list[str]) -> None:  # type: ignore[type-arg]
    ctx = module.context
    check_unsupported(module, param, legal)
    if module.props["CheckMode"] and not spec["supports_check_mode"] and not ctx:
        module.Result["skipped"] = True
        module.Result["msg"] = f"remote module ({module.props['ModuleName']}) does not support check mode"
        module.exit_json()
    options = spec["options"]
    for group in as_list(spec["mutually_exclusive"]):
        names = [to_str(n) for n in as_list(group)]
        if sum(1 for n in names if _contains(param, n)) > 1:
            raise ModuleFailed(with_context(f"parameters are mutually exclusive: {', '.join(names)}", ctx))
    missing = []
    for key, meta in options.items():
        if meta["default"] is not None and not _contains(param, key):
            param[key] = meta["default"]
        if meta["required"] and not _contains(param, key):
            missing.append(key)
    if missing:
        raise ModuleFailed(with_context(f"missing required arguments: {', '.join(missing)}", ctx))
    for key, meta in options.items():
        value = param[key] if _contains(param, key) else None
        if value is None:
            continue
        kind = meta["type"] if isinstance(meta["type"], str) else "delegate"
        try:
            value = convert(module, kind, value, meta["type"])
        except ParseError as e:
            raise ModuleFailed(with_context(f"argument for {key} is of type {dotnet_type(param[key])} and we were "
                                            f"unable to convert to {kind}: {e}", ctx)) from None
        param[key] = value
        choices = [dotnet_str(c) for c in as_list(meta["choices"])]
        if choices:
            values = [dotnet_str(v) for v in value] if kind == "list" else [dotnet_str(value)]
            lowered = {c.lower() for c in choices}
            diff = list(dict.fromkeys(v for v in values if v.lower() not in lowered))
            if diff:
                which = "one or more of" if kind == "list" else "one of"
                raise ModuleFailed(with_context(f"value of {key} must be {which}: {', '.join(choices)}. Got no match "
                                                f"for: {', '.join(diff)}", ctx))
    for group in as_list(spec["required_together"]):
        names = [to_str(n) for n in as_list(group)]
        found = [_contains(param, n) for n in names]
        if any(found) and not all(found):
            raise ModuleFailed(with_context(f"parameters are required together: {', '.join(names)}", ctx))
    for group in as_list(spec["required_one_of"]):
        names = [to_str(n) for n in as_list(group)]
        if not any(_contains(param, n) for n in names):
            raise ModuleFailed(with_context(f"one of the following is required: {', '.join(names)}", ctx))
    for check in as_list(spec["required_if"]):
        _required_if(param, as_list(check), ctx)
    for key, requires in spec["required_by"].items():
        if not _contains(param, key):
            continue
        needed = [to_str(r) for r in (spec_mod.parse_list(requires) or [])]
        absent = [r for r in needed if not _contains(param, r)]
        if absent:
            raise ModuleFailed(with_context(f"missing parameter(s) required by '{key}': {', '.join(absent)}", ctx))
    for key, meta in options.items():
        if not _contains(param, key):
            param[key] = None
        _check_sub_option(module, param, key, meta)


def _required_if(param: dict, check: list[object], ctx: list[str]) -> None:  # type: ignore[type-arg]
    if len(check) < 3:
        raise ModuleFailed(f"internal error: invalid required_if value count of {len(check)}, expecting 3 or 4 entries")
    one_required = bool(check[3]) if len(check) == 4 else False
    key, val, requirements = to_str(check[0]), check[1], [to_str(r) for r in as_list(check[2])]
    if param[key] is None or dotnet_str(param[key]) != dotnet_str(val):
        return
    max_missing = len(requirements) if one_required else 1
    absent = [r for r in requirements if not _contains(param, r)]
    if len(absent) >= max_missing:
        term = "any" if one_required else "all"
        raise ModuleFailed(with_context(f"{key} is {dotnet_str(val)} but {term} of the following are missing: "
                                        f"{', '.join(absent)}", ctx))


def check_unsupported(module: Any, param: dict, legal: list[str]) -> None:  # type: ignore[type-arg]
    unsupported: list[str] = []
    wrong_case: list[str] = []
    removed: list[str] = []
    legal_lower = {x.lower() for x in legal}
    for key in [to_str(k) for k in list(param.keys())]:
        if key.lower() not in legal_lower:
            if key not in unsupported:
                unsupported.append(key)
        elif key not in legal:
            wrong_case.append(key)
        elif key.startswith("_ansible_"):
            removed.append(key)
            name = key.replace("_ansible_", "")
            target = spec_mod.PASS_VARS[name]
            if (name == "no_log" and module.props["NoLog"]) or target is None:
                continue
            value = param[key]
            try:
                if name in spec_mod.PASS_BOOLS:
                    value = spec_mod.parse_bool(value)
                elif name in spec_mod.PASS_INTS:
                    value = spec_mod.parse_int(value)
                elif name in spec_mod.PASS_STRING_ARRAYS:
                    value = [dotnet_str(v) for v in as_list(value)]
            except ParseError as e:
                raise ModuleFailed(f"internal error: {e}") from None
            _set_pass_var(module, target, value)
    for key in removed:
        param.remove(key)
    if unsupported and not module.ignore_unknown_opts:
        shown = sorted(x for x in legal if x.replace("_ansible_", "") not in spec_mod.PASS_VARS)
        msg = with_context(f"Unsupported parameters for ({module.props['ModuleName']}) module: "
                           f"{', '.join(sorted(unsupported))}", module.context)
        raise ModuleFailed(f"{msg}. Supported parameters include: {', '.join(shown)}")
    for key in wrong_case:
        correct = next(x for x in legal if x.lower() == key.lower())
        value = param[key]
        param.remove(key)
        param[correct] = value


def _set_pass_var(module: Any, target: str, value: object) -> None:
    if target in module.props:
        module.props[target] = value
    elif target == "ignoreUnknownOpts":
        module.ignore_unknown_opts = bool(value)
    elif target == "injectInvocation":
        module.inject_invocation = bool(value)
    elif target == "remoteTmp":
        module.remote_tmp = to_str(value)
    elif target == "tmpdir":
        module.tmpdir = None if value is None else to_str(value)
    elif target == "_tracebacksFor":
        module.tracebacks_for = list(value)  # type: ignore[call-overload]


def convert(module: Any, kind: str, value: object, delegate: object = None) -> object:
    """The option type's Parse* method applied to a value (ParseError carries the .NET exception's message)."""
    rt = module.rt
    if kind == "delegate":
        try:
            return delegate.invoke(value)  # type: ignore[union-attr]
        except PSError as e:
            raise ParseError(e.record.message) from None
    if kind == "bool":
        return spec_mod.parse_bool(value)
    if kind == "dict":
        return spec_mod.parse_dict(value)
    if kind == "float":
        return spec_mod.parse_float(value)
    if kind == "int":
        return spec_mod.parse_int(value)
    if kind == "json":
        return spec_mod.parse_json(value, lambda o: to_str(invoke_script(
            rt, "ConvertTo-Json -InputObject $args[0] -Depth 99 -Compress", o)[0]))
    if kind == "list":
        return spec_mod.parse_list(value)
    if kind == "path":
        return spec_mod.parse_path(value, lambda s: expand_env(rt, s))
    if kind == "raw":
        return value
    if kind == "str":
        return spec_mod.parse_str(value)
    if kind == "sid":
        return _parse_sid(rt, value)
    raise ParseError(f"The lab engine has no conversion for option type '{kind}'.")


def _parse_sid(rt: Any, value: object) -> object:
    text = spec_mod.parse_str(value)
    machine = rt.host.process.machine
    if text.upper().startswith("S-1-"):
        return text
    account = machine.account(text) if machine is not None else None
    if account is None:
        raise ParseError("Some or all identity references could not be translated.")
    return account.sid


def _check_sub_option(module: Any, param: dict, key: str, spec: dict) -> None:  # type: ignore[type-arg]
    value = param[key]
    kind = spec["type"] if isinstance(spec["type"], str) else "delegate"
    elements = spec["elements"] if isinstance(spec["elements"], str) or spec["elements"] is None else "delegate"
    element_converter = spec["elements"] if elements == "delegate" else None
    if not (kind == "dict" or (kind == "list" and elements is not None)):
        return
    if kind == "list":
        if value is None:
            return
        new = GenericList()
        for element in value:
            if elements == "dict":
                new.append(_parse_sub_spec(module, spec, element, key))
            else:
                try:
                    new.append(convert(module, elements, element, element_converter))
                except ParseError:
                    raise ModuleFailed(with_context(
                        f"argument for list entry {key} is of type {dotnet_type(element)} and we were unable to "
                        f"convert to {elements}: Exception has been thrown by the target of an invocation.",
                        module.context)) from None
        param[key] = new
    else:
        param[key] = _parse_sub_spec(module, spec, value, key)


def _parse_sub_spec(module: Any, spec: dict, value: object, context: str) -> object:  # type: ignore[type-arg]
    options = spec["options"]
    if spec["apply_defaults"] and len(options) > 0 and value is None:
        value = DictionaryObj()
    elif len(options) == 0 or value is None:
        return value
    module.context.append(context)
    try:
        new = spec_mod.parse_dict(value)
    except ParseError as e:
        raise ModuleFailed(str(e)) from None
    aliases = module.get_aliases(spec, new)
    module.set_no_log_values(spec, new)
    legal = [to_str(k) for k in options] + list(aliases)
    check_arguments(module, spec, new, legal)
    module.context.pop()
    return new
