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

from tests.lab import _soap
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._faults import Faults
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
}


def default_engine_factory(config: HostConfig, user: str) -> t.Any:
    """The lab's command engine (tests/lab/_engine.py), imported when the first shell opens."""
    from tests.lab._engine import Engine  # lazy: the engine is a separate, optional module

    if config.root is None:
        raise RuntimeError(f"host {config.name} has no file system root for its engine")
    return Engine(config.root, config.name, user)


class WSManService:
    """WS-Management over SOAP for one simulated host: WinRS cmd shells and PSRP Runspace Pools."""

    def __init__(
        self,
        config: HostConfig,
        counters: Counters,
        faults: Faults,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.config = config
        self.counters = counters
        self.faults = faults
        self.engine_factory = engine_factory or default_engine_factory
        self.machine: t.Any = None  # the host's OS state (tests/lab/_machine.py), set by the lab
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

        injected = self.faults.take("wsman_fault_next")
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
        except Exception as e:  # the lab's own bug: answer as Windows does for provider failures
            log.exception("WS-Management %s failed", req.action_name)
            return self._fault(_soap.internal_error(f"{type(e).__name__}: {e} "), req.message_id, user, req.action_name)
        finally:
            with self._lock:
                self._operations[user] -= 1
        self.counters.record(kind="wsman", user=user, action=req.action_name, status=200, shell=req.shell_id)
        return 200, _soap.envelope(action, req.message_id, answer)

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
        now = time.monotonic()
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
        if name in ("Command", "Send", "Receive", "Signal", "Delete"):
            if req.resource_uri != _soap.CMD_RESOURCE_URI:
                self._configuration(req.resource_uri)
            shell = self._owned_shell(user, req)
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
        # Disconnect/Reconnect/Connect and anything else: not offered by the lab (see docs/lab-wsman.md).
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
            if attach is not None and self.machine is not None:
                attach(self.machine)
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
                )
                pool.open(base64.b64decode(creation.text or "") if creation is not None else b"")
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

    def _get(self, user: str, req: _soap.Request) -> str:
        if req.resource_uri.rstrip("/") == _soap.CONFIG_RESOURCE_URI:
            return self._config_xml()
        if req.resource_uri in (_soap.SHELL_RESOURCE_URI, _soap.CMD_RESOURCE_URI) or req.resource_uri.startswith(
            _soap.PSRP_RESOURCE_PREFIX
        ):
            shell = self._owned_shell(user, req)
            shell.touch()
            # A Get also reports the shell process' memory and children, as Windows does.
            return shell.shell_xml(shell.create_response_extra(), tail=el("rsp:MemoryUsed", "0MB") + el("rsp:ChildProcesses", "0"))
        raise _soap.unknown_configuration(req.resource_uri)

    def _enumerate(self, user: str, req: _soap.Request) -> str:
        # Shell enumeration returns this user's shells in one batch (EndOfSequence), as a small host does.
        with self._lock:
            shells = [s for s in self._shells.values() if s.owner == user]
        items = "".join(s.shell_xml(s.create_response_extra()) for s in shells)
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
                ("cfg:MaxMemoryPerShellMB", "2147483647"),
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
