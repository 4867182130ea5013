"""Kerberos without kinit: a password or a keytab gets the session its own ticket, against the lab's KDC.

What the KDC logged proves it: one AS exchange (a login) per session for the principal, whatever the number
of tasks. The run's default credential cache is a file path that must still not exist afterwards, and the
run's KRB5_CONFIG names an empty krb5.conf, so only ansible_psrp_kerberos_config can have found the realm.
The lab host answers `whoami` from the account the login gave the session.
"""

from __future__ import annotations

import pathlib
import re
import typing as t

import pytest

from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import running_daemons

from .conftest import E2E, delta

pytestmark = pytest.mark.timeout(240)

WHOAMI = "whoami_probe.yml"


@pytest.fixture
def kdc(e2e: E2E) -> dict[str, t.Any]:
    if not e2e.desc.get("kdc"):
        pytest.skip("the session lab runs without the realm")
    return e2e.desc["kdc"]


def _domain_user(e2e: E2E, name: str) -> dict[str, t.Any]:
    return next(u for u in e2e.host()["users"] if u["username"] == name)


def _logins(kdc: dict[str, t.Any], principal: str) -> int:
    """AS exchanges the KDC answered with a ticket for `principal` (its log's ISSUE lines for krbtgt)."""
    text = pathlib.Path(kdc["log"]).read_text(errors="replace")
    return len(re.findall(rf"AS_REQ .*ISSUE: .*{re.escape(principal)} for krbtgt/", text))


def _no_default_cache_env(tmp_path: pathlib.Path) -> tuple[dict[str, str], pathlib.Path]:
    """The run's own Kerberos environment: a default cache that must stay untouched, a krb5.conf without the realm."""
    default_cache = tmp_path / "users-default-ccache"
    empty_conf = tmp_path / "empty-krb5.conf"
    empty_conf.write_text("[libdefaults]\n dns_lookup_kdc = false\n dns_lookup_realm = false\n")
    return {"KRB5CCNAME": f"FILE:{default_cache}", "KRB5_CONFIG": str(empty_conf)}, default_cache


