"""The shape every built-in cmdlet shares."""

from __future__ import annotations

from tests.lab.pwsh.errors import ErrorRecord, PSError
from tests.lab.pwsh.files import win_full
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.stages import COMMON_PARAMS, Stage
from tests.lab.pwsh.values import NO_INPUT, SWITCH_PRESENT, to_bool, to_str


class Cmdlet(Stage):
    """A built-in command: declared parameters bound by name (unique prefix), position and pipeline."""

    names: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    positional: tuple[str, ...] = ()
    switches: tuple[str, ...] = ()
    aliases: dict[str, str] = {}
    noun = "Command"

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
            if canon is None:
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

    def binding_error(self, message: str, fq: str) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(
            message, category="InvalidArgument", fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
            exception_type="System.Management.Automation.ParameterBindingException", command_name=self.name,
            reason="ParameterBindingException")))

    def emit(self, v: object) -> None:
        self.sink(v)

    def error(self, message: str, fq: str, category: str = "ObjectNotFound",
              exc: str = "System.Management.Automation.ItemNotFoundException", target: object = None) -> None:
        self.rt.write_error(ErrorRecord(message, category=category,
                                        fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
                                        exception_type=exc, target=target, command_name=self.name), self.ea)

    def terminate(self, message: str, fq: str, category: str = "InvalidArgument",
                  exc: str = "System.Management.Automation.PSArgumentException", target: object = None) -> PSError:
        return PSError(self.rt.fill(ErrorRecord(message, category=category,
                                                fq_error_id=f"{fq},Microsoft.PowerShell.Commands.{self.noun}",
                                                exception_type=exc, target=target, command_name=self.name)))

    def process_item(self, item: object) -> None:
        self.rt.cur = self.where
        self.process(item)

    def process(self, item: object) -> None:
        pass

    def input_or(self, item: object, pname: str) -> object:
        return self.p.get(pname) if item is NO_INPUT else item

    def path_not_found(self, path: str) -> None:
        full = win_full(self.rt, path) if not path.lower().startswith("env:") else path
        self.error(f"Cannot find path '{full}' because it does not exist.", "PathNotFound", target=full)


CMDLETS: dict[str, type[Cmdlet]] = {}


def cmdlet(*names: str, noun: str = ""):  # type: ignore[no-untyped-def]
    def deco(cls: type[Cmdlet]) -> type[Cmdlet]:
        cls.names = names
        cls.noun = noun or names[0].replace("-", "") + "Command"
        for n in names:
            CMDLETS[n.lower()] = cls
        return cls
    return deco


def lookup_cmdlet(name: str) -> type[Cmdlet] | None:
    low = name.lower()
    if low.startswith("microsoft.powershell.") and "\\" in low:
        low = low.split("\\", 1)[1]
    return CMDLETS.get(low)
