"""SOCKS5 proxies: the rules that apply to them and the socket through them.

A SOCKS5 proxy (RFC 1928) relays one TCP stream per client connection: it never reads HTTP, so every
WinRM request of a session rides the one stream the proxy opened to the host (R4 and R5 hold by
construction, as in a CONNECT tunnel). What the proxy relays it can read, so the proxy rules apply as to
an HTTP proxy:

R1  proxy credentials (RFC 1929 user name and password) need an HTTPS endpoint, as for any proxy that
    authenticates: the host's login and messages then stay inside TLS to the host, whatever the proxy or
    anyone on the path to it sees;
R3  over ``http://`` through SOCKS, WinRM message encryption is mandatory (checked in _spec with the HTTP
    proxies' rules: the proxy sees the stream);
and, as for Basic to an ``http://`` proxy, the RFC 1929 password crosses the network to the proxy in
clear: it is refused unless ``ansible_psrp_proxy_allow_basic_over_http`` accepts that risk.

``socks5://`` resolves the host's name on the controller and sends the proxy an address; ``socks5h://``
sends the name and lets the proxy resolve it (curl's and requests' meaning of the two schemes).

The SOCKS handshake is python-socks' (``python_socks.sync.Proxy``): maintained (releases through 2026),
typed errors with the SOCKS reply code, and a plain connected socket back, which the transport wraps as
its own. PySocks, which ansible.builtin.psrp uses through requests, had its last release in 2019 and works
by replacing the socket class.
"""

from __future__ import annotations

import importlib.util
import socket
import typing as t

from ._errors import ConfigError, ConnectTimeoutError, ProxyAuthError, ProxyError, TransportError

if t.TYPE_CHECKING:
    from ._spec import ProxySpec, SessionSpec

SOCKS_SCHEMES = ("socks5", "socks5h")
# ProxySpec.auth of a SOCKS5 proxy that takes a user name and password (RFC 1929 "Username/Password")
SOCKS_PASSWORD_AUTH = "password"
DEFAULT_PORT = 1080
_MAX_FIELD = 255  # RFC 1929: user name and password are 1 to 255 bytes each

# SOCKS5 reply codes (RFC 1928 section 6) and what the user can do about each
_REPLIES = {
    1: ("general SOCKS server failure", "check the proxy's log"),
    2: ("connection not allowed by ruleset", "allow the Windows host's address and WinRM port in the proxy's rules"),
    3: ("network unreachable", "check ansible_host from the proxy's side"),
    4: ("host unreachable", "check ansible_host from the proxy's side"),
    5: ("connection refused", "check ansible_port and that WinRM listens on it"),
    6: ("TTL expired", "check ansible_host from the proxy's side"),
    7: ("command not supported", "the proxy does not offer CONNECT"),
    8: ("address type not supported", "use socks5h:// to send the host's name, or ansible_host as an address"),
}


def is_socks(proxy: ProxySpec | None) -> bool:
    """Whether the session goes through a SOCKS proxy."""
    return proxy is not None and proxy.scheme in SOCKS_SCHEMES


def refuse_unsupported_scheme(scheme: str, setting: str) -> None:
    """SOCKS4 and 4a carry no password and no IPv6; only SOCKS5 is offered (and tested against a real daemon)."""
    if scheme.startswith("socks") and scheme not in SOCKS_SCHEMES:
        raise ConfigError(
            f"{setting}: {scheme}:// proxies are not supported; use socks5:// (the controller resolves the host's "
            "name) or socks5h:// (the proxy resolves it), or an http:// or https:// proxy."
        )


def socks_auth(options_auth: t.Any, user: str | None, password: str | None, url: str) -> str | None:
    """The ProxySpec auth of a SOCKS5 proxy: 'password' with credentials, else None; any proxy_auth is refused."""
    if options_auth is not None and str(options_auth).strip():
        raise ConfigError(
            f"ansible_psrp_proxy_auth={options_auth} does not apply to the SOCKS5 proxy {url}: SOCKS5 proxies take a "
            "user name and password (RFC 1929) from ansible_psrp_proxy_user and ansible_psrp_proxy_password. "
            "Remove ansible_psrp_proxy_auth."
        )
    if password and not user:
        raise ConfigError("ansible_psrp_proxy_password is set without ansible_psrp_proxy_user.")
    if user and not password:
        raise ConfigError(
            f"ansible_psrp_proxy_user is set for the SOCKS5 proxy {url} without ansible_psrp_proxy_password; "
            "SOCKS5 user name authentication (RFC 1929) needs both."
        )
    for name, value in (("ansible_psrp_proxy_user", user), ("ansible_psrp_proxy_password", password)):
        if value is not None and len(value.encode("utf-8")) > _MAX_FIELD:
            raise ConfigError(f"{name}: SOCKS5 allows at most {_MAX_FIELD} bytes (RFC 1929).")
    return SOCKS_PASSWORD_AUTH if user else None


