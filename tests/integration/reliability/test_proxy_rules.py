"""Which proxy a run uses, and what the rules let a proxy see (R1, R3, R7), through real proxies.

- NO_PROXY and the proxy variables are read as curl and Python's urllib read them (``host:port`` entries,
  a bare domain covering the names below it, lowercase variables winning): proven against the lab's
  inspecting proxy, which records every byte it relays, so "bypassed" means zero bytes reached it.
- ``ansible_psrp_cert_validation: ignore`` through a proxy: a proxy that terminates the tunnel (mitmproxy
  intercepting TLS with its own CA) would read a Basic password and relay NTLM sent without channel binding;
  both set-ups are refused before a byte is sent, and what is allowed (NTLM with channel binding and message
  encryption) is refused by the host when relayed, with nothing readable recorded.
"""

from __future__ import annotations

import secrets

import pytest

from tests.integration.e2e.conftest import E2E, delta
from tests.integration.positive_marker import recorded_before_marker

from . import report
from ._helpers import closed_port, host_password, leaks, raw, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


def _recorded(e2e: E2E) -> int:
    return len(e2e.lab.proxy_recorded("mitm"))


@report.row("Hostile proxy", "proxy_from_env with HTTPS_PROXY = the inspecting proxy and NO_PROXY = "
            "'<host>:<https port>' (a host:port entry, as curl and urllib read it)",
            "the task runs directly: zero bytes reach the proxy (up to a marker sent through it after the run)",
            report.LEAK)
def test_no_proxy_host_port_entry_keeps_winrm_away_from_the_environment_proxy(e2e: E2E, check) -> None:
    row = check()
    host = e2e.host()
    env = {"HTTPS_PROXY": e2e.proxy("mitm")["url"], "NO_PROXY": f"other.example,{host['address']}:{host['https_port']}"}
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output bypassed")])
    before = _recorded(e2e)
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True}, playbook=one, env=env,
                  name="no-proxy-port")
    e2e.close_sessions()
    relayed = recorded_before_marker(e2e.lab, "mitm", before)
    row.see(f"rc {run.rc}; {len(relayed)} bytes reached the proxy")
    assert not row.leak_verdict(relayed), relayed[:200]
    run.assert_ok()


@report.row("Hostile proxy", "proxy_from_env with https_proxy = the inspecting proxy and HTTPS_PROXY = a dead "
            "port (both set, as curl and urllib read them the lowercase one wins)",
            "the task runs through the inspecting proxy, not towards the other one", report.LEAK)
def test_lowercase_https_proxy_wins_over_uppercase(e2e: E2E, check) -> None:
    row = check()
    env = {"https_proxy": e2e.proxy("mitm")["url"], "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}"}
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output lowercase")])
    before = _recorded(e2e)
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True}, playbook=one, env=env,
                  name="lowercase")
    e2e.close_sessions()
    relayed = _recorded(e2e) - before
    row.see(f"rc {run.rc}; {relayed} bytes through the inspecting proxy")
    # nothing through the named proxy means the run went towards the other one (it fails on the dead port)
    assert not row.leak_verdict(relayed == 0), "the run did not go through the lowercase variable's proxy"
    run.assert_ok()


_REFUSED_UP_FRONT = "refused before sending (R1/R3 apply as over http://): zero bytes reach the proxy"
# (label, host settings, what must happen)
UNVERIFIED: list[tuple[str, dict[str, object], str]] = [
    ("basic", {"ansible_psrp_auth": "basic"}, _REFUSED_UP_FRONT),
    ("ntlm without channel binding", {"ansible_psrp_auth": "ntlm", "ansible_psrp_negotiate_send_cbt": False},
     _REFUSED_UP_FRONT),
    ("ntlm with channel binding (allowed)", {"ansible_psrp_auth": "ntlm"},
     "relayed: refused by the host (channel binding does not match), nothing readable"),
]


@pytest.mark.parametrize("label, settings, expectation", UNVERIFIED, ids=[u[0] for u in UNVERIFIED])
@report.row("Hostile proxy", "cert_validation ignore through a TLS-intercepting proxy (mitmproxy with its own CA), "
            "auth {label}: recorded bytes vs host password and script", "{expectation}", report.LEAK)
def test_a_tls_intercepting_proxy_reads_nothing_with_cert_validation_ignore(e2e: E2E, check, tmp_path, label: str,
                                                                           settings: dict[str, object],
                                                                           expectation: str) -> None:
    from tests.lab._mitm import InspectingProxy

    allowed = "allowed" in label
    row = check()
    marks = {"host password": host_password(e2e), "script": f"SCRIPT-{secrets.token_hex(6)}-MARK"}
    interceptor = InspectingProxy(tmp_path / "interceptor", tls_passthrough=False)
    interceptor.start()
    try:
        before = e2e.counters()
        run = e2e.run({**settings, "ansible_psrp_proxy": interceptor.url, "ansible_psrp_cert_validation": "ignore"},
                      playbook=write_playbook(e2e.workdir / "one.yml", [raw("x", f"Write-Output '{marks['script']}'")]),
                      name=label.split()[0] + str(len(settings)))
        e2e.close_sessions()
        recorded = interceptor.recorded_bytes()
    finally:
        interceptor.stop()
    after = e2e.counters()
    result = run.task_results(HOST)[0]
    found = leaks(recorded, marks)
    row.see(f"{result['status']}; {len(recorded)} bytes recorded by the interceptor; host: "
            f"+{delta(after, before, 'auth_failures')} failed handshake(s), +{delta(after, before, 'wsman.Command')} "
            f"commands; found: {found or 'nothing'}; {str(result.get('msg', ''))[-150:]}")
    # the interceptor was stopped before its record was read: everything it relayed is in it
    assert not row.leak_verdict(found or (not allowed and recorded)), (found, recorded[:200])
    if allowed:
        # the host sees the interceptor's certificate in the binding and refuses: the relay gets nowhere
        assert result["status"] == "unreachable", result
        assert delta(after, before, "wsman.Command") == 0
    else:
        assert result["status"] == "failed" and "cert_validation=ignore" in result["msg"], result


@report.row("Hostile proxy", "cert_validation ignore through a CONNECT proxy (Squid, no proxy login), ntlm, "
            "message_encryption auto",
            "the task runs; every WinRM message the host receives and sends is WinRM-encrypted inside the TLS "
            "(auto encrypts as over http://)", report.LEAK)
def test_cert_validation_ignore_through_a_proxy_encrypts_winrm_messages_inside_tls(e2e: E2E, check) -> None:
    row = check()
    proxy = e2e.proxy("squid_noauth")
    start = len(e2e.lab.host_log(e2e.host()["name"]))
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": proxy["url"],
                   "ansible_psrp_cert_validation": "ignore"},
                  playbook=write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output sealed")]), name="sealed")
    posts = [e for e in e2e.lab.host_log(e2e.host()["name"])[start:] if e.get("request_bytes")]
    sealed = [e for e in posts if "multipart/encrypted" in (e.get("request_type") or "")]
    row.see(f"rc {run.rc}; {len(sealed)}/{len(posts)} WinRM requests encrypted")
    assert not row.leak_verdict(len(sealed) != len(posts)), posts
    run.assert_ok()
    assert posts
