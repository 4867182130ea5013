"""SessionSpec: the validated, immutable description of one WinRM session.

Built from the connection plugin's options (one dict, the plugin's option
names as keys) and the process environment. Every proxy rule that can be
checked before a byte is sent is enforced here:

R1  proxy credentials need an HTTPS endpoint (a CONNECT tunnel);
R2  proxy and host credentials are separate fields, never mixed;
R3  no unencrypted WinRM message through a proxy;
R7  environment proxy variables only when asked for; bypass lists honoured.

The spec also yields the pin key that identifies a pinned session.

Each option's default and valid values are the plugin's DOCUMENTATION, read from its parsed copy
(_option_definitions): this module keeps only the rules that span options (R1, R3, R7, the timeouts) and the
messages that name the inventory variable and the fix. It checks the documented choices itself, since Ansible's
check is case-sensitive and names only the option (see _option_definitions.for_ansible).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
import os
import stat
import threading
import typing as t
import urllib.parse

from . import _socks
from ._errors import ConfigError
from ._kerberos import TICKET_AUTHS, TicketIdentity, resolve_ticket_identity
from ._option_definitions import choices, default

HOST_AUTHS = choices("auth")
# the host auths that can encrypt WinRM messages themselves (R3): a rule, not an option's values
ENCRYPTING_AUTHS = ("negotiate", "kerberos", "ntlm", "credssp")
PROXY_AUTHS = choices("proxy_auth")
PROXY_SCHEMES = ("http", "https", *_socks.SOCKS_SCHEMES)
MESSAGE_ENCRYPTION = choices("message_encryption")


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'********'"


@dataclasses.dataclass(frozen=True)
class ProxySpec:
    """The proxy a session goes through, after bypass and environment rules were applied."""

    url: str
    scheme: str
    host: str
    port: int
    auth: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_cert: str | None = None
    tunnel: bool = default("proxy_tunnel")
    negotiate_service: str = default("proxy_negotiate_service")
    negotiate_hostname: str | None = None
    source: str = "inventory"  # "inventory" or the environment variable it came from
    allow_basic_over_http: bool = default("proxy_allow_basic_over_http")  # the user's explicit opt-in

    def __repr__(self) -> str:
        return (
            f"ProxySpec(url={self.url!r}, auth={self.auth!r}, username={self.username!r}, "
            f"password={_secret_repr(self.password)}, tunnel={self.tunnel!r}, source={self.source!r})"
        )

    @property
    def spn_hostname(self) -> str:
        return self.negotiate_hostname or self.host


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """Everything needed to open one authenticated WinRM session (immutable).

    Field defaults are the documented option defaults (for specs built directly, as the tests build them).
    """

    scheme: str
    host: str
    port: int
    path: str = default("path")
    configuration_name: str = default("configuration_name")
    no_profile: bool = default("no_profile")
    auth: str = default("auth")
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    message_encryption: str = default("message_encryption")
    cert_validation: bool = default("cert_validation") == "validate"
    ca_cert: str | None = None
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None
    certificate_key_password: str | None = dataclasses.field(default=None, repr=False)
    credssp_auth_mechanism: str = default("credssp_auth_mechanism")
    credssp_disable_tlsv1_2: bool = default("credssp_disable_tlsv1_2")
    credssp_minimum_version: int = default("credssp_minimum_version")
    negotiate_delegate: bool = bool(default("negotiate_delegate"))
    negotiate_hostname_override: str | None = None
    negotiate_service: str = default("negotiate_service")
    negotiate_send_cbt: bool = default("negotiate_send_cbt")
    connection_timeout: float = float(default("connection_timeout"))
    read_timeout: float = float(default("read_timeout"))
    operation_timeout: int = default("operation_timeout")
    max_envelope_size: int = default("max_envelope_size")
    reconnection_retries: int = default("reconnection_retries")
    reconnection_backoff: float = float(default("reconnection_backoff"))
    proxy: ProxySpec | None = None
    # The run's own Kerberos tickets, for a kerberos/negotiate login (host or proxy) without a password: the
    # credential cache or client keytab and its principal, resolved by the run, used as is by the daemon.
    kerberos_ccache: str | None = None
    kerberos_keytab: str | None = None
    kerberos_principal: str | None = None
    # ansible_psrp_kerberos_config: the krb5.conf the run named (the process reading it is checked against it)
    kerberos_config: str | None = None

    # -- derived ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.path.lstrip('/')}"

    @property
    def encrypt(self) -> bool:
        """Whether WinRM message encryption wraps every message.

        `auto` encrypts over http, and over https through a proxy when the host's certificate is not
        validated: then whoever terminates the tunnel could read the messages, as over http (R3).
        """
        if self.message_encryption == "always":
            return True
        if self.message_encryption == "never":
            return False
        return self.scheme == "http" or self.unverified_tunnel

    @property
    def unverified_tunnel(self) -> bool:
        """TLS to the host through a proxy without validating the host's certificate: TLS proves nothing there."""
        return self.proxy is not None and self.scheme == "https" and not self.cert_validation

    @property
    def use_tunnel(self) -> bool:
        """One stream to the host through the proxy (CONNECT, or SOCKS, which relays nothing else)."""
        return self.proxy is not None and (self.scheme == "https" or self.proxy.tunnel or _socks.is_socks(self.proxy))

    def describe(self) -> dict[str, t.Any]:
        """A secret-free summary for logs, `-vvv` and the session list."""
        return {
            "endpoint": self.endpoint,
            "user": self.username or self.kerberos_principal,
            "auth": self.auth,
            "configuration_name": self.configuration_name,
            "encrypt": self.encrypt,
            "proxy": None if self.proxy is None else self.proxy.url,
            "proxy_auth": None if self.proxy is None else self.proxy.auth,
            "proxy_user": None if self.proxy is None else self.proxy.username,
            "proxy_tunnel": self.use_tunnel,
        }

    def __repr__(self) -> str:
        return f"SessionSpec({json.dumps(self.describe(), sort_keys=True)})"

    # -- wire form (pin client -> pin daemon, over the user-only socket) --

    def to_wire(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, t.Any]) -> SessionSpec:
        """The spec a client sent, checked again as build_spec checks it: values in range, R1 and R3.

        The daemon acts on what arrives on its socket, not on what a well-behaved client would send.
        """
        if not isinstance(data, dict):
            raise ConfigError("the session spec from the client is not an object")
        data = dict(data)
        proxy = data.pop("proxy", None)
        _check_wire_fields(cls, data)
        proxy_spec = None
        if proxy is not None:
            if not isinstance(proxy, dict):
                raise ConfigError("the proxy of the session spec from the client is not an object")
            _check_wire_fields(ProxySpec, proxy)  # else a stray proxy field escapes as a bare TypeError
            proxy_spec = ProxySpec(**proxy)
            _check_wire_values(proxy_spec, _PROXY_WIRE_RULES)
        spec = cls(proxy=proxy_spec, **data)
        _check_wire_values(spec, _SPEC_WIRE_RULES)
        _check_rules(spec)
        return spec

    @property
    def ticket_identity(self) -> TicketIdentity:
        """The run's Kerberos ticket source (empty unless a kerberos/negotiate login has no password)."""
        return TicketIdentity(self.kerberos_ccache, self.kerberos_principal, self.kerberos_keytab)

    def trust_files(self) -> dict[str, str]:
        """The files this session's trust and identity come from: CA bundles, client certificate and key."""
        named = {
            "ca_cert": self.ca_cert,
            "certificate_pem": self.certificate_pem,
            "certificate_key_pem": self.certificate_key_pem,
            "proxy_ca_cert": self.proxy.ca_cert if self.proxy is not None else None,
            "kerberos_config": self.kerberos_config,
            # a keytab rotated in place gets a new session, as a rotated certificate does
            "kerberos_keytab": _keytab_file(self.kerberos_keytab),
        }
        return {name: value for name, value in named.items() if value and not _is_pem_text(value)}

    def pin_key(self, key: bytes) -> str:
        """Identify the session: every field, secrets included, and the contents of its trust files, under a keyed hash.

        Two specs share a pinned session only when every setting, every credential and every CA or
        certificate file they name (by content, not by path: a rotated certificate gets a new session) is
        identical; the key never leaves the daemon, so the pin key reveals nothing about the secrets.
        """
        files = {name: file_fingerprint(path) for name, path in self.trust_files().items()}
        canonical = json.dumps({"spec": self.to_wire(), "files": files}, sort_keys=True, separators=(",", ":"))
        return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def _keytab_file(name: str | None) -> str | None:
    """The file of a FILE: (or type-less) keytab name; None for other keytab types."""
    if not name:
        return None
    if name.startswith("FILE:"):
        return name[5:]
    return None if ":" in name.split("/", 1)[0] else name