def _group(e2e: E2E, kdc: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    return {"ansible_psrp_auth": "kerberos", "ansible_psrp_negotiate_hostname_override": e2e.host()["hostname"],
            "ansible_psrp_kerberos_config": kdc["krb5_config"], **extra}


def _whoami(run: t.Any) -> list[str]:
    return [r.get("stdout", "").strip().lower() for r in run.task_results("win-lab1")]


@pytest.mark.parametrize("persist", [True, False], ids=["pinned", "persistence-off"])
def test_a_password_login_gets_a_private_ticket_once_per_session_and_never_touches_the_default_cache(
        e2e: E2E, kdc: dict[str, t.Any], tmp_path: pathlib.Path, persist: bool) -> None:
    user = _domain_user(e2e, "labdomain")
    env, default_cache = _no_default_cache_env(tmp_path)
    before, logins = e2e.counters(), _logins(kdc, user["principal"])
    run = e2e.run(_group(e2e, kdc, ansible_psrp_persist=persist), playbook=WHOAMI, env=env,
                  host_overrides={"ansible_user": user["principal"], "ansible_password": user["password"]})
    run.assert_ok()
    assert _whoami(run) == ["win-lab1\\labdomain"] * 3
    sessions = 1 if persist else 3
    assert _logins(kdc, user["principal"]) - logins == sessions
    assert delta(e2e.counters(), before, "auth_handshakes.kerberos") == sessions
    assert not default_cache.exists(), "the user's default credential cache was written"
    if persist:  # the krb5.conf the run named picked the pin daemon, which reads that file
        (daemon,) = running_daemons(str(e2e.workdir / "pc"))
        environ = pathlib.Path(f"/proc/{daemon.hello()['pid']}/environ").read_bytes().split(b"\0")
        assert f"KRB5_CONFIG={kdc['krb5_config']}".encode() in environ


def test_a_keytab_login_needs_no_password_and_no_kinit(e2e: E2E, kdc: dict[str, t.Any],
                                                       tmp_path: pathlib.Path) -> None:
    user = _domain_user(e2e, "labdomain2")
    keytab = user["keytab"]
    env, default_cache = _no_default_cache_env(tmp_path)
    logins = _logins(kdc, user["principal"])
    run = e2e.run(_group(e2e, kdc, ansible_psrp_kerberos_keytab=str(keytab)), playbook=WHOAMI, env=env,
                  host_overrides={"ansible_user": user["principal"], "ansible_password": None})
    run.assert_ok()
    assert _whoami(run) == ["win-lab1\\labdomain2"] * 3
    assert _logins(kdc, user["principal"]) - logins == 1
    assert not default_cache.exists()


def test_two_users_at_once_each_run_as_their_own_principal(e2e: E2E, kdc: dict[str, t.Any],
                                                            tmp_path: pathlib.Path) -> None:
    first, second = _domain_user(e2e, "labdomain"), _domain_user(e2e, "labdomain2")
    keytab = second["keytab"]
    env, _cache = _no_default_cache_env(tmp_path)
    # one pin daemon serves both runs (same persist dir, same krb5.conf): their sessions must stay apart
    runs = [
        e2e.start(_group(e2e, kdc), playbook=WHOAMI, env=env, name="first",
                  host_overrides={"ansible_user": first["principal"], "ansible_password": first["password"]}),
        e2e.start(_group(e2e, kdc, ansible_psrp_kerberos_keytab=str(keytab)), playbook=WHOAMI, env=env,
                  name="second", host_overrides={"ansible_user": second["principal"], "ansible_password": None}),
    ]
    first_run, second_run = (r.finish() for r in runs)
    first_run.assert_ok()
    second_run.assert_ok()
    assert _whoami(first_run) == ["win-lab1\\labdomain"] * 3
    assert _whoami(second_run) == ["win-lab1\\labdomain2"] * 3


@pytest.mark.parametrize("what, overrides, words", [
    ("wrong password", {"ansible_password": "Not-The-Password-1"},
     ("Windows host", "realm LAB.TEST", "ansible_password")),
    ("unknown user", {"ansible_user": "nobody-here@LAB.TEST"},
     ("Windows host", "realm LAB.TEST", "not found in Kerberos database", "ansible_user")),
    ("unknown SPN", {"ansible_psrp_negotiate_hostname_override": "not-a-host.lab.test"},
     ("host/not-a-host.lab.test", "ansible_psrp_negotiate_hostname_override", "setspn")),
], ids=["wrong-password", "unknown-user", "unknown-spn"])
def test_kerberos_failures_name_the_hop_the_realm_its_kdc_and_the_setting(
        e2e: E2E, kdc: dict[str, t.Any], tmp_path: pathlib.Path, what: str, overrides: dict[str, t.Any],
        words: tuple[str, ...]) -> None:
    user = _domain_user(e2e, "labdomain")
    env, _cache = _no_default_cache_env(tmp_path)
    group = _group(e2e, kdc)
    host = {"ansible_user": user["principal"], "ansible_password": user["password"]}
    for key, value in overrides.items():
        (group if key.startswith("ansible_psrp_") else host)[key] = value
    run = e2e.run(group, env=env, host_overrides=host)
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    for word in words:
        assert word in result["msg"], (word, result["msg"])
    if what != "unknown SPN":
        assert kdc["kdc"] in result["msg"], result["msg"]  # the KDC the named krb5.conf gives for the realm
    assert "Not-The-Password-1" not in run.stdout + run.stderr and user["password"] not in run.stdout + run.stderr


def test_kerberos_to_the_proxy_with_a_password_gets_its_own_ticket_and_a_wrong_one_names_the_proxy(
        e2e: E2E, kdc: dict[str, t.Any], tmp_path: pathlib.Path) -> None:
    proxy = e2e.proxy("squid_negotiate")
    env, default_cache = _no_default_cache_env(tmp_path)
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_kerberos_config": kdc["krb5_config"],
             "ansible_psrp_proxy": proxy["url"], "ansible_psrp_proxy_auth": "kerberos",
             "ansible_psrp_proxy_user": proxy["principal"], "ansible_psrp_proxy_password": proxy["password"],
             "ansible_psrp_proxy_negotiate_hostname_override": proxy["hostname"]}
    logins = _logins(kdc, proxy["principal"])
    run = e2e.run(group, env=env)
    run.assert_ok()
    assert _logins(kdc, proxy["principal"]) - logins == 1
    assert not default_cache.exists()
    wrong = e2e.run({**group, "ansible_psrp_proxy_password": "Not-The-Password-1"}, env=env, name="wrong")
    result = wrong.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    for word in (f"proxy {proxy['url']}", "realm LAB.TEST", kdc["kdc"], "ansible_psrp_proxy_password"):
        assert word in result["msg"], (word, result["msg"])

