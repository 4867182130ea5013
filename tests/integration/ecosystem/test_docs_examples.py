"""Every inventory example in docs/ runs against the lab and does what the docs say.

The examples are the ```yaml blocks marked `# lab-test: <scenario>` (see _docs_examples.py for the marker
and the placeholder convention, which docs/README.md states for readers). Each one is turned into a lab
inventory and runs a raw probe through ansible-playbook; the test asserts what the lab received: the
host's answer, the authentication scheme the host counted, and whether the proxy saw the traffic.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import typing as t

import pytest
import yaml

from tests.integration._ansible import ROOT, run_playbook
from tests.integration.positive_marker import (
    access_line_count,
    access_lines_before_marker,
    host_connections_before_marker,
)

from . import _docs_examples as docs

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

PROBE = pathlib.Path(__file__).parent / "playbooks" / "probe.yml"
EXAMPLES, UNMARKED = docs.find_examples()
SQUIDS = ("squid", "squid_noauth", "squid_digest", "squid_ntlm", "squid_negotiate", "squid_https")
SOCKS = ("socks", "socks_auth")  # counted by microsocks' own log, written before the stream it relays


def test_every_inventory_example_in_docs_is_marked_for_the_lab() -> None:
    assert not UNMARKED, f"inventory examples without a `# lab-test: <scenario>` line: {UNMARKED}"
    ids = [e.id for e in EXAMPLES]
    assert len(ids) == len(set(ids)), f"scenario names repeat within a file: {ids}"


def test_docs_cover_every_proxy_scenario_the_issue_lists() -> None:
    proxies_doc = [e for e in EXAMPLES if e.path.name == "proxies.md"]
    auths = {docs.auth_of(e.inventory) for e in proxies_doc}
    proxy_auths = {str(v.get("ansible_psrp_proxy_auth")) for e in proxies_doc for v in docs._group_vars(e.inventory)
                   if "ansible_psrp_proxy_auth" in v}
    flags = {k for e in proxies_doc for v in docs._group_vars(e.inventory) for k, val in v.items() if val}
    assert {"basic", "digest", "ntlm", "negotiate", "kerberos"} <= proxy_auths, proxy_auths
    assert "kerberos" in auths
    assert {"ansible_psrp_proxy_tunnel", "ansible_psrp_proxy_bypass", "ansible_psrp_proxy_from_env",
            "ansible_psrp_proxy_ca_cert"} <= flags, flags
    assert any(e.expect.startswith("refused:") for e in EXAMPLES)


def _close_sessions(workdir: pathlib.Path) -> None:
    pc = workdir / "pc"
    if pc.exists():
        subprocess.run(
            [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli", "--dir", str(pc),
             "stop"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
            capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
        )


def _poll(fn: t.Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.2)
    return fn()


def _delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return int(after.get(name, 0)) - int(before.get(name, 0))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_docs_inventory_example_runs_against_the_lab(example: docs.DocExample, lab: t.Any,
                                                     tmp_path: pathlib.Path) -> None:
    desc = lab.describe()
    inventory, env, proxy_name = docs.to_lab(example, desc)
    hosts = [h for hmap in docs._hosts_maps(inventory) for h in hmap]
    for name in hosts:
        lab.clear_faults(name)
        lab.reset_host(name)
    path = tmp_path / "inventory.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # lab passwords: test data, still private
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(inventory, f)
    kdc_env = dict((desc.get("kdc") or {}).get("env") or {})
    if kdc_env.get("KRB5CCNAME"):
        kdc_env["KRB5CCNAME"] = f"FILE:{tmp_path / 'ccache'}"  # a private ticket cache per example
    proxy_before = lab.proxy_counters(proxy_name) if proxy_name in SQUIDS + SOCKS else None
    lines_before = access_line_count(lab, proxy_name) if proxy_name in SQUIDS else 0
    try:
        run = run_playbook(PROBE, path, tmp_path, env={**kdc_env, **env})
    finally:
        _close_sessions(tmp_path)  # Squid logs a CONNECT when the tunnel closes
    first = hosts[0]
    results = run.task_results(first)
    assert results, f"{example.id}: no task ran\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"

    if example.expect.startswith("refused:"):
        rule = example.expect.split(":", 1)[1]
        assert run.rc != 0
        assert results[0]["status"] == "failed", results[0]
        assert rule in results[0]["msg"], results[0]["msg"]
        host = next(h for h in desc["hosts"] if h["name"].lower() == first.lower())
        # counted up to marker requests sent after the run (Squid logs a request when it ends)
        assert host_connections_before_marker(lab, host, 0) == 0, "a refused example reached the host"
        if proxy_name in SQUIDS:
            assert access_lines_before_marker(lab, proxy_name, lines_before) == []
        elif proxy_before is not None:  # SOCKS: microsocks logs a connection when it is made
            assert lab.proxy_counters(proxy_name)["requests"] == proxy_before["requests"]
        return

    run.assert_ok()
    for name in hosts:
        probe = run.task_results(name)[0]
        assert f"probe {name.upper()} 42" in probe["stdout"], probe
    counters = lab.host_counters(first)
    auth = docs.auth_of(inventory)
    if auth in ("ntlm", "kerberos", "credssp", "basic", "certificate"):
        assert counters.get(f"auth_handshakes.{auth}", 0) >= 1, counters
    else:
        assert counters.get("auth_handshakes", 0) >= 1, counters
    if proxy_before is not None:
        used = lambda: lab.proxy_counters(proxy_name)["requests"] > proxy_before["requests"]  # noqa: E731
        if example.expect == "direct" and proxy_name in SQUIDS:
            # nothing in the proxy's log up to a marker request sent through it after the run
            logged = access_lines_before_marker(lab, proxy_name, lines_before)
            assert not logged, f"{example.id}: the bypassed host went through {proxy_name}: {logged}"
        elif example.expect == "direct":  # SOCKS: microsocks logs a connection when it is made
            assert not used(), f"{example.id}: the bypassed host went through {proxy_name}"
        else:
            assert _poll(used), f"{example.id}: {proxy_name} saw no request: {lab.proxy_counters(proxy_name)}"