def _is_pem_text(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


# Fingerprints of trust files by path, re-read only when the file's stat changes (every task computes its pin key).
_FINGERPRINTS: dict[str, tuple[tuple[int, ...], str]] = {}
_FINGERPRINTS_LOCK = threading.Lock()
_MAX_TRUST_FILE = 64 * 1024 * 1024  # a CA bundle is kilobytes; read no further than this
_MAX_CA_DIR_ENTRIES = 10000


def file_fingerprint(path: str) -> str:
    """SHA-256 of a file's content (of a CA directory: of its entries' names and contents); a marker if unreadable.

    Loading the file is the transport's job and its error names the setting; here an unreadable file only
    has to key apart from a readable one.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    if stat.S_ISDIR(st.st_mode):
        digest = hashlib.sha256(b"dir")
        try:
            names = sorted(os.listdir(path))[:_MAX_CA_DIR_ENTRIES]
        except OSError as exc:
            return f"unreadable:{exc.errno}"
        for name in names:
            entry = os.path.join(path, name)
            if os.path.isfile(entry):
                digest.update(f"{name}\0{file_fingerprint(entry)}\0".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()
    signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _FINGERPRINTS_LOCK:
        cached = _FINGERPRINTS.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            digest.update(handle.read(_MAX_TRUST_FILE))
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    value = digest.hexdigest()
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[path] = (signature, value)
    return value


def _absolute(path: t.Any) -> str | None:
    """A file setting as an absolute path (the daemon runs in another directory), or PEM text unchanged."""
    if not path:
        return None
    text = str(path)
    return text if _is_pem_text(text) else os.path.abspath(os.path.expanduser(text))


def _check_wire_fields(cls: type, data: t.Mapping[str, t.Any]) -> None:
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown session fields from client: {sorted(unknown)}")


def _text_or_none(value: t.Any) -> bool:
    return value is None or isinstance(value, str)


def _number(low: float, high: float = math.inf) -> t.Callable[[t.Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


def _one_of(*values: t.Any) -> t.Callable[[t.Any], bool]:
    return lambda v: v in values


_BOOL = _one_of(True, False)
# (field, check) of a spec from the wire: the ranges build_spec enforces on inventory values
_SPEC_WIRE_RULES: tuple[tuple[str, t.Callable[[t.Any], bool]], ...] = (
    ("scheme", _one_of(*choices("protocol"))),
    ("host", lambda v: isinstance(v, str) and bool(v) and not any(c in v for c in "/ @?#")),
    ("port", _number(1, 65535)),
    ("path", lambda v: isinstance(v, str) and not any(c in v for c in " ?#")),
    ("auth", _one_of(*HOST_AUTHS)),
    ("message_encryption", _one_of(*MESSAGE_ENCRYPTION)),
    ("credssp_auth_mechanism", _one_of(*choices("credssp_auth_mechanism"))),
    ("credssp_minimum_version", _number(1, 6)),
    ("connection_timeout", _number(0.001)),
    ("read_timeout", _number(0.001)),
    ("operation_timeout", _number(1)),
    ("max_envelope_size", _number(8192, 16 * 1024 * 1024)),
    ("reconnection_retries", _number(0, 100)),
    ("reconnection_backoff", _number(0)),
    *((name, _BOOL) for name in ("no_profile", "cert_validation", "credssp_disable_tlsv1_2", "negotiate_delegate",
                                 "negotiate_send_cbt")),
    *((name, _text_or_none) for name in ("username", "password", "ca_cert", "certificate_pem", "certificate_key_pem",
                                         "certificate_key_password", "negotiate_hostname_override",
                                         "kerberos_ccache", "kerberos_keytab", "kerberos_principal",
                                         "kerberos_config")),
)
_PROXY_WIRE_RULES: tuple[tuple[str, t.Callable[[t.Any], bool]], ...] = (
    ("scheme", _one_of(*PROXY_SCHEMES)),
    ("host", lambda v: isinstance(v, str) and bool(v)),
    ("port", _number(1, 65535)),
    ("auth", _one_of(None, *PROXY_AUTHS, _socks.SOCKS_PASSWORD_AUTH)),
    ("tunnel", _BOOL),
    *((name, _text_or_none) for name in ("username", "password", "ca_cert", "negotiate_hostname")),
)


def _check_wire_values(spec: t.Any, rules: t.Iterable[tuple[str, t.Callable[[t.Any], bool]]]) -> None:
    """Refuse a spec from the wire whose values build_spec would never produce (ConfigError, nothing sent)."""
    bad = [name for name, valid in rules if not valid(getattr(spec, name))]
    if bad:
        raise ConfigError(f"the session spec from the client has invalid values for {', '.join(bad)}; "
                          "the pin daemon refuses it (is the client of another version?)")


# -- building a spec from the plugin's options ------------------------------


def _bool(value: t.Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise ConfigError(f"{name}: expected a boolean (true/false), got {value!r}.")


def _int(value: t.Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, int) or isinstance(value, bool) else value
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a whole number, got {value!r}.") from None
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a whole number, got {value!r}.")
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}: must be {bound}, got {number}.")
    return number


def _float(value: t.Any, name: str, *, minimum: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}.") from None
    if math.isnan(number) or number < minimum:
        raise ConfigError(f"{name}: must be a number of seconds >= {minimum}, got {value!r}.")
    return number


def _choice(value: t.Any, name: str, choices: t.Iterable[str]) -> str:
    text = str(value).strip().lower()
    choices = tuple(choices)
    if text not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}.")
    return text


def _endpoint(options: t.Mapping[str, t.Any]) -> tuple[str, str, int]:
    """(scheme, host, port) with ansible.builtin.psrp's defaulting of protocol and port."""
    host = options.get("remote_addr")
    if not host or not str(host).strip():
        raise ConfigError("ansible_host: the Windows host address is empty; set ansible_host or ansible_psrp_host.")
    host = str(host).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if any(c in host for c in "/ @?#") or "://" in host:
        raise ConfigError(
            f"ansible_host: {host!r} is not a host name or IP address; give the bare name "
            "(the scheme, port and path have their own variables: ansible_psrp_protocol, ansible_port, ansible_psrp_path)."
        )
    protocol = options.get("protocol")
    port = options.get("port")
    if protocol is not None:
        protocol = _choice(protocol, "ansible_psrp_protocol", choices("protocol"))
    if port is not None:
        port = _int(port, "ansible_port (ansible_psrp_port)", minimum=1, maximum=65535)
    if protocol is None and port is None:
        protocol, port = "https", 5986
    elif protocol is None:
        protocol = "https" if port != 5985 else "http"
    elif port is None:
        port = 5986 if protocol == "https" else 5985
    return protocol, host, t.cast(int, port)


def parse_proxy_url(url: str, setting: str = "ansible_psrp_proxy") -> tuple[str, str, int, str | None, str | None]:
    """Split a proxy URL into (scheme, host, port, user, password); clear errors for bad input.

    Every error shows the URL with its password masked, whatever shape the URL has.
    """
    text = str(url).strip()
    if "://" not in text:
        raise ConfigError(
            f"{setting}: {_redact_url(text)!r} has no scheme; write it as http://proxy.example.com:3128 "
            "(or https:// for a TLS proxy)."
        )
    try:
        parsed = urllib.parse.urlsplit(text)
        host = parsed.hostname
    except ValueError as exc:  # an unbalanced IPv6 bracket, for one
        raise ConfigError(
            f"{setting}: {_redact_url(text)!r} is not a valid URL ({exc}); write it as http://proxy.example.com:3128, "
            "with an IPv6 address in brackets (http://[2001:db8::1]:3128)."
        ) from None
    scheme = parsed.scheme.lower()
    _socks.refuse_unsupported_scheme(scheme, setting)
    if scheme not in PROXY_SCHEMES:
        raise ConfigError(
            f"{setting}: proxy scheme {parsed.scheme!r} is not supported; use http://, https://, socks5:// or socks5h://."
        )
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(f"{setting}: the port in {_redact_url(text)!r} is not a number between 1 and 65535.") from None
    if not host:
        raise ConfigError(f"{setting}: {_redact_url(text)!r} has no host name.")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(f"{setting}: a proxy URL has no path or query; got {_redact_url(text)!r}.")
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme, _socks.DEFAULT_PORT)
    user = urllib.parse.unquote(parsed.username) if parsed.username else None
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    return scheme, host, port, user, password


