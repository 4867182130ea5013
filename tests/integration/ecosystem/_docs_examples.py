"""Find the inventory examples in docs/*.md and turn them into inventories for the lab.

An example is a fenced ```yaml block whose first comment line is

    # lab-test: <scenario> [expect=ok|direct|refused:R<n>] [proxy=<lab proxy>] [env:<VAR>=<value>]

The placeholder convention (also stated in docs/README.md) maps what a user writes onto the lab:

- every host under a ``hosts:`` key becomes a lab host, in order (win01 -> WIN-LAB1, ...): the test adds
  ``ansible_host``/``ansible_port`` (the lab's address and the port for the example's protocol), because lab
  names are not in DNS; with Kerberos or Negotiate it adds ``ansible_psrp_negotiate_hostname_override`` (the
  lab host's name), which DNS gives a real controller for free;
- ``ansible_user`` with an ``@`` is the lab's domain (Kerberos) account, any other user the local ``ansible``;
  ``ansible_password`` becomes that account's password;
- CA paths (``ansible_psrp_ca_cert``, ``ansible_psrp_proxy_ca_cert``) become the lab CA; client certificate
  paths the lab host's client certificate; ``ansible_psrp_kerberos_config`` the realm's krb5.conf and
  ``ansible_psrp_kerberos_keytab`` the domain account's client keytab;
- a proxy on ``proxy.corp.example`` becomes the lab Squid whose authentication matches
  ``ansible_psrp_proxy_auth`` (none, basic, digest, ntlm, negotiate/kerberos), an ``https://`` proxy the TLS
  Squid, ``tinyproxy.corp.example`` the lab tinyproxy, a ``socks5://``/``socks5h://`` proxy the lab's SOCKS
  proxy (``socks``, or ``socks_auth`` named by ``proxy=``); the proxy account becomes that proxy's account;
- bypass entries: CIDR ranges become ``127.0.0.0/8``, IP addresses ``127.0.0.1``, ``*.corp.example`` and
  names ``*.lab.test`` and lab names;
- ``CORP.EXAMPLE`` (a realm) becomes ``LAB.TEST``, ``*.corp.example`` names the lab's names.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import pathlib
import re
import typing as t
import urllib.parse

import yaml

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs"
MARKER = re.compile(r"^#\s*lab-test:\s*(?P<scenario>[\w.-]+)(?P<opts>(?:\s+\S+)*)\s*$")
FENCE = re.compile(r"^```yaml[^\n]*\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)

PROXY_BY_AUTH = {None: "squid_noauth", "basic": "squid", "digest": "squid_digest", "ntlm": "squid_ntlm",
                 "negotiate": "squid_negotiate", "kerberos": "squid_negotiate"}
KERBEROS_AUTHS = ("kerberos", "negotiate")


@dataclasses.dataclass(frozen=True)
class DocExample:
    """One marked inventory block of the docs."""

    path: pathlib.Path
    line: int
    scenario: str
    expect: str  # ok | direct | refused:R1 ...
    proxy: str | None  # lab proxy name forced by the marker
    env: dict[str, str]
    inventory: dict[str, t.Any]

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.scenario}"


def yaml_blocks(text: str) -> t.Iterator[tuple[int, str]]:
    """(line number, body) of every fenced yaml block."""
    for match in FENCE.finditer(text):
        yield text.count("\n", 0, match.start()) + 2, match.group("body")


def is_inventory(body: str) -> bool:
    """An inventory example: it chooses a connection plugin (ours, or the one a migration starts from)."""
    return bool(re.search(r"^\s*ansible_connection:", body, re.MULTILINE))


def parse_marker(body: str) -> tuple[str, dict[str, t.Any]] | None:
    """The scenario and options of a block's `# lab-test:` line, or None without one."""
    for line in body.splitlines():
        match = MARKER.match(line.strip())
        if match:
            opts: dict[str, t.Any] = {"expect": "ok", "proxy": None, "env": {}}
            for token in match.group("opts").split():
                if token.startswith("env:") and "=" in token:
                    name, value = token[4:].split("=", 1)
                    opts["env"][name] = value
                elif "=" in token:
                    key, value = token.split("=", 1)
                    if key not in ("expect", "proxy"):
                        raise ValueError(f"unknown lab-test option {token!r}")
                    opts[key] = value
                else:
                    raise ValueError(f"lab-test option {token!r} is not key=value")
            return match.group("scenario"), opts
    return None


