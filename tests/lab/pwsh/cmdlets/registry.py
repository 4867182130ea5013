"""The Registry provider's cmdlets and items (tests/lab/pwsh/registry.py): Get-ItemProperty, Get-ItemPropertyValue,
Set-ItemProperty, New-ItemProperty, Remove-ItemProperty, and the RegistryKey items Get-Item, Get-ChildItem,
New-Item, Remove-Item and Test-Path give for HKLM:/HKCU: paths (the item cmdlets call `registry_item` & co.).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.lab.pwsh.cmdlets.base import Cmdlet, cmdlet, LITERAL_PATH_ALIASES
from tests.lab.pwsh.errors import no_method
from tests.lab.pwsh.registry import drive_path, ps_path, registry_of, registry_path
from tests.lab.pwsh.values import as_list, PSObject, to_str

_KINDS = {"string": "String", "expandstring": "ExpandString", "binary": "Binary", "dword": "DWord",
          "multistring": "MultiString", "qword": "QWord"}


class RegistryKeyObj:
    """A Microsoft.Win32.RegistryKey item of the Registry provider."""

    ps_type = "Microsoft.Win32.RegistryKey"

    def __init__(self, rt: Any, name: str) -> None:
        self.rt = rt
        self.Name = name
        self.PSPath = ps_path(name)
        self.PSChildName = name.rsplit("\\", 1)[-1]
        self.PSParentPath = ps_path(name.rsplit("\\", 1)[0]) if "\\" in name else ""
        self.PSProvider = "Microsoft.PowerShell.Core\\Registry"
        self.PSIsContainer = True

    def _key(self) -> Any:
        return registry_of(self.rt).get(self.rt, self.Name)

    def ps_get(self, name: str) -> object:
        low = name.lower()
        if low == "property":
            return list(self._key().values)
        if low == "valuecount":
            return len(self._key().values)
        if low == "subkeycount":
            return len(registry_of(self.rt).children(self.rt, self.Name))
        raise KeyError(name)

    def ps_tostring(self) -> str:
        return self.Name

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        values = self._key().values
        if low == "getvalue":
            wanted = to_str(args[0]) if args else ""
            for k, (_, v) in values.items():
                if k.lower() == wanted.lower():
                    return v
            return args[1] if len(args) > 1 else None
        if low == "getvaluenames":
            return list(values)
        if low == "getsubkeynames":
            return [c.rsplit("\\", 1)[-1] for c in registry_of(self.rt).children(self.rt, self.Name)]
        if low == "getvaluekind":
            return next((kind for k, (kind, _) in values.items() if k.lower() == to_str(args[0]).lower()), None)
        if low in ("dispose", "close"):
            return None
        raise no_method(self, name)


def key_or_error(cmd: Cmdlet, path: str) -> str | None:
    """The full key name of a registry path that exists; else the provider's error (and None)."""
    name = registry_path(path)
    assert name is not None
    if not registry_of(cmd.rt).exists(cmd.rt, name):
        cmd.error(f"Cannot find path '{drive_path(name)}' because it does not exist.", "PathNotFound",
                  target=drive_path(name))
        return None
    return name


def registry_item(cmd: Cmdlet, path: str) -> None:
    """Get-Item on a registry path."""
    name = key_or_error(cmd, path)
    if name is not None:
        cmd.emit(RegistryKeyObj(cmd.rt, name))


def registry_children(cmd: Cmdlet, path: str) -> None:
    """Get-ChildItem on a registry path: its subkeys."""
    name = key_or_error(cmd, path)
    if name is not None:
        for child in registry_of(cmd.rt).children(cmd.rt, name):
            cmd.emit(RegistryKeyObj(cmd.rt, child))


def registry_exists(rt: Any, path: str) -> bool:
    name = registry_path(path)
    return name is not None and registry_of(rt).exists(rt, name)


def registry_new(cmd: Cmdlet, path: str) -> None:
    name = registry_path(path)
    assert name is not None
    if not cmd.should_process(f"Item: {name}", "New Item"):
        return
    registry_of(cmd.rt).create(cmd.rt, name)
    cmd.emit(RegistryKeyObj(cmd.rt, name))


def registry_remove(cmd: Cmdlet, path: str) -> None:
    name = key_or_error(cmd, path)
    if name is not None and cmd.should_process(f"Item: {name}", "Remove Key"):
        registry_of(cmd.rt).delete(cmd.rt, name)


def _values(cmd: Cmdlet, name: str) -> dict[str, tuple[str, object]]:
    return registry_of(cmd.rt).get(cmd.rt, name).values  # type: ignore[no-any-return]


