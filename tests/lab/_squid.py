"""A real Squid in front of the lab hosts: its own squid.conf, port, logs, and proxy auth that checks credentials.

Basic uses Squid's basic_ncsa_auth on a generated htpasswd (SHA-512 crypt),
Digest its digest_file_auth on generated HA1 lines, NTLM and Negotiate the
pyspnego-based helpers in _proxy_auth_helpers (Squid's ntlm_fake_auth accepts
anything). Squid refuses to run as root, so when the lab runs as root Squid
drops to ``proxy`` and its files live where that user can read them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import sys
import typing

from tests.lab import _procs
from tests.lab import _proxy_auth_helpers as helpers

if typing.TYPE_CHECKING:
    from tests.lab._certs import LabCA

log = logging.getLogger(__name__)

SQUID = "/usr/sbin/squid"
SQUID_HELPERS = pathlib.Path("/usr/lib/squid")
SQUID_USER = "proxy"  # Debian's squid package is built --with-default-user=proxy
AUTH_SCHEMES = ("basic", "digest", "ntlm", "negotiate")
REALM = "lab-squid"
# One space-separated line per request; %[un escapes the user name, so no field holds a space.
_LOGFORMAT = "%ts.%03tu %tr %>a %>p %Ss %>Hs %<st %rm %ru %[un %Sh %<a %<lp"
_HELPER_SCRIPT = pathlib.Path(helpers.__file__).resolve()


@dataclasses.dataclass
class ProxyCredentials:
    """A proxy user's name and password (lab test data)."""

    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class AccessLogEntry:
    """One line of the lab's Squid access.log (format _LOGFORMAT)."""

    time: float
    elapsed_ms: int
    client_address: str
    client_port: int
    squid_status: str        # TCP_TUNNEL, TCP_MISS, TCP_DENIED, ...
    http_status: int         # 200, 407, 403, ... (0 when the client went away first)
    bytes_sent: int
    method: str
    url: str
    user: str | None
    hierarchy: str           # HIER_DIRECT, HIER_NONE, ...
    server_address: str | None
    server_local_port: int | None   # Squid's local port of the server connection: identifies it

    @classmethod
    def parse(cls, line: str) -> AccessLogEntry:
        f = line.split(" ")
        if len(f) != 13:
            raise ValueError(f"not a lab access.log line: {line!r}")

        def opt(v: str) -> str | None:
            return None if v in ("-", "") else v

        return cls(
            time=float(f[0]), elapsed_ms=int(f[1]), client_address=f[2], client_port=int(f[3]),
            squid_status=f[4], http_status=int(f[5]), bytes_sent=int(f[6]), method=f[7], url=f[8],
            user=opt(f[9]), hierarchy=f[10], server_address=opt(f[11]),
            server_local_port=int(f[12]) if f[12].isdigit() and f[12] != "0" else None,
        )


