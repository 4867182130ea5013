"""The shape every built-in cmdlet shares: one `@cmdlet` declaration of its names and parameters, and the
`Cmdlet` base class, which binds arguments to them as PowerShell does and reports errors in its name.

A new cmdlet is its declaration and the blocks it needs (`begin`, `process(item)`, `end`)::

    @cmdlet("Get-Thing", "gth", positional=("Name",), params=("LiteralPath",), switches=("Force",))
    class GetThing(Cmdlet):
        def process(self, item: object) -> None:
            self.emit(self.input_or(item, "Name"))   # bound values are in self.p

Put it in the module of its noun family and it is registered when tests/lab/pwsh/cmdlets is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from tests.lab.pwsh.errors import ErrorRecord, PSError
from tests.lab.pwsh.files import win_full
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.should_process import should_process
from tests.lab.pwsh.scopes import Scope
from tests.lab.pwsh.stages import COMMON_PARAMS, Stage
from tests.lab.pwsh.values import as_list, NO_INPUT, SWITCH_PRESENT, to_bool, to_str


class Cmdlet(Stage):
    """A built-in command: declared parameters bound by name (unique prefix), position and pipeline.

    The class attributes below are set by `@cmdlet`; `self.p` holds the bound values by parameter name.
    """

    names: tuple[str, ...] = ()         # the cmdlet's name, then its aliases
    params: tuple[str, ...] = ()        # every parameter that takes a value (the positional ones first)
    positional: tuple[str, ...] = ()    # bound by position in this order; "*" takes the remaining arguments
    switches: tuple[str, ...] = ()
    aliases: Mapping[str, str] = {}     # lower-case alternative name -> parameter
    supports_should_process = False     # takes -WhatIf/-Confirm and asks should_process() before each change
    noun = "Command"                    # Microsoft.PowerShell.Commands.<noun> in FullyQualifiedErrorIds

    def __init__(self, rt: Interpreter, name: str, positional: list[object], named: dict[str, object]) -> None:
        self.rt = rt
        self.name = self.names[0] if self.names else name
        self.p: dict[str, object] = {}
        self.ea: str | None = None
        self.wa: str | None = None
        self.verbose = False
        all_params = tuple(self.params) + tuple(self.switches)
        for key, value in named.items():
            low = key.lower()
            canon = self.aliases.get(low)
            if canon is None:
                exact = [p for p in all_params if p.lower() == low]
                cands = exact or [p for p in all_params if p.lower().startswith(low)]
                if len(cands) == 1:
                    canon = cands[0]
                elif len(cands) > 1:
                    raise self.binding_error(f"Parameter cannot be processed because the parameter name '{key}' is "
                                             f"ambiguous. Possible matches include: -{' -'.join(cands)}.",
                                             "AmbiguousParameter")
            if canon is None and low in ("wi", "cf") and self.supports_should_process:
                canon = "WhatIf" if low == "wi" else "Confirm"
            if canon is None:
                if low in ("whatif", "wi", "confirm", "cf"):
                    # only cmdlets that support ShouldProcess have them (the lab's declare it: should_process=True)
                    raise self.binding_error(f"A parameter cannot be found that matches parameter name '{key}'.",
                                             "NamedParameterNotFound")
                if low in ("erroraction", "ea"):
                    self.ea = to_str(value)
                    continue
                if low in ("warningaction", "wa"):
                    self.wa = to_str(value)
                    continue
                if low in ("verbose", "vb"):
                    self.verbose = value is SWITCH_PRESENT or to_bool(value)
                    continue
                if low in COMMON_PARAMS:
                    continue
                raise self.binding_error(f"A parameter cannot be found that matches parameter name '{key}'.",
                                         "NamedParameterNotFound")
            if canon in self.switches:
                self.p[canon] = True if value is SWITCH_PRESENT else to_bool(value)
            else:
                if value is SWITCH_PRESENT:
                    raise self.binding_error(f"Missing an argument for parameter '{canon}'. Specify a parameter of "
                                             f"type 'System.Object' and try again.", "MissingArgument")
                self.p[canon] = value
        rest = list(positional)
        for pname in self.positional:
            if not rest:
                break
            if pname in self.p:
                continue
            if pname == "*":
                self.p["*"] = rest
                rest = []
                break
            self.p[pname] = rest.pop(0)
        if rest:
            raise self.binding_error(f"A positional parameter cannot be found that accepts argument "
                                     f"'{to_str(rest[0])}'.", "PositionalParameterNotFound")

    def command_class(self) -> str:
        """The cmdlet's .NET class as FullyQualifiedErrorIds name it (a noun with dots is a full name)."""
        return self.noun if "." in self.noun else f"Microsoft.PowerShell.Commands.{self.noun}"

    def binding_error(self, message: str, fq: str) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(
            message, category="InvalidArgument", fq_error_id=f"{fq},{self.command_class()}",
            exception_type="System.Management.Automation.ParameterBindingException", command_name=self.name,
            reason="ParameterBindingException")))

    def emit(self, v: object) -> None:
        self.sink(v)

    def should_process(self, target: str, action: str) -> bool:
        """Whether to make the change: not under -WhatIf or $WhatIfPreference (pwsh/should_process.py)."""
        return should_process(self.rt, target, action, self.p.get("WhatIf"))

    def error(self, message: str, fq: str, category: str = "ObjectNotFound",
              exc: str = "System.Management.Automation.ItemNotFoundException", target: object = None) -> None:
        self.rt.write_error(ErrorRecord(message, category=category,
                                        fq_error_id=f"{fq},{self.command_class()}",
                                        exception_type=exc, target=target, command_name=self.name), self.ea)

    def terminate(self, message: str, fq: str, category: str = "InvalidArgument",
                  exc: str = "System.Management.Automation.PSArgumentException", target: object = None) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(message, category=category,
                                                fq_error_id=f"{fq},{self.command_class()}",
                                                exception_type=exc, target=target, command_name=self.name)))

    def named_scope(self, name: object) -> Scope:
        """The scope -Scope names (about_Scopes): Global, Script, Local, or a number of scopes up; None: local."""
        rt = self.rt
        if name is None:
            return rt.scope
        text = to_str(name).strip().lower()
        chain = rt.scope.chain()
        if text == "global":
            return rt.global_scope
        if text == "script":
            return rt.script_scope
        if text == "local":
            return rt.scope
        if text.isdigit() and int(text) < len(chain):
            return chain[int(text)]
        raise self.terminate(f"The scope number '{to_str(name)}' exceeds the number of active scopes.",
                             "ArgumentOutOfRange", exc="System.Management.Automation.PSArgumentOutOfRangeException")

    def process_item(self, item: object) -> None:
        self.rt.cur = self.where
        self.process(item)

    def process(self, item: object) -> None:
        pass

    def input_or(self, item: object, pname: str) -> object:
        """The pipeline item, or the parameter's value when the cmdlet runs without input."""
        return self.p.get(pname) if item is NO_INPUT else item

    def path_args(self, item: object) -> list[object]:
        """The paths to work on: -LiteralPath if given, else the pipeline item or -Path."""
        return as_list(self.input_or(item, "Path") if "LiteralPath" not in self.p else self.p["LiteralPath"])

    def path_not_found(self, path: str) -> None:
        full = win_full(self.rt, path) if not path.lower().startswith("env:") else path
        self.error(f"Cannot find path '{full}' because it does not exist.", "PathNotFound", target=full)


