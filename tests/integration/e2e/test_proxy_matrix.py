"""End-to-end: real ansible-playbook runs through pinned.winrm.psrp, one row per way of reaching a host.

Each row asserts the task results (derived by the lab from what it received) and what the lab host and
the real proxies counted: which auth scheme the host saw, that the proxy authenticated our proxy user,
and that a pinned session served every task of the run on one TCP connection.
"""

from __future__ import annotations

import time
import typing as t

import pytest

from tests.integration.positive_marker import (
    access_line_count,
    access_lines_before_marker,
    host_connections_before_marker,
)

from .conftest import E2E, delta

pytestmark = pytest.mark.timeout(240)


def _poll(fn: t.Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.2)
    return fn()


def _assert_probe_ok(run, host: str = "win-lab1") -> None:
    run.assert_ok()
    results = run.task_results(host)
    assert [r["status"] for r in results] == ["ok", "ok", "ok"], results
    assert "probe WIN-LAB1 42" in results[0]["stdout"] if host == "win-lab1" else True
    assert results[1]["rc"] == 5


def _assert_one_pinned_session(before: dict[str, int], after: dict[str, int], scheme: str) -> None:
    # three tasks, one TCP connection, one handshake, one Runspace Pool: the session was pinned
    assert delta(after, before, "tcp_connections") == 1, after
    assert delta(after, before, f"auth_handshakes.{scheme}") == 1, after
    assert delta(after, before, "auth_handshakes") == 1, after
    assert delta(after, before, "runspace_pools_created") == 1, after


@pytest.mark.compat
def test_http_ntlm_direct_encrypts_every_message(e2e: E2E) -> None:
    before = e2e.counters()
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm"})
    _assert_probe_ok(run)
    after = e2e.counters()
    _assert_one_pinned_session(before, after, "ntlm")
    assert delta(after, before, "rejected.unencrypted") == 0


def test_https_ntlm_direct(e2e: E2E) -> None:
    before = e2e.counters()
    run = e2e.run({"ansible_psrp_auth": "ntlm"})
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "ntlm")


@pytest.mark.parametrize("variant", ["squid_https", "squid_digest", "squid_ntlm", "squid_negotiate"])
def test_https_through_squid_with_each_proxy_auth_scheme(e2e: E2E, variant: str) -> None:
    proxy = e2e.proxy(variant)
    group = {
        "ansible_psrp_auth": "ntlm",
        "ansible_psrp_proxy": proxy["url"],
        "ansible_psrp_proxy_auth": proxy["auth"],
    }
    if proxy["auth"] == "basic":
        # Basic sends the password itself: only over TLS to the proxy (an https:// proxy URL)
        group.update({"ansible_psrp_proxy": proxy["https_url"], "ansible_psrp_proxy_ca_cert": e2e.desc["ca_cert"]})
    if proxy["auth"] == "negotiate":
        # Kerberos to the proxy: the SPN is HTTP/proxy.lab.test, the proxy is addressed by IP
        group.update({
            "ansible_psrp_proxy_user": proxy["principal"],
            "ansible_psrp_proxy_password": proxy["password"],
            "ansible_psrp_proxy_negotiate_hostname_override": proxy["hostname"],
        })
    else:
        group.update({"ansible_psrp_proxy_user": proxy["username"], "ansible_psrp_proxy_password": proxy["password"]})
    before = e2e.counters()
    run = e2e.run(group)
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "ntlm")
    e2e.close_sessions()  # Squid logs a CONNECT when the tunnel closes
    user = proxy.get("principal", proxy["username"]) if proxy["auth"] == "negotiate" else proxy["username"]

    def proxy_saw_our_user() -> bool:
        by_user = e2e.proxy_counters(variant)["by_user"]
        return any(u.lower().startswith(user.split("@")[0].lower()) for u in by_user)

    assert _poll(proxy_saw_our_user), e2e.proxy_counters(variant)


