"""A throwaway MIT Kerberos realm for the lab (krb5kdc on a free loopback port).

The realm lives entirely under its work directory: its own kdc.conf, krb5.conf,
database, stash, keytabs and credential cache. Nothing touches /etc/krb5.conf.
Host names such as ``win-lab1.lab.test`` are never resolved: the krb5.conf turns
off DNS lookups and canonicalisation, so a client builds the service principal
from the name it is given (the plugin's hostname override) while it connects
to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_ADMIN_TIMEOUT_S = 20.0
# stderr lines of kadmin.local that are not errors
_KADMIN_CHATTER = ("Authenticating as principal", "No policy specified", "Enter password", "Re-enter password")


class KDCError(RuntimeError):
    """The lab KDC could not be set up or started."""


def _free_udp_tcp_port(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """Return a port free for both TCP and UDP on host (the KDC listens on both)."""
    for _ in range(attempts):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise KDCError(f"no port free for both TCP and UDP on {host} after {attempts} attempts")


def _find_tool(name: str) -> str:
    """Locate an MIT Kerberos tool; the Debian packages put the server ones in /usr/sbin."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise KDCError(
            f"{name} not found: install the Debian packages krb5-kdc, krb5-admin-server and krb5-user"
        )
    return found


class LabKDC:
    """A throwaway MIT Kerberos realm on loopback.

    Usage::

        kdc = LabKDC(workdir)
        kdc.start()
        kdc.add_user("ansible", password)
        keytab = kdc.add_service("HTTP/win-lab1.lab.test")
        env = kdc.env()            # KRB5_CONFIG and KRB5CCNAME for a client process
        kdc.stop()
    """

    def __init__(self, workdir: str | os.PathLike[str], realm: str = "LAB.TEST", *,
                 domain: str = "lab.test", address: str = "127.0.0.1") -> None:
        self.workdir = pathlib.Path(workdir)
        self.realm = realm.upper()
        self.domain = domain.lower()
        self.address = address
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}
        self._services: dict[str, pathlib.Path] = {}
        self._log_handle = None

    # paths ---------------------------------------------------------------
    @property
    def krb5_config(self) -> pathlib.Path:
        """The krb5.conf a client of this realm uses (pass it as KRB5_CONFIG)."""
        return self.workdir / "krb5.conf"

    @property
    def kdc_config(self) -> pathlib.Path:
        return self.workdir / "kdc.conf"

    @property
    def ccache(self) -> pathlib.Path:
        """The per-lab credential cache clients of this realm share."""
        return self.workdir / "ccache"

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / "kdc.log"

    def keytab_path(self, principal: str) -> pathlib.Path:
        safe = principal.replace("/", "_").replace("@", "_")
        return self.workdir / "keytabs" / f"{safe}.keytab"

    def principal(self, name: str) -> str:
        """The fully qualified principal name of name in this realm."""
        return name if "@" in name else f"{name}@{self.realm}"

    # lifecycle -----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Create the realm's database and start krb5kdc; returns once it accepts TCP connections."""
        if self.running:
            return
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.workdir / "keytabs").mkdir(mode=0o700, exist_ok=True)
        self.port = _free_udp_tcp_port(self.address)
        self._write_configs()
        if not (self.workdir / "principal").exists():
            # The master password is random and only ever written to kdb5_util's stdin.
            master = secrets.token_urlsafe(24)
            self._run([_find_tool("kdb5_util"), "create", "-s", "-r", self.realm],
                      stdin=f"{master}\n{master}\n", secrets_=(master,))
            del master
        self._log_handle = open(self.workdir / "krb5kdc.stderr", "ab")
        self._proc = subprocess.Popen(
            [_find_tool("krb5kdc"), "-n", "-r", self.realm, "-P", str(self.workdir / "krb5kdc.pid")],
            env=self._tool_env(), stdin=subprocess.DEVNULL, stdout=self._log_handle,
            stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("lab KDC for realm %s listening on %s:%d (tcp+udp)", self.realm, self.address, self.port)

    def stop(self) -> None:
        """Stop krb5kdc (the realm's files stay in the work directory)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> LabKDC:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # principals ----------------------------------------------------------
    def add_user(self, name: str, password: str) -> str:
        """Create (or re-key) a user principal with password; returns the principal name."""
        principal = self.principal(name)
        # The password goes to kadmin.local's password prompt on stdin: never argv, never echoed.
        prompt = f"{password}\n{password}\n"
        out = self._kadmin(f"addprinc {principal}\n{prompt}", secrets_=(password,), tolerate=("already exists",))
        if "already exists" in out:
            self._kadmin(f"cpw {principal}\n{prompt}", secrets_=(password,))
        self._users[principal] = name
        return principal

    def add_service(self, principal: str, keytab: str | os.PathLike[str] | None = None) -> pathlib.Path:
        """Create a service principal with a random key and export it to a keytab; return the keytab path.

        Several services may share one keytab (pass the same keytab path), as a
        Windows host holds HTTP/ and host/ keys together.
        """
        full = self.principal(principal)
        path = pathlib.Path(keytab) if keytab else self.keytab_path(principal)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if full not in self._services:
            self._kadmin(f"addprinc -randkey {full}\n")
        else:
            log.debug("service %s exists; exporting its keys again", full)
        # -norandkey keeps the key already issued, so a second keytab stays valid with the first.
        self._kadmin(f"ktadd -norandkey -k {path} {full}\n")
        os.chmod(path, 0o600)
        self._services[full] = path
        return path

    def export_keytab(self, name: str, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write a client keytab with a user's current keys (no new key: the password keeps working)."""
        principal = self.principal(name)
        target = pathlib.Path(path)
        self._kadmin(f"ktadd -norandkey -k {target} {principal}\n")
        os.chmod(target, 0o600)
        return target

    def kinit(self, name: str, password: str) -> None:
        """Fill the per-lab credential cache with a TGT for name (password via stdin)."""
        principal = self.principal(name)
        self._run([_find_tool("kinit"), principal], stdin=f"{password}\n", secrets_=(password,),
                  env=self.env())

    def env(self) -> dict[str, str]:
        """Environment a client process of this realm needs: config and credential cache paths, no secrets."""
        return {
            "KRB5_CONFIG": str(self.krb5_config),
            "KRB5CCNAME": f"FILE:{self.ccache}",
        }

    def describe(self) -> dict[str, object]:
        """What a test or a user needs to know about the realm (no secrets)."""
        return {
            "realm": self.realm,
            "kdc": f"{self.address}:{self.port}",
            "address": self.address,
            "port": self.port,
            "krb5_config": str(self.krb5_config),
            "ccache": f"FILE:{self.ccache}",
            "env": self.env(),
            "domain": self.domain,
            "principals": sorted(self._users),
            "services": {name: str(path) for name, path in sorted(self._services.items())},
            "log": str(self.log_path),
        }

    # internals -----------------------------------------------------------
    def _write_configs(self) -> None:
        w = self.workdir
        endpoint = f"{self.address}:{self.port}"
        (w / "kadm5.acl").write_text(f"*/admin@{self.realm} *\n")
        self.kdc_config.write_text(
            "[kdcdefaults]\n"
            f" kdc_listen = {endpoint}\n"
            f" kdc_tcp_listen = {endpoint}\n"
            "\n[realms]\n"
            f" {self.realm} = {{\n"
            f"  database_name = {w / 'principal'}\n"
            f"  key_stash_file = {w / 'stash'}\n"
            f"  acl_file = {w / 'kadm5.acl'}\n"
            f"  kdc_listen = {endpoint}\n"
            f"  kdc_tcp_listen = {endpoint}\n"
            "  max_life = 10h 0m 0s\n"
            "  max_renewable_life = 7d 0h 0m 0s\n"
            # Windows issues AES and RC4 keys; AES is what every modern client uses.
            "  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
            " }\n"
            "\n[logging]\n"
            f" kdc = FILE:{self.log_path}\n"
            f" admin_server = FILE:{w / 'kadmin.log'}\n"
            f" default = FILE:{w / 'krb5lib.log'}\n"
        )
        self.krb5_config.write_text(
            "[libdefaults]\n"
            f" default_realm = {self.realm}\n"
            " dns_lookup_kdc = false\n"
            " dns_lookup_realm = false\n"
            " rdns = false\n"
            " dns_canonicalize_hostname = false\n"
            " forwardable = true\n"
            " udp_preference_limit = 0\n"
            " ticket_lifetime = 10h\n"
            f" default_ccache_name = FILE:{self.ccache}\n"
            "\n[realms]\n"
            f" {self.realm} = {{\n"
            f"  kdc = {endpoint}\n"
            f"  admin_server = {endpoint}\n"
            " }\n"
            "\n[domain_realm]\n"
            f" .{self.domain} = {self.realm}\n"
            f" {self.domain} = {self.realm}\n"
        )

    def _tool_env(self) -> dict[str, str]:
        # A minimal environment: the tools get paths, never anything inherited that might be secret.
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "KRB5_CONFIG": str(self.krb5_config),
            "KRB5_KDC_PROFILE": str(self.kdc_config),
        }

    def _kadmin(self, commands: str, secrets_: tuple[str, ...] = (), tolerate: tuple[str, ...] = ()) -> str:
        out = self._run([_find_tool("kadmin.local"), "-r", self.realm], stdin=commands, secrets_=secrets_)
        # kadmin.local exits 0 even when a request fails; its complaints on stderr say so.
        problems = [ln for ln in out.splitlines()
                    if ln.strip() and not ln.startswith(_KADMIN_CHATTER) and not any(t in ln for t in tolerate)]
        if problems:
            raise KDCError(f"kadmin.local refused: {'; '.join(problems)}")
        return out

    def _run(self, argv: list[str], *, stdin: str, secrets_: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> str:
        """Run a Kerberos tool; return its stderr with secrets masked (stdout only echoes prompts)."""
        run_env = self._tool_env()
        if env:
            run_env.update(env)
        try:
            done = subprocess.run(argv, input=stdin.encode(), env=run_env, cwd=self.workdir,
                                  capture_output=True, timeout=_ADMIN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise KDCError(f"{pathlib.Path(argv[0]).name} did not finish in {_ADMIN_TIMEOUT_S:.0f} s") from None
        output = done.stderr.decode(errors="replace")
        for secret in secrets_:
            output = output.replace(secret, "********")
        if done.returncode != 0:
            raise KDCError(f"{pathlib.Path(argv[0]).name} failed (rc={done.returncode}): {output.strip()}")
        return output

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                tail = (self.workdir / "krb5kdc.stderr").read_text(errors="replace")[-2000:]
                raise KDCError(f"krb5kdc exited during start-up: {tail.strip()}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise KDCError(f"krb5kdc did not listen on {self.address}:{self.port} within {_START_TIMEOUT_S:.0f} s")


def default_workdir() -> pathlib.Path:
    """A fresh private directory for a realm started on its own."""
    return pathlib.Path(tempfile.mkdtemp(prefix="lab-kdc-"))