CMDLETS: dict[str, type[Cmdlet]] = {}


# -LiteralPath's aliases, shared by the item and content cmdlets.
LITERAL_PATH_ALIASES: Mapping[str, str] = {"lp": "LiteralPath", "pspath": "LiteralPath"}

C = TypeVar("C", bound=type[Cmdlet])


def cmdlet(*names: str, positional: Sequence[str] | None = None, params: Sequence[str] | None = None,
           switches: Sequence[str] | None = None, aliases: Mapping[str, str] | None = None,
           noun: str = "", should_process: bool = False) -> Callable[[C], C]:
    """Declares a cmdlet class: registers it under its name and aliases and sets its parameters.

    positional: parameters bound by position, in order ("*": all remaining arguments as one list);
    params: the other parameters that take a value; switches: parameters without one; aliases:
    alternative lower-case parameter names. What is not given is inherited from the base class.
    noun: the command class in error ids, by default the name without "-" + "Command".
    should_process: the cmdlet supports ShouldProcess on Windows (its syntax lists -WhatIf and -Confirm).
    """
    def declare(cls: C) -> C:
        cls.names = names
        cls.noun = noun or names[0].replace("-", "") + "Command"
        if positional is not None:
            cls.positional = tuple(positional)
        if positional is not None or params is not None:
            named = [p for p in cls.positional if p != "*"]
            cls.params = tuple(dict.fromkeys([*named, *(params if params is not None else cls.params)]))
        if switches is not None:
            cls.switches = tuple(switches)
        if should_process:
            cls.supports_should_process = True
            cls.switches = tuple(dict.fromkeys([*cls.switches, "WhatIf", "Confirm"]))
        if aliases is not None:
            cls.aliases = dict(aliases)
        for n in names:
            if n.lower() in CMDLETS:
                raise ValueError(f"cmdlet name {n!r} is declared twice ({CMDLETS[n.lower()].__name__}, {cls.__name__})")
            CMDLETS[n.lower()] = cls
        return cls
    return declare


def lookup_cmdlet(name: str) -> type[Cmdlet] | None:
    """The cmdlet registered under a name or alias (module-qualified names too), or None."""
    low = name.lower()
    if low.startswith("microsoft.powershell.") and "\\" in low:
        low = low.split("\\", 1)[1]
    return CMDLETS.get(low)
