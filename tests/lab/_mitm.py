"""An inspecting proxy (mitmproxy's mitmdump) that records every byte it relays.

Tests put it between a client and a lab host to prove what a proxy can read:
in TLS passthrough (the default) it relays CONNECT tunnels untouched and
records their raw TLS bytes; with ``tls_passthrough=False`` it intercepts TLS
with its own CA (the client must trust ``ca_cert_path``) and records the
decrypted HTTP, which shows what WinRM's ``message_encryption: always`` still
protects. Plain HTTP forwarding is recorded as full requests and responses.
"""

from __future__ import annotations

import logging
import pathlib
import struct
import sys

from tests.lab import _procs

log = logging.getLogger(__name__)

MITMDUMP = pathlib.Path(sys.executable).parent / "mitmdump"
_ADDON = pathlib.Path(__file__).with_name("_mitm_addon.py").resolve()
TO_SERVER = ">"
TO_CLIENT = "<"


class InspectingProxy(_procs.ProxyDaemon):
    """mitmdump on a free loopback port with the byte-recording addon.

    mode: mitmproxy's --mode ("regular" forward/CONNECT proxy, or e.g.
    "reverse:http://127.0.0.1:5985"). upstream_ca: CA file mitmproxy trusts for
    upstream TLS when it intercepts (the lab CA); without it, intercepting
    mode does not verify the upstream certificate (loopback lab hosts only).
    The record file stays across stop() and restart() and keeps growing.
    """

    name = "mitmdump"
    daemon_log = "mitmdump.log"

    def __init__(self, workdir: pathlib.Path, *, mode: str = "regular", tls_passthrough: bool = True,
                 upstream_ca: pathlib.Path | None = None) -> None:
        super().__init__(workdir)
        self.mode = mode
        self.tls_passthrough = tls_passthrough
        self.upstream_ca = pathlib.Path(upstream_ca) if upstream_ca else None

    @property
    def record_path(self) -> pathlib.Path:
        return self.workdir / "relayed.bin"

    @property
    def confdir(self) -> pathlib.Path:
        return self.workdir / "mitmproxy-conf"

    @property
    def ca_cert_path(self) -> pathlib.Path:
        """mitmproxy's CA certificate (PEM), which a client must trust when tls_passthrough=False."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def _prepare(self, run: pathlib.Path) -> list[str]:
        self.confdir.mkdir(mode=0o700, exist_ok=True)
        self.record_path.touch()
        argv = [
            str(MITMDUMP), "--listen-host", self.host, "--listen-port", str(self.port),
            "--mode", self.mode, "-s", str(_ADDON),
            "--set", f"lab_record_path={self.record_path}",
            "--set", f"confdir={self.confdir}",
            "--set", "flow_detail=0",
            "--set", "termlog_verbosity=info",
        ]
        if self.tls_passthrough:
            # ignore every host (no TLS interception) but keep the tunnel visible as a TCP flow,
            # so the addon's tcp_message hook sees its raw bytes
            argv += ["--ignore-hosts", ".*", "--set", "show_ignored_hosts=true"]
        elif self.upstream_ca is not None:
            argv += ["--set", f"ssl_verify_upstream_trusted_ca={self.upstream_ca}"]
        else:
            argv += ["--set", "ssl_insecure=true"]
        return argv

    def _ready(self) -> bool:
        return self.ca_cert_path.exists() and _procs.port_accepts(self.host, self.port)

    def _started_message(self) -> str:
        return f"mitmdump ({self.mode}, passthrough={self.tls_passthrough}) on {self.url}"

    def recorded_chunks(self) -> list[tuple[str, bytes]]:
        """Every relayed chunk so far as (direction, bytes); direction ">" is towards the server."""
        data = self.record_path.read_bytes() if self.record_path.exists() else b""
        chunks = []
        pos = 0
        while pos + 5 <= len(data):
            direction = data[pos:pos + 1].decode()
            (length,) = struct.unpack(">I", data[pos + 1:pos + 5])
            if pos + 5 + length > len(data):
                break  # a chunk still being written
            chunks.append((direction, data[pos + 5:pos + 5 + length]))
            pos += 5 + length
        return chunks

    def recorded_bytes(self, direction: str | None = None) -> bytes:
        """Every byte relayed so far, raw and concatenated (one direction only if given)."""
        return b"".join(c for d, c in self.recorded_chunks() if direction is None or d == direction)

    def describe(self) -> dict[str, str | bool]:
        return {"url": self.url, "tls_passthrough": self.tls_passthrough, "record": str(self.record_path),
                "ca_cert": str(self.ca_cert_path)}
