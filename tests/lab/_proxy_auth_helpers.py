"""Squid proxy-authentication helpers that really check credentials, and the files the bundled ones read.

Squid's bundled ``ntlm_fake_auth`` accepts any NTLM message, and its Kerberos
helper cannot take NTLM inside Negotiate, so NTLM and Negotiate go through the
helpers here, built on pyspnego's acceptor. They speak Squid's stateful helper
protocol by hand (a line protocol no library implements)::

    squid -> helper   YR <base64 token>     first leg of a new handshake
    squid -> helper   KK <base64 token>     later leg of the same handshake
    helper -> squid   TT <base64 token>     send this challenge, keep the helper for this client
    helper -> squid   OK user=<name>        NTLM: authenticated (the value is %-escaped)
    helper -> squid   AF <b64 token|=> <name>   Negotiate: authenticated (Squid insists on a token)
    helper -> squid   ERR message=<text>    wrong credentials (Squid answers 407)
    helper -> squid   BH message=<text>     broken request / helper trouble

Squid runs its helpers as its unprivileged ``cache_effective_user``. When the
tests run as root, that user cannot execute the project's ``.venv`` python
(it lives under /root), so the acceptor then runs in a helper *server* under
the venv python, and Squid runs a stdlib-only *bridge* (this same file, under
the system python) that relays each helper line over a UNIX socket. Outside
root the helper runs directly under the venv python.

Run as a script::

    python _proxy_auth_helpers.py ntlm --users FILE
    python _proxy_auth_helpers.py negotiate --users FILE --keytab KT [--krb5-config CONF]
    python _proxy_auth_helpers.py serve --socket PATH [--socket-owner UID:GID] {ntlm|negotiate} ...
    python _proxy_auth_helpers.py bridge --socket PATH

Only the standard library is imported at module level: the bridge runs under
whatever python3 the unprivileged user can execute.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import pathlib
import shutil
import socket
import socketserver
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024  # Squid's helper lines are bounded too; a longer line is a broken peer


# ---------------------------------------------------------------------------
# credential files (written by the lab process, read by a helper)
# ---------------------------------------------------------------------------
def _private_file(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def write_htpasswd(path: pathlib.Path, users: Mapping[str, str]) -> None:
    """Write an htpasswd file of SHA-512 crypt hashes for Squid's basic_ncsa_auth.

    The hashes come from ``openssl passwd -6 -stdin`` (passwords on its stdin,
    never argv): Python 3.13 has no crypt module.
    """
    names = list(users)
    for name in names:
        if ":" in name or "\n" in users[name]:
            raise ValueError(f"user {name!r}: htpasswd cannot hold ':' in a name or a newline in a password")
    if not names:
        _private_file(path, "")
        return
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    done = subprocess.run([openssl, "passwd", "-6", "-stdin"], input="".join(f"{users[n]}\n" for n in names),
                          capture_output=True, text=True, timeout=20, check=False)
    hashes = done.stdout.split()
    if done.returncode != 0 or len(hashes) != len(names):
        raise RuntimeError(f"openssl passwd failed ({done.returncode}): {done.stderr.strip()}")
    _private_file(path, "".join(f"{n}:{h}\n" for n, h in zip(names, hashes)))


def write_digest_file(path: pathlib.Path, users: Mapping[str, str], realm: str) -> None:
    """Write ``user:realm:HA1`` lines for Squid's ``digest_file_auth -c`` (no plaintext in the file)."""
    lines = []
    for name, password in users.items():
        ha1 = hashlib.md5(f"{name}:{realm}:{password}".encode()).hexdigest()  # noqa: S324 - RFC 2617 HA1
        lines.append(f"{name}:{realm}:{ha1}\n")
    _private_file(path, "".join(lines))


def write_ntlm_store(path: pathlib.Path, users: Mapping[str, str]) -> None:
    """Write the users as pyspnego's NTLM credential store (smbpasswd format: hashes, not passwords).

    A name may carry a domain (``LAB\\alice``); a bare name matches a client that sends no domain.
    """
    from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1  # venv only: the bridge never writes files

    lines = []
    for name, password in users.items():
        if ":" in name:
            raise ValueError(f"user {name!r}: ':' cannot appear in an NTLM store name")
        lm = base64.b16encode(lmowfv1(password)).decode()
        nt = base64.b16encode(ntowfv1(password)).decode()
        lines.append(f"{name}:0:{lm}:{nt}:[U]:LCT-00000000\n")
    _private_file(path, "".join(lines))


# ---------------------------------------------------------------------------
# the acceptors behind Squid's stateful helper protocol
# ---------------------------------------------------------------------------
def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="@.-_")


