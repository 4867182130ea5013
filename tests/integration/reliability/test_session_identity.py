"""A pinned session serves only runs with the identity and trust it was opened with.

Each test opens a session with one real ansible-playbook run, changes what decides the identity or the
trust of the next run (a CA bundle rotated in place, a longer lifetime, ...) and runs again: the second
run must not ride the first run's session where that would trust or authenticate differently from what
it asked for.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.integration._ansible import ROOT
from tests.integration.e2e.conftest import E2E, delta

from . import report
from ._helpers import daemon_pids, raw, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


def sessions(e2e: E2E) -> list[dict]:
    """`pinned-winrm-sessions list --json` of this test's persist directory."""
    out = subprocess.run(
        [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
         "--dir", str(e2e.workdir / "pc"), "--json", "list"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
        capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)["sessions"]


@report.row("No session theft", "the CA bundle named by ansible_psrp_ca_cert is replaced in place (same path) "
            "by one that does not trust the host, between two runs",
            "the second run does not ride the session opened under the old trust: it validates again and "
            "fails (unreachable, certificate not trusted)", report.LEAK)
def test_a_ca_bundle_rotated_in_place_gets_a_new_session(e2e: E2E, check, tmp_path) -> None:
    from tests.lab._certs import LabCA

    row = check()
    bundle = tmp_path / "corp-ca.pem"
    shutil.copy(e2e.desc["ca_cert"], bundle)
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output trusted")])
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_ca_cert": str(bundle)}
    e2e.run(group, playbook=one, name="before").assert_ok()
    shutil.copy(LabCA.create(tmp_path / "other-ca").cert_path, bundle)  # rotated: another CA, same path
    before = e2e.counters()
    after_run = e2e.run(group, playbook=one, name="after")
    result = after_run.task_results(HOST)[0]
    row.see(f"second run: {result['status']}; host +{delta(e2e.counters(), before, 'wsman.Command')} commands; "
            f"{str(result.get('msg', ''))[-140:]}")
    rode = result["status"] == "ok" or delta(e2e.counters(), before, "wsman.Command") != 0
    assert not row.leak_verdict(rode), "the second run rode the session opened under the old trust"
    assert result["status"] == "unreachable" and "not trusted" in result["msg"], result


@report.row("No session theft", "a run with persist_idle_timeout 30/persist_max_age 600, then one with 300/3600 "
            "on the same session", "the session is reused and keeps 30 s idle / 600 s age: the shorter wins",
            report.LEAK)
def test_a_later_run_with_longer_lifetimes_does_not_extend_the_pinned_session(e2e: E2E, check) -> None:
    row = check()
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output lifetime")])
    group = {"ansible_psrp_auth": "ntlm"}
    e2e.run({**group, "ansible_psrp_persist_idle_timeout": 30, "ansible_psrp_persist_max_age": 600},
            playbook=one, name="short").assert_ok()
    e2e.run({**group, "ansible_psrp_persist_idle_timeout": 300, "ansible_psrp_persist_max_age": 3600},
            playbook=one, name="long").assert_ok()
    rows = sessions(e2e)
    row.see(f"{len(rows)} session(s): " + "; ".join(f"{r['tasks']} tasks, idle timeout {r['idle_timeout']:g}s, "
                                                   f"max age {r['max_age']:g}s" for r in rows))
    assert len(rows) == 1 and rows[0]["tasks"] == 2
    assert not row.leak_verdict((rows[0]["idle_timeout"], rows[0]["max_age"]) != (30, 600)), rows[0]


def _kinit(krb5_config: pathlib.Path, cache: pathlib.Path, principal: str, password: str) -> None:
    """A TGT for principal from the lab KDC in its own credential cache (the password on stdin only)."""
    kinit = shutil.which("kinit") or "/usr/bin/kinit"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRB5_CONFIG": str(krb5_config),
           "KRB5CCNAME": f"FILE:{cache}"}
    subprocess.run([kinit, principal], input=f"{password}\n", env=env, capture_output=True, text=True, timeout=30,
                   check=True)


@report.row("No session theft", "auth kerberos without a password, three runs: KRB5CCNAME = a cache of labdomain "
            "(a user of the host), then a cache of proxy-negotiate (not a user of the host), then labdomain's "
            "again; the krb5.conf's default cache holds labdomain too", "each run authenticates with exactly its "
            "own cache: labdomain's runs succeed as labdomain (the third reuses the first one's session), "
            "proxy-negotiate's gets its own handshake and the host refuses it", report.LEAK)
