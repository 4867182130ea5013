"""System.Security.Principal on the lab host: SecurityIdentifier and NTAccount translating through the machine's
accounts and Windows' well-known SIDs, WindowsIdentity.GetCurrent() and WindowsPrincipal.IsInRole.

Well-known SIDs and names are Windows' ("Well-known SIDs", Microsoft Learn); a machine account's SID is its
machine-domain SID (tests/lab/_machine.py). A name or SID that maps to nothing fails with
IdentityNotMappedException's "Some or all identity references could not be translated.".
"""

from __future__ import annotations

import re
from typing import Any

from tests.lab.pwsh.dotnet_types import EnumType, register, SimpleType
from tests.lab.pwsh.errors import method_exception, no_method
from tests.lab.pwsh.net.automation import make_exception, method_failed
from tests.lab.pwsh.values import to_str, TypeRef

WELL_KNOWN: dict[str, str] = {
    "S-1-1-0": "Everyone", "S-1-5-11": "NT AUTHORITY\\Authenticated Users", "S-1-5-18": "NT AUTHORITY\\SYSTEM",
    "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE", "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE",
    "S-1-5-32-544": "BUILTIN\\Administrators", "S-1-5-32-545": "BUILTIN\\Users", "S-1-5-32-546": "BUILTIN\\Guests",
    "S-1-5-32-555": "BUILTIN\\Remote Desktop Users", "S-1-5-32-580": "BUILTIN\\Remote Management Users",
    "S-1-5-4": "NT AUTHORITY\\INTERACTIVE", "S-1-5-2": "NT AUTHORITY\\NETWORK", "S-1-5-6": "NT AUTHORITY\\SERVICE",
    "S-1-3-0": "CREATOR OWNER", "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464":
        "NT SERVICE\\TrustedInstaller",
}
_ALIASES = {"localsystem": "S-1-5-18", "system": "S-1-5-18", "local service": "S-1-5-19", "localservice": "S-1-5-19",
            "network service": "S-1-5-20", "networkservice": "S-1-5-20", "administrators": "S-1-5-32-544",
            "users": "S-1-5-32-545", "everyone": "S-1-1-0"}
_NOT_MAPPED = "Some or all identity references could not be translated."


def _not_mapped(method: str) -> Exception:
    return method_failed(method, 1, make_exception("System.Security.Principal.IdentityNotMappedException",
                                                   _NOT_MAPPED))


def sid_of(rt: Any, name: str) -> str | None:
    """The SID an account name (DOMAIN\\name, .\\name, name) resolves to on the lab host, or None."""
    low = name.lower()
    domain, _, short = low.rpartition("\\")
    for sid, known in WELL_KNOWN.items():
        if known.lower() == low or (not domain and known.lower().rpartition("\\")[2] == short):
            return sid
    if not domain or domain in ("nt authority", "builtin") and short in _ALIASES:
        if short in _ALIASES:
            return _ALIASES[short]
    machine = rt.host.process.machine
    if machine is not None:
        account = machine.account(name if domain not in (".",) else short)
        if account is not None:
            return account.sid  # type: ignore[no-any-return]
    elif domain in ("", ".", rt.host.computer_name.lower()) and short == rt.host.user.lower():
        return "S-1-5-21-0-0-0-1000"
    return None


def name_of(rt: Any, sid: str) -> str | None:
    if sid in WELL_KNOWN:
        return WELL_KNOWN[sid]
    machine = rt.host.process.machine
    if machine is not None:
        for account in machine.accounts.values():
            if account.sid == sid:
                return f"{rt.host.computer_name}\\{account.name}"
    return None


class _IdentityReference:
    """System.Security.Principal.IdentityReference: a SID or an account name, each translating into the other.

    Equal when of the same type and equal ignoring case (the types' operator== compares with OrdinalIgnoreCase);
    PowerShell's Equals() and -eq reach that through __eq__."""

    ps_bases = ("System.Security.Principal.IdentityReference",)

    def __init__(self, rt: Any, value: str) -> None:
        self.rt = rt
        self.Value = value

    def ps_tostring(self) -> str:
        return self.Value

    def _translated(self) -> _IdentityReference | None:
        """The other form of this identity on the lab host, or None when it maps to nothing."""
        raise NotImplementedError

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "translate":
            target = args[0].canon.lower() if isinstance(args[0], TypeRef) else to_str(args[0]).lower()
            if target.endswith(self.ps_type.rsplit(".", 1)[-1].lower()):
                return self
            other = self._translated()
            if other is None:
                raise _not_mapped(name)
            return other
        if low == "tostring":
            return self.Value
        return self._call(low, name, args)

    def _call(self, low: str, name: str, args: list[object]) -> object:
        raise no_method(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _IdentityReference) or type(other) is not type(self):
            return False
        return other.Value.lower() == self.Value.lower()

    def __hash__(self) -> int:
        return hash(self.Value.lower())