def _existing_keys(cmd: Cmdlet, item: object) -> Iterator[tuple[str, dict[str, tuple[str, object]]]]:
    """(full key name, its values) of each path argument naming a key that exists; else the provider's error."""
    for path in cmd.path_args(item):
        name = key_or_error(cmd, to_str(path))
        if name is not None:
            yield name, _values(cmd, name)


def _named_values(cmd: Cmdlet, name: str, values: dict[str, tuple[str, object]], wanted: list[str]) -> Iterator[str]:
    """Each wanted value name as the key spells it (names are case-insensitive); a missing one is an error."""
    for w in wanted:
        found = next((k for k in values if k.lower() == w.lower()), None)
        if found is None:
            cmd.error(f"Property {w} does not exist at path {name}.", "System.Management.Automation."
                      "PSArgumentException", "InvalidArgument", "System.Management.Automation.PSArgumentException", w)
        else:
            yield found


_PROPERTY_PARAMETERS: dict[str, Any] = {"params": ("LiteralPath",), "aliases": LITERAL_PATH_ALIASES}


@cmdlet("Get-ItemProperty", "gp", positional=("Path", "Name"), **_PROPERTY_PARAMETERS)
class GetItemProperty(Cmdlet):
    def process(self, item: object) -> None:
        for path in self.path_args(item):
            sp = getattr(path, "PSPath", None) or to_str(path)
            if registry_path(sp) is None:
                raise self.terminate("The lab engine's Get-ItemProperty reads the registry (HKLM:, HKCU:) only.",
                                     "LabUnsupportedProvider", "NotImplemented")
            name = key_or_error(self, sp)
            if name is None:
                continue
            values = _values(self, name)
            wanted = [to_str(n) for n in as_list(self.p.get("Name"))]
            out = PSObject()
            for found in _named_values(self, name, values, wanted or list(values)):
                out.props[found] = values[found][1]
            if wanted and not out.props:
                continue
            for k, v in (("PSPath", ps_path(name)), ("PSParentPath", ps_path(name.rsplit("\\", 1)[0])),
                         ("PSChildName", name.rsplit("\\", 1)[-1]), ("PSDrive", drive_path(name)[:4].rstrip(":")),
                         ("PSProvider", "Microsoft.PowerShell.Core\\Registry")):
                out.props[k] = v
            self.emit(out)


@cmdlet("Get-ItemPropertyValue", "gpv", positional=("Path", "Name"), **_PROPERTY_PARAMETERS)
class GetItemPropertyValue(Cmdlet):
    def process(self, item: object) -> None:
        for name, values in _existing_keys(self, item):
            for found in _named_values(self, name, values, [to_str(w) for w in as_list(self.p.get("Name"))]):
                self.emit(values[found][1])


class _SetProperty(Cmdlet):
    create = False

    def process(self, item: object) -> None:
        for name, values in _existing_keys(self, item):
            prop = to_str(self.p.get("Name"))
            existing = next((k for k in values if k.lower() == prop.lower()), None)
            if self.create and existing is not None and not self.p.get("Force"):
                self.error("The property already exists.", "System.IO.IOException", "ResourceExists",
                           "System.IO.IOException", prop)
                continue
            if not self.should_process(f"Item: {name} Property: {prop}", "New Property" if self.create
                                       else "Set Property"):
                continue
            kind = _KINDS.get(to_str(self.p.get("PropertyType", self.p.get("Type", "String"))).lower(), "String")
            if existing is not None and not self.create:
                kind = values[existing][0]
                del values[existing]
            registry_of(self.rt).create(self.rt, name).values[existing or prop] = (kind, self.p.get("Value"))


@cmdlet("Set-ItemProperty", "sp", positional=("Path", "Name", "Value"), params=("LiteralPath", "Type"),
        switches=("Force", "PassThru"), aliases=LITERAL_PATH_ALIASES, should_process=True)
class SetItemProperty(_SetProperty):
    pass


@cmdlet("New-ItemProperty", positional=("Path", "Name", "Value"), params=("LiteralPath", "PropertyType"),
        switches=("Force",), aliases={**LITERAL_PATH_ALIASES, "type": "PropertyType"}, should_process=True)
class NewItemProperty(_SetProperty):
    create = True


@cmdlet("Remove-ItemProperty", "rp", positional=("Path", "Name"), params=("LiteralPath",), switches=("Force",),
        aliases=LITERAL_PATH_ALIASES, should_process=True)
class RemoveItemProperty(Cmdlet):
    def process(self, item: object) -> None:
        for name, values in _existing_keys(self, item):
            for found in _named_values(self, name, values, [to_str(w) for w in as_list(self.p.get("Name"))]):
                if self.should_process(f"Item: {name} Property: {found}", "Remove Property"):
                    del values[found]
