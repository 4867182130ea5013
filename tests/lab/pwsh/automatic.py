"""The objects behind automatic variables: $Host (UI writes reach the Streams, SetShouldExit), $ExecutionContext
(SessionState.Path, InvokeCommand.ExpandString) and $PSVersionTable (Windows PowerShell 5.1 on Server 2019).
"""

from __future__ import annotations

import uuid

from tests.lab.pwsh.dotnet_objects import GuidValue, InternalMember
from tests.lab.pwsh.errors import no_method, runtime_error
from tests.lab.pwsh.files import PathInfo, win_full
from tests.lab.pwsh.interpreter import Interpreter
from tests.lab.pwsh.parser import Parser
from tests.lab.pwsh.values import Hashtable, to_str, Version


PS_VERSION = "5.1.17763.1007"


def ps_version_table() -> Hashtable:
    """$PSVersionTable of the Windows PowerShell 5.1 the lab host claims to be (Server 2019, build 17763)."""
    h = Hashtable()
    h["PSVersion"] = Version(PS_VERSION)
    h["PSEdition"] = "Desktop"
    h["PSCompatibleVersions"] = [Version("1.0"), Version("2.0"), Version("3.0"), Version("4.0"), Version("5.0"),
                                 Version("5.1.17763.1007")]
    h["BuildVersion"] = Version("10.0.17763.1007")
    h["CLRVersion"] = Version("4.0.30319.42000")
    h["WSManStackVersion"] = Version("3.0")
    h["PSRemotingProtocolVersion"] = Version("2.3")
    h["SerializationVersion"] = Version("1.1.0.1")
    return h


class HostObject:
    """$Host: UI.WriteLine/WriteErrorLine and SetShouldExit reach the Streams."""

    ps_type = "System.Management.Automation.Internal.Host.InternalHost"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt
        self.Name = "ServerRemoteHost"
        self.Version = Version("1.0.0.0")
        self.InstanceId = GuidValue(uuid.uuid4())
        self.UI = HostUI(rt)
        self.CurrentCulture = "en-US"
        self.CurrentUICulture = "en-US"

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "setshouldexit":
            self.rt.streams.set_should_exit(self.rt.to_int(args[0]))
            return None
        raise no_method(self, name)

    def ps_internals(self) -> dict[tuple[str, str], InternalMember]:
        """InternalHost.ExternalHost: the host the runspace was given (a PSRP server's or the console's)."""
        return {("property", "ExternalHost"): (lambda: external_host(self.rt), None)}


def external_host(rt: Interpreter) -> object:
    """The PSHost behind $Host: a PSRP pipeline's ServerRemoteHost, whose command transport manager the PSRP host
    exposes as `streams.maximum_allowed_memory`, or the console host of powershell.exe, which has none."""
    if hasattr(rt.streams, "maximum_allowed_memory"):
        return ServerRemoteHost(rt)
    return ConsoleHost()


class ConsoleHost:
    ps_type = "Microsoft.PowerShell.ConsoleHost"
    Name = "ConsoleHost"


# The internal object graph a script walks by reflection to lift its command's input quota (ansible-core's
# psrp_put_file.ps1, pypsrp's copy.ps1): ServerRemoteHost._transportManager -> the command's transport
# manager .Fragmentor -> .DeserializationContext -> .MaximumAllowedMemory (PowerShell's serialization.cs).
class ServerRemoteHost:
    ps_type = "System.Management.Automation.Remoting.ServerDriverRemoteHost"
    Name = "ServerRemoteHost"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_internals(self) -> dict[tuple[str, str], InternalMember]:
        return {("field", "_transportManager"): (lambda: CommandTransportManager(self.rt), None)}


class CommandTransportManager:
    ps_type = "System.Management.Automation.Remoting.WSMan.WSManPluginCommandTransportManager"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_internals(self) -> dict[tuple[str, str], InternalMember]:
        return {("property", "Fragmentor"): (lambda: Fragmentor(self.rt), None)}


class Fragmentor:
    ps_type = "System.Management.Automation.Remoting.Fragmentor"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_internals(self) -> dict[tuple[str, str], InternalMember]:
        return {("property", "DeserializationContext"): (lambda: DeserializationContext(self.rt), None)}


class DeserializationContext:
    ps_type = "System.Management.Automation.DeserializationContext"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def _set(self, value: object) -> None:
        self.rt.streams.maximum_allowed_memory = None if value is None else self.rt.to_int(value)  # type: ignore[attr-defined]

    def ps_internals(self) -> dict[tuple[str, str], InternalMember]:
        return {("property", "MaximumAllowedMemory"): (
            lambda: self.rt.streams.maximum_allowed_memory, self._set)}  # type: ignore[attr-defined]


class HostUI:
    ps_type = "System.Management.Automation.Internal.Host.InternalHostUserInterface"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        text = to_str(args[-1]) if args else ""
        s = self.rt.streams
        if low == "writeline":
            s.host_write(text, newline=True)
        elif low == "write":
            s.host_write(text, newline=False)
        elif low == "writeerrorline":
            s.host_write(text, newline=True, to_stderr=True)
        elif low == "writewarningline":
            s.warning(text)
        elif low == "writeverboseline":
            s.verbose(text)
        elif low == "writedebugline":
            pass
        else:
            raise no_method(self, name)
        return None


class ExecutionContextObject:
    ps_type = "System.Management.Automation.EngineIntrinsics"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt
        self.SessionState = SessionStateObject(rt)
        self.InvokeCommand = InvokeCommandObject(rt)


class SessionStateObject:
    ps_type = "System.Management.Automation.SessionState"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt
        self.Path = PathIntrinsics(rt)

    @property
    def LanguageMode(self) -> str:
        return self.rt.host.language_mode

    @LanguageMode.setter
    def LanguageMode(self, value: object) -> None:
        """A script may lock its runspace down (never back up: setting it is refused once constrained, since
        SessionState is no core type); the runspace keeps the mode for its later pipelines, as its
        ExecutionContext.LanguageMode (SessionState.LanguageMode's setter)."""
        modes = ("FullLanguage", "ConstrainedLanguage", "RestrictedLanguage", "NoLanguage")
        mode = next((m for m in modes if m.lower() == to_str(value).lower()), None)
        if mode is None:
            raise runtime_error(f'Cannot convert value "{to_str(value)}" to type '
                                f'"System.Management.Automation.PSLanguageMode". Error: "Unable to match the '
                                f'identifier name {to_str(value)} to a valid enumerator name. Specify one of the '
                                f'following enumerator names and try again:{chr(10)}{", ".join(modes)}"',
                                "RuntimeException")
        self.rt.host.language_mode = mode
        self.rt.runspace.language_mode = mode


class PathIntrinsics:
    ps_type = "System.Management.Automation.PathIntrinsics"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_call(self, name: str, args: list[object]) -> object:
        low = name.lower()
        if low == "getunresolvedproviderpathfrompspath":
            return win_full(self.rt, args[0])
        if low == "currentlocation":
            return PathInfo(self.rt.cwd)
        raise no_method(self, name)

    def ps_get(self, name: str) -> object:
        if name.lower() == "currentlocation":
            return PathInfo(self.rt.cwd)
        raise KeyError(name)


class InvokeCommandObject:
    ps_type = "System.Management.Automation.CommandInvocationIntrinsics"

    def __init__(self, rt: Interpreter) -> None:
        self.rt = rt

    def ps_call(self, name: str, args: list[object]) -> object:
        if name.lower() == "expandstring":
            p = Parser('"' + to_str(args[0]).replace('"', '`"') + '"')
            return self.rt.eval(p.parse_string())
        raise no_method(self, name)
