"""Inventory variables that point each of the three connection plugins at one lab host, alike.

Shared by the peer tests and the benchmarks, so both compare the plugins on the same path: HTTPS to the
host with NTLM, the lab's CA trusted, optionally through one proxy (the Basic Squid with a TLS port,
`squid_https`: Basic is the only proxy authentication the builtin plugins can do, credentials in the proxy
URL, and over TLS the password is not readable on the wire) and optionally through the host's latency relay.
"""

from __future__ import annotations

import typing as t
import urllib.parse

PLUGINS: tuple[str, ...] = ("pinned", "builtin_psrp", "builtin_winrm")
CONNECTION: dict[str, str] = {
    "pinned": "pinned.winrm.psrp",
    "builtin_psrp": "ansible.builtin.psrp",
    "builtin_winrm": "ansible.builtin.winrm",
    "local_floor": "local",
}


def _url_with_credentials(url: str, username: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(password, safe='')}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def host_vars(desc: dict[str, t.Any], index: int = 0, *, via_relay: bool = False, user: str = "ansible") -> dict[str, t.Any]:
    """Address, HTTPS port (the host's or its latency relay's) and the host account, for any plugin."""
    host = desc["hosts"][index]
    account = next(u for u in host["users"] if u["username"] == user)
    port = host["relay"]["https_port"] if via_relay else host["https_port"]
    return {
        "ansible_host": host["address"],
        "ansible_port": port,
        "ansible_user": account["username"],
        "ansible_password": account["password"],
    }


def group_vars(plugin: str, desc: dict[str, t.Any], *, proxy: str | None = None) -> dict[str, t.Any]:
    """Connection variables for `plugin` (a key of CONNECTION): HTTPS, NTLM, CA trusted, through `proxy`."""
    base: dict[str, t.Any] = {"ansible_connection": CONNECTION[plugin]}
    squid = dict(desc["proxies"][proxy]) if proxy else None
    if squid and squid.get("https_url"):
        # a proxy with a TLS port is reached over TLS: Basic credentials never cross the wire readable
        squid["url"] = squid["https_url"]
    if plugin == "local_floor":
        return base
    if plugin == "pinned":
        base.update({"ansible_psrp_protocol": "https", "ansible_psrp_auth": "ntlm",
                     "ansible_psrp_ca_cert": desc["ca_cert"]})
        if squid:
            base.update({"ansible_psrp_proxy": squid["url"], "ansible_psrp_proxy_auth": squid["auth"]})
            if squid["url"].startswith("https://"):
                base["ansible_psrp_proxy_ca_cert"] = desc["ca_cert"]
            if squid["auth"] != "none":
                base.update({"ansible_psrp_proxy_user": squid["username"],
                             "ansible_psrp_proxy_password": squid["password"]})
        return base
    # The builtin plugins take proxy credentials only inside the proxy URL (Basic).
    proxy_url = None
    if squid:
        if squid["auth"] not in ("none", "basic"):
            raise ValueError(f"{plugin} can only authenticate to a proxy with Basic, not {squid['auth']}")
        proxy_url = squid["url"] if squid["auth"] == "none" else _url_with_credentials(
            squid["url"], squid["username"], squid["password"])
    if plugin == "builtin_psrp":
        base.update({"ansible_psrp_protocol": "https", "ansible_psrp_auth": "ntlm",
                     "ansible_psrp_cert_validation": "validate", "ansible_psrp_ca_cert": desc["ca_cert"]})
        if proxy_url:
            base["ansible_psrp_proxy"] = proxy_url
        else:
            base["ansible_psrp_ignore_proxy"] = True
        return base
    if plugin == "builtin_winrm":
        base.update({"ansible_winrm_scheme": "https", "ansible_winrm_transport": "ntlm",
                     "ansible_winrm_server_cert_validation": "validate",
                     "ansible_winrm_ca_trust_path": desc["ca_cert"]})
        # pywinrm reads proxies from the environment unless told: None means none (R7's spirit)
        base["ansible_winrm_proxy"] = proxy_url
        return base
    raise ValueError(f"unknown plugin {plugin!r}")