def _redact_url(url: str) -> str:
    """The URL with the password of its user part masked, with or without a scheme, parseable or not.

    Everything before the last "@" is taken as user:password (over-masking a path is harmless; a password
    with an unencoded "@" or "/" must not leak), so no URL parser is trusted with a malformed URL here.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if "@" not in rest:
        return text
    userinfo, host = rest.rsplit("@", 1)
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:********@{host}" if colon else f"{userinfo}@{host}"
    return f"{scheme}://{masked}" if sep else masked


def parse_bypass(entries: t.Any, setting: str = "ansible_psrp_proxy_bypass") -> tuple[str, ...]:
    """Normalise a bypass list (list or comma-separated string) and reject malformed entries."""
    if entries is None:
        return ()
    if isinstance(entries, str):
        items = [e for e in (x.strip() for x in entries.replace(";", ",").split(",")) if e]
    elif isinstance(entries, (list, tuple)):
        items = [str(e).strip() for e in entries if str(e).strip()]
    else:
        raise ConfigError(f"{setting}: expected a list of host names, *.suffix wildcards or CIDR ranges, got {entries!r}.")
    for item in items:
        if "/" in item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ConfigError(f"{setting}: {item!r} is not a valid CIDR range (example: 10.0.0.0/8).") from None
        elif item in ("*", "<local>"):
            continue
        else:
            name = item[2:] if item.startswith("*.") else item.lstrip(".")
            if not name or any(c in name for c in " *?/@"):
                raise ConfigError(
                    f"{setting}: {item!r} is not a host name, *.suffix wildcard, IP address or CIDR range."
                )
    return tuple(items)


_Address = t.Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _host_and_address(host: str) -> tuple[str, _Address | None]:
    """A host as bypass lists compare it: lower case, no brackets or trailing dot, and its IP address if it is one."""
    name = host.strip("[]").lower().rstrip(".")
    try:
        return name, ipaddress.ip_address(name)
    except ValueError:
        return name, None


def _is_address(address: _Address, item: str) -> bool:
    """Whether a list entry is this very IP address (an entry that is no address is not)."""
    try:
        return address == ipaddress.ip_address(item)
    except ValueError:
        return False


def bypassed(host: str, entries: t.Iterable[str]) -> bool:
    """Whether `host` matches the bypass list (names, *.suffix / .suffix, IPs, CIDR, '*', '<local>')."""
    name, address = _host_and_address(host)
    for entry in entries:
        item = entry.strip().lower()
        if item == "*":
            return True
        if item == "<local>":
            if address is None and "." not in name:
                return True
            continue
        if "/" in item:
            if address is not None and address in ipaddress.ip_network(item, strict=False):
                return True
            continue
        if address is not None:
            if _is_address(address, item):
                return True
            continue
        if item.startswith("*."):
            suffix = item[1:]
            if name.endswith(suffix):
                return True
        elif item.startswith("."):
            if name.endswith(item) or name == item[1:]:
                return True
        elif name == item.rstrip("."):
            return True
    return False


def _env_value(environ: t.Mapping[str, str], name: str) -> tuple[str | None, str]:
    """(value, variable) of a proxy variable: the lowercase name wins when set, even empty (curl, urllib)."""
    if name in environ:
        return environ[name], name
    return environ.get(name.upper()), name.upper()


def _env_proxy(scheme: str, environ: t.Mapping[str, str]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """The environment's proxy for this endpoint scheme, its variable name, and NO_PROXY entries."""
    no_proxy, no_proxy_name = _env_value(environ, "no_proxy")
    entries = parse_bypass(no_proxy, no_proxy_name) if no_proxy else ()
    for name in (f"{scheme}_proxy", "all_proxy"):
        value, variable = _env_value(environ, name)
        if value:
            return value, variable, entries
    return None, None, entries


