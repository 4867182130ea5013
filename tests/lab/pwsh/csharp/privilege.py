"""ansible-core 2.21.5's Ansible.Privilege.cs (PrivilegeUtil.psm1's C# util), emulated: the privileges of the
process token and their enabled state.

The token is the process's (ProcessState.token_privileges, made on first use): an administrator's elevated
network logon holds the privileges `whoami /priv` lists for one on Windows Server 2019, all disabled but
SeChangeNotify, SeImpersonate and SeCreateGlobal (enabled by default); a standard user holds SeChangeNotify
and SeIncreaseWorkingSet. A privilege the token lacks cannot be enabled ("Removed" in GetAllPrivilegeInfo's
sense: absent), as AdjustTokenPrivileges refuses it.
"""

from __future__ import annotations

from typing import Any

from tests.lab.pwsh.csharp.registry import emulates
from tests.lab.pwsh.dotnet_types import DotNetType, EnumType, MemberNotFound, SimpleType
from tests.lab.pwsh.errors import method_exception
from tests.lab.pwsh.net.collections import DictionaryObj
from tests.lab.pwsh.values import to_bool, to_str

SOURCE_SHA256 = "4a090df544b58aada1dfbffc228225e32b76cf196a7e4808787b786d53a2397c"

ALL_PRIVILEGES = (
    "SeAssignPrimaryTokenPrivilege", "SeAuditPrivilege", "SeBackupPrivilege", "SeChangeNotifyPrivilege",
    "SeCreateGlobalPrivilege", "SeCreatePagefilePrivilege", "SeCreatePermanentPrivilege",
    "SeCreateSymbolicLinkPrivilege", "SeCreateTokenPrivilege", "SeDebugPrivilege",
    "SeDelegateSessionUserImpersonatePrivilege", "SeEnableDelegationPrivilege", "SeImpersonatePrivilege",
    "SeIncreaseBasePriorityPrivilege", "SeIncreaseQuotaPrivilege", "SeIncreaseWorkingSetPrivilege",
    "SeLoadDriverPrivilege", "SeLockMemoryPrivilege", "SeMachineAccountPrivilege", "SeManageVolumePrivilege",
    "SeProfileSingleProcessPrivilege", "SeRelabelPrivilege", "SeRemoteShutdownPrivilege", "SeRestorePrivilege",
    "SeSecurityPrivilege", "SeShutdownPrivilege", "SeSyncAgentPrivilege", "SeSystemEnvironmentPrivilege",
    "SeSystemProfilePrivilege", "SeSystemtimePrivilege", "SeTakeOwnershipPrivilege", "SeTcbPrivilege",
    "SeTimeZonePrivilege", "SeTrustedCredManAccessPrivilege", "SeUndockPrivilege",
)
ADMIN_TOKEN = ("SeIncreaseQuotaPrivilege", "SeSecurityPrivilege", "SeTakeOwnershipPrivilege", "SeLoadDriverPrivilege",
               "SeSystemProfilePrivilege", "SeSystemtimePrivilege", "SeProfileSingleProcessPrivilege",
               "SeIncreaseBasePriorityPrivilege", "SeCreatePagefilePrivilege", "SeBackupPrivilege",
               "SeRestorePrivilege", "SeShutdownPrivilege", "SeDebugPrivilege", "SeSystemEnvironmentPrivilege",
               "SeChangeNotifyPrivilege", "SeRemoteShutdownPrivilege", "SeUndockPrivilege", "SeManageVolumePrivilege",
               "SeImpersonatePrivilege", "SeCreateGlobalPrivilege", "SeIncreaseWorkingSetPrivilege",
               "SeTimeZonePrivilege", "SeCreateSymbolicLinkPrivilege", "SeDelegateSessionUserImpersonatePrivilege")
USER_TOKEN = ("SeChangeNotifyPrivilege", "SeIncreaseWorkingSetPrivilege")
ENABLED_BY_DEFAULT = ("SeChangeNotifyPrivilege", "SeImpersonatePrivilege", "SeCreateGlobalPrivilege")
ENABLED_BY_DEFAULT_FLAG, ENABLED_FLAG = 1, 2


def token(rt: Any) -> dict[str, int]:
    """The process token's privileges: name -> PrivilegeAttributes value."""
    proc = rt.host.process
    held = getattr(proc, "token_privileges", None)
    if held is None:
        machine = proc.machine
        account = machine.account(rt.host.user) if machine is not None else None
        admin = account.is_admin if account is not None else True
        names = ADMIN_TOKEN if admin else USER_TOKEN
        held = {n: (ENABLED_BY_DEFAULT_FLAG | ENABLED_FLAG) if n in ENABLED_BY_DEFAULT else 0 for n in names}
        proc.token_privileges = held
    return held  # type: ignore[no-any-return]


class TokenHandle:
    ps_type = "Microsoft.Win32.SafeHandles.SafeWaitHandle"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() in ("dispose", "close"):
            return None
        from tests.lab.pwsh.errors import no_method
        raise no_method(self, name)


class PrivilegeUtilType(DotNetType):
    full_name = "Ansible.Privilege.PrivilegeUtil"

    def __init__(self, attributes: EnumType) -> None:
        super().__init__()
        self.attributes = attributes

    def call_static(self, rt: Any, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "checkprivilegename":
            return to_str(args[0]).lower() in {p.lower() for p in ALL_PRIVILEGES}
        if low == "getcurrentprocess":
            return TokenHandle()
        if low == "getallprivilegeinfo":
            out = DictionaryObj()
            for key, value in token(rt).items():
                out[key] = self.attributes.value(value)
            return out
        if low in ("setprivilegestate", "settokenprivileges"):
            return self._set(rt, name, args[1] if len(args) > 1 else {})
        if low in ("enableprivilege", "disableprivilege"):
            return self._set(rt, name, {to_str(args[1]): low == "enableprivilege"})
        raise MemberNotFound(name)

    def _set(self, rt: Any, method: str, state: object) -> DictionaryObj:
        held = token(rt)
        previous = DictionaryObj()
        changes = state.items() if isinstance(state, dict) else []
        for name, wanted in changes:
            key = next((k for k in held if k.lower() == to_str(name).lower()), None)
            if key is None:
                raise method_exception(method, 2, f"Failed to set privilege {to_str(name)}: Not all privileges or "
                                                  f"groups referenced are assigned to the caller (Win32ErrorCode 1300)")
            previous[key] = bool(held[key] & ENABLED_FLAG)
            if wanted is None:
                del held[key]
            elif to_bool(wanted):
                held[key] |= ENABLED_FLAG
            else:
                held[key] &= ~ENABLED_FLAG
        return previous


@emulates(SOURCE_SHA256, "ansible-core 2.21.5 lib/ansible/module_utils/csharp/Ansible.Privilege.cs")
def define() -> list[DotNetType]:
    attributes = EnumType("Ansible.Privilege.PrivilegeAttributes", {
        "Disabled": 0, "EnabledByDefault": 1, "Enabled": 2, "Removed": 4, "UsedForAccess": 0x80000000}, flags=True)
    return [PrivilegeUtilType(attributes), attributes, SimpleType("Ansible.Privilege.PrivilegeEnabler"),
            SimpleType("Ansible.Privilege.Win32Exception")]
