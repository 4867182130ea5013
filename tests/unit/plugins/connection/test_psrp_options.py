"""Inventory variables -> SessionSpec, one row per option (the plugin built through Ansible's loader)."""

from __future__ import annotations

import io
import typing as t

import pytest
from ansible.errors import AnsibleError
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

from ansible_collections.pinned.winrm.plugins.connection.psrp import build_session_spec
from ansible_collections.pinned.winrm.plugins.plugin_utils._errors import ConfigError

BASE = {"ansible_host": "win01.corp.example", "ansible_user": "ansible", "ansible_password": "Host-Pw1"}


def spec_for(variables: dict[str, t.Any], environ: dict[str, str] | None = None):
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**BASE, **variables})
    return build_session_spec(conn.get_option, environ or {})


def attr(spec, path: str):
    value: t.Any = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


# (inventory variables, {spec attribute: expected value})
ROWS: list[tuple[dict[str, t.Any], dict[str, t.Any]]] = [
    ({}, {"scheme": "https", "port": 5986, "host": "win01.corp.example", "path": "wsman", "auth": "negotiate",
          "encrypt": False, "proxy": None, "endpoint": "https://win01.corp.example:5986/wsman"}),
    ({"ansible_psrp_host": "10.1.2.3"}, {"host": "10.1.2.3"}),
    ({"ansible_host": "fe80::1"}, {"host": "fe80::1", "endpoint": "https://[fe80::1]:5986/wsman"}),
    ({"ansible_psrp_user": "other"}, {"username": "other"}),
    ({"ansible_winrm_password": "Other-Pw"}, {"password": "Other-Pw"}),
    ({"ansible_winrm_pass": "Other-Pw2"}, {"password": "Other-Pw2"}),
    ({"ansible_port": 5985}, {"scheme": "http", "port": 5985, "encrypt": True}),
    ({"ansible_psrp_port": 8443}, {"scheme": "https", "port": 8443}),
    ({"ansible_psrp_protocol": "http"}, {"scheme": "http", "port": 5985}),
    ({"ansible_psrp_protocol": "https", "ansible_port": 5985}, {"scheme": "https", "port": 5985}),
    ({"ansible_psrp_path": "/custom"}, {"path": "custom", "endpoint": "https://win01.corp.example:5986/custom"}),
    ({"ansible_psrp_auth": "ntlm"}, {"auth": "ntlm"}),
    ({"ansible_psrp_auth": "credssp"}, {"auth": "credssp"}),
    # CredSSP over http, as ansible.builtin.psrp: CredSSP encrypts every message itself (R3 holds through a proxy)
    ({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "credssp"}, {"auth": "credssp", "encrypt": True}),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "credssp", "ansible_psrp_proxy": "http://proxy:3128"},
     {"encrypt": True, "use_tunnel": False, "proxy.host": "proxy"}),
    # a read timeout not above the operation timeout is raised, as builtin accepts it (-vvv says so)
    ({"ansible_psrp_operation_timeout": 30}, {"operation_timeout": 30, "read_timeout": 35.0}),
    ({"ansible_psrp_read_timeout": 10, "ansible_psrp_operation_timeout": 20}, {"read_timeout": 25.0}),
    # the explicit opt-in for Basic to an http:// proxy (the host connection stays HTTPS, R1)
    ({"ansible_psrp_proxy": "http://u:Proxy-Pw@proxy:3128", "ansible_psrp_proxy_allow_basic_over_http": True},
     {"proxy.auth": "basic", "proxy.scheme": "http", "proxy.allow_basic_over_http": True, "use_tunnel": True}),
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_ca_cert": "/ca.pem"},
     {"cert_validation": False, "ca_cert": None}),
    ({"ansible_psrp_ca_cert": "/etc/ca.pem"}, {"cert_validation": True, "ca_cert": "/etc/ca.pem"}),
    ({"ansible_psrp_cert_trust_path": "/etc/ca2.pem"}, {"ca_cert": "/etc/ca2.pem"}),
    ({"ansible_psrp_connection_timeout": 7}, {"connection_timeout": 7.0}),
    ({"ansible_psrp_read_timeout": 45, "ansible_psrp_operation_timeout": 40},
     {"read_timeout": 45.0, "operation_timeout": 40}),
    ({"ansible_psrp_reconnection_retries": 3}, {"reconnection_retries": 3}),
    ({"ansible_psrp_connection_backoff": 5}, {"reconnection_backoff": 5.0}),
    ({"ansible_psrp_reconnection_backoff": 4}, {"reconnection_backoff": 4.0}),
    ({"ansible_psrp_message_encryption": "always"}, {"message_encryption": "always", "encrypt": True}),
    ({"ansible_psrp_message_encryption": "never", "ansible_psrp_protocol": "http"}, {"encrypt": False}),
    ({"ansible_psrp_auth": "certificate", "ansible_psrp_certificate_pem": "/c.pem",
      "ansible_psrp_certificate_key_pem": "/k.pem", "ansible_psrp_certificate_key_password": "KeyPw"},
     {"auth": "certificate", "certificate_pem": "/c.pem", "certificate_key_pem": "/k.pem",
      "certificate_key_password": "KeyPw"}),
    ({"ansible_psrp_credssp_auth_mechanism": "ntlm"}, {"credssp_auth_mechanism": "ntlm"}),
    ({"ansible_psrp_credssp_disable_tlsv1_2": True}, {"credssp_disable_tlsv1_2": True}),
    ({"ansible_psrp_credssp_minimum_version": 5}, {"credssp_minimum_version": 5}),
    ({"ansible_psrp_negotiate_delegate": True}, {"negotiate_delegate": True}),
    ({"ansible_psrp_negotiate_hostname_override": "win01.lab.test"}, {"negotiate_hostname_override": "win01.lab.test"}),
    ({"ansible_psrp_negotiate_send_cbt": False}, {"negotiate_send_cbt": False}),
    ({"ansible_psrp_negotiate_service": "HTTP"}, {"negotiate_service": "HTTP"}),
    ({}, {"negotiate_service": "host", "negotiate_send_cbt": True, "max_envelope_size": 153600,
          "operation_timeout": 20, "read_timeout": 30.0, "configuration_name": "Microsoft.PowerShell"}),
    ({"ansible_psrp_max_envelope_size": 512000}, {"max_envelope_size": 512000}),
    ({"ansible_psrp_configuration_name": "Lab.Restricted"}, {"configuration_name": "Lab.Restricted"}),
    ({"ansible_psrp_no_profile": True}, {"no_profile": True}),
    # proxy options
    ({"ansible_psrp_proxy": "http://proxy.corp.example:3128"},
     {"proxy.url": "http://proxy.corp.example:3128", "proxy.scheme": "http", "proxy.port": 3128,
      "proxy.auth": None, "use_tunnel": True}),
    ({"ansible_psrp_proxy": "https://proxy.corp.example", "ansible_psrp_proxy_ca_cert": "/proxy-ca.pem"},
     {"proxy.scheme": "https", "proxy.port": 443, "proxy.ca_cert": "/proxy-ca.pem"}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_auth": "ntlm",
      "ansible_psrp_proxy_user": "CORP\\svc", "ansible_psrp_proxy_password": "Proxy-Pw"},
     {"proxy.auth": "ntlm", "proxy.username": "CORP\\svc", "proxy.password": "Proxy-Pw", "password": "Host-Pw1"}),
    ({"ansible_psrp_proxy": "https://u%40x:p%3Aw@proxy:3129"},
     {"proxy.auth": "basic", "proxy.username": "u@x", "proxy.password": "p:w", "proxy.url": "https://proxy:3129"}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_auth": "kerberos"},
     {"proxy.auth": "kerberos", "proxy.username": None}),
    ({"ansible_psrp_proxy": "http://127.0.0.1:3128", "ansible_psrp_proxy_auth": "kerberos",
      "ansible_psrp_proxy_negotiate_hostname_override": "proxy.lab.test", "ansible_psrp_proxy_negotiate_service": "HTTP"},
     {"proxy.negotiate_hostname": "proxy.lab.test", "proxy.spn_hostname": "proxy.lab.test",
      "proxy.negotiate_service": "HTTP"}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_auth": "digest",
      "ansible_psrp_proxy_user": "d", "ansible_psrp_proxy_password": "Dpw"}, {"proxy.auth": "digest"}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_protocol": "http", "ansible_psrp_proxy_tunnel": True},
     {"proxy.tunnel": True, "use_tunnel": True, "encrypt": True}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_protocol": "http"},
     {"proxy.tunnel": False, "use_tunnel": False, "encrypt": True}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_bypass": ["*.corp.example"]}, {"proxy": None}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_bypass": "other, win01.corp.example"},
     {"proxy": None}),
    ({"ansible_host": "10.20.3.4", "ansible_psrp_proxy": "http://proxy:3128",
      "ansible_psrp_proxy_bypass": ["10.20.0.0/16"]}, {"proxy": None}),
    ({"ansible_host": "10.21.3.4", "ansible_psrp_proxy": "http://proxy:3128",
      "ansible_psrp_proxy_bypass": ["10.20.0.0/16"]}, {"proxy.host": "proxy"}),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_bypass": ["*.other.example"]},
     {"proxy.host": "proxy"}),
    # https through a proxy without validating the host: auto encrypts messages as over http (review point 5)
    ({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_cert_validation": "ignore", "ansible_psrp_auth": "ntlm"},
     {"encrypt": True, "unverified_tunnel": True}),
    ({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_auth": "ntlm"}, {"encrypt": False, "unverified_tunnel": False}),
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_auth": "basic"}, {"encrypt": False, "unverified_tunnel": False}),
]


@pytest.mark.compat
@pytest.mark.parametrize("variables, expected", ROWS, ids=[",".join(r[0]) or "defaults" for r in ROWS])
def test_inventory_variables_map_onto_the_session_spec(variables, expected):
    spec = spec_for(variables)
    for path, value in expected.items():
        assert attr(spec, path) == value, path


ENV = {"HTTPS_PROXY": "http://env-proxy:8080", "HTTP_PROXY": "http://env-http:8080", "NO_PROXY": "*.nope.example"}


@pytest.mark.compat
def test_environment_proxies_are_ignored_by_default_r7():
    assert spec_for({}, ENV).proxy is None


@pytest.mark.compat
def test_environment_proxies_are_used_only_when_asked_r7():
    spec = spec_for({"ansible_psrp_proxy_from_env": True}, ENV)
    assert spec.proxy.url == "http://env-proxy:8080" and spec.proxy.source == "HTTPS_PROXY"
    spec = spec_for({"ansible_psrp_proxy_from_env": True, "ansible_port": 5985}, ENV)
    assert spec.proxy.url == "http://env-http:8080"


@pytest.mark.compat
def test_environment_no_proxy_is_honoured_r7():
    spec = spec_for({"ansible_psrp_proxy_from_env": True, "ansible_host": "a.nope.example"}, ENV)
    assert spec.proxy is None


@pytest.mark.compat
@pytest.mark.parametrize("value", ["svc:S3cret-Pw@proxy:3128", "http://svc:S3cret-Pw@[fe80::1:3128"])
def test_a_malformed_environment_proxy_is_named_with_its_password_masked(value):
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as err:
        spec_for({"ansible_psrp_proxy_from_env": True}, {"HTTPS_PROXY": value})
    assert "S3cret-Pw" not in str(err.value) and "svc:********@" in str(err.value)


@pytest.mark.compat
def test_ignore_proxy_beats_proxy_from_env():
    assert spec_for({"ansible_psrp_proxy_from_env": True, "ansible_psrp_ignore_proxy": True}, ENV).proxy is None


@pytest.mark.compat
def test_inventory_proxy_wins_over_the_environment():
    spec = spec_for({"ansible_psrp_proxy": "http://inv:3128", "ansible_psrp_proxy_from_env": True}, ENV)
    assert spec.proxy.url == "http://inv:3128"


CA_ENV = {"REQUESTS_CA_BUNDLE": "/etc/requests-ca.pem", "CURL_CA_BUNDLE": "/etc/curl-ca.pem"}


@pytest.mark.compat
@pytest.mark.parametrize("variables, environ, host_ca, proxy_ca", [
    ({}, CA_ENV, "/etc/requests-ca.pem", None),
    ({}, {"CURL_CA_BUNDLE": "/etc/curl-ca.pem"}, "/etc/curl-ca.pem", None),
    ({"ansible_psrp_ca_cert": "/inv.pem"}, CA_ENV, "/inv.pem", None),
    ({"ansible_psrp_cert_validation": "ignore"}, CA_ENV, None, None),
    ({"ansible_psrp_proxy": "https://proxy:3129"}, CA_ENV, "/etc/requests-ca.pem", "/etc/requests-ca.pem"),
    ({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_proxy_ca_cert": "/p.pem"}, CA_ENV,
     "/etc/requests-ca.pem", "/p.pem"),
    ({"ansible_psrp_proxy": "http://proxy:3128"}, CA_ENV, "/etc/requests-ca.pem", None),
    ({}, {}, None, None),
])
def test_ca_bundle_variables_are_honoured_as_builtin_psrp_honours_them(variables, environ, host_ca, proxy_ca):
    spec = spec_for(variables, environ)
    assert spec.ca_cert == host_ca
    assert (spec.proxy.ca_cert if spec.proxy else None) == proxy_ca


@pytest.mark.compat
def test_adjustments_are_said_at_vvv_and_the_basic_proxy_opt_in_warns():
    from ansible_collections.pinned.winrm.plugins.connection.psrp import build_session_spec

    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**BASE, "ansible_psrp_operation_timeout": 30,
                                  "ansible_psrp_proxy": "http://svc:Proxy-Pw@proxy:3128",
                                  "ansible_psrp_proxy_allow_basic_over_http": True})
    notes: list[tuple[str, str]] = []
    build_session_spec(conn.get_option, CA_ENV, notes)
    levels = {level: text for level, text in notes}
    assert set(levels) == {"vvv", "warning"}
    assert any("raised to 35s" in text for level, text in notes if level == "vvv")
    assert any("REQUESTS_CA_BUNDLE" in text for level, text in notes if level == "vvv")
    assert "readable" in levels["warning"] and "'svc'" in levels["warning"] and "Proxy-Pw" not in levels["warning"]


# (inventory variables, words the error must contain)
REFUSED: list[tuple[dict[str, t.Any], tuple[str, ...]]] = [
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://u:p@proxy:3128"},
     ("R1", "ansible_psrp_protocol=https")),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_auth": "ntlm",
      "ansible_psrp_proxy_user": "u", "ansible_psrp_proxy_password": "p"}, ("R1",)),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_tunnel": True,
      "ansible_psrp_proxy_auth": "kerberos"}, ("R1",)),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://proxy:3128",
      "ansible_psrp_message_encryption": "never"}, ("R3", "ansible_psrp_message_encryption")),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_auth": "basic",
      "ansible_psrp_message_encryption": "never"}, ("R3", "ansible_psrp_auth=basic")),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_tunnel": True,
      "ansible_psrp_message_encryption": "never"}, ("R3",)),
    ({"ansible_psrp_auth": "basic", "ansible_psrp_message_encryption": "always"}, ("message_encryption=always",)),
    ({"ansible_psrp_auth": "certificate"}, ("ansible_psrp_certificate_pem",)),
    ({"ansible_port": 70000}, ("ansible_port",)),
    ({"ansible_port": "abc"}, ("ansible_port",)),
    ({"ansible_psrp_proxy": "proxy:3128"}, ("ansible_psrp_proxy", "no scheme")),
    # a password in a URL without a scheme (common in HTTPS_PROXY) is masked in the error
    ({"ansible_psrp_proxy": "svc:S3cret-Pw@proxy:3128"}, ("ansible_psrp_proxy", "no scheme", "svc:********@proxy")),
    # a malformed IPv6 proxy URL is a ConfigError naming the variable, not a raw ValueError
    ({"ansible_psrp_proxy": "https://svc:S3cret-Pw@[::1:3128"}, ("ansible_psrp_proxy", "IPv6", "svc:********@")),
    ({"ansible_psrp_proxy": "ftp://proxy:21"}, ("ansible_psrp_proxy", "ftp")),
    ({"ansible_psrp_proxy": "http://proxy:99999"}, ("ansible_psrp_proxy", "port")),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_bypass": ["10.0.0.0/33"]},
     ("ansible_psrp_proxy_bypass", "10.0.0.0/33")),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_bypass": ["bad host"]},
     ("ansible_psrp_proxy_bypass",)),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_ca_cert": "/ca.pem"},
     ("ansible_psrp_proxy_ca_cert", "https://")),
    ({"ansible_psrp_proxy_user": "u", "ansible_psrp_proxy_password": "p"}, ("ansible_psrp_proxy",)),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_auth": "ntlm"},
     ("ansible_psrp_proxy_user", "ansible_psrp_proxy_password")),
    ({"ansible_psrp_proxy": "socks5://proxy:1080"}, ("ansible_psrp_proxy", "SOCKS")),
    ({"ansible_psrp_proxy": "http://u:Proxy-Pw@proxy:3128"},
     ("proxy_auth=basic", "https://", "digest", "ansible_psrp_proxy_allow_basic_over_http")),
    ({"ansible_psrp_proxy": "http://proxy:3128", "ansible_psrp_proxy_user": "u", "ansible_psrp_proxy_password": "p"},
     ("proxy_auth=basic",)),
    ({"ansible_psrp_protocol": "http", "ansible_psrp_proxy": "http://u:Proxy-Pw@proxy:3128",
      "ansible_psrp_proxy_allow_basic_over_http": True}, ("R1",)),
    ({"ansible_host": "https://win01:5986/wsman"}, ("ansible_host",)),
    ({"ansible_psrp_auth": "bogus"}, ("ansible_psrp_auth", "credssp")),
    ({"ansible_psrp_protocol": "ftp"}, ("ansible_psrp_protocol", "https")),
    ({"ansible_psrp_cert_validation": "maybe"}, ("ansible_psrp_cert_validation", "ignore")),
    ({"ansible_psrp_message_encryption": "sometimes"}, ("ansible_psrp_message_encryption", "never")),
    ({"ansible_psrp_credssp_auth_mechanism": "x"}, ("ansible_psrp_credssp_auth_mechanism",)),
    ({"ansible_psrp_proxy": "https://p:3129", "ansible_psrp_proxy_auth": "ntlmv1",
      "ansible_psrp_proxy_user": "u", "ansible_psrp_proxy_password": "p"}, ("ansible_psrp_proxy_auth", "kerberos")),
    ({"ansible_psrp_max_envelope_size": 10}, ("ansible_psrp_max_envelope_size",)),
    # cert_validation ignore through a proxy: whoever terminates the tunnel could read or relay (review point 5)
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_auth": "basic"},
     ("R3", "ansible_psrp_auth=basic", "ansible_psrp_cert_validation=ignore", "read the password")),
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_proxy": "https://proxy:3129",
      "ansible_psrp_auth": "certificate", "ansible_psrp_certificate_pem": "/c.pem",
      "ansible_psrp_certificate_key_pem": "/k.pem"}, ("R3", "ansible_psrp_auth=certificate")),
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_proxy": "https://proxy:3129",
      "ansible_psrp_message_encryption": "never"}, ("R3", "ansible_psrp_message_encryption=never")),
    ({"ansible_psrp_cert_validation": "ignore", "ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_auth": "ntlm",
      "ansible_psrp_negotiate_send_cbt": False}, ("R1", "ansible_psrp_negotiate_send_cbt=false", "relay")),
]


