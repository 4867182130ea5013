"""Start a whole lab: simulated Windows hosts, a CA, a KDC, real proxies, latency relays, a control API.

``Lab(LabOptions(...)).start()`` builds everything on free loopback ports,
``describe()`` returns what clients need (the JSON ``python -m tests.lab up --json``
prints, see docs/lab.md), ``stop()`` stops everything it started, in reverse
order, also when start() failed half-way.

A Lab object answers the same calls as ``LabClient`` (tests/lab/_control.py),
so a test can drive an in-process lab and a lab in another process alike.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import secrets
import shutil
import tempfile
import threading
import typing as t

from tests.lab import _internal, _limits
from tests.lab._config import HostConfig
from tests.lab._control import ControlServer
from tests.lab._counters import Counters
from tests.lab._errors import LabError, UnknownComponent
from tests.lab._faults import Faults
from tests.lab._kdc import LabKDC
from tests.lab._machine import Machine
from tests.lab._relay import LatencyRelay

__all__ = ["Lab", "LabError", "LabOptions", "SQUID_AUTH_SCHEMES", "UnknownComponent"]

log = logging.getLogger(__name__)

DOMAIN = "lab.test"
REALM = "LAB.TEST"
SQUID_AUTH_SCHEMES = ("none", "basic", "digest", "ntlm", "negotiate")
PROXY_HOSTNAME = f"proxy.{DOMAIN}"
_STOP_JOIN_S = 30.0  # each component bounds its own stop; this only guards against a hung one


@dataclasses.dataclass
class LabOptions:
    """What a lab is made of (the options of ``python -m tests.lab up``, docs/lab.md)."""

    hosts: int = 2
    # one Squid per scheme: "none", "basic" (described as "squid"), "digest", "ntlm", "negotiate"
    squid_auth: tuple[str, ...] = ("basic",)
    squid_https: bool = False          # an extra Basic-auth Squid that also listens with TLS ("squid_https")
    tinyproxy: bool = True
    socks: bool = True                 # two microsocks SOCKS5 proxies: "socks" (no password), "socks_auth" (RFC 1929)
    mitm: bool = False                 # the inspecting proxy (mitmproxy) that records every byte
    kdc: bool = False                  # a throwaway MIT realm LAB.TEST (forced on by squid "negotiate")
    rtt_ms: float = 0.0                # round-trip time the latency relays add (set_rtt() changes it live)
    relays: bool = False               # latency relays in front of every host port (implied by rtt_ms > 0)
    host_auth: tuple[str, ...] | None = None   # override the schemes hosts offer (HostConfig.auth)
    allow_unencrypted: bool = False    # WinRM AllowUnencrypted on every host
    reboot_down_s: float = 5.0         # how long a restarted host refuses connections before it boots
    # Windows' quotas on every host (tests/lab/_limits.py): Windows' defaults, then no_limits lifts them
    # all, then each (configuration or None, Windows name, value or None for off) applies in order.
    no_limits: bool = False
    limits: tuple[tuple[str | None, str, float | None], ...] = ()
    # the language mode of every PowerShell on every host: ConstrainedLanguage is a WDAC/AppLocker lockdown
    language_mode: str = "FullLanguage"
    control: bool = True               # serve the control API on 127.0.0.1
    workdir: pathlib.Path | None = None     # None: a fresh private temp dir, removed by stop()
    keep_workdir: bool = False

    def __post_init__(self) -> None:
        self.squid_auth = tuple(dict.fromkeys(s.strip().lower() for s in self.squid_auth if s.strip()))
        unknown = [s for s in self.squid_auth if s not in SQUID_AUTH_SCHEMES]
        if unknown:
            raise LabError(f"unknown Squid auth scheme(s) {unknown}; choose from {', '.join(SQUID_AUTH_SCHEMES)}")
        if self.hosts < 0:
            raise LabError("hosts must be 0 or more")
        if self.rtt_ms < 0:
            raise LabError("rtt_ms must not be negative")
        if self.reboot_down_s < 0:
            raise LabError("reboot_down_s must not be negative")
        if self.rtt_ms > 0:
            self.relays = True
        if "negotiate" in self.squid_auth:
            self.kdc = True  # Negotiate proxy auth needs the realm
        from tests.lab import _limits

        if self.language_mode not in ("FullLanguage", "ConstrainedLanguage"):
            raise LabError(f"language_mode must be FullLanguage or ConstrainedLanguage, not {self.language_mode!r}")
        for configuration, name, _value in self.limits:
            try:
                q = _limits.quota(name)
            except KeyError as e:
                raise LabError(str(e.args[0])) from None
            if configuration is not None and not q.configuration:
                raise LabError(f"{q.name} is a WinRM service quota; it cannot be set for configuration {configuration!r}")


def squid_key(scheme: str) -> str:
    """The name a Squid variant has in describe()["proxies"]: "squid" is the Basic one, the issue's default."""
    return "squid" if scheme == "basic" else f"squid_{'noauth' if scheme == 'none' else scheme}"