def test_runs_with_different_ticket_caches_never_share_a_session(e2e: E2E, check, tmp_path) -> None:
    if not (e2e.desc.get("kdc") and "squid_negotiate" in e2e.desc["proxies"]):
        pytest.skip("needs the lab KDC with its second principal (the Negotiate proxy's account)")
    row = check()
    host = e2e.host()
    domain = next(u for u in host["users"] if u.get("kind") == "domain")
    proxy = e2e.proxy("squid_negotiate")
    # the lab realm's krb5.conf with a default cache of this test's own (what a daemon without KRB5CCNAME would use)
    lab_conf = pathlib.Path(e2e.desc["kdc"]["krb5_config"]).read_text()
    default_cache = tmp_path / "default.cc"
    krb5_config = tmp_path / "krb5.conf"
    krb5_config.write_text("\n".join(f" default_ccache_name = FILE:{default_cache}"
                                     if line.strip().startswith("default_ccache_name") else line
                                     for line in lab_conf.splitlines()) + "\n")
    cache_a, cache_b = tmp_path / "labdomain.cc", tmp_path / "other.cc"
    _kinit(krb5_config, default_cache, domain["principal"], domain["password"])
    _kinit(krb5_config, cache_a, domain["principal"], domain["password"])
    _kinit(krb5_config, cache_b, proxy["principal"], proxy["password"])
    group = {"ansible_psrp_auth": "kerberos", "ansible_psrp_negotiate_hostname_override": host["hostname"]}
    tickets_only = {"ansible_user": None, "ansible_password": None}
    one = write_playbook(e2e.workdir / "whoami.yml", [raw("who", "whoami")])

    def run(cache: pathlib.Path, name: str):
        before = e2e.counters()
        result = e2e.run(group, playbook=one, host_overrides=tickets_only, name=name,
                         env={"KRB5CCNAME": f"FILE:{cache}", "KRB5_CONFIG": str(krb5_config)})
        return result.task_results(HOST)[0], before, e2e.counters()

    first, b1, a1 = run(cache_a, "labdomain")
    other, b2, a2 = run(cache_b, "other")
    again, b3, a3 = run(cache_a, "labdomain-again")
    row.see(f"labdomain: {first['status']} {first.get('stdout', '').strip()!r}; proxy-negotiate: {other['status']} "
            f"{other.get('stdout', '').strip()!r} (+{delta(a2, b2, 'auth_failures')} failed, "
            f"+{delta(a2, b2, 'auth_handshakes')} ok handshakes, +{delta(a2, b2, 'wsman.Command')} commands); "
            f"labdomain again: {again['status']} {again.get('stdout', '').strip()!r}, "
            f"+{delta(a3, b3, 'auth_handshakes')} handshakes")
    # never labdomain's session, never the daemon's default cache
    rode = other["status"] == "ok" or delta(a2, b2, "wsman.Command") != 0
    assert not row.leak_verdict(rode), other
    assert first["status"] == "ok" and "labdomain" in first["stdout"].lower(), first
    assert other["status"] == "unreachable", other
    assert delta(a2, b2, "auth_failures") == 1
    assert again["status"] == "ok" and "labdomain" in again["stdout"].lower(), again
    assert delta(a3, b3, "auth_handshakes") == 0  # the labdomain session stayed pinned to labdomain's cache


@report.row("No session theft", "no ansible_psrp_ca_cert: run 1 trusts the host through SSL_CERT_FILE (the lab CA) "
            "and sets SSHPASS and ANSIBLE_BECOME_PASS; run 2 has SSL_CERT_FILE = a CA that does not trust the host",
            "run 2 is served by another daemon, started with its own trust: unreachable, certificate not "
            "trusted; no daemon's environment holds SSHPASS or ANSIBLE_BECOME_PASS", report.LEAK)
def test_the_trust_environment_of_the_run_that_started_the_daemon_is_not_inherited(e2e: E2E, check, tmp_path) -> None:
    from tests.lab._certs import LabCA

    row = check()
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output trusted")])
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_ca_cert": None}  # OpenSSL's default trust decides
    secrets_ = {"SSHPASS": "Ssh-Pass-Not-For-The-Daemon-1", "ANSIBLE_BECOME_PASS": "Become-Pass-Not-For-It-2"}
    e2e.run(group, playbook=one, env={"SSL_CERT_FILE": e2e.desc["ca_cert"], **secrets_}, name="trusted").assert_ok()
    other_ca = LabCA.create(tmp_path / "other-ca").cert_path
    second = e2e.run(group, playbook=one, env={"SSL_CERT_FILE": str(other_ca)}, name="other-trust")
    result = second.task_results(HOST)[0]
    pids = daemon_pids(e2e)
    environs = [pathlib.Path(f"/proc/{pid}/environ").read_bytes() for pid in pids]
    inherited = sorted(name for name, value in secrets_.items() if any(value.encode() in env for env in environs))
    row.see(f"run 2: {result['status']}, {str(result.get('msg', ''))[-110:]}; {len(pids)} daemons; secrets in a "
            f"daemon's environment: {inherited or 'none'}")
    assert not row.leak_verdict(inherited or result["status"] == "ok"), (inherited, result)
    assert result["status"] == "unreachable" and "not trusted" in result["msg"], result
    assert len(pids) == 2
