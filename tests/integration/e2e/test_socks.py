"""End-to-end through the lab's SOCKS5 proxies (microsocks): ansible-playbook runs, counted by the proxy's own log.

microsocks logs each stream it relays once the client passed authentication ("connected to <target>"), before
any byte of the stream: when ansible-playbook has returned, the log holds every stream of the run. The
target it logs is what the client sent: an address for socks5://, the host's name for socks5h://.
"""

from __future__ import annotations

import typing as t

import pytest

from tests.integration.peers._inventory import CONNECTION

from .conftest import E2E, delta

pytestmark = pytest.mark.timeout(240)


def _relayed(e2e: E2E, proxy: str) -> dict[str, int]:
    return dict(e2e.proxy_counters(proxy)["by_target"])


def _new(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}


def _assert_probe_ok(run: t.Any) -> None:
    run.assert_ok()
    results = run.task_results("win-lab1")
    assert [r["status"] for r in results] == ["ok", "ok", "ok"], results
    assert "probe WIN-LAB1 42" in results[0]["stdout"]


@pytest.mark.parametrize("persist", [True, False], ids=["pinned", "persistence-off"])
def test_http_with_ntlm_through_socks5_rides_one_relayed_stream_with_every_message_encrypted(
        e2e: E2E, persist: bool) -> None:
    host = e2e.host()
    before, relayed = e2e.counters(), _relayed(e2e, "socks")
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm",
                   "ansible_psrp_proxy": e2e.proxy("socks")["url"], "ansible_psrp_persist": persist})
    _assert_probe_ok(run)
    after = e2e.counters()
    # pinned: three tasks on one stream the proxy relayed; without persistence, a stream (and a login) per task
    streams = 1 if persist else 3
    assert _new(_relayed(e2e, "socks"), relayed) == {f"{host['address']}:{host['http_port']}": streams}
    assert delta(after, before, "tcp_connections") == streams
    assert delta(after, before, "auth_handshakes.ntlm") == streams
    # R3: the proxy relays the stream, so every message was encrypted; the host refused none as unencrypted
    assert delta(after, before, "rejected.unencrypted") == 0


def test_socks5h_sends_the_hosts_name_for_the_proxy_to_resolve_and_socks5_an_address(e2e: E2E) -> None:
    host = e2e.host()
    socks = e2e.proxy("socks")
    targets = {}
    for url in (socks["url"], socks["socks5h_url"]):
        relayed = _relayed(e2e, "socks")
        run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": url},
                      host_overrides={"ansible_host": "localhost"}, name=url.split(":")[0])
        _assert_probe_ok(run)
        e2e.close_sessions()
        targets[url.split(":")[0]] = _new(_relayed(e2e, "socks"), relayed)
    assert targets == {"socks5": {f"127.0.0.1:{host['http_port']}": 1},
                       "socks5h": {f"localhost:{host['http_port']}": 1}}


def test_socks5_password_over_https_with_the_opt_in_warns_and_authenticates(e2e: E2E) -> None:
    host, socks = e2e.host(), e2e.proxy("socks_auth")
    relayed = _relayed(e2e, "socks_auth")
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": socks["url"],
                   "ansible_psrp_proxy_user": socks["username"], "ansible_psrp_proxy_password": socks["password"],
                   "ansible_psrp_proxy_allow_basic_over_http": True})
    _assert_probe_ok(run)
    # only an authenticated client gets a stream (and a log line) from microsocks
    assert _new(_relayed(e2e, "socks_auth"), relayed) == {f"{host['address']}:{host['https_port']}": 1}
    assert "RFC 1929 sends it in clear" in run.stdout + run.stderr
    assert socks["password"] not in run.stdout + run.stderr