def _split_port(item: str) -> tuple[str, int | None]:
    """("host", port) of a NO_PROXY entry written host:port or [v6]:port; ("::1", None) for a bare IPv6."""
    if item.startswith("[") and "]" in item:
        host, _bracket, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if item.count(":") == 1:
        host, _colon, port = item.partition(":")
        if port.isdigit():
            return host, int(port)
    return item, None


def no_proxy_bypassed(host: str, port: int, entries: t.Iterable[str]) -> bool:
    """Whether NO_PROXY `entries` cover host:port, read as curl and Python's urllib read them.

    A name covers itself and every name below it (``corp.example`` and ``.corp.example`` both cover
    ``win1.corp.example``, never ``badcorp.example``); ``host:port`` covers that port only; ``*`` covers
    everything; IP addresses and CIDR ranges match addresses.
    """
    name, address = _host_and_address(host)
    for entry in entries:
        item, entry_port = _split_port(entry.strip().lower())
        if item == "*":
            return True
        if entry_port is not None and entry_port != port:
            continue
        if item == "<local>" or "/" in item:
            if bypassed(host, [item]):
                return True
            continue
        if address is not None:
            if _is_address(address, item):
                return True
            continue
        suffix = item[2:] if item.startswith("*.") else item.lstrip(".")
        suffix = suffix.rstrip(".")
        if suffix and (name == suffix or name.endswith("." + suffix)):
            return True
    return False