def find_examples(docs: pathlib.Path = DOCS) -> tuple[list[DocExample], list[str]]:
    """Every marked example, and where inventory blocks lack a marker (which the test reports)."""
    examples: list[DocExample] = []
    unmarked: list[str] = []
    for path in sorted(docs.glob("*.md")):
        for line, body in yaml_blocks(path.read_text(encoding="utf-8")):
            marker = parse_marker(body)
            if marker is None:
                if is_inventory(body):
                    unmarked.append(f"{path.name}:{line}")
                continue
            scenario, opts = marker
            examples.append(DocExample(path, line, scenario, opts["expect"], opts["proxy"], opts["env"],
                                       yaml.safe_load(body)))
    return examples, unmarked


def _hosts_maps(node: t.Any) -> t.Iterator[dict[str, t.Any]]:
    """Every `hosts:` mapping in an inventory document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hosts" and isinstance(value, dict):
                yield value
            else:
                yield from _hosts_maps(value)


def _group_vars(node: t.Any) -> t.Iterator[dict[str, t.Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "vars" and isinstance(value, dict):
                yield value
            elif key != "hosts":
                yield from _group_vars(value)


def _rename(text: str, desc: dict[str, t.Any]) -> str:
    """Example names -> lab names: win01.corp.example -> win-lab1.lab.test, CORP.EXAMPLE -> LAB.TEST."""
    hosts = desc["hosts"]

    def host(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return hosts[index]["hostname"] if index < len(hosts) else match.group(0)

    text = re.sub(r"win0*(\d+)\.corp\.example", host, text, flags=re.IGNORECASE)
    text = re.sub(r"\bproxy\.corp\.example\b", "proxy.lab.test", text, flags=re.IGNORECASE)
    text = re.sub(r"corp\.example", "lab.test", text)
    return re.sub(r"CORP\.EXAMPLE", "LAB.TEST", text)


def _lab_proxy(url: str, proxy_auth: str | None, forced: str | None, desc: dict[str, t.Any]) -> tuple[str, str]:
    """(lab proxy name, its URL) standing in for an example's proxy URL."""
    proxies = desc["proxies"]
    parsed = urllib.parse.urlsplit(url)
    if forced:
        name = forced
    elif parsed.scheme.startswith("socks"):
        name = "socks"
    elif (parsed.hostname or "").startswith("tinyproxy"):
        name = "tinyproxy"
    elif parsed.scheme == "https":
        name = "squid_https"
    else:
        name = PROXY_BY_AUTH[proxy_auth]
    proxy = proxies[name]
    if parsed.scheme.startswith("socks"):  # the lab's SOCKS proxy under the example's scheme (socks5 or socks5h)
        return name, f"{parsed.scheme}://{urllib.parse.urlsplit(proxy['url']).netloc}"
    return name, proxy["https_url"] if parsed.scheme == "https" else proxy["url"]