def test_wrong_socks_password_is_the_proxys_refusal_and_never_reaches_the_host(e2e: E2E) -> None:
    socks = e2e.proxy("socks_auth")
    before, relayed = e2e.counters(), _relayed(e2e, "socks_auth")
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": socks["url"],
                   "ansible_psrp_proxy_user": socks["username"], "ansible_psrp_proxy_password": "Not-The-Password-1",
                   "ansible_psrp_proxy_allow_basic_over_http": True})
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert f"SOCKS5 proxy {socks['url']} rejected" in result["msg"], result["msg"]
    assert "ansible_psrp_proxy_password" in result["msg"]
    assert "Not-The-Password-1" not in run.stdout + run.stderr
    assert _relayed(e2e, "socks_auth") == relayed
    assert delta(e2e.counters(), before, "tcp_connections") == 0


def test_a_socks_proxy_that_wants_a_password_and_gets_none_says_which_settings_to_set(e2e: E2E) -> None:
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": e2e.proxy("socks_auth")["url"]})
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert "requires a user name and password" in result["msg"] and "ansible_psrp_proxy_user" in result["msg"]


@pytest.mark.parametrize("rule, group", [
    ("R1", {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_allow_basic_over_http": True,
            "ansible_psrp_proxy_user": "{username}", "ansible_psrp_proxy_password": "{password}"}),
    ("R3", {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_message_encryption": "never"}),
    ("in clear", {"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_user": "{username}",
                  "ansible_psrp_proxy_password": "{password}"}),
], ids=["R1-password-over-http", "R3-unencrypted-over-http", "clear-text-password-without-opt-in"])
def test_socks_settings_that_break_a_rule_are_refused_before_any_byte(e2e: E2E, rule: str,
                                                                      group: dict[str, t.Any]) -> None:
    socks = e2e.proxy("socks_auth")
    values = {k: v.format(**socks) if isinstance(v, str) else v for k, v in group.items()}
    before, relayed = e2e.counters(), _relayed(e2e, "socks_auth")
    run = e2e.run({**values, "ansible_psrp_proxy": socks["url"]})
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "failed", result
    assert rule in result["msg"], result["msg"]
    assert _relayed(e2e, "socks_auth") == relayed
    assert delta(e2e.counters(), before, "tcp_connections") == 0


def test_a_bypassed_host_is_reached_directly_not_through_socks(e2e: E2E) -> None:
    before, relayed = e2e.counters(), _relayed(e2e, "socks")
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": e2e.proxy("socks")["url"],
                   "ansible_psrp_proxy_bypass": ["127.0.0.0/8"]})
    _assert_probe_ok(run)
    assert _relayed(e2e, "socks") == relayed
    assert delta(e2e.counters(), before, "tcp_connections") == 1


def test_builtin_psrp_sends_a_socks_password_with_an_http_endpoint_which_pinned_refuses_r1(e2e: E2E) -> None:
    """On purpose: ansible.builtin.psrp (PySocks under requests) takes socks5://user:pass@ with http://; we apply R1."""
    pytest.importorskip("socks", reason="ansible.builtin.psrp needs PySocks for SOCKS proxies")
    socks = e2e.proxy("socks_auth")
    host = e2e.host()
    url = socks["url"].replace("socks5://", f"socks5://{socks['username']}:{socks['password']}@")
    group = {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": url}
    relayed = _relayed(e2e, "socks_auth")
    builtin = e2e.run({**group, "ansible_connection": CONNECTION["builtin_psrp"]}, name="builtin")
    _assert_probe_ok(builtin)
    # builtin opens new streams every task (a new connection per task, another after the host's first 401), each
    # one authenticated to the proxy with the password in clear
    streams = _new(_relayed(e2e, "socks_auth"), relayed)
    assert list(streams) == [f"{host['address']}:{host['http_port']}"] and streams[list(streams)[0]] >= 3, streams
    pinned = e2e.run({**group, "ansible_psrp_proxy_allow_basic_over_http": True}, name="pinned")
    result = pinned.task_results("win-lab1")[0]
    assert result["status"] == "failed" and "R1" in result["msg"], result