def _resolve_proxy(
    options: t.Mapping[str, t.Any], scheme: str, host: str, port: int, environ: t.Mapping[str, str]
) -> ProxySpec | None:
    """Apply R7: the inventory's proxy, else the environment's only when asked; bypass lists win."""
    from_env = _bool(options.get("proxy_from_env", default("proxy_from_env")), "ansible_psrp_proxy_from_env")
    ignore_proxy = _bool(options.get("ignore_proxy", default("ignore_proxy")), "ansible_psrp_ignore_proxy")
    bypass = parse_bypass(options.get("proxy_bypass"))
    url = options.get("proxy")
    source = "inventory"
    if url is not None and not str(url).strip():
        url = None
    env_bypass: tuple[str, ...] = ()
    if url is None and from_env and not ignore_proxy:
        url, source_name, env_bypass = _env_proxy(scheme, environ)
        source = source_name or "environment"
    if url is None:
        if options.get("proxy_user") or options.get("proxy_password") or options.get("proxy_auth"):
            raise ConfigError(
                "ansible_psrp_proxy_user/ansible_psrp_proxy_password/ansible_psrp_proxy_auth are set but no proxy is: "
                "set ansible_psrp_proxy to the proxy URL, or remove the proxy credentials."
            )
        return None
    if bypassed(host, bypass) or no_proxy_bypassed(host, port, env_bypass):
        return None

    setting = "ansible_psrp_proxy" if source == "inventory" else source
    p_scheme, p_host, p_port, url_user, url_password = parse_proxy_url(str(url), setting)
    user = options.get("proxy_user") or url_user
    password = options.get("proxy_password") or url_password
    auth = options.get("proxy_auth")
    if p_scheme in _socks.SOCKS_SCHEMES:
        auth = _socks.socks_auth(auth, user, password, _redact_url(str(url)))
    elif auth is not None and str(auth).strip():
        auth = _choice(auth, "ansible_psrp_proxy_auth", PROXY_AUTHS)
    else:
        auth = "basic" if (user or password) else None
    if auth in ("basic", "digest", "ntlm") and not (user and password):
        raise ConfigError(
            f"ansible_psrp_proxy_auth={auth} needs ansible_psrp_proxy_user and ansible_psrp_proxy_password "
            "(the proxy's account, separate from the Windows host's)."
        )
    if password and not user:
        raise ConfigError("ansible_psrp_proxy_password is set without ansible_psrp_proxy_user.")
    ca_cert = options.get("proxy_ca_cert") or None
    if ca_cert and p_scheme != "https":
        raise ConfigError(
            f"ansible_psrp_proxy_ca_cert is set but the proxy {_redact_url(str(url))} is not https://; "
            "either use an https:// proxy URL or remove ansible_psrp_proxy_ca_cert."
        )
    clean_url = f"{p_scheme}://{'[' + p_host + ']' if ':' in p_host else p_host}:{p_port}"
    return ProxySpec(
        url=clean_url,
        scheme=p_scheme,
        host=p_host,
        port=p_port,
        auth=auth,
        username=user or None,
        password=password or None,
        ca_cert=_absolute(ca_cert),
        tunnel=_bool(options.get("proxy_tunnel", default("proxy_tunnel")), "ansible_psrp_proxy_tunnel"),
        negotiate_service=str(options.get("proxy_negotiate_service") or default("proxy_negotiate_service")),
        negotiate_hostname=options.get("proxy_negotiate_hostname_override") or None,
        source=source,
        allow_basic_over_http=_bool(options.get("proxy_allow_basic_over_http", default("proxy_allow_basic_over_http")),
                                    "ansible_psrp_proxy_allow_basic_over_http"),
    )


