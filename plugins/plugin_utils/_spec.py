"""SessionSpec: the validated, immutable description of one WinRM session.

Built from the connection plugin's options (one dict, the plugin's option
names as keys) and the process environment. Every proxy rule that can be
checked before a byte is sent is enforced here:

R1  proxy credentials need an HTTPS endpoint (a CONNECT tunnel);
R2  proxy and host credentials are separate fields, never mixed;
R3  no unencrypted WinRM message through a proxy;
R7  environment proxy variables only when asked for; bypass lists honoured.

The spec also yields the pin key that identifies a pinned session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import math
import json
import typing as t
import urllib.parse

from ._errors import ConfigError

HOST_AUTHS = ("basic", "certificate", "negotiate", "kerberos", "ntlm", "credssp")
ENCRYPTING_AUTHS = ("negotiate", "kerberos", "ntlm", "credssp")
PROXY_AUTHS = ("basic", "digest", "ntlm", "negotiate", "kerberos")
PROXY_SCHEMES = ("http", "https")
MESSAGE_ENCRYPTION = ("auto", "always", "never")


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
    tunnel: bool = False
    negotiate_service: str = "HTTP"
    negotiate_hostname: str | None = None
    source: str = "inventory"  # "inventory" or the environment variable it came from
    allow_basic_over_http: bool = False  # ansible_psrp_proxy_allow_basic_over_http: the user's explicit opt-in

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
    """Everything needed to open one authenticated WinRM session (immutable)."""

    scheme: str
    host: str
    port: int
    path: str = "wsman"
    configuration_name: str = "Microsoft.PowerShell"
    no_profile: bool = False
    auth: str = "negotiate"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    message_encryption: str = "auto"
    cert_validation: bool = True
    ca_cert: str | None = None
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None
    certificate_key_password: str | None = dataclasses.field(default=None, repr=False)
    credssp_auth_mechanism: str = "auto"
    credssp_disable_tlsv1_2: bool = False
    credssp_minimum_version: int = 2
    negotiate_delegate: bool = False
    negotiate_hostname_override: str | None = None
    negotiate_service: str = "host"
    negotiate_send_cbt: bool = True
    connection_timeout: float = 30.0
    read_timeout: float = 30.0
    operation_timeout: int = 20
    max_envelope_size: int = 153600
    reconnection_retries: int = 0
    reconnection_backoff: float = 2.0
    proxy: ProxySpec | None = None

    # -- derived ---------------------------------------------------------

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.path.lstrip('/')}"

    @property
    def encrypt(self) -> bool:
        """Whether WinRM message encryption wraps every message."""
        if self.message_encryption == "always":
            return True
        if self.message_encryption == "never":
            return False
        return self.scheme == "http"

    @property
    def use_tunnel(self) -> bool:
        return self.proxy is not None and (self.scheme == "https" or self.proxy.tunnel)

    def describe(self) -> dict[str, t.Any]:
        """A secret-free summary for logs, `-vvv` and the session list."""
        return {
            "endpoint": self.endpoint,
            "user": self.username,
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
        data = dict(data)
        proxy = data.pop("proxy", None)
        _check_wire_fields(cls, data)
        proxy_spec = None
        if proxy is not None:
            _check_wire_fields(ProxySpec, proxy)  # else a stray proxy field escapes as a bare TypeError
            proxy_spec = ProxySpec(**proxy)
        return cls(proxy=proxy_spec, **data)

    def pin_key(self, key: bytes) -> str:
        """Identify the session: every field, secrets included, under a keyed hash.

        Two specs share a pinned session only when every setting and every
        credential is identical; the key never leaves the daemon, so the pin
        key reveals nothing about the secrets.
        """
        canonical = json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))
        return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_wire_fields(cls: type, data: t.Mapping[str, t.Any]) -> None:
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown session fields from client: {sorted(unknown)}")


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
        protocol = _choice(protocol, "ansible_psrp_protocol", ("http", "https"))
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
    """Split a proxy URL into (scheme, host, port, user, password); clear errors for bad input."""
    text = str(url).strip()
    if "://" not in text:
        raise ConfigError(
            f"{setting}: {text!r} has no scheme; write it as http://proxy.example.com:3128 "
            "(or https:// for a TLS proxy)."
        )
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme.startswith("socks"):
        raise ConfigError(
            f"{setting}: SOCKS proxies are not supported (WinRM proxy authentication and affinity rules are "
            "HTTP's); use an http:// or https:// proxy URL."
        )
    if scheme not in PROXY_SCHEMES:
        raise ConfigError(
            f"{setting}: proxy scheme {parsed.scheme!r} is not supported; use http:// or https://."
        )
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(f"{setting}: the port in {_redact_url(text)!r} is not a number between 1 and 65535.") from None
    host = parsed.hostname
    if not host:
        raise ConfigError(f"{setting}: {_redact_url(text)!r} has no host name.")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(f"{setting}: a proxy URL has no path or query; got {_redact_url(text)!r}.")
    if port is None:
        port = {"http": 80, "https": 443}[scheme]
    user = urllib.parse.unquote(parsed.username) if parsed.username else None
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    return scheme, host, port, user, password


def _redact_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = parsed.username or ""
    return urllib.parse.urlunsplit((parsed.scheme, f"{user}:********@{netloc}", parsed.path, parsed.query, parsed.fragment))


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


def bypassed(host: str, entries: t.Iterable[str]) -> bool:
    """Whether `host` matches the bypass list (names, *.suffix / .suffix, IPs, CIDR, '*', '<local>')."""
    name = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
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
            try:
                if address == ipaddress.ip_address(item):
                    return True
            except ValueError:
                pass
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


def _env_proxy(scheme: str, environ: t.Mapping[str, str]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """The environment's proxy for this endpoint scheme, its variable name, and NO_PROXY entries."""
    lowered = {k.lower(): v for k, v in environ.items() if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    no_proxy = parse_bypass(lowered.get("no_proxy"), "NO_PROXY") if lowered.get("no_proxy") else ()
    for name in (f"{scheme}_proxy", "all_proxy"):
        value = lowered.get(name)
        if value:
            return value, name.upper(), no_proxy
    return None, None, no_proxy


def _resolve_proxy(
    options: t.Mapping[str, t.Any], scheme: str, host: str, environ: t.Mapping[str, str]
) -> ProxySpec | None:
    """Apply R7: the inventory's proxy, else the environment's only when asked; bypass lists win."""
    from_env = _bool(options.get("proxy_from_env", False), "ansible_psrp_proxy_from_env")
    ignore_proxy = _bool(options.get("ignore_proxy", False), "ansible_psrp_ignore_proxy")
    bypass = parse_bypass(options.get("proxy_bypass"))
    url = options.get("proxy")
    source = "inventory"
    if url is not None and not str(url).strip():
        url = None
    if url is None and from_env and not ignore_proxy:
        url, source_name, env_bypass = _env_proxy(scheme, environ)
        bypass = bypass + env_bypass
        source = source_name or "environment"
    if url is None:
        if options.get("proxy_user") or options.get("proxy_password") or options.get("proxy_auth"):
            raise ConfigError(
                "ansible_psrp_proxy_user/ansible_psrp_proxy_password/ansible_psrp_proxy_auth are set but no proxy is: "
                "set ansible_psrp_proxy to the proxy URL, or remove the proxy credentials."
            )
        return None
    if bypassed(host, bypass):
        return None

    setting = "ansible_psrp_proxy" if source == "inventory" else source
    p_scheme, p_host, p_port, url_user, url_password = parse_proxy_url(str(url), setting)
    user = options.get("proxy_user") or url_user
    password = options.get("proxy_password") or url_password
    auth = options.get("proxy_auth")
    if auth is not None and str(auth).strip():
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
        ca_cert=str(ca_cert) if ca_cert else None,
        tunnel=_bool(options.get("proxy_tunnel", False), "ansible_psrp_proxy_tunnel"),
        negotiate_service=str(options.get("proxy_negotiate_service") or "HTTP"),
        negotiate_hostname=options.get("proxy_negotiate_hostname_override") or None,
        source=source,
        allow_basic_over_http=_bool(options.get("proxy_allow_basic_over_http", False),
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

    cert_validation = _choice(options.get("cert_validation", "validate") or "validate",
                              "ansible_psrp_cert_validation", ("validate", "ignore"))
    auth = _choice(options.get("auth") or "negotiate", "ansible_psrp_auth", HOST_AUTHS)
    encryption = _choice(options.get("message_encryption") or "auto", "ansible_psrp_message_encryption",
                         MESSAGE_ENCRYPTION)
    path = str(options.get("path") or "wsman").strip()
    if any(c in path for c in " ?#") or "://" in path:
        raise ConfigError(f"ansible_psrp_path: {path!r} is not a URL path (default: wsman).")

    read_timeout = _float(options.get("read_timeout", 30), "ansible_psrp_read_timeout", minimum=0.001)
    operation_timeout = _int(options.get("operation_timeout", 20), "ansible_psrp_operation_timeout", minimum=1)
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
        path=path.strip("/") or "wsman",
        configuration_name=str(options.get("configuration_name") or "Microsoft.PowerShell"),
        no_profile=_bool(options.get("no_profile", False), "ansible_psrp_no_profile"),
        auth=auth,
        username=options.get("remote_user") or None,
        password=options.get("remote_password"),
        message_encryption=encryption,
        cert_validation=cert_validation == "validate",
        ca_cert=ca_cert,
        certificate_pem=options.get("certificate_pem") or None,
        certificate_key_pem=options.get("certificate_key_pem") or None,
        certificate_key_password=options.get("certificate_key_password") or None,
        credssp_auth_mechanism=_choice(options.get("credssp_auth_mechanism") or "auto",
                                       "ansible_psrp_credssp_auth_mechanism", ("auto", "kerberos", "ntlm")),
        credssp_disable_tlsv1_2=_bool(options.get("credssp_disable_tlsv1_2", False),
                                      "ansible_psrp_credssp_disable_tlsv1_2"),
        credssp_minimum_version=_int(options.get("credssp_minimum_version", 2),
                                     "ansible_psrp_credssp_minimum_version", minimum=1, maximum=6),
        negotiate_delegate=_bool(options.get("negotiate_delegate", False), "ansible_psrp_negotiate_delegate"),
        negotiate_hostname_override=options.get("negotiate_hostname_override") or None,
        negotiate_service=str(options.get("negotiate_service") or "host"),
        negotiate_send_cbt=_bool(options.get("negotiate_send_cbt", True), "ansible_psrp_negotiate_send_cbt"),
        connection_timeout=_float(options.get("connection_timeout", 30), "ansible_psrp_connection_timeout",
                                  minimum=0.001),
        read_timeout=read_timeout,
        operation_timeout=operation_timeout,
        max_envelope_size=_int(options.get("max_envelope_size", 153600), "ansible_psrp_max_envelope_size",
                               minimum=8192, maximum=16 * 1024 * 1024),
        reconnection_retries=_int(options.get("reconnection_retries", 0), "ansible_psrp_reconnection_retries",
                                  minimum=0, maximum=100),
        reconnection_backoff=_float(options.get("reconnection_backoff", 2), "ansible_psrp_reconnection_backoff"),
        proxy=_resolve_proxy(options, scheme, host, environ),
    )
    if spec.proxy is not None and spec.proxy.scheme == "https" and spec.proxy.ca_cert is None and env_bundle:
        spec = dataclasses.replace(spec, proxy=dataclasses.replace(spec.proxy, ca_cert=env_bundle[0]))
    _check_rules(spec)
    proxy = spec.proxy
    if proxy is not None and proxy.auth == "basic" and proxy.scheme == "http":
        notes.append(("warning", f"ansible_psrp_proxy_allow_basic_over_http: the proxy password of "
                                 f"{proxy.username!r} crosses the network readable to the proxy {proxy.url} "
                                 "(Basic over http://); use the proxy's https:// port or another proxy_auth"))
    return spec
