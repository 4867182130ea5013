"""The WS-Management service of a simulated Windows host: SOAP dispatch, shells, quotas, faults.

The HTTP layer calls ``WSManService.handle(user, body)`` after authentication and decryption,
from many connection threads at once. Shell state is guarded by one service lock held only
for bookkeeping; a Receive long-poll waits on its own shell's condition, so it never blocks
other requests.
"""

from __future__ import annotations

import base64
import collections
import logging
import threading
import time
import typing as t

from tests.lab import _internal, _limits, _soap
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._faults import Faults
from tests.lab._machine import Machine
from tests.lab._psrp_server import PSRPPool
from tests.lab._soap import NS, el
from tests.lab._winrs import Shell, WinRSShell, parse_shell_create

log = logging.getLogger(__name__)

EngineFactory = t.Callable[[HostConfig, str], t.Any]

_RESPONSE_ACTIONS = {
    "Create": "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
    "Delete": "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
    "Get": "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse",
    "Enumerate": "http://schemas.xmlsoap.org/ws/2004/09/enumeration/EnumerateResponse",
    "Command": f"{_soap.SHELL_NS}/CommandResponse",
    "Send": f"{_soap.SHELL_NS}/SendResponse",
    "Receive": f"{_soap.SHELL_NS}/ReceiveResponse",
    "Signal": f"{_soap.SHELL_NS}/SignalResponse",
    "Disconnect": f"{_soap.SHELL_NS}/DisconnectResponse",
    "Reconnect": f"{_soap.SHELL_NS}/ReconnectResponse",
    "Connect": f"{_soap.SHELL_NS}/ConnectResponse",
}
COMMAND_RESOURCE_URI = f"{_soap.SHELL_RESOURCE_URI}/Command"


def _shell_usage(shell: t.Any) -> str:
    """rsp:MemoryUsed and rsp:ChildProcesses of a shell's process (what a Runspace Pool's holds; WinRS: 0MB)."""
    used = shell.memory_used_mb() if callable(getattr(shell, "memory_used_mb", None)) else 0
    return el("rsp:MemoryUsed", f"{used}MB") + el("rsp:ChildProcesses", "0")


def default_engine_factory(config: HostConfig, user: str) -> t.Any:
    """The lab's command engine (tests/lab/_engine.py), imported when the first shell opens."""
    from tests.lab._engine import Engine  # lazy: the engine is a separate, optional module

    if config.root is None:
        raise RuntimeError(f"host {config.name} has no file system root for its engine")
    return Engine(config.root, config.name, user)