def _check_rules(spec: SessionSpec) -> None:
    """R1 and R3, and the auth/encryption combinations no host can serve. Raises ConfigError."""
    proxy = spec.proxy
    if spec.message_encryption == "always" and spec.auth not in ENCRYPTING_AUTHS:
        raise ConfigError(
            f"ansible_psrp_message_encryption=always cannot be used with ansible_psrp_auth={spec.auth}: only "
            "ntlm, negotiate, kerberos and credssp can encrypt WinRM messages. Use one of those, or "
            "message_encryption=auto over https."
        )
    if spec.auth == "certificate" and spec.scheme != "https":
        raise ConfigError(
            "ansible_psrp_auth=certificate needs HTTPS: the client certificate is presented in the TLS handshake. "
            "Set ansible_psrp_protocol=https (port 5986)."
        )
    if spec.auth == "certificate" and not (spec.certificate_pem and spec.certificate_key_pem):
        raise ConfigError(
            "ansible_psrp_auth=certificate needs ansible_psrp_certificate_pem and ansible_psrp_certificate_key_pem."
        )
    if spec.auth in ("basic", "ntlm", "credssp") and not spec.username:
        raise ConfigError(f"ansible_user: ansible_psrp_auth={spec.auth} needs a user name (ansible_user).")
    if proxy is None:
        return
    via = f"the proxy {proxy.url}" + (f" (from {proxy.source})" if proxy.source != "inventory" else "")
    _socks.check_rules(spec, via)
    if spec.scheme == "http" and (proxy.auth or proxy.username or proxy.password):
        raise ConfigError(
            f"R1: {via} needs authentication, which is only allowed when the connection to the Windows host is "
            "HTTPS through a CONNECT tunnel: over an http:// endpoint the proxy's credentials and the host's "
            "WinRM authentication would share one proxied HTTP exchange. Fix: set ansible_psrp_protocol=https "
            "(port 5986), or remove ansible_psrp_proxy_auth/_user/_password if the proxy needs none."
        )
    if proxy.auth == "basic" and proxy.scheme == "http" and not proxy.allow_basic_over_http:
        raise ConfigError(
            f"ansible_psrp_proxy_auth=basic would send the proxy password readable to {via}: Basic puts the "
            "password on the wire in base64, and an http:// proxy connection has no TLS. Fix: use the proxy's TLS "
            "port (ansible_psrp_proxy: https://...), or a scheme that never sends the password "
            "(ansible_psrp_proxy_auth: digest, ntlm, negotiate or kerberos). For a proxy that offers nothing else, "
            "ansible_psrp_proxy_allow_basic_over_http: true accepts the risk (a warning on every run)."
        )
    if spec.unverified_tunnel:
        _check_unverified_tunnel(spec, via)
    if spec.scheme == "http":
        if spec.auth in ("basic", "certificate"):
            raise ConfigError(
                f"R3: ansible_psrp_auth={spec.auth} over http:// through {via} would send unencrypted WinRM "
                "messages (and the credentials) through the proxy. Fix: use ansible_psrp_protocol=https, or an auth "
                "that encrypts messages (ntlm, negotiate, kerberos, credssp), or bypass the proxy for this host "
                "(ansible_psrp_proxy_bypass)."
            )
        if spec.message_encryption == "never":
            raise ConfigError(
                f"R3: ansible_psrp_message_encryption=never over http:// through {via} would send unencrypted WinRM "
                "messages through the proxy. Fix: set ansible_psrp_message_encryption=auto (or always), or use "
                "ansible_psrp_protocol=https."
            )