@pytest.mark.compat
@pytest.mark.parametrize("variables, words", REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_refused_settings_name_the_variable_and_the_fix(variables, words):
    # Ansible's own type checks (e.g. a port that is not a number) come first and name the variable too.
    with pytest.raises((ConfigError, AnsibleError)) as err:
        spec_for(variables)
    for word in words:
        assert word in str(err.value)
    # the error never carries a secret
    for secret in ("Host-Pw1", ":p@", "Proxy-Pw", "S3cret-Pw"):
        assert secret not in str(err.value)


@pytest.mark.compat
def test_refusal_surfaces_as_ansible_error_before_any_connection(tmp_path):
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**BASE, "ansible_psrp_protocol": "http", "ansible_psrp_proxy": "https://u:p@127.0.0.1:9",
                                  "ansible_psrp_persist_dir": str(tmp_path)})
    with pytest.raises(AnsibleError, match="R1"):
        conn._connect()
    assert conn._runner is None and list(tmp_path.iterdir()) == []


@pytest.mark.compat
def test_secrets_stay_out_of_the_spec_repr_and_description():
    spec = spec_for({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_proxy_user": "pu",
                     "ansible_psrp_proxy_password": "Proxy-Pw"})
    text = repr(spec) + repr(spec.proxy) + str(spec.describe())
    assert "Host-Pw1" not in text and "Proxy-Pw" not in text