@dataclasses.dataclass
class _HostEntry:
    config: HostConfig
    counters: Counters
    faults: Faults
    service: t.Any = None
    host: t.Any = None
    client_certs: list[dict[str, str]] = dataclasses.field(default_factory=list)
    user_info: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    relays: dict[str, LatencyRelay] = dataclasses.field(default_factory=dict)
    machine: Machine | None = None

    @property
    def hostname(self) -> str:
        return f"{self.config.name.lower()}.{DOMAIN}"


@dataclasses.dataclass
class _ProxyEntry:
    kind: str                      # squid, tinyproxy, mitm
    obj: t.Any
    auth: str | None = None
    username: str | None = None
    password: str | None = None


def _value(obj: t.Any, name: str) -> t.Any:
    """Read an attribute that may be a property or a method (the proxy classes' url, https_url)."""
    attr = getattr(obj, name, None)
    return attr() if callable(attr) else attr


def _password() -> str:
    # Windows' complexity rules want upper, lower, digit and symbol; token_urlsafe supplies the rest.
    return f"Lab-{secrets.token_urlsafe(12)}9a"


class Lab:
    """A whole lab built from LabOptions; see the module docstring."""

    def __init__(self, options: LabOptions | None = None) -> None:
        self.options = options or LabOptions()
        self.workdir: pathlib.Path | None = None
        self.ca: t.Any = None
        self.kdc: LabKDC | None = None
        self.hosts: dict[str, _HostEntry] = {}
        self.proxies: dict[str, _ProxyEntry] = {}
        self.control: t.Any = None
        # (what, stop, parallel): consecutive parallel entries stop together (Squid takes ~2 s each)
        self._stoppers: list[tuple[str, t.Callable[[], t.Any], bool]] = []
        self._own_workdir = False
        self._saved_env: dict[str, str | None] = {}
        self._lock = threading.RLock()
        self._started = False

    # lifecycle -----------------------------------------------------------
    def start(self) -> Lab:
        """Build and start everything; on any failure stop what was started and re-raise."""
        with self._lock:
            if self._started:
                return self
            try:
                self._start()
            except BaseException:
                log.exception("lab start failed; stopping what was started")
                self.stop()
                raise
            self._started = True
            log.info("lab up: %d host(s), proxies %s, workdir %s", len(self.hosts),
                     ", ".join(self.proxies) or "none", self.workdir)
            return self

    def stop(self) -> None:
        """Stop everything this lab started, newest first; never raises."""
        with self._lock:
            while self._stoppers:
                batch = [self._stoppers.pop()]
                while batch[0][2] and self._stoppers and self._stoppers[-1][2]:
                    batch.append(self._stoppers.pop())
                threads = [threading.Thread(target=_stop_logged, args=(what, stop), name=f"stop {what}")
                           for what, stop, _ in batch]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(_STOP_JOIN_S)
            for key, old in self._saved_env.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old
            self._saved_env.clear()
            if self._own_workdir and self.workdir and not self.options.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self._started = False

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_stop(self, what: str, stop: t.Callable[[], t.Any], *, parallel: bool = False) -> None:
        self._stoppers.append((what, stop, parallel))

    def _start(self) -> None:
        opts = self.options
        if opts.workdir is None:
            self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="winrm-lab-"))  # mkdtemp: mode 0700
            self._own_workdir = True
        else:
            self.workdir = pathlib.Path(opts.workdir).absolute()
            self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._start_ca()
        if opts.kdc:
            self._start_kdc()
        self._configure_hosts()
        for entry in self.hosts.values():
            self._start_host(entry)
        if opts.relays:
            for entry in self.hosts.values():
                self._start_relays(entry)
        self._start_proxies()
        if opts.control:
            self.control = ControlServer(self)
            self.control.start()
            self._on_stop("control API", self.control.stop)

    def _start_ca(self) -> None:
        try:
            from tests.lab._certs import LabCA
        except ImportError as e:
            if self.options.hosts == 0 and not self.options.squid_https and not self.options.mitm:
                log.warning("tests/lab/_certs.py not available; lab runs without a CA")
                return
            raise LabError("the lab CA (tests/lab/_certs.py) is not available") from e
        assert self.workdir is not None
        self.ca = LabCA.create(self.workdir / "ca")

    def _start_kdc(self) -> None:
        assert self.workdir is not None
        self.kdc = LabKDC(self.workdir / "kdc", REALM, domain=DOMAIN)
        self.kdc.start()
        self._on_stop("KDC", self.kdc.stop)
        # In-process acceptors (hosts, helpers) read the realm from this process's environment.
        self._set_env("KRB5_CONFIG", str(self.kdc.krb5_config))

    def _set_env(self, key: str, value: str) -> None:
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    # hosts ---------------------------------------------------------------
    def _configure_hosts(self) -> None:
        assert self.workdir is not None
        domain_users: list[tuple[str, str]] = []
        shared_keytab: pathlib.Path | None = None
        if self.kdc is not None:
            # A domain account is one identity with one password on every host, as in AD; two of them, so two
            # users can run at once and each be seen as itself.
            domain_users = [("labdomain", _password()), ("labdomain2", _password())]
            client_keytabs: dict[str, str] = {}
            for account, password in domain_users:
                self.kdc.add_user(account, password)
                # a client keytab per domain account (its password keeps working): logins without a password
                client_keytabs[account] = str(self.kdc.export_keytab(
                    account, self.kdc.workdir / "keytabs" / f"{account}.client.keytab"))
            shared_keytab = self.kdc.workdir / "keytabs" / "hosts.keytab"
        for index in range(1, self.options.hosts + 1):
            name = f"WIN-LAB{index}"
            root = self.workdir / "hosts" / name / "C"
            root.mkdir(parents=True, exist_ok=True)
            users = {"ansible": _password(), "labuser": _password()}
            user_info: list[dict[str, t.Any]] = [
                {"username": u, "password": p, "kind": "local"} for u, p in users.items()]
            config = HostConfig(name=name, users=dict(users), root=root,
                                allow_unencrypted=self.options.allow_unencrypted,
                                reboot_down_s=self.options.reboot_down_s)
            if self.options.host_auth is not None:
                config.auth = tuple(self.options.host_auth)
            config.language_mode = self.options.language_mode
            if self.options.no_limits:
                _limits.lift_all(config)
            for configuration, limit, value in self.options.limits:
                _limits.set_limits(config, configuration, **{limit: value})
            entry = _HostEntry(config=config, counters=Counters(), faults=Faults(), user_info=user_info)
            if self.kdc is not None and domain_users:
                for account, password in domain_users:
                    config.users[account] = password
                    user_info.append({"username": account, "password": password, "kind": "domain",
                                      "principal": self.kdc.principal(account), "upn": f"{account}@{DOMAIN}",
                                      "keytab": client_keytabs[account]})
                config.realm = REALM
                config.keytab = self.kdc.workdir / "keytabs" / f"{name.lower()}.keytab"
                short = name.lower()
                for spn in (f"HTTP/{entry.hostname}", f"host/{entry.hostname}", f"HTTP/{short}", f"host/{short}"):
                    self.kdc.add_service(spn, keytab=config.keytab)
                    self.kdc.add_service(spn, keytab=shared_keytab)
            self._issue_client_cert(entry, "ansible")
            entry.machine = Machine(name, config.users, admins=("ansible",),
                                    domain_users=[u["username"] for u in user_info if u["kind"] == "domain"],
                                    reboot_down_s=config.reboot_down_s)
            self.hosts[name] = entry
        if shared_keytab is not None and self.hosts:
            # gssapi acceptors without an explicit keytab find every host's keys here.
            self._set_env("KRB5_KTNAME", f"FILE:{shared_keytab}")

    def _issue_client_cert(self, entry: _HostEntry, username: str) -> None:
        """A client certificate mapped to username on this host (certificate auth)."""
        if self.ca is None:
            return
        assert self.workdir is not None
        cn = f"{username}-{entry.config.name.lower()}"
        upn = f"{username}@localhost"
        cert, key, thumbprint = self.ca.issue_client(cn, upn)
        folder = self.workdir / "client-certs"
        folder.mkdir(mode=0o700, exist_ok=True)
        cert_path = _as_file(cert, folder / f"{cn}.pem")
        key_path = _as_file(key, folder / f"{cn}.key")
        entry.config.cert_map[str(thumbprint).lower()] = username
        entry.client_certs.append({"username": username, "cert": str(cert_path), "key": str(key_path),
                                   "thumbprint": str(thumbprint).lower(), "upn": upn})

    def _start_host(self, entry: _HostEntry) -> None:
        try:
            from tests.lab._host import WinRMHost
            from tests.lab._wsman import WSManService
        except ImportError as e:
            raise LabError("the simulated host (tests/lab/_host.py, _wsman.py) is not available; "
                           "start the lab with hosts=0 (--hosts 0)") from e
        entry.service = WSManService(entry.config, entry.counters, entry.faults)
        entry.service.machine = entry.machine
        self._on_stop(f"{entry.config.name} WS-Management service", entry.service.close)
        entry.host = WinRMHost(entry.config, ca=self.ca, service=entry.service,
                               counters=entry.counters, faults=entry.faults)
        entry.host.start()
        self._on_stop(f"host {entry.config.name}", entry.host.stop)
        if entry.machine is not None:
            entry.machine.ip_address = entry.config.address
            entry.machine.winrm_listeners = _listeners(entry)
        if entry.machine is not None:
            entry.machine.on_power(_power_listener(entry))
            self._on_stop(f"{entry.config.name} power timers", entry.machine.close)

    def _host_ports(self, entry: _HostEntry) -> dict[str, int]:
        info = entry.host.describe() if entry.host is not None else {}
        http = info.get("http_port") or entry.config.http_port
        https = info.get("https_port") or entry.config.https_port
        return {"http": int(http or 0), "https": int(https or 0)}

    def _start_relays(self, entry: _HostEntry) -> None:
        for kind, port in self._host_ports(entry).items():
            if not port:
                continue
            relay = LatencyRelay((entry.config.address, port), rtt_ms=self.options.rtt_ms,
                                 name=f"relay-{entry.config.name.lower()}-{kind}")
            relay.start()
            self._on_stop(relay.name, relay.stop)
            entry.relays[kind] = relay

    # proxies -------------------------------------------------------------
    def _connect_ports(self) -> list[int]:
        """Ports proxies may CONNECT to: every host port and every relay port."""
        ports: set[int] = set()
        for entry in self.hosts.values():
            ports.update(p for p in self._host_ports(entry).values() if p)
            ports.update(r.port for r in entry.relays.values())
        return sorted(ports)

    def _start_proxies(self) -> None:
        assert self.workdir is not None
        opts = self.options
        variants: list[tuple[str, str, bool]] = [(squid_key(s), s, False) for s in opts.squid_auth]
        if opts.squid_https:
            variants.append(("squid_https", "basic", True))
        proxy_keytab: pathlib.Path | None = None
        if any(scheme == "negotiate" for _, scheme, _ in variants):
            assert self.kdc is not None
            proxy_keytab = self.kdc.add_service(f"HTTP/{PROXY_HOSTNAME}")
        for key, scheme, https in variants:
            try:
                from tests.lab._squid import SquidProxy
            except ImportError as e:
                raise LabError("Squid support (tests/lab/_squid.py) is not available; "
                               "start the lab without Squid (--squid-auth '')") from e
            # Proxy accounts are not host accounts (R2): their own names and passwords.
            username = None if scheme == "none" else f"proxy-{'https' if https else scheme}"
            password = None if scheme == "none" else _password()
            users = {username: password} if username and password else {}
            kwargs: dict[str, t.Any] = {"auth": None if scheme == "none" else scheme, "users": users,
                                        "allowed_connect_ports": self._connect_ports(),
                                        "https_port": https, "ca": self.ca if https else None}
            if scheme == "negotiate" and self.kdc is not None and username and password:
                self.kdc.add_user(username, password)
                kwargs.update(keytab=proxy_keytab, realm=REALM, service_name=f"HTTP/{PROXY_HOSTNAME}",
                              krb5_config=self.kdc.krb5_config)
            proxy = SquidProxy(self.workdir / key, **kwargs)
            self._on_stop(key, proxy.stop, parallel=True)
            proxy.start()
            self.proxies[key] = _ProxyEntry("squid", proxy, scheme, username, password)
        if opts.tinyproxy:
            try:
                from tests.lab._tinyproxy import TinyProxy
            except ImportError as e:
                raise LabError("tinyproxy support (tests/lab/_tinyproxy.py) is not available; "
                               "start the lab with --no-tinyproxy") from e
            tiny = TinyProxy(self.workdir / "tinyproxy", allowed_connect_ports=self._connect_ports())
            self._on_stop("tinyproxy", tiny.stop, parallel=True)
            tiny.start()
            self.proxies["tinyproxy"] = _ProxyEntry("tinyproxy", tiny)
        if opts.socks:
            self._start_socks()
        if opts.mitm:
            try:
                from tests.lab._mitm import InspectingProxy
            except ImportError as e:
                raise LabError("the inspecting proxy (tests/lab/_mitm.py) is not available") from e
            mitm = InspectingProxy(self.workdir / "mitm", mode="regular", tls_passthrough=True)
            self._on_stop("mitm", mitm.stop, parallel=True)
            mitm.start()
            self.proxies["mitm"] = _ProxyEntry("mitm", mitm)

    def _start_socks(self) -> None:
        """A SOCKS5 proxy without a password and one with its own account (R2: not a host account)."""
        assert self.workdir is not None
        from tests.lab._socks import MicroSocks

        for key, username in (("socks", None), ("socks_auth", "proxy-socks")):
            password = _password() if username else None
            proxy = MicroSocks(self.workdir / key, username=username, password=password)
            self._on_stop(key, proxy.stop, parallel=True)
            proxy.start()
            self.proxies[key] = _ProxyEntry("socks", proxy, "password" if username else None, username, password)

    # description ---------------------------------------------------------
    def describe(self) -> dict[str, t.Any]:
        """The lab as JSON-ready data (docs/lab.md, "The JSON"): everything a client needs to connect."""
        with self._lock:
            hosts = [self._describe_host(e) for e in self.hosts.values()]
            proxies = {key: self._describe_proxy(p) for key, p in self.proxies.items()}
            relays = [dict(r.describe(), host=e.config.name, kind=kind)
                      for e in self.hosts.values() for kind, r in e.relays.items()]
            return {
                "workdir": str(self.workdir) if self.workdir else None,
                "ca_cert": str(self.ca.cert_path) if self.ca is not None else None,
                "control_url": self.control.url if self.control is not None else None,
                "hosts": hosts,
                "proxies": proxies,
                "relays": relays,
                "rtt_ms": self.options.rtt_ms,
                "kdc": self._describe_kdc(),
                "hostnames": {e.hostname: e.config.address for e in self.hosts.values()}
                | ({PROXY_HOSTNAME: "127.0.0.1"} if any(p.auth == "negotiate" for p in self.proxies.values())
                   else {}),
                "pid": os.getpid(),
            }

    def _describe_host(self, entry: _HostEntry) -> dict[str, t.Any]:
        extra = dict(entry.host.describe()) if entry.host is not None else {}
        ports = self._host_ports(entry)
        addr = entry.config.address
        desc: dict[str, t.Any] = {
            **extra,
            "name": entry.config.name,
            "address": addr,
            "hostname": entry.hostname,
            "http_port": ports["http"],
            "https_port": ports["https"],
            "http_url": f"http://{addr}:{ports['http']}/wsman",
            "https_url": f"https://{addr}:{ports['https']}/wsman",
            "users": [dict(u) for u in entry.user_info],
            "client_certs": [dict(c) for c in entry.client_certs],
            "auth": list(entry.config.auth),
            "root": str(entry.config.root) if entry.config.root else None,
            "configurations": ["Microsoft.PowerShell", *entry.config.extra_configurations],
        }
        quotas = _limits.limits(entry.config)
        desc["limits"] = quotas["limits"]
        desc["language_mode"] = entry.config.language_mode
        desc["configuration_limits"] = quotas["configurations"]
        if entry.config.realm:
            desc["realm"] = entry.config.realm
            desc["spns"] = [f"HTTP/{entry.hostname}", f"host/{entry.hostname}"]
        if entry.relays:
            desc["relay"] = {f"{kind}_port": r.port for kind, r in entry.relays.items()}
            desc["relay"]["rtt_ms"] = next(iter(entry.relays.values())).rtt_ms
            desc["relay"]["http_url"] = f"http://{addr}:{entry.relays['http'].port}/wsman" \
                if "http" in entry.relays else None
            desc["relay"]["https_url"] = f"https://{addr}:{entry.relays['https'].port}/wsman" \
                if "https" in entry.relays else None
        return desc

    def _describe_proxy(self, p: _ProxyEntry) -> dict[str, t.Any]:
        own = getattr(p.obj, "describe", None)
        desc: dict[str, t.Any] = {k: v for k, v in (own() if callable(own) else {}).items() if v is not None}
        desc.update(kind=p.kind, url=_value(p.obj, "url"))
        if p.kind == "squid":
            desc["auth"] = p.auth
            if p.username:
                desc.update(username=p.username, password=p.password)
            https_url = _value(p.obj, "https_url")
            if https_url:
                desc["https_url"] = https_url
            if p.auth == "negotiate":
                desc.update(hostname=PROXY_HOSTNAME, spn=f"HTTP/{PROXY_HOSTNAME}",
                            principal=self.kdc.principal(p.username or "") if self.kdc else None)
        log_path = getattr(p.obj, "access_log_path", None)
        if log_path:
            desc["access_log"] = str(log_path)
        return desc

    def _describe_kdc(self) -> dict[str, t.Any] | None:
        if self.kdc is None:
            return None
        return dict(self.kdc.describe(), hostnames=sorted(e.hostname for e in self.hosts.values()))

    # the LabClient API, in process ---------------------------------------
    def _host(self, name: str) -> _HostEntry:
        for key, entry in self.hosts.items():
            if key.lower() == name.lower() or entry.hostname == name.lower():
                return entry
        raise UnknownComponent(f"no host {name!r} in this lab (hosts: {', '.join(self.hosts) or 'none'})")

    def _proxy(self, name: str) -> _ProxyEntry:
        try:
            return self.proxies[name]
        except KeyError:
            raise UnknownComponent(
                f"no proxy {name!r} in this lab (proxies: {', '.join(self.proxies) or 'none'})") from None

    def host_counters(self, host: str) -> dict[str, int]:
        """The host's counters (tests/lab/_counters.py names) as a dict."""
        return self._host(host).counters.snapshot()

    def host_log(self, host: str) -> list[dict[str, t.Any]]:
        """The host's request log, oldest first."""
        return self._host(host).counters.log()

    def internal_errors(self, since: int = 0) -> list[dict[str, t.Any]]:
        """The lab's own exceptions (this process's labs) after the first `since` (tests/lab/_internal.py)."""
        return _internal.internal_errors(since)

    def reset_host(self, host: str) -> None:
        """Zero the host's counters and clear its request log."""
        self._host(host).counters.reset()

    def set_faults(self, host: str, **settings: t.Any) -> dict[str, t.Any]:
        """Change fault switches (tests/lab/_faults.py FaultSettings fields); return them all."""
        faults = self._host(host).faults
        faults.update(**settings)
        return faults.as_dict()

    def get_faults(self, host: str) -> dict[str, t.Any]:
        return self._host(host).faults.as_dict()

    def clear_faults(self, host: str) -> dict[str, t.Any]:
        """Turn every fault switch off; return them all."""
        faults = self._host(host).faults
        faults.clear()
        return faults.as_dict()

    def wait_held(self, host: str, timeout_s: float = 60.0) -> list[dict[str, t.Any]]:
        """Wait until the host holds a request (hold_on_action_nth); return what it holds."""
        faults = self._host(host).faults
        held = faults.wait_held(float(timeout_s))
        if not held:
            raise LabError(f"host {host} held no request within {timeout_s:g} s "
                           f"(hold_on_action_nth={faults.get('hold_on_action_nth')})")
        return held

    def held(self, host: str) -> list[dict[str, t.Any]]:
        """The requests the host holds right now (hold_on_action_nth)."""
        return self._host(host).faults.held()

    def release_held(self, host: str) -> int:
        """Let the requests the host holds go on (they are handled and answered); return how many."""
        return self._host(host).faults.release()

    def get_limits(self, host: str) -> dict[str, t.Any]:
        """The host's quotas by Windows name ({"limits": ..., "configurations": ...}; None is off)."""
        return _limits.limits(self._host(host).config)

    def set_limits(self, host: str, configuration: str | None = None, **values: float | None) -> dict[str, t.Any]:
        """Change quotas by Windows name (None: off); `configuration` scopes the PowerShell ones. Applies to
        requests, shells and commands from now on; returns them all."""
        entry = self._host(host)
        _limits.set_limits(entry.config, configuration, **values)
        return _limits.limits(entry.config)

    def set_language_mode(self, host: str, language_mode: str) -> str:
        """The language mode of the host's PowerShell from the next shell on (FullLanguage or ConstrainedLanguage,
        what a WDAC/AppLocker lockdown policy imposes); returns it."""
        if language_mode not in ("FullLanguage", "ConstrainedLanguage"):
            raise ValueError(f"language_mode must be FullLanguage or ConstrainedLanguage, not {language_mode!r}")
        self._host(host).config.language_mode = language_mode
        return language_mode

    def expire_shells(self, host: str) -> int:
        """Expire every shell of the host now, as its idle timeout would; return how many."""
        entry = self._host(host)
        if entry.service is None:
            raise LabError(f"host {host} has no WS-Management service running")
        return int(entry.service.expire_shells())

    def host_state(self, host: str) -> dict[str, t.Any]:
        """What the host holds now: shells, Runspace Pools, running pipelines, operations in flight by user."""
        entry = self._host(host)
        if entry.service is None:
            raise LabError(f"host {host} has no WS-Management service running")
        return t.cast(dict[str, t.Any], entry.service.state())

    def drop_connections(self, host: str) -> int:
        """Fault: the host resets every open client connection now; return how many."""
        entry = self._host(host)
        if entry.host is None:
            raise LabError(f"host {host} is not running")
        return int(entry.host.drop_connections())

    def _machine(self, host: str) -> Machine:
        entry = self._host(host)
        if entry.machine is None:
            raise LabError(f"host {host} has no machine state")
        return entry.machine

    def host_machine(self, host: str) -> dict[str, t.Any]:
        """The host's OS state: power, boot time (ISO and FILETIME), uptime, boots, pending shutdown, accounts."""
        return self._machine(host).describe()

    def reboot_host(self, host: str, down_s: float | None = -1.0) -> dict[str, t.Any]:
        """Restart the host now: down for down_s seconds (-1: its reboot_down_s; None: until boot_host())."""
        machine = self._machine(host)
        try:
            machine.reboot(down_s)
        except RuntimeError as e:
            raise LabError(str(e)) from None
        return machine.describe()

    def boot_host(self, host: str) -> dict[str, t.Any]:
        """Boot a host that a reboot holds down (reboot_host(down_s=None))."""
        machine = self._machine(host)
        machine.boot()
        return machine.describe()

    def host_services(self, host: str, name: str | None = None) -> t.Any:
        """The host's service table (or one service by name or display name), with each service's dependents."""
        from tests.lab._machine import Win32Error

        try:
            return self._machine(host).services.snapshot(name)
        except Win32Error as e:
            raise UnknownComponent(f"host {host}: no service {name!r} ({e.win32_message})") from None

    def proxy_counters(self, proxy: str) -> dict[str, t.Any]:
        """The proxy's counters (what it reports; Squid: from its access log)."""
        obj = self._proxy(proxy).obj
        counters = getattr(obj, "counters", None)
        return dict(counters()) if callable(counters) else {}

    def restart_proxy(self, proxy: str) -> None:
        """Restart the proxy process (drops every connection it holds; same port and settings)."""
        obj = self._proxy(proxy).obj
        restart = getattr(obj, "restart", None)
        if callable(restart):
            restart()
        else:
            obj.stop()
            obj.start()

    def proxy_recorded(self, proxy: str) -> bytes:
        """Every byte the inspecting proxy relayed, both directions, as it recorded them."""
        obj = self._proxy(proxy).obj
        recorded = getattr(obj, "recorded_bytes", None)
        if not callable(recorded):
            raise LabError(f"proxy {proxy!r} does not record what it relays (only the inspecting proxy does)")
        return bytes(recorded())

    def proxy_access_log(self, proxy: str) -> str:
        obj = self._proxy(proxy).obj
        access_log = getattr(obj, "access_log", None)
        if not callable(access_log):
            return ""
        value = access_log()
        return value if isinstance(value, str) else "\n".join(map(str, value))

    def set_rtt(self, rtt_ms: float, host: str | None = None) -> float:
        """Change the round-trip time the relays add (all hosts, or one); applies to bytes read from now on."""
        if rtt_ms < 0:
            raise ValueError("rtt_ms must not be negative")
        entries = [self._host(host)] if host else list(self.hosts.values())
        relays = [r for e in entries for r in e.relays.values()]
        if not relays:
            raise LabError("this lab has no latency relays (start it with relays=True, --relays or --rtt-ms)")
        for relay in relays:
            relay.rtt_ms = float(rtt_ms)
        if host is None:
            self.options.rtt_ms = float(rtt_ms)
        return float(rtt_ms)

    def relay_counters(self, host: str) -> dict[str, dict[str, int]]:
        """Counters of the latency relays in front of host, by kind (http, https)."""
        return {kind: r.counters() for kind, r in self._host(host).relays.items()}