def _check_unverified_tunnel(spec: SessionSpec, via: str) -> None:
    """R1/R3 with ansible_psrp_cert_validation=ignore through a proxy: the TLS to the host could be anyone's.

    Whoever terminates the tunnel (the proxy, or anyone on its path) would read a Basic password and
    unencrypted messages, and could relay NTLM or Kerberos without channel binding; so the rules of http://
    apply: an auth that encrypts messages, message encryption on, and the channel binding token sent.
    """
    why = (f"ansible_psrp_cert_validation=ignore through {via}: the host's certificate is not checked, so "
           "whoever terminates the tunnel (the proxy or anyone on its path) would")
    fix = ("Fix: validate the host's certificate (ansible_psrp_cert_validation: validate, with ansible_psrp_ca_cert "
           "naming its CA)")
    if spec.auth in ("basic", "certificate"):
        what = "read the password" if spec.auth == "basic" else "read every WinRM message (certificate auth cannot encrypt them)"
        raise ConfigError(
            f"R3: ansible_psrp_auth={spec.auth} with {why} {what}. {fix}, or use an auth that encrypts messages "
            "(ntlm, negotiate, kerberos, credssp)."
        )
    if spec.message_encryption == "never":
        raise ConfigError(
            f"R3: ansible_psrp_message_encryption=never with {why} read every WinRM message. {fix}, or set "
            "ansible_psrp_message_encryption=auto (or always)."
        )
    if spec.auth in ("ntlm", "negotiate", "kerberos") and not spec.negotiate_send_cbt:
        raise ConfigError(
            f"R1: ansible_psrp_negotiate_send_cbt=false with {why} relay your {spec.auth} authentication to the "
            f"host unnoticed; the channel binding token is what lets the host notice. {fix}, or set "
            "ansible_psrp_negotiate_send_cbt=true."
        )


# Where ansible.builtin.psrp (requests) finds a CA bundle when cert_validation is on and no ca_cert is set.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# Seconds a read timeout not above the operation timeout is raised past it: the host answers a quiet Receive
# only when the operation timeout runs out, and the answer still has to cross the network.
READ_AFTER_OPERATION_S = 5

Notes = t.List[t.Tuple[str, str]]  # (level, text): "vvv" for -vvv, "warning" for every run


def _env_ca_bundle(environ: t.Mapping[str, str]) -> tuple[str, str] | None:
    for name in CA_BUNDLE_ENV:
        if environ.get(name):
            return environ[name], name
    return None


