"""A password-less Kerberos login pins the run's own credential cache (real MIT krb5 caches, no KDC needed)."""

from __future__ import annotations

import pathlib

import pytest

krb5 = pytest.importorskip("krb5")
spnego = pytest.importorskip("spnego")

from ansible_collections.pinned.winrm.plugins.plugin_utils._httpauth import host_provider, proxy_provider  # noqa: E402
from ansible_collections.pinned.winrm.plugins.plugin_utils._kerberos import resolve_ticket_identity  # noqa: E402
from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec  # noqa: E402


def _cache(path: pathlib.Path, principal: str) -> str:
    """A FILE credential cache initialised for principal (no tickets needed to name its owner)."""
    ctx = krb5.init_context()
    name = f"FILE:{path}"
    cache = krb5.cc_resolve(ctx, name.encode())
    krb5.cc_initialize(ctx, cache, krb5.parse_name_flags(ctx, principal.encode()))
    return name


def _spec(environ: dict[str, str], **options):
    return build_spec({"remote_addr": "win01.corp.example", "auth": "kerberos", **options}, environ)


def test_the_spec_carries_the_runs_own_cache_and_its_principal(tmp_path):
    name = _cache(tmp_path / "svc.cc", "svc@CORP.EXAMPLE")
    spec = _spec({"KRB5CCNAME": name})
    assert (spec.kerberos_ccache, spec.kerberos_principal) == (name, "svc@CORP.EXAMPLE")
    assert spec.describe()["user"] == "svc@CORP.EXAMPLE"


def test_different_caches_get_different_pin_keys_and_the_same_cache_the_same_key(tmp_path):
    svc = _cache(tmp_path / "svc.cc", "svc@CORP.EXAMPLE")
    other = _cache(tmp_path / "other.cc", "other@CORP.EXAMPLE")
    key = b"k" * 32
    assert _spec({"KRB5CCNAME": svc}).pin_key(key) == _spec({"KRB5CCNAME": svc}).pin_key(key)
    assert _spec({"KRB5CCNAME": svc}).pin_key(key) != _spec({"KRB5CCNAME": other}).pin_key(key)
    # the same cache re-initialised for another principal (kdestroy; kinit other) is another identity
    before = _spec({"KRB5CCNAME": svc}).pin_key(key)
    _cache(tmp_path / "svc.cc", "other@CORP.EXAMPLE")
    assert _spec({"KRB5CCNAME": svc}).pin_key(key) != before


def test_a_login_with_a_password_pins_no_cache(tmp_path):
    spec = _spec({"KRB5CCNAME": _cache(tmp_path / "svc.cc", "svc@CORP.EXAMPLE")},
                 remote_user="svc@CORP.EXAMPLE", remote_password="Pw-1")
    assert spec.kerberos_ccache is None and spec.kerberos_principal is None


def test_the_host_and_proxy_providers_use_exactly_the_pinned_cache(tmp_path):
    name = _cache(tmp_path / "svc.cc", "svc@CORP.EXAMPLE")
    spec = _spec({"KRB5CCNAME": name}, proxy="https://proxy:3129", proxy_auth="kerberos")
    host = host_provider(spec, channel_bindings=None)
    assert host._tickets == [spnego.KerberosCCache(ccache=name, principal="svc@CORP.EXAMPLE")]
    proxy = proxy_provider(spec.proxy, spec)
    assert proxy._tickets[0] == spnego.KerberosCCache(ccache=name, principal="svc@CORP.EXAMPLE")


def test_an_empty_cache_names_itself_and_no_principal(tmp_path):
    identity = resolve_ticket_identity(None, {"KRB5CCNAME": f"FILE:{tmp_path / 'missing.cc'}",
                                              "KRB5_CLIENT_KTNAME": f"FILE:{tmp_path / 'none.keytab'}"})
    assert identity is not None
    assert (identity.ccache, identity.principal, identity.keytab) == (f"FILE:{tmp_path / 'missing.cc'}", None, None)


def test_with_no_ticket_in_the_cache_a_client_keytab_with_keys_is_the_identity(tmp_path):
    ctx = krb5.init_context()
    keytab_name = f"FILE:{tmp_path / 'client.keytab'}"
    keytab = krb5.kt_resolve(ctx, keytab_name.encode())
    principal = krb5.parse_name_flags(ctx, b"robot@CORP.EXAMPLE")
    key = krb5.c_string_to_key(ctx, 18, b"not-a-real-password", b"CORP.EXAMPLErobot")  # aes256-cts
    krb5.kt_add_entry(ctx, keytab, principal, 1, 0, key)
    environ = {"KRB5CCNAME": f"FILE:{tmp_path / 'empty.cc'}", "KRB5_CLIENT_KTNAME": keytab_name}
    spec = _spec(environ)
    assert (spec.kerberos_keytab, spec.kerberos_principal, spec.kerberos_ccache) == (keytab_name, "robot@CORP.EXAMPLE", None)
    assert host_provider(spec, channel_bindings=None)._tickets == [
        spnego.KerberosKeytab(keytab=keytab_name, principal="robot@CORP.EXAMPLE")]