class SquidProxy(_procs.ProxyDaemon):
    """One Squid instance on a free loopback port (plus an optional TLS port), started and stopped by tests.

    Usage::

        squid = SquidProxy(tmp_path / "squid", auth="ntlm", users={"proxyuser": pw},
                           allowed_connect_ports=[host.https_port])
        squid.start()      # returns once the port accepts connections
        ... squid.url ...  # http://127.0.0.1:PORT
        squid.stop()
    """

    name = "squid"
    daemon_log = "squid.stderr"
    run_dir_name = "squid-run"

    def __init__(self, workdir: pathlib.Path, *, auth: str | None = None,
                 users: dict[str, str] | None = None, allowed_connect_ports: list[int] | None = None,
                 https_port: bool = False, ca: LabCA | None = None,
                 keytab: pathlib.Path | None = None, realm: str | None = None,
                 service_name: str | None = None, krb5_config: pathlib.Path | None = None) -> None:
        if auth is not None and auth not in AUTH_SCHEMES:
            raise ValueError(f"auth must be one of {AUTH_SCHEMES} or None, not {auth!r}")
        if auth is not None and not users and auth != "negotiate":
            raise ValueError(f"auth={auth!r} needs users to check credentials against")
        if auth == "negotiate" and not (keytab or users):
            raise ValueError("auth='negotiate' needs a keytab (Kerberos) and/or users (NTLM inside Negotiate)")
        if https_port and ca is None:
            raise ValueError("https_port=True needs ca (a LabCA) to issue the proxy's certificate")
        super().__init__(workdir, account=_procs.unprivileged_account(SQUID_USER))
        self.auth = auth
        self.users = dict(users or {})
        self.allowed_connect_ports = list(allowed_connect_ports) if allowed_connect_ports is not None else None
        self.https_port_enabled = https_port
        self.ca = ca
        self.keytab = pathlib.Path(keytab) if keytab else None
        self.realm = realm
        self.service_name = service_name
        self.krb5_config = pathlib.Path(krb5_config) if krb5_config else None
        self.tls_port = 0
        self._helper_server: _procs.Daemon | None = None

    # ------------------------------------------------------------------ public
    @property
    def https_url(self) -> str | None:
        """The TLS proxy URL (https://127.0.0.1:PORT) when https_port=True."""
        return f"https://{self.host}:{self.tls_port}" if self.https_port_enabled else None

    @property
    def credentials(self) -> list[ProxyCredentials]:
        """The users Squid accepts, as credentials objects."""
        return [ProxyCredentials(u, p) for u, p in self.users.items()]

    @property
    def access_log_path(self) -> pathlib.Path:
        return self._rundir() / "access.log"

    @property
    def cache_log_path(self) -> pathlib.Path:
        return self._rundir() / "cache.log"

    def access_log(self) -> list[str]:
        """The lines of Squid's access.log so far (format: see AccessLogEntry)."""
        try:
            return [ln for ln in self.access_log_path.read_text().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def access_entries(self) -> list[AccessLogEntry]:
        """access_log() parsed. Squid logs a CONNECT tunnel when it closes, not when it opens."""
        return [AccessLogEntry.parse(ln) for ln in self.access_log()]

    def counters(self) -> dict[str, typing.Any]:
        """Counts derived from the access log: requests, CONNECTs, 407s, by method, status, user, connections.

        by_user counts only requests that passed authentication.
        """
        entries = self.access_entries()
        by_method: dict[str, int] = {}
        by_status: dict[int, int] = {}
        by_user: dict[str, int] = {}
        for e in entries:
            by_method[e.method] = by_method.get(e.method, 0) + 1
            by_status[e.http_status] = by_status.get(e.http_status, 0) + 1
            if e.user and e.http_status != 407:  # a refused attempt is logged with the name it tried
                by_user[e.user] = by_user.get(e.user, 0) + 1
        return {
            "requests": len(entries),
            "connects": by_method.get("CONNECT", 0),
            "status_407": by_status.get(407, 0),
            "denied": sum(1 for e in entries if e.squid_status.startswith("TCP_DENIED")),
            "by_method": by_method,
            "by_status": by_status,
            "by_user": by_user,
            "client_connections": len({(e.client_address, e.client_port) for e in entries}),
            "server_connections": len({e.server_local_port for e in entries if e.server_local_port}),
        }

    def describe(self) -> dict[str, typing.Any]:
        """What `python -m tests.lab up --json` prints for this proxy (first user's credentials included)."""
        first = next(iter(self.users.items()), (None, None))
        return {"url": self.url, "https_url": self.https_url, "auth": self.auth,
                "username": first[0], "password": first[1]}

    # ----------------------------------------------------------------- private
    def _prepare(self, run: pathlib.Path) -> list[str]:
        """Write squid.conf and the credential files (starting the auth helper server if one is needed)."""
        if self.https_port_enabled and not self.tls_port:
            self.tls_port = _procs.free_port(self.host)
        helper_cmd = self._prepare_auth(run)
        if self.https_port_enabled:
            self._issue_certificate(run)
        conf = self._own_file(run / "squid.conf")
        conf.write_text(self._squid_conf(run, helper_cmd))
        self._own_file(self.access_log_path)
        self._watch_log(self.cache_log_path)
        # -N: foreground, no daemon fork; -n: a service name of our own keeps instances apart
        return [SQUID, "-N", "-n", f"labsquid{self.port}", "-f", str(conf)]

    def _extra_logs(self) -> list[pathlib.Path]:
        return [self.cache_log_path]

    def _ready(self) -> bool:
        # Squid's own "Accepting ... local=IP:PORT" line, not a probe connection: a probe would
        # leave an error:transaction-end-before-headers line in the access log tests count
        text = self._logged_since_start(self.cache_log_path).decode(errors="replace")
        ports = [self.port] + ([self.tls_port] if self.https_port_enabled else [])
        return all(f"local={self.host}:{p} " in text for p in ports)

    def _after_stop(self) -> None:
        self._stop_helper_server()

    def _started_message(self) -> str:
        return f"squid (auth={self.auth}) on {self.url}" + (f" and {self.https_url}" if self.https_port_enabled else "")

    def _prepare_auth(self, run: pathlib.Path) -> str | None:
        """Write the credential file for the scheme and return the helper command line (None: no auth)."""
        if self.auth is None:
            return None
        if self.auth == "basic":
            path = run / "basic.htpasswd"
            helpers.write_htpasswd(path, self.users)
            _procs.give_to(path, self._account)
            return f"{SQUID_HELPERS / 'basic_ncsa_auth'} {path}"
        if self.auth == "digest":
            path = run / "digest.passwd"
            helpers.write_digest_file(path, self.users, REALM)
            _procs.give_to(path, self._account)
            return f"{SQUID_HELPERS / 'digest_file_auth'} -c {path}"
        # ntlm / negotiate: our pyspnego acceptor
        acceptor_args: list[str] = []
        if self.users:
            store = run / f"{self.auth}.users"
            helpers.write_ntlm_store(store, self.users)
            acceptor_args += ["--users", str(store)]
        if self.auth == "negotiate" and self.keytab:
            acceptor_args += ["--keytab", str(self.keytab)]
        if self.auth == "negotiate" and self.krb5_config:
            acceptor_args += ["--krb5-config", str(self.krb5_config)]
        if self._account is None:
            # Squid keeps our uid: it can run the venv python directly; the files stay ours
            return " ".join([sys.executable, str(_HELPER_SCRIPT), self.auth, *acceptor_args])
        return self._start_helper_server(run, acceptor_args)

    def _start_helper_server(self, run: pathlib.Path, acceptor_args: list[str]) -> str:
        """Run the acceptor as us (venv python) on a UNIX socket; Squid's helpers bridge to it."""
        assert self._account is not None and self.auth is not None
        sock = run / f"{self.auth}.sock"
        script = run / "squid_auth_bridge.py"
        shutil.copyfile(_HELPER_SCRIPT, script)  # the proxy user may not reach the repository
        _procs.give_to(script, self._account, 0o600)
        owner = f"{self._account.pw_uid}:{self._account.pw_gid}"
        self._helper_server = _procs.Daemon(
            f"squid-{self.auth}-helper",
            [sys.executable, str(_HELPER_SCRIPT), "serve", "--socket", str(sock), "--socket-owner", owner,
             self.auth, *acceptor_args],
            log_path=run / "helper-server.log", cwd=run,
        )
        self._helper_server.start(lambda: _unix_socket_accepts(sock))
        return f"{_bridge_python(self._account)} -I {script} bridge --socket {sock}"

    def _stop_helper_server(self) -> None:
        if self._helper_server is not None:
            self._helper_server.stop()
            self._helper_server = None

    def _issue_certificate(self, run: pathlib.Path) -> None:
        assert self.ca is not None
        cert, key = self.ca.issue_server("lab-squid", ["localhost"], [self.host])
        for value, name in ((cert, "proxy.crt"), (key, "proxy.key")):
            target = run / name
            if isinstance(value, (bytes, bytearray)):
                target.write_bytes(value)
            elif isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
                target.write_text(value)
            else:
                shutil.copyfile(value, target)
            _procs.give_to(target, self._account, 0o600)

    def _squid_conf(self, run: pathlib.Path, helper_cmd: str | None) -> str:
        lines = [
            "# generated by tests/lab/_squid.py for one lab instance",
            f"http_port {self.host}:{self.port} connection-auth=on",
        ]
        if self.https_port_enabled:
            lines.append(f"https_port {self.host}:{self.tls_port} connection-auth=on "
                         f"tls-cert={run / 'proxy.crt'} tls-key={run / 'proxy.key'}")
        if self._account is not None:
            lines.append(f"cache_effective_user {self._account.pw_name}")
        lines += [
            f"pid_filename {run / 'squid.pid'}",
            f"cache_log {run / 'cache.log'}",
            f"logformat lab {_LOGFORMAT}",
            f"access_log stdio:{run / 'access.log'} lab",
            "logfile_rotate 0",
            f"coredump_dir {run}",
            "cache deny all",
            "cache_mem 0 MB",
            "netdb_filename none",
            # names resolve from /etc/hosts or not at all: no DNS query leaves loopback
            "dns_nameservers 127.0.0.1",
            "pinger_enable off",
            "shutdown_lifetime 0 seconds",
            # R4/R5: keep both sides alive so Squid can pin NTLM/Negotiate server connections to the client's
            "client_persistent_connections on",
            "server_persistent_connections on",
            "httpd_suppress_version_string on",
            "forwarded_for delete",
            "acl lab_clients src 127.0.0.0/8",
            # only loopback destinations: the lab sends traffic nowhere else
            "acl lab_targets dst 127.0.0.0/8",
            "acl CONNECT method CONNECT",
        ]
        if self.allowed_connect_ports is not None:
            ports = " ".join(str(p) for p in self.allowed_connect_ports) or "0"
            lines.append(f"acl lab_connect_ports port {ports}")
            lines.append("http_access deny CONNECT !lab_connect_ports")
        lines += ["http_access deny !lab_clients", "http_access deny !lab_targets"]
        if helper_cmd is not None:
            assert self.auth is not None
            lines += [
                f"auth_param {self.auth} program {helper_cmd}",
                f"auth_param {self.auth} children 4 startup=1 idle=1",
            ]
            if self.auth in ("basic", "digest"):
                lines.append(f"auth_param {self.auth} realm {REALM}")
            if self.auth == "basic":
                lines.append("auth_param basic credentialsttl 5 seconds")
            if self.auth in ("ntlm", "negotiate"):
                lines.append(f"auth_param {self.auth} keep_alive on")
            lines += [
                "acl lab_authenticated proxy_auth REQUIRED",
                "http_access allow lab_authenticated",
            ]
        else:
            lines.append("http_access allow lab_clients")
        lines.append("http_access deny all")
        return "\n".join(lines) + "\n"


def _unix_socket_accepts(path: pathlib.Path) -> bool:
    import socket

    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _bridge_python(account: typing.Any) -> str:
    """A python3 the unprivileged account can execute (the venv's, if reachable, else the system's)."""
    gids = {account.pw_gid, *os.getgrouplist(account.pw_name, account.pw_gid)}
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        path = pathlib.Path(candidate)
        if path.exists() and _procs.user_can_traverse(path.parent, account.pw_uid, gids) \
                and os.stat(path).st_mode & 0o001:
            return str(path)
    raise RuntimeError(f"no python3 that user {account.pw_name} can execute for Squid's auth helper bridge; "
                       "install Debian's python3 or run the lab as a non-root user")