class SecurityIdentifierObj(_IdentityReference):
    ps_type = "System.Security.Principal.SecurityIdentifier"

    def __init__(self, rt: Any, sid: str) -> None:
        super().__init__(rt, sid)
        self.AccountDomainSid = None
        self.BinaryLength = 8 + 4 * (len(sid.split("-")) - 3)

    def _translated(self) -> _IdentityReference | None:
        found = name_of(self.rt, self.Value)
        return None if found is None else NTAccountObj(self.rt, found)

    def _call(self, low: str, name: str, args: list[object]) -> object:
        if low == "iswellknown":
            return self.Value in WELL_KNOWN
        raise no_method(self, name)


class NTAccountObj(_IdentityReference):
    ps_type = "System.Security.Principal.NTAccount"

    def _translated(self) -> _IdentityReference | None:
        sid = sid_of(self.rt, self.Value)
        return None if sid is None else SecurityIdentifierObj(self.rt, sid)


def _new_sid(rt: Any, args: list[object]) -> SecurityIdentifierObj:
    text = to_str(args[0])
    if not re.fullmatch(r"S-1-\d+(-\d+)*", text, re.I):
        raise method_exception("new", len(args), "Value was invalid.\r\nParameter name: sddlForm",
                               inner_type="System.ArgumentException")
    return SecurityIdentifierObj(rt, text.upper())


def _new_account(rt: Any, args: list[object]) -> NTAccountObj:
    if len(args) >= 2:
        return NTAccountObj(rt, f"{to_str(args[0])}\\{to_str(args[1])}")
    return NTAccountObj(rt, to_str(args[0]))


class WindowsIdentityObj:
    ps_type = "System.Security.Principal.WindowsIdentity"

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.Name = f"{rt.host.computer_name}\\{rt.host.user}"
        sid = sid_of(rt, rt.host.user) or "S-1-5-21-0-0-0-1000"
        self.User = SecurityIdentifierObj(rt, sid)
        self.AuthenticationType = "NTLM"
        self.IsAuthenticated = True
        self.IsSystem = sid == "S-1-5-18"
        self.IsAnonymous = False
        self.ImpersonationLevel = "None"

    def admin(self) -> bool:
        machine = self.rt.host.process.machine
        account = machine.account(self.rt.host.user) if machine is not None else None
        return True if account is None else bool(account.is_admin)

    def ps_get(self, name: str) -> object:
        if name.lower() == "groups":
            groups = [SecurityIdentifierObj(self.rt, "S-1-1-0"), SecurityIdentifierObj(self.rt, "S-1-5-32-545"),
                      SecurityIdentifierObj(self.rt, "S-1-5-2"), SecurityIdentifierObj(self.rt, "S-1-5-11")]
            if self.admin():
                groups.append(SecurityIdentifierObj(self.rt, "S-1-5-32-544"))
            return groups
        raise KeyError(name)

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() in ("dispose",):
            return None
        raise no_method(self, name)


class WindowsPrincipalObj:
    ps_type = "System.Security.Principal.WindowsPrincipal"

    def __init__(self, identity: WindowsIdentityObj) -> None:
        self.Identity = identity

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "isinrole":
            role = to_str(args[0]).lower()
            if role in ("administrator", "544", "builtin\\administrators", "s-1-5-32-544"):
                return self.Identity.admin()
            return role in ("user", "545", "builtin\\users", "s-1-5-32-545")
        raise no_method(self, name)


register(SimpleType("System.Security.Principal.SecurityIdentifier", ctor=_new_sid,
                    cast=lambda rt, v: v if isinstance(v, SecurityIdentifierObj) else _new_sid(rt, [v]),
                    instance=lambda v: isinstance(v, SecurityIdentifierObj)))
register(SimpleType("System.Security.Principal.NTAccount", ctor=_new_account,
                    instance=lambda v: isinstance(v, NTAccountObj)))