def test_wrong_proxy_password_is_reported_as_the_proxys_refusal(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_ntlm")
    before = e2e.counters()
    run = e2e.run({
        "ansible_psrp_auth": "ntlm",
        "ansible_psrp_proxy": proxy["url"],
        "ansible_psrp_proxy_auth": "ntlm",
        "ansible_psrp_proxy_user": proxy["username"],
        "ansible_psrp_proxy_password": "not-the-password",
    })
    assert run.rc != 0
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert "proxy" in result["msg"].lower() and "407" in result["msg"], result["msg"]
    assert "ansible_psrp_proxy_password" in result["msg"] or "ansible_psrp_proxy_user" in result["msg"]
    assert "not-the-password" not in run.stdout + run.stderr
    assert delta(e2e.counters(), before, "tcp_connections") == 0  # never reached the host


def test_wrong_host_password_is_reported_as_the_hosts_refusal(e2e: E2E) -> None:
    run = e2e.run({"ansible_psrp_auth": "ntlm"}, host_overrides={"ansible_password": "Wrong-Password-1"})
    assert run.rc != 0
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert "401" in result["msg"] or "rejected the credentials" in result["msg"], result["msg"]
    assert "ansible_password" in result["msg"] or "ansible_user" in result["msg"], result["msg"]
    assert "Wrong-Password-1" not in run.stdout + run.stderr


def test_http_through_squid_forward_proxy_with_message_encryption(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_noauth")
    before = e2e.counters()
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": proxy["url"]})
    _assert_probe_ok(run)
    after = e2e.counters()
    assert delta(after, before, "auth_handshakes.ntlm") == 1
    assert delta(after, before, "rejected.unencrypted") == 0
    # every WinRM message crossed the proxy encrypted: the host refuses plaintext over HTTP anyway
    log = e2e.lab.host_log(e2e.host()["name"])
    posts = [entry for entry in log if entry.get("request_bytes")]
    assert posts and all("multipart/encrypted" in (e["request_type"] or "") for e in posts), posts
    assert all("multipart/encrypted" in (e.get("response_type") or "") for e in posts if e.get("response_bytes"))


def test_kerberos_to_the_host_through_a_connect_tunnel(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_ntlm")
    host = e2e.host()
    domain = next(u for u in host["users"] if u.get("kind") == "domain")
    before = e2e.counters()
    run = e2e.run(
        {
            "ansible_psrp_auth": "kerberos",
            "ansible_psrp_negotiate_hostname_override": host["hostname"],
            "ansible_psrp_proxy": proxy["url"],
            "ansible_psrp_proxy_auth": "ntlm",
            "ansible_psrp_proxy_user": proxy["username"],
            "ansible_psrp_proxy_password": proxy["password"],
        },
        host_overrides={"ansible_user": domain["principal"], "ansible_password": domain["password"]},
    )
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "kerberos")


def test_credssp_through_a_connect_tunnel(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_digest")
    before = e2e.counters()
    run = e2e.run({
        "ansible_psrp_auth": "credssp",
        "ansible_psrp_credssp_auth_mechanism": "ntlm",
        "ansible_psrp_proxy": proxy["url"],
        "ansible_psrp_proxy_auth": "digest",
        "ansible_psrp_proxy_user": proxy["username"],
        "ansible_psrp_proxy_password": proxy["password"],
    })
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "credssp")


def test_certificate_auth_through_a_connect_tunnel(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_noauth")
    cert = e2e.host()["client_certs"][0]
    before = e2e.counters()
    run = e2e.run(
        {
            "ansible_psrp_auth": "certificate",
            "ansible_psrp_certificate_pem": cert["cert"],
            "ansible_psrp_certificate_key_pem": cert["key"],
            "ansible_psrp_proxy": proxy["url"],
        },
        host_overrides={"ansible_password": None},
    )
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "certificate")


def test_tunnel_mode_through_tinyproxy_keeps_ntlm_over_http_working(e2e: E2E) -> None:
    proxy = e2e.proxy("tinyproxy")
    before = e2e.counters()
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm",
                   "ansible_psrp_proxy": proxy["url"], "ansible_psrp_proxy_tunnel": True})
    _assert_probe_ok(run)
    _assert_one_pinned_session(before, e2e.counters(), "ntlm")