@pytest.mark.compat
def test_pin_key_changes_with_any_credential_and_is_keyed():
    a = spec_for({})
    b = spec_for({"ansible_password": "Other"})
    c = spec_for({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_proxy_user": "x",
                  "ansible_psrp_proxy_password": "y"})
    d = spec_for({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_proxy_user": "x",
                  "ansible_psrp_proxy_password": "z"})
    key = b"k" * 32
    assert a.pin_key(key) == spec_for({}).pin_key(key)
    assert len({a.pin_key(key), b.pin_key(key), c.pin_key(key), d.pin_key(key)}) == 4
    assert a.pin_key(key) != a.pin_key(b"j" * 32)


@pytest.mark.compat
def test_wire_form_round_trips():
    spec = spec_for({"ansible_psrp_proxy": "https://proxy:3129", "ansible_psrp_proxy_auth": "ntlm",
                     "ansible_psrp_proxy_user": "x", "ansible_psrp_proxy_password": "y"})
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import SessionSpec

    assert SessionSpec.from_wire(spec.to_wire()) == spec


# NO_PROXY and the proxy variables read as curl and Python's urllib read them (review point 6). urllib is the
# oracle: for every row its own proxy_bypass_environment must agree with the plugin.
NO_PROXY_ROWS: list[tuple[str, str, int, bool]] = [
    # (NO_PROXY, endpoint host, endpoint port, bypassed)
    ("corp.example", "win1.corp.example", 5986, True),
    ("corp.example", "corp.example", 5986, True),
    (".corp.example", "win1.corp.example", 5986, True),
    (".corp.example", "corp.example", 5986, True),
    ("corp.example", "badcorp.example", 5986, False),
    ("CORP.Example", "win1.corp.example", 5986, True),
    ("win1.corp.example:5986", "win1.corp.example", 5986, True),
    ("win1.corp.example:5985", "win1.corp.example", 5986, False),
    ("10.1.2.3", "10.1.2.3", 5986, True),
    ("10.1.2.3:5986", "10.1.2.3", 5986, True),
    ("10.1.2.3:5985", "10.1.2.3", 5986, False),
    ("*", "anything.example", 5986, True),
    ("other.example, corp.example", "db.win1.corp.example", 5986, True),
    ("other.example", "win1.corp.example", 5986, False),
]