register(SimpleType("System.Security.Principal.WindowsIdentity",
                    methods={"getcurrent": lambda rt, a: WindowsIdentityObj(rt)},
                    instance=lambda v: isinstance(v, WindowsIdentityObj)))
register(SimpleType("System.Security.Principal.WindowsPrincipal",
                    ctor=lambda rt, a: WindowsPrincipalObj(a[0]),  # type: ignore[arg-type]
                    cast=lambda rt, v: WindowsPrincipalObj(v),  # type: ignore[arg-type]
                    instance=lambda v: isinstance(v, WindowsPrincipalObj)))
register(EnumType("System.Security.Principal.WindowsBuiltInRole", {
    "Administrator": 544, "User": 545, "Guest": 546, "PowerUser": 547, "AccountOperator": 548, "SystemOperator": 549,
    "PrintOperator": 550, "BackupOperator": 551, "Replicator": 552}))


# ---- System.DirectoryServices.AccountManagement: the machine's groups and their members -------------------------

register(EnumType("System.DirectoryServices.AccountManagement.ContextType",
                  {"Machine": 0, "Domain": 1, "ApplicationDirectory": 2}))


class PrincipalContextObj:
    ps_type = "System.DirectoryServices.AccountManagement.PrincipalContext"

    def __init__(self, rt: Any, kind: object) -> None:
        if to_str(kind).lower() not in ("machine", "0"):
            raise method_exception("new", 1, "The server could not be contacted.",
                                   inner_type="System.DirectoryServices.AccountManagement.PrincipalServerDownException")
        self.rt = rt
        self.ContextType = "Machine"
        self.Name = rt.host.computer_name


class AccountPrincipalObj:
    ps_type = "System.DirectoryServices.AccountManagement.UserPrincipal"

    def __init__(self, rt: Any, name: str, sid: str) -> None:
        self.Name = name
        self.SamAccountName = name
        self.Sid = SecurityIdentifierObj(rt, sid)
        domain_sid = sid.rsplit("-", 1)[0] if sid.startswith("S-1-5-21-") else None
        self.Sid.AccountDomainSid = SecurityIdentifierObj(rt, domain_sid) if domain_sid else None


class GroupPrincipalObj:
    ps_type = "System.DirectoryServices.AccountManagement.GroupPrincipal"

    def __init__(self, rt: Any, context: object, name: str) -> None:
        self.rt = rt
        self.Name = name.rsplit("\\", 1)[-1]
        self.Context = context

    def ps_get(self, name: str) -> object:
        if name.lower() == "members":
            from tests.lab.pwsh.values import PSEnumerator
            return PSEnumerator(self._members())
        raise KeyError(name)

    def _members(self) -> list[AccountPrincipalObj]:
        machine = self.rt.host.process.machine
        if machine is None:
            return []
        group = self.Name.lower()
        return [AccountPrincipalObj(self.rt, a.name, a.sid) for a in machine.accounts.values()
                if group in (g.lower() for g in a.groups) and a.sid != "S-1-5-18"]


class PrincipalSearcherObj:
    ps_type = "System.DirectoryServices.AccountManagement.PrincipalSearcher"

    def __init__(self, query: object) -> None:
        self.query = query

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "findone":
            return self.query
        if low == "findall":
            return [self.query]
        if low == "dispose":
            return None
        raise no_method(self, name)


_AM = "System.DirectoryServices.AccountManagement"
register(SimpleType(f"{_AM}.PrincipalContext", ctor=lambda rt, a: PrincipalContextObj(rt, a[0] if a else "Machine")))
register(SimpleType(f"{_AM}.GroupPrincipal", ctor=lambda rt, a: GroupPrincipalObj(rt, a[0], to_str(a[1]) if len(
    a) > 1 else "")))
register(SimpleType(f"{_AM}.PrincipalSearcher", ctor=lambda rt, a: PrincipalSearcherObj(a[0] if a else None)))


class NetworkCredentialObj:
    """System.Net.NetworkCredential: a user name and the plain text of a (secure) password."""

    ps_type = "System.Net.NetworkCredential"

    def __init__(self, user: str, password: object, domain: str = "") -> None:
        self.UserName = user
        self.Password = getattr(password, "value", None) if password is not None and not isinstance(password, str) \
            else password
        self.Domain = domain


register(SimpleType("System.Net.NetworkCredential", ctor=lambda rt, a: NetworkCredentialObj(
    to_str(a[0]) if a else "", a[1] if len(a) > 1 else None, to_str(a[2]) if len(a) > 2 else "")))