def _power_listener(entry: _HostEntry) -> t.Callable[[str], None]:
    """What a restart does to the host's network side: its processes and sockets end, then it listens again."""
    def on_power(event: str) -> None:
        if event == "down":
            entry.host.power_off()
            entry.service.power_off()
            entry.counters.incr("reboots")
        elif event == "up":
            entry.host.power_on()
    return on_power


def _stop_logged(what: str, stop: t.Callable[[], t.Any]) -> None:
    try:
        stop()
    except Exception:
        log.exception("stopping %s failed", what)


def _listeners(entry: _HostEntry) -> list[dict[str, t.Any]]:
    """The host's WinRM listeners as its WSMan: drive lists them (the HTTPS one with its certificate)."""
    config = entry.config
    found: list[dict[str, t.Any]] = [{"transport": "HTTP", "port": config.http_port, "hostname": "",
                                      "listening_on": config.address}]
    https: dict[str, t.Any] = {"transport": "HTTPS", "port": config.https_port, "hostname": config.name.lower(),
                               "listening_on": config.address}
    cert_path = getattr(entry.host, "cert_path", None)
    if cert_path is not None:
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes
        except ImportError:  # without it the listener is listed without its certificate details
            pass
        else:
            cert = x509.load_pem_x509_certificate(pathlib.Path(cert_path).read_bytes())
            https.update(thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),
                         subject=cert.subject.rfc4514_string().replace(",", ", "),
                         issuer=cert.issuer.rfc4514_string().replace(",", ", "),
                         not_after=cert.not_valid_after_utc, not_before=cert.not_valid_before_utc)
    found.append(https)
    return found


def _as_file(value: t.Any, path: pathlib.Path) -> pathlib.Path:
    """A certificate or key the CA returned as a path or as PEM data, as a file path."""
    if isinstance(value, (str, os.PathLike)) and pathlib.Path(value).exists():
        return pathlib.Path(value)
    if hasattr(value, "public_bytes") or hasattr(value, "private_bytes"):
        from cryptography.hazmat.primitives import serialization

        if hasattr(value, "private_bytes"):
            data = value.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        else:
            data = value.public_bytes(serialization.Encoding.PEM)
    else:
        data = value.encode() if isinstance(value, str) else bytes(value)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path