def wsman_settings(config: HostConfig) -> dict[str, str]:
    """The host's WinRM settings as its WSMan: drive shows them (WSMan:\\localhost\\<path>), the values of Get-Item."""
    c = config
    return {
        "MaxEnvelopeSizekb": str(c.max_envelope_size // 1024),
        "MaxTimeoutms": str(c.max_timeout_ms),
        "MaxBatchItems": "32000",
        "Service\\AllowUnencrypted": str(c.allow_unencrypted).lower(),
        "Service\\MaxConcurrentOperationsPerUser": str(c.max_concurrent_operations_per_user),
        "Service\\MaxConnections": "300",
        "Service\\Auth\\Basic": str("basic" in c.auth).lower(),
        "Service\\Auth\\Kerberos": str("kerberos" in c.auth).lower(),
        "Service\\Auth\\Negotiate": str("negotiate" in c.auth).lower(),
        "Service\\Auth\\Certificate": str("certificate" in c.auth).lower(),
        "Service\\Auth\\CredSSP": str("credssp" in c.auth).lower(),
        "Service\\Auth\\CbtHardeningLevel": "Relaxed",
        "Shell\\AllowRemoteShellAccess": "true",
        "Shell\\IdleTimeout": str(int(c.idle_timeout_s * 1000)),
        "Shell\\MaxConcurrentUsers": "2147483647",
        "Shell\\MaxProcessesPerShell": "2147483647",
        "Shell\\MaxMemoryPerShellMB": str(c.max_memory_per_shell_mb),
        "Shell\\MaxShellsPerUser": str(c.max_shells_per_user),
    }


class WSManService:
    """WS-Management over SOAP for one simulated host: WinRS cmd shells and PSRP Runspace Pools."""

    def __init__(
        self,
        config: HostConfig,
        counters: Counters,
        faults: Faults,
        engine_factory: EngineFactory | None = None,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock  # measures shell idle time (IdleTimeOut); tests may pass one they advance
        self.counters = counters
        self.faults = faults
        self.engine_factory = engine_factory or default_engine_factory
        # the host's OS state (tests/lab/_machine.py): its own until the lab gives it the host's shared one
        self.machine: t.Any = Machine(config.name, dict(config.users), admins=tuple(config.users),
                                      reboot_down_s=config.reboot_down_s)
        self._lock = threading.Lock()
        self._shells: dict[str, Shell] = {}
        self._operations: collections.Counter[str] = collections.Counter()
        self._closed = False

    # ------------------------------------------------------------------------------------------
    def handle(self, user: str, body: bytes, client_address: str = "127.0.0.1") -> tuple[int, bytes]:
        """Answer one decrypted SOAP request of an authenticated user: (HTTP status, envelope)."""
        if len(body) > self.config.max_envelope_size:
            # Windows refuses a request above MaxEnvelopeSizekb before parsing it: HTTP 413, no SOAP body.
            self.counters.incr("rejected.envelope_size")
            self.counters.record(kind="wsman", user=user, action=None, status=413, fault="envelope_size")
            return 413, b""
        try:
            req = _soap.parse_request(body)
        except _soap.ParseError as e:
            return self._fault(_soap.invalid_xml(str(e)), "", user, "Unknown")
        self.counters.incr(f"wsman.{req.action_name}")
        self._expire_idle()

        injected = self.faults.take("wsman_fault_next") or self.faults.take_action_fault(req.action_name)
        if injected:
            factory = _soap.INJECTABLE.get(injected)
            fault = factory(self.config) if factory else _soap.internal_error(f"Injected fault {injected}. ")
            return self._fault(fault, req.message_id, user, req.action_name)

        limit = self.config.max_concurrent_operations_per_user
        with self._lock:
            if self._operations[user] >= limit:
                self.counters.incr("rejected.quota_operations")
                over = True
            else:
                self._operations[user] += 1
                over = False
        if over:
            return self._fault(_soap.quota_operations(limit), req.message_id, user, req.action_name)
        try:
            action, answer = self._dispatch(user, req, client_address)
        except _soap.WSManFault as fault:
            return self._fault(fault, req.message_id, user, req.action_name)
        except Exception as e:  # the lab's own bug: answer as Windows does for provider failures, and count it
            _internal.lab_bug(f"WS-Management {req.action_name}", e, host=self.config.name, counters=self.counters)
            return self._fault(_soap.internal_error(f"{type(e).__name__}: {e} "), req.message_id, user, req.action_name)
        finally:
            with self._lock:
                self._operations[user] -= 1
        self.counters.record(kind="wsman", user=user, action=req.action_name, status=200, shell=req.shell_id)
        return 200, _soap.envelope(action, req.message_id, answer)

    def operations_in_flight(self, user: str) -> int:
        """Requests of this user being served right now (what MaxConcurrentOperationsPerUser counts); a test
        waits on it to know a long-poll Receive is pending."""
        with self._lock:
            return self._operations[user]

    def expire_shells(self) -> int:
        """Drop every shell now, as an idle timeout would; returns how many were dropped."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._retire(shell, "shells_expired")
        return len(shells)

    def power_off(self) -> int:
        """The machine goes down: every shell and Runspace Pool ends with its process; returns how many."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            self._retire(shell, "shells_lost_to_reboot")
        return len(shells)

    def close(self) -> None:
        """Close every shell and stop their command threads (they are daemons and end on their own)."""
        with self._lock:
            self._closed = True
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            shell.close()

    def state(self) -> dict[str, t.Any]:
        """What the host holds right now: shells, Runspace Pools, running pipelines (and of them those a fault
        switch holds), stopped or ended pipelines whose script still runs (pipelines_ending), operations in
        flight by user."""
        with self._lock:
            shells = list(self._shells.values())
            operations = {user: n for user, n in self._operations.items() if n}
        pools = [s for s in shells if isinstance(s, PSRPPool)]
        return {
            "shells": len(shells),
            "runspace_pools": len(pools),
            "pipelines_running": sum(p.running_pipelines() for p in pools),
            "pipelines_held": sum(p.running_pipelines(held_only=True) for p in pools),
            "pipelines_ending": sum(p.ending_pipelines() for p in pools),
            "operations": operations,
        }

    def shell_count(self, user: str | None = None) -> int:
        """Open shells (WinRS and Runspace Pools), of one user or of all."""
        with self._lock:
            return sum(1 for s in self._shells.values() if user is None or s.owner == user)

    # ------------------------------------------------------------------------------------------
    def _fault(self, fault: _soap.WSManFault, relates_to: str, user: str, action: str) -> tuple[int, bytes]:
        self.counters.incr(f"wsman_fault.{fault.kind or fault.subcode}")
        self.counters.record(kind="wsman", user=user, action=action, status=fault.http_status, fault=fault.kind)
        return fault.http_status, fault.render(self.config.name, relates_to)

    def _retire(self, shell: Shell, counter: str) -> None:
        shell.close()
        self.counters.incr(counter)
        if isinstance(shell, PSRPPool):
            self.counters.incr(counter.replace("shells_", "runspace_pools_"))

    def _expire_idle(self) -> None:
        now = self.clock()
        with self._lock:
            expired = [s for s in self._shells.values() if s.idle_expired(now)]
            for shell in expired:
                del self._shells[shell.id]
        for shell in expired:
            log.debug("shell %s idle for %.1fs: expired", shell.id, now - shell.last_activity)
            self._retire(shell, "shells_expired")

    def _timeout_s(self, req: _soap.Request) -> float:
        if req.operation_timeout is None:
            return self.config.max_timeout_ms / 1000
        seconds = _soap.parse_duration(req.operation_timeout)
        if seconds is None or seconds <= 0:
            raise _soap.invalid_timeout_header(req.operation_timeout)
        return min(seconds, self.config.max_timeout_ms / 1000)

    def _configuration(self, resource_uri: str) -> str | None:
        if not resource_uri.startswith(_soap.PSRP_RESOURCE_PREFIX):
            return None
        name = resource_uri[len(_soap.PSRP_RESOURCE_PREFIX) :]
        known = ("Microsoft.PowerShell", *self.config.extra_configurations)
        for candidate in known:
            if candidate.lower() == name.lower():
                return candidate
        raise _soap.unknown_configuration(resource_uri)

    def _owned_shell(self, user: str, req: _soap.Request) -> Shell:
        shell_id = req.shell_id
        with self._lock:
            shell = self._shells.get(shell_id or "")
        # Windows scopes shells to their owner: another user's ShellId is simply not found.
        if shell is None or shell.owner != user or shell.closed:
            if shell is not None and shell.owner != user:
                self.counters.incr("rejected.not_owner")
            raise _soap.shell_not_found(shell_id)
        return shell

    def _dispatch(self, user: str, req: _soap.Request, client_address: str) -> tuple[str, str]:
        name = req.action_name
        timeout_s = self._timeout_s(req)
        response_action = _RESPONSE_ACTIONS.get(name, f"{req.action}Response")
        if name == "Create":
            return response_action, self._create(user, req, client_address)
        if name == "Get":
            return response_action, self._get(user, req)
        if name == "Enumerate":
            return response_action, self._enumerate(user, req)
        if name in ("Disconnect", "Reconnect", "Connect"):
            # Runspace Pools only: the lab's WinRS cmd shells keep no disconnected state.
            shell = self._owned_shell(user, req)
            if not isinstance(shell, PSRPPool):
                raise _soap.action_not_supported(req.action)
            shell.touch()
            return response_action, getattr(shell, name.lower())(req)
        if name in ("Command", "Send", "Receive", "Signal", "Delete"):
            if req.resource_uri != _soap.CMD_RESOURCE_URI:
                self._configuration(req.resource_uri)
            shell = self._owned_shell(user, req)
            killed = getattr(shell, "killed_by", None)
            if killed is not None and name != "Delete":
                raise killed  # its process died (MaxMemoryPerShellMB): every request but Delete gets the fault
            with self._lock:
                shell.busy += 1
            shell.touch()
            try:
                if name == "Delete":
                    with self._lock:
                        self._shells.pop(shell.id, None)
                    self._retire(shell, "shells_deleted")
                    return response_action, ""
                if name == "Command":
                    return response_action, shell.command(req)
                if name == "Send":
                    return response_action, shell.send(req)
                if name == "Receive":
                    return response_action, shell.receive(req, timeout_s)
                return response_action, shell.signal(req)
            finally:
                shell.touch()
                with self._lock:
                    shell.busy -= 1
        # Anything else (Put, Pull, ...): not offered by the lab (see docs/lab-wsman.md).
        raise _soap.action_not_supported(req.action)

    def _create(self, user: str, req: _soap.Request, client_address: str) -> str:
        configuration = None
        if req.resource_uri != _soap.CMD_RESOURCE_URI:
            configuration = self._configuration(req.resource_uri)
            if configuration is None:
                raise _soap.unknown_configuration(req.resource_uri)
        opts = parse_shell_create(req)
        shell_id = opts["shell_id"] or _soap.new_id()
        idle = opts["idle_timeout_s"] or self.config.idle_timeout_s
        common = dict(
            shell_id=shell_id,
            owner=user,
            resource_uri=req.resource_uri,
            idle_timeout_s=idle,
            input_streams=opts["input_streams"],
            output_streams=opts["output_streams"],
            client_address=client_address,
            clock=self.clock,
        )
        limit = self.config.max_shells_per_user
        with self._lock:
            if self._closed:
                raise _soap.internal_error("The WS-Management service is shutting down. ")
            if sum(1 for s in self._shells.values() if s.owner == user) >= limit:
                self.counters.incr("rejected.quota_shells")
                raise _soap.quota_shells(limit)
            if shell_id in self._shells:
                raise _soap.internal_error(f"A shell with ShellId {shell_id} already exists. ")
            self._shells[shell_id] = placeholder = Shell(**common)
        try:
            engine = self.engine_factory(self.config, user)
            attach = getattr(engine, "attach_machine", None)  # the engine's process runs on this host's OS
            if attach is not None:
                attach(self.machine)
            self._configure_engine(engine, configuration)
            if configuration is None:
                shell: Shell = WinRSShell(
                    **common,
                    engine=engine,
                    environment=opts["environment"],
                    working_directory=opts["working_directory"],
                    no_profile=opts["no_profile"],
                    codepage=opts["codepage"],
                )
            else:
                creation = opts["element"].find("pwsh:creationXml", NS)
                pool = PSRPPool(
                    **common,
                    engine=engine,
                    computer_name=self.config.name,
                    max_envelope_size=min(req.max_envelope_size or 153600, self.config.max_envelope_size),
                    configuration=configuration,
                    input_caps=lambda: _limits.received_input_caps(self.config, configuration),
                    memory_limit=self._memory_limit,
                    on_killed=lambda: self.counters.incr("shells_killed.memory"),
                    counters=self.counters,
                    holds=self.faults.holds,
                )
                pool.open(base64.b64decode(creation.text or "") if creation is not None else b"")
                pool.client_session = req.session_id
                shell = pool
        except Exception:
            with self._lock:
                self._shells.pop(shell_id, None)
            raise
        with self._lock:
            if self._shells.get(shell_id) is placeholder:
                self._shells[shell_id] = shell
        self.counters.incr("shells_created")
        if configuration is not None:
            self.counters.incr("runspace_pools_created")
        address = req.to or f"http://{self.config.address}/wsman"
        created = el(
            "x:ResourceCreated",
            children=el("a:Address", address)
            + el(
                "a:ReferenceParameters",
                children=el("w:ResourceURI", req.resource_uri)
                + el("w:SelectorSet", children=el("w:Selector", shell_id, {"Name": "ShellId"})),
            ),
        )
        return created + shell.shell_xml(shell.create_response_extra())

    def _memory_limit(self) -> int | None:
        """MaxMemoryPerShellMB in bytes; None when off (Windows' 2147483647)."""
        mb = self.config.max_memory_per_shell_mb
        return None if mb >= _limits.UNLIMITED else mb << 20

    def _configure_engine(self, engine: t.Any, configuration: str | None) -> None:
        """What the shell's process is given by its host: the language mode, the WinRM settings its WSMan: drive
        shows, and for a Runspace Pool its session configuration's restrictions (engines without the hooks,
        like the service tests' stand-in, take none)."""
        configure_host = getattr(engine, "configure_host", None)
        if callable(configure_host):
            configure_host(language_mode=self.config.language_mode, wsman_settings=lambda: wsman_settings(self.config))
        session = self.config.session_configurations.get((configuration or "").lower())
        configure_session = getattr(engine, "configure_session", None)
        if session is not None and callable(configure_session):
            configure_session(
                language_mode=session.language_mode
                or ("NoLanguage" if session.session_type == "RestrictedRemoteServer" else None),
                restricted=session.session_type == "RestrictedRemoteServer",
                visible_cmdlets=session.visible_cmdlets,
                visible_providers=session.visible_providers,
            )

    def _get(self, user: str, req: _soap.Request) -> str:
        if req.resource_uri.rstrip("/") == _soap.CONFIG_RESOURCE_URI:
            return self._config_xml()
        if req.resource_uri in (_soap.SHELL_RESOURCE_URI, _soap.CMD_RESOURCE_URI) or req.resource_uri.startswith(
            _soap.PSRP_RESOURCE_PREFIX
        ):
            shell = self._owned_shell(user, req)
            if getattr(shell, "killed_by", None) is not None:
                raise _soap.shell_not_found(shell.id)  # WinRM itself answers Get: the dead process' shell is gone
            shell.touch()
            # A Get also reports the shell process' memory and children, as Windows does.
            return shell.shell_xml(shell.create_response_extra(), tail=_shell_usage(shell))
        raise _soap.unknown_configuration(req.resource_uri)

    def _enumerate(self, user: str, req: _soap.Request) -> str:
        # Shell enumeration returns this user's shells in one batch (EndOfSequence), as a small host does;
        # on .../shell/Command with a ShellId selector filter, that shell's commands (test_psrp_disconnected_commands).
        with self._lock:
            shells = [s for s in self._shells.values() if s.owner == user]
        if req.resource_uri == COMMAND_RESOURCE_URI:
            wanted = {
                (sel.text or "").upper()
                for sel in req.body.findall(".//wsman:Filter/wsman:SelectorSet/wsman:Selector[@Name='ShellId']", NS)
            }
            items = "".join(s.commands_xml() for s in shells if isinstance(s, PSRPPool) and s.id in wanted)
        else:
            items = "".join(s.shell_xml(s.create_response_extra(), tail=_shell_usage(s)) for s in shells)
        return el(
            "n:EnumerateResponse",
            children=el("n:EnumerationContext", "") + el("w:Items", children=items) + el("w:EndOfSequence", ""),
        )

    def _config_xml(self) -> str:
        """winrm/config as Windows Server answers a Get on it, with this host's settings filled in."""
        c = self.config

        def block(tag: str, items: list[tuple[str, str]]) -> str:
            return el(tag, children="".join(v if k == "" else el(k, v) for k, v in items))

        def auth(names: tuple[tuple[str, str], ...], extra: list[tuple[str, str]]) -> str:
            return block("cfg:Auth", [(f"cfg:{n}", str(k in c.auth).lower()) for n, k in names] + extra)

        ports = block("cfg:DefaultPorts", [("cfg:HTTP", "5985"), ("cfg:HTTPS", "5986")])
        unencrypted = str(c.allow_unencrypted).lower()
        client = block(
            "cfg:Client",
            [
                ("cfg:NetworkDelayms", "5000"),
                ("cfg:URLPrefix", "wsman"),
                ("cfg:AllowUnencrypted", "false"),
                ("", auth((("Basic", "basic"), ("Digest", "digest"), ("Kerberos", "kerberos"), ("Negotiate", "negotiate"), ("Certificate", "certificate"), ("CredSSP", "credssp")), [])),
                ("", ports),
                ("cfg:TrustedHosts", ""),
            ],
        )
        service = block(
            "cfg:Service",
            [
                ("cfg:RootSDDL", "O:NSG:BAD:P(A;;GA;;;BA)(A;;GR;;;IU)S:P(AU;FA;GA;;;WD)(AU;SA;GXGW;;;WD)"),
                ("cfg:MaxConcurrentOperations", "4294967295"),
                ("cfg:MaxConcurrentOperationsPerUser", str(c.max_concurrent_operations_per_user)),
                ("cfg:EnumerationTimeoutms", "240000"),
                ("cfg:MaxConnections", "300"),
                ("cfg:MaxPacketRetrievalTimeSeconds", "120"),
                ("cfg:AllowUnencrypted", unencrypted),
                ("", auth((("Basic", "basic"), ("Kerberos", "kerberos"), ("Negotiate", "negotiate"), ("Certificate", "certificate"), ("CredSSP", "credssp")), [("cfg:CbtHardeningLevel", "Relaxed")])),
                ("", ports),
                ("cfg:IPv4Filter", "*"),
                ("cfg:IPv6Filter", "*"),
                ("cfg:EnableCompatibilityHttpListener", "false"),
                ("cfg:EnableCompatibilityHttpsListener", "false"),
                ("cfg:CertificateThumbprint", ""),
                ("cfg:AllowRemoteAccess", "true"),
            ],
        )
        winrs = block(
            "cfg:Winrs",
            [
                ("cfg:AllowRemoteShellAccess", "true"),
                ("cfg:IdleTimeout", str(int(c.idle_timeout_s * 1000))),
                ("cfg:MaxConcurrentUsers", "2147483647"),
                ("cfg:MaxShellRunTime", "2147483647"),
                ("cfg:MaxProcessesPerShell", "2147483647"),
                ("cfg:MaxMemoryPerShellMB", str(c.max_memory_per_shell_mb)),
                ("cfg:MaxShellsPerUser", str(c.max_shells_per_user)),
            ],
        )
        return el(
            "cfg:Config",
            attrs={"xmlns:cfg": NS["cfg"]},
            children=(
                el("cfg:MaxEnvelopeSizekb", str(c.max_envelope_size // 1024))
                + el("cfg:MaxTimeoutms", str(c.max_timeout_ms))
                + el("cfg:MaxBatchItems", "32000")
                + el("cfg:MaxProviderRequests", "4294967295")
                + client
                + service
                + winrs
            ),
        )