def build_spec(
    options: t.Mapping[str, t.Any], environ: t.Mapping[str, str] | None = None, notes: Notes | None = None
) -> SessionSpec:
    """Turn the connection plugin's options into a validated SessionSpec.

    `options` uses the plugin's option names (remote_addr, remote_user,
    remote_password, port, protocol, path, auth, proxy, proxy_auth, ...).
    Raises ConfigError naming the inventory variable and the fix. What was
    adjusted rather than refused, and what the user must be warned about, is
    appended to `notes`.
    """
    environ = {} if environ is None else environ
    notes = [] if notes is None else notes
    scheme, host, port = _endpoint(options)

    cert_validation = _choice(options.get("cert_validation") or default("cert_validation"),
                              "ansible_psrp_cert_validation", choices("cert_validation"))
    auth = _choice(options.get("auth") or default("auth"), "ansible_psrp_auth", HOST_AUTHS)
    encryption = _choice(options.get("message_encryption") or default("message_encryption"),
                         "ansible_psrp_message_encryption", MESSAGE_ENCRYPTION)
    path = str(options.get("path") or default("path")).strip()
    if any(c in path for c in " ?#") or "://" in path:
        raise ConfigError(f"ansible_psrp_path: {path!r} is not a URL path (default: wsman).")

    read_timeout = _float(options.get("read_timeout", default("read_timeout")), "ansible_psrp_read_timeout",
                          minimum=0.001)
    operation_timeout = _int(options.get("operation_timeout", default("operation_timeout")),
                             "ansible_psrp_operation_timeout", minimum=1)
    if read_timeout <= operation_timeout:
        # accepted as ansible.builtin.psrp accepts it, made to work: a quiet command's Receive must not time out
        adjusted = float(operation_timeout + READ_AFTER_OPERATION_S)
        notes.append(("vvv", f"ansible_psrp_read_timeout {read_timeout:g}s raised to {adjusted:g}s: the host answers a "
                             f"quiet Receive only after ansible_psrp_operation_timeout ({operation_timeout}s)"))
        read_timeout = adjusted
    ca_cert = (options.get("ca_cert") or None) if cert_validation == "validate" else None
    env_bundle = _env_ca_bundle(environ) if cert_validation == "validate" else None
    if ca_cert is None and env_bundle is not None:
        ca_cert = env_bundle[0]
        notes.append(("vvv", f"trusting the CA bundle {ca_cert} from {env_bundle[1]}, as ansible.builtin.psrp does"))

    spec = SessionSpec(
        scheme=scheme,
        host=host,
        port=port,
        path=path.strip("/") or default("path"),
        configuration_name=str(options.get("configuration_name") or default("configuration_name")),
        no_profile=_bool(options.get("no_profile", default("no_profile")), "ansible_psrp_no_profile"),
        auth=auth,
        username=options.get("remote_user") or None,
        password=options.get("remote_password"),
        message_encryption=encryption,
        cert_validation=cert_validation == "validate",
        ca_cert=_absolute(ca_cert),
        certificate_pem=_absolute(options.get("certificate_pem")),
        certificate_key_pem=_absolute(options.get("certificate_key_pem")),
        certificate_key_password=options.get("certificate_key_password") or None,
        credssp_auth_mechanism=_choice(options.get("credssp_auth_mechanism") or default("credssp_auth_mechanism"),
                                       "ansible_psrp_credssp_auth_mechanism", choices("credssp_auth_mechanism")),
        credssp_disable_tlsv1_2=_bool(options.get("credssp_disable_tlsv1_2", default("credssp_disable_tlsv1_2")),
                                      "ansible_psrp_credssp_disable_tlsv1_2"),
        credssp_minimum_version=_int(options.get("credssp_minimum_version", default("credssp_minimum_version")),
                                     "ansible_psrp_credssp_minimum_version", minimum=1, maximum=6),
        negotiate_delegate=_bool(options.get("negotiate_delegate", default("negotiate_delegate")),
                                 "ansible_psrp_negotiate_delegate"),
        negotiate_hostname_override=options.get("negotiate_hostname_override") or None,
        negotiate_service=str(options.get("negotiate_service") or default("negotiate_service")),
        negotiate_send_cbt=_bool(options.get("negotiate_send_cbt", default("negotiate_send_cbt")),
                                 "ansible_psrp_negotiate_send_cbt"),
        connection_timeout=_float(options.get("connection_timeout", default("connection_timeout")),
                                  "ansible_psrp_connection_timeout", minimum=0.001),
        read_timeout=read_timeout,
        operation_timeout=operation_timeout,
        max_envelope_size=_int(options.get("max_envelope_size", default("max_envelope_size")),
                               "ansible_psrp_max_envelope_size", minimum=8192, maximum=16 * 1024 * 1024),
        reconnection_retries=_int(options.get("reconnection_retries", default("reconnection_retries")),
                                  "ansible_psrp_reconnection_retries", minimum=0, maximum=100),
        reconnection_backoff=_float(options.get("reconnection_backoff", default("reconnection_backoff")),
                                    "ansible_psrp_reconnection_backoff"),
        proxy=_resolve_proxy(options, scheme, host, port, environ),
        kerberos_config=_absolute(options.get("kerberos_config")),
    )
    if spec.proxy is not None and spec.proxy.scheme == "https" and spec.proxy.ca_cert is None and env_bundle:
        spec = dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, ca_cert=_absolute(env_bundle[0])))
    spec = _with_ticket_identity(spec, environ, _absolute(options.get("kerberos_keytab")))
    _check_rules(spec)
    proxy = spec.proxy
    if proxy is not None and proxy.auth == "basic" and proxy.scheme == "http":
        notes.append(("warning", f"ansible_psrp_proxy_allow_basic_over_http: the proxy password of "
                                 f"{proxy.username!r} crosses the network readable to the proxy {proxy.url} "
                                 "(Basic over http://); use the proxy's https:// port or another proxy_auth"))
    socks_warning = _socks.clear_text_warning(spec)
    if socks_warning:
        notes.append(("warning", socks_warning))
    return spec


def _with_ticket_identity(spec: SessionSpec, environ: t.Mapping[str, str], keytab: str | None = None) -> SessionSpec:
    """Pin the run's own Kerberos tickets into the spec when a kerberos/negotiate login has no password.

    ``keytab`` (ansible_psrp_kerberos_keytab) names the client keytab of that login outright: the session logs on
    from it into a private cache of its own (_private_tickets), whatever the run's cache holds.

    The identity (cache or keytab, and principal) becomes part of the pin key, so runs with different
    caches never share a session, and the daemon uses exactly this cache instead of its own default.
    """
    host_tickets = spec.auth in TICKET_AUTHS and spec.password is None
    proxy = spec.proxy
    proxy_tickets = proxy is not None and proxy.auth in TICKET_AUTHS and proxy.password is None
    if keytab and not (host_tickets or proxy_tickets):
        raise ConfigError(
            "ansible_psrp_kerberos_keytab is set, but no login can use it: it serves ansible_psrp_auth (or "
            "ansible_psrp_proxy_auth) kerberos or negotiate without a password. Remove the password to log on "
            "from the keytab, or remove ansible_psrp_kerberos_keytab."
        )
    if not (host_tickets or proxy_tickets):
        return spec
    username = spec.username if host_tickets else t.cast(ProxySpec, proxy).username
    if keytab:
        return dataclasses.replace(spec, kerberos_ccache=None, kerberos_keytab=keytab, kerberos_principal=username)
    identity = resolve_ticket_identity(username, environ)
    if identity is None:
        return spec
    return dataclasses.replace(spec, kerberos_ccache=identity.ccache, kerberos_keytab=identity.keytab,
                               kerberos_principal=identity.principal)