def to_lab(example: DocExample, desc: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, str], str | None]:
    """(inventory, environment, lab proxy name) for running the example against the lab."""
    inventory = copy.deepcopy(example.inventory)
    env: dict[str, str] = {}
    proxy_name: str | None = None
    lab_hosts = desc["hosts"]
    merged: dict[str, t.Any] = {}
    for group_vars in _group_vars(inventory):
        merged.update(group_vars)

    def lab_value(key: str, value: t.Any, scope: dict[str, t.Any], host: dict[str, t.Any]) -> t.Any:
        nonlocal proxy_name
        if key in ("ansible_psrp_ca_cert", "ansible_psrp_cert_trust_path", "ansible_psrp_proxy_ca_cert",
                   "ansible_winrm_ca_trust_path"):
            return desc["ca_cert"]
        if key == "ansible_psrp_kerberos_config":
            return desc["kdc"]["krb5_config"]
        if key == "ansible_psrp_kerberos_keytab":
            return account(scope.get("ansible_user"), host)["keytab"]
        if key == "ansible_psrp_certificate_pem":
            return host["client_certs"][0]["cert"]
        if key == "ansible_psrp_certificate_key_pem":
            return host["client_certs"][0]["key"]
        if key == "ansible_psrp_proxy":
            proxy_name, url = _lab_proxy(str(value), scope.get("ansible_psrp_proxy_auth"), example.proxy, desc)
            return url
        if key == "ansible_psrp_proxy_bypass":
            entries = value if isinstance(value, list) else str(value).split(",")
            return [_bypass_entry(str(e).strip(), desc) for e in entries]
        if isinstance(value, str):
            return _rename(value, desc)
        return value

    # one account per example: the domain account for principals, else the local `ansible`
    def account(user: t.Any, host: dict[str, t.Any]) -> dict[str, t.Any]:
        kind = "domain" if isinstance(user, str) and "@" in user else "local"
        return next(u for u in host["users"] if u["kind"] == kind and (kind == "domain" or u["username"] == "ansible"))

    host_maps = list(_hosts_maps(inventory))
    names = [name for hosts in host_maps for name in hosts]
    if len(names) > len(lab_hosts):
        raise ValueError(f"{example.id}: {len(names)} hosts, the lab has {len(lab_hosts)}")
    first = lab_hosts[0]
    scope = dict(merged)
    for scope_vars in _group_vars(inventory):
        for key, value in list(scope_vars.items()):
            scope_vars[key] = lab_value(key, value, scope, first)
        _fill_accounts(scope_vars, account(scope.get("ansible_user"), first))
    index = 0
    for hosts in host_maps:
        for name in list(hosts):
            host = lab_hosts[index]
            index += 1
            entry = dict(hosts.pop(name) or {})
            host_scope = {**scope, **entry}
            entry = {k: lab_value(k, v, host_scope, host) for k, v in entry.items()}
            # local accounts' passwords differ per lab host: set them per host, over the group's
            user_account = account(host_scope.get("ansible_user"), host)
            if "ansible_user" in host_scope:
                entry["ansible_user"] = user_account.get("principal", user_account["username"])
            if "ansible_password" in host_scope:
                entry["ansible_password"] = user_account["password"]
            protocol = host_scope.get("ansible_psrp_protocol") or (
                "http" if str(host_scope.get("ansible_port")) == "5985" else "https")
            entry["ansible_host"] = host["address"]
            entry["ansible_port"] = host[f"{protocol}_port"]
            if host_scope.get("ansible_psrp_auth", "negotiate") in KERBEROS_AUTHS and \
                    "ansible_psrp_negotiate_hostname_override" not in host_scope:
                entry["ansible_psrp_negotiate_hostname_override"] = host["hostname"]
            hosts[host["name"].lower()] = entry
    if proxy_name == "squid_negotiate":
        for scope_vars in _group_vars(inventory):
            scope_vars.setdefault("ansible_psrp_proxy_negotiate_hostname_override",
                                  desc["proxies"][proxy_name]["hostname"])
    for name, value in example.env.items():
        if name.upper().endswith("_PROXY") and "://" in value:
            proxy_name, value = _lab_proxy(value, None, example.proxy, desc)
        env[name] = value
    if proxy_name:
        _fill_proxy_account(inventory, desc["proxies"][proxy_name])
    return inventory, env, proxy_name


def _fill_accounts(scope_vars: dict[str, t.Any], account: dict[str, t.Any]) -> None:
    if "ansible_user" in scope_vars:
        scope_vars["ansible_user"] = account.get("principal", account["username"])
    if "ansible_password" in scope_vars:
        scope_vars["ansible_password"] = account["password"]


def _fill_proxy_account(inventory: dict[str, t.Any], proxy: dict[str, t.Any]) -> None:
    for scope_vars in _group_vars(inventory):
        if "ansible_psrp_proxy_user" in scope_vars:
            auth = scope_vars.get("ansible_psrp_proxy_auth")
            scope_vars["ansible_psrp_proxy_user"] = proxy.get("principal") if auth in KERBEROS_AUTHS else \
                proxy["username"]
        if "ansible_psrp_proxy_password" in scope_vars:
            scope_vars["ansible_psrp_proxy_password"] = proxy["password"]


def _bypass_entry(entry: str, desc: dict[str, t.Any]) -> str:
    if "/" in entry:
        return "127.0.0.0/8"
    try:
        ipaddress.ip_address(entry)
        return "127.0.0.1"
    except ValueError:
        return _rename(entry, desc)


def auth_of(inventory: dict[str, t.Any]) -> str:
    """The host auth the example configures (the plugin's default is negotiate)."""
    auth = "negotiate"
    for scope_vars in _group_vars(inventory):
        auth = scope_vars.get("ansible_psrp_auth", auth)
    return str(auth)