@pytest.mark.compat
@pytest.mark.parametrize("no_proxy, host, port, expected", NO_PROXY_ROWS,
                         ids=[f"{r[0]}->{r[1]}:{r[2]}" for r in NO_PROXY_ROWS])
def test_no_proxy_matches_as_curl_and_urllib_do(no_proxy, host, port, expected):
    import urllib.request

    assert urllib.request.proxy_bypass_environment(f"{host}:{port}", {"no": no_proxy}) == expected  # the oracle
    spec = spec_for({"ansible_psrp_proxy_from_env": True, "ansible_host": host, "ansible_port": port},
                    {"HTTPS_PROXY": "http://env-proxy:8080", "NO_PROXY": no_proxy})
    assert (spec.proxy is None) == expected


@pytest.mark.compat
def test_lowercase_proxy_variables_win_over_uppercase_ones(monkeypatch):
    import urllib.request

    environ = {"HTTPS_PROXY": "http://upper:8080", "https_proxy": "http://lower:8080",
               "NO_PROXY": "win01.corp.example", "no_proxy": ""}
    for key in [k for k in __import__("os").environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    oracle = urllib.request.getproxies_environment()
    assert oracle["https"] == "http://lower:8080" and "no" not in oracle
    # the same environment in the opposite insertion order: the lowercase variables still win
    for env in (environ, dict(reversed(list(environ.items())))):
        spec = spec_for({"ansible_psrp_proxy_from_env": True}, env)
        assert spec.proxy is not None and spec.proxy.host == "lower" and spec.proxy.source == "https_proxy"


@pytest.mark.compat
def test_pin_key_follows_the_contents_of_ca_and_certificate_files_not_their_paths(tmp_path):
    ca, cert, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem"
    for path, text in ((ca, "ca one"), (cert, "cert one"), (key_file, "key one")):
        path.write_text(text)
    variables = {"ansible_psrp_ca_cert": str(ca), "ansible_psrp_auth": "certificate",
                 "ansible_psrp_certificate_pem": str(cert), "ansible_psrp_certificate_key_pem": str(key_file)}
    key = b"k" * 32
    first = spec_for(variables).pin_key(key)
    assert spec_for(variables).pin_key(key) == first
    seen = {first}
    for path in (ca, cert, key_file):  # a rotated file, same path: another session
        path.write_text(path.read_text().replace("one", "two"))
        seen.add(spec_for(variables).pin_key(key))
    assert len(seen) == 4


@pytest.mark.compat
def test_file_settings_reach_the_daemon_as_absolute_paths(tmp_path, monkeypatch):
    # the daemon runs in its own directory: a relative path must not name (and key) another file there
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec

    monkeypatch.chdir(tmp_path)
    spec = build_spec({"remote_addr": "win01", "ca_cert": "ca.pem", "proxy": "https://proxy:3129",
                       "proxy_ca_cert": "proxy-ca.pem"})
    assert spec.ca_cert == str(tmp_path / "ca.pem") and spec.proxy.ca_cert == str(tmp_path / "proxy-ca.pem")


@pytest.mark.parametrize(("variables", "expected"), [
    ({}, 100), ({"ansible_psrp_persist_max_tasks": 7}, 7), ({"ansible_psrp_persist_max_tasks": 0}, 0)])
def test_persist_max_tasks_reaches_the_pin_client_that_sends_it_with_every_task(tmp_path, variables, expected):
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**BASE, "ansible_psrp_persist_dir": str(tmp_path), **variables})
    assert conn._build_runner().max_tasks == expected


def test_a_negative_persist_max_tasks_is_refused_naming_the_variable(tmp_path):
    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**BASE, "ansible_psrp_persist_dir": str(tmp_path),
                                  "ansible_psrp_persist_max_tasks": -1})
    with pytest.raises(AnsibleError, match="ansible_psrp_persist_max_tasks must be 0"):
        conn._build_runner()