def _squid_word(value: str) -> str:
    """One word as Squid's strwordtok reads it: bare if plain, else double-quoted with backslash escapes."""
    if value and not any(c.isspace() or c in '"\\' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SquidAuthHelper:
    """One helper instance: holds the security context of the handshake Squid has reserved it for."""

    protocol = "negotiate"

    def __init__(self) -> None:
        self._ctx = None

    def _new_context(self):  # noqa: ANN202 - spnego type, imported lazily
        import spnego

        return spnego.server(protocol=self.protocol)

    def handle(self, line: str) -> str:
        """Answer one request line from Squid (without its newline) with one reply line."""
        command, _, blob = line.strip().partition(" ")
        if command not in ("YR", "KK"):
            return f"BH message={_quote('unknown helper request ' + command[:10])}"
        if command == "YR":
            self._ctx = self._new_context()
        elif self._ctx is None:
            return "BH message=KK%20without%20a%20handshake%20in%20progress"
        if not blob:
            return "BH message=no%20token%20from%20the%20client"
        try:
            token_in = base64.b64decode(blob, validate=True)
        except ValueError:
            return "BH message=token%20is%20not%20base64"
        try:
            token_out = self._ctx.step(token_in)
        except Exception as e:  # pyspnego raises its SpnegoError family and ValueError on garbage
            self._ctx = None
            log.info("%s helper refused a handshake: %s", self.protocol, type(e).__name__)
            return f"ERR message={_quote(type(e).__name__ + ': ' + str(e).splitlines()[0][:200])}"
        if not self._ctx.complete:
            if not token_out:
                return "BH message=handshake%20incomplete%20without%20a%20token"
            return f"TT {base64.b64encode(token_out).decode()}"
        user = self._ctx.client_principal or ""
        self._ctx = None
        if self.protocol == "ntlm":
            return f"OK user={_quote(user)}"
        # Squid aborts (FATAL) on a Negotiate success without a token; raw NTLM inside Negotiate ends
        # without one, so send "=" as Squid's own negotiate_wrapper_auth does, in the legacy AF form
        token = base64.b64encode(token_out).decode() if token_out else "="
        return f"AF {token} {_squid_word(user)}"


class NtlmHelper(SquidAuthHelper):
    """NTLM proxy authentication checked against the users' NT hashes (pyspnego's NTLM acceptor)."""

    protocol = "ntlm"


class NegotiateHelper(SquidAuthHelper):
    """Negotiate: Kerberos against the proxy's keytab (GSSAPI), and NTLM inside SPNEGO or raw."""

    protocol = "negotiate"


def configure_acceptor_env(users: str | None, keytab: str | None, krb5_config: str | None) -> None:
    """Point pyspnego/GSSAPI at the credential files, in this process only (paths, never secrets)."""
    if users:
        os.environ["NTLM_USER_FILE"] = users
    if keytab:
        os.environ["KRB5_KTNAME"] = f"FILE:{keytab}"
    if krb5_config:
        os.environ["KRB5_CONFIG"] = krb5_config


def _helper_factory(scheme: str) -> Callable[[], SquidAuthHelper]:
    return {"ntlm": NtlmHelper, "negotiate": NegotiateHelper}[scheme]


def serve_stdio(helper: SquidAuthHelper) -> None:
    """Speak the helper protocol on stdin/stdout until Squid closes stdin."""
    for line in sys.stdin:
        sys.stdout.write(helper.handle(line[:_MAX_LINE]) + "\n")
        sys.stdout.flush()


class _HelperConnection(socketserver.StreamRequestHandler):
    """One bridged helper: a fresh helper instance per UNIX connection, as Squid has one per process."""

    def handle(self) -> None:
        helper = self.server.helper_factory()  # type: ignore[attr-defined]
        while True:
            raw = self.rfile.readline(_MAX_LINE)
            if not raw:
                return
            self.wfile.write((helper.handle(raw.decode("utf-8", "replace")) + "\n").encode())
            self.wfile.flush()


class _HelperServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def serve_socket(path: str, scheme: str, owner: tuple[int, int] | None) -> None:
    """Serve helper instances on a UNIX socket that only the bridge's user (and we) may connect to."""
    pathlib.Path(path).unlink(missing_ok=True)
    old_umask = os.umask(0o177)
    try:
        server = _HelperServer(path, _HelperConnection)
    finally:
        os.umask(old_umask)
    if owner is not None:
        os.chown(path, *owner)
    server.helper_factory = _helper_factory(scheme)  # type: ignore[attr-defined]
    log.info("%s helper server on %s", scheme, path)
    server.serve_forever()


def bridge(path: str) -> int:
    """Relay Squid's helper lines to the helper server on path, one request, one reply (stdlib only)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)  # an acceptor step is milliseconds; a stuck server must not hang Squid forever
    try:
        sock.connect(path)
    except OSError as e:
        # Squid restarts a dead helper; answering BH to each request tells it why in cache.log
        for _ in sys.stdin:
            sys.stdout.write(f"BH message={_quote('helper server unreachable: ' + str(e))}\n")
            sys.stdout.flush()
        return 1
    reader = sock.makefile("rb")
    for line in sys.stdin:
        sock.sendall(line.encode() if line.endswith("\n") else (line + "\n").encode())
        reply = reader.readline(_MAX_LINE)
        if not reply:
            sys.stdout.write("BH message=helper%20server%20closed%20the%20connection\n")
            sys.stdout.flush()
            return 1
        sys.stdout.write(reply.decode("utf-8", "replace"))
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point when Squid (or the lab) runs this file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def acceptor_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--users", help="pyspnego NTLM store (smbpasswd format)")
        p.add_argument("--keytab", help="keytab holding the proxy's HTTP/<name> key")
        p.add_argument("--krb5-config", help="krb5.conf of the lab realm")

    for scheme in ("ntlm", "negotiate"):
        acceptor_args(sub.add_parser(scheme, help=f"{scheme} helper on stdin/stdout"))
    serve = sub.add_parser("serve", help="helper server on a UNIX socket (for the bridge)")
    serve.add_argument("--socket", required=True)
    serve.add_argument("--socket-owner", help="UID:GID that must be able to connect")
    serve.add_argument("scheme", choices=("ntlm", "negotiate"))
    acceptor_args(serve)
    br = sub.add_parser("bridge", help="relay helper lines to a helper server")
    br.add_argument("--socket", required=True)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.command == "bridge":
        return bridge(args.socket)
    configure_acceptor_env(args.users, args.keytab, args.krb5_config)
    if args.command == "serve":
        owner = tuple(int(x) for x in args.socket_owner.split(":")) if args.socket_owner else None
        serve_socket(args.socket, args.scheme, owner)  # type: ignore[arg-type]
        return 0
    serve_stdio(_helper_factory(args.command)())
    return 0


if __name__ == "__main__":
    sys.exit(main())