def test_forwarding_through_tinyproxy_fails_naming_the_proxy_r5(e2e: E2E) -> None:
    proxy = e2e.proxy("tinyproxy")
    before = e2e.counters()
    run = e2e.run({"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": proxy["url"]})
    after = e2e.counters()
    assert run.rc != 0
    # the proxy closed the connection in the middle of the NTLM handshake: nothing authenticated at the host
    assert delta(after, before, "auth_handshakes") == 0 and delta(after, before, "http_status.401") >= 1
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable", result
    assert proxy["url"] in result["msg"] and "ansible_psrp_proxy_tunnel" in result["msg"], result["msg"]


def test_environment_proxy_is_ignored_unless_enabled_r7(e2e: E2E) -> None:
    # an environment proxy that would fail every request if used
    env = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    run = e2e.run({"ansible_psrp_auth": "ntlm"}, env=env, name="ignored")
    _assert_probe_ok(run)
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True}, env=env, name="used")
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "unreachable" and "127.0.0.1:9" in result["msg"], result


def test_environment_proxy_is_used_when_enabled_r7(e2e: E2E) -> None:
    proxy = e2e.proxy("squid_noauth")
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True},
                  env={"HTTPS_PROXY": proxy["url"]})
    _assert_probe_ok(run)
    e2e.close_sessions()
    assert _poll(lambda: e2e.proxy_counters("squid_noauth")["connects"] > 0)


def test_bypass_list_reaches_the_host_directly(e2e: E2E) -> None:
    # a proxy that would fail if used; the host's address is in the bypass range
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": "http://127.0.0.1:9",
                   "ansible_psrp_proxy_bypass": ["*.lab.test", "127.0.0.0/8"]})
    _assert_probe_ok(run)


REFUSED = [
    ("basic_proxy_auth_over_plain_http_proxy",
     lambda e: {"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": e.proxy("squid")["url"],
                "ansible_psrp_proxy_user": e.proxy("squid")["username"],
                "ansible_psrp_proxy_password": e.proxy("squid")["password"]}, "proxy_auth=basic"),
    ("r1_proxy_credentials_over_http",
     lambda e: {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": e.proxy("squid")["url"],
                "ansible_psrp_proxy_user": e.proxy("squid")["username"],
                "ansible_psrp_proxy_password": e.proxy("squid")["password"]}, "R1"),
    ("r3_never_encrypt_through_proxy",
     lambda e: {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm",
                "ansible_psrp_proxy": e.proxy("squid_noauth")["url"], "ansible_psrp_message_encryption": "never"}, "R3"),
    ("r3_basic_over_http_through_proxy",
     lambda e: {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "basic",
                "ansible_psrp_proxy": e.proxy("squid_noauth")["url"], "ansible_psrp_message_encryption": "never"}, "R3"),
]


@pytest.mark.compat
@pytest.mark.parametrize("name, group, rule", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_configurations_send_nothing(e2e: E2E, name: str, group, rule: str) -> None:
    before = e2e.counters().get("tcp_connections", 0)
    proxies = ("squid", "squid_noauth")
    lines_before = {p: access_line_count(e2e.lab, p) for p in proxies}
    run = e2e.run(group(e2e))
    assert run.rc != 0
    result = run.task_results("win-lab1")[0]
    assert result["status"] == "failed", result
    assert rule in result["msg"], result["msg"]
    # nothing logged by either proxy, nor accepted by the host, up to a marker sent after the run
    assert {p: access_lines_before_marker(e2e.lab, p, lines_before[p]) for p in proxies} == {p: [] for p in proxies}
    assert host_connections_before_marker(e2e.lab, e2e.host(), before) == 0