def check_rules(spec: SessionSpec, via: str) -> None:
    """R1 and the clear-text password rule for a SOCKS5 proxy (R3 is the HTTP proxies' check in _spec)."""
    proxy = spec.proxy
    if proxy is None or not is_socks(proxy):
        return
    if importlib.util.find_spec("python_socks") is None:
        raise ConfigError(
            f"ansible_psrp_proxy: the SOCKS5 proxy {proxy.url} needs the Python package python-socks on the "
            "controller: pip install python-socks (it is in the collection's requirements.txt)."
        )
    if proxy.auth is None:
        return
    if spec.scheme == "http":
        raise ConfigError(
            f"R1: {via} takes a user name and password, which is only allowed when the connection to the Windows "
            "host is HTTPS: the proxy relays the whole stream, and an authenticating proxy gets no readable WinRM "
            "login or message. Fix: set ansible_psrp_protocol=https (port 5986), or remove "
            "ansible_psrp_proxy_user/_password if the proxy needs none."
        )
    if not proxy.allow_basic_over_http:
        raise ConfigError(
            f"The SOCKS5 proxy {proxy.url} would receive the proxy password of {proxy.username!r} readable: SOCKS5 "
            "user name authentication (RFC 1929) sends it in clear, like Basic to an http:// proxy. Fix: use a "
            "SOCKS5 proxy without a password (an ssh -D tunnel, an allow-list of client addresses) or an https:// "
            "HTTP proxy; to accept the risk, set ansible_psrp_proxy_allow_basic_over_http: true (a warning on "
            "every run)."
        )


def clear_text_warning(spec: SessionSpec) -> str | None:
    """The warning every run prints when a SOCKS5 password crosses the network in clear (accepted by the user)."""
    proxy = spec.proxy
    if proxy is None or not is_socks(proxy) or proxy.auth is None:
        return None
    return (f"ansible_psrp_proxy_allow_basic_over_http: the proxy password of {proxy.username!r} crosses the "
            f"network readable to the SOCKS5 proxy {proxy.url} (RFC 1929 sends it in clear)")


def connect(proxy: ProxySpec, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to host:port through the SOCKS5 proxy; errors name the proxy, the setting and the fix.

    A proxy that cannot be reached raises TransportError (nothing was sent to the host); a refusal by the proxy
    ProxyError, a refused password ProxyAuthError, a slow proxy ConnectTimeoutError.
    """
    try:
        from python_socks import ProxyConnectionError, ProxyTimeoutError, ProxyType
        from python_socks import ProxyError as SocksProxyError
        from python_socks.sync import Proxy
    except ImportError as exc:  # checked when the spec was built; a daemon of another environment may lack it
        raise ConfigError(f"the SOCKS5 proxy {proxy.url} needs the Python package python-socks: {exc}") from None
    client = Proxy(ProxyType.SOCKS5, proxy.host, proxy.port, username=proxy.username, password=proxy.password,
                   rdns=proxy.scheme == "socks5h")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return client.connect(dest_host=host, dest_port=port, timeout=timeout)
    except ProxyTimeoutError:
        raise ConnectTimeoutError(
            f"The SOCKS5 proxy {proxy.url} did not connect to the Windows host {target} within {timeout:g}s "
            "(ansible_psrp_connection_timeout); check that the proxy can reach the host."
        ) from None
    except ProxyConnectionError as exc:
        raise TransportError(
            f"Could not connect to the SOCKS5 proxy {proxy.url}: {exc.strerror or exc}; check ansible_psrp_proxy "
            "and that the proxy is listening."
        ) from None
    except SocksProxyError as exc:
        raise _refusal(proxy, target, exc) from None
    except UnicodeEncodeError:
        raise ConfigError(
            "ansible_psrp_proxy_user / ansible_psrp_proxy_password: this SOCKS5 client sends ASCII user names and "
            "passwords only."
        ) from None
    except OSError as exc:  # reset or closed during the SOCKS handshake
        raise ProxyError(f"The SOCKS5 proxy {proxy.url} dropped the connection during its handshake: {exc}.") from None


def _refusal(proxy: ProxySpec, target: str, exc: Exception) -> ProxyError:
    code = getattr(exc, "error_code", None)
    text = str(exc)
    if code in _REPLIES:
        what, fix = _REPLIES[code]
        return ProxyError(
            f"The SOCKS5 proxy {proxy.url} refused to connect to the Windows host {target} (reply {code}: {what}); "
            f"{fix}.",
            status=code,
        )
    if "authentication failure" in text:
        return ProxyAuthError(
            f"The SOCKS5 proxy {proxy.url} rejected the user name and password of {proxy.username!r}; check "
            "ansible_psrp_proxy_user and ansible_psrp_proxy_password."
        )
    if "No acceptable authentication methods" in text:
        if proxy.auth is None:
            return ProxyAuthError(
                f"The SOCKS5 proxy {proxy.url} requires a user name and password; set ansible_psrp_proxy_user and "
                "ansible_psrp_proxy_password (with ansible_psrp_protocol: https, rule R1)."
            )
        return ProxyAuthError(
            f"The SOCKS5 proxy {proxy.url} accepts no user name and password authentication (it offers another "
            "method); remove ansible_psrp_proxy_user and ansible_psrp_proxy_password."
        )
    return ProxyError(f"The SOCKS5 proxy {proxy.url} failed the handshake for {target}: {text}.")
