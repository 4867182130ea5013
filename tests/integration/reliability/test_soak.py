"""Bounded soak: many tasks over many pinned sessions through Squid; the daemon must not grow.

PINNED_SOAK_TASKS tasks in total (default 200; the issue's full size is 500) over PINNED_SOAK_HOSTS
inventory hosts (default 20). Inventory hosts alternate between the lab's hosts and each has its own
pinned session (a distinct ansible_psrp_read_timeout makes a distinct pin key), all through Squid with
NTLM proxy authentication. After a warm-up run, the daemon's open file descriptors, threads and RSS are
sampled (/proc/<pid>) after each of two soak runs; the second must show no growth beyond allocator noise.
Each sample is taken when the daemon is quiet (every session idle, no client connection open), so file
descriptors compare exactly: one per pinned session's connection plus the daemon's own, nothing transient.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration._ansible import run_playbook, write_inventory
from tests.integration.e2e.conftest import E2E

from . import report
from ._helpers import daemon_pid, quiet_sample, raw, squid_ntlm, write_playbook

pytestmark = [pytest.mark.timeout(900), pytest.mark.soak, pytest.mark.slow]

RSS_NOISE_MIB = 8  # allowed RSS change between the two soak runs (allocator, caches)


def test_soak_many_tasks_over_many_pinned_sessions_without_growth(e2e: E2E, check) -> None:
    tasks_total = int(os.environ.get("PINNED_SOAK_TASKS", "200"))
    host_count = int(os.environ.get("PINNED_SOAK_HOSTS", "20"))
    rounds = max(1, tasks_total // host_count)
    row = check("Load", f"soak: {rounds * host_count} tasks over {host_count} pinned sessions through Squid (NTLM), "
                "run twice after a warm-up", "every task ok; one handshake per session; the daemon's fds (sampled at rest) and threads "
                f"unchanged and RSS within {RSS_NOISE_MIB} MiB between the two soak runs", report.FAULT)
    lab_hosts = e2e.desc["hosts"]
    group = {**squid_ntlm(e2e), "ansible_connection": "pinned.winrm.psrp", "ansible_psrp_ca_cert": e2e.desc["ca_cert"],
             "ansible_psrp_persist_idle_timeout": 300}
    hosts = {}
    for i in range(host_count):
        vars_ = e2e.host_vars(i % len(lab_hosts))
        vars_["ansible_psrp_read_timeout"] = 30 + i  # a distinct pin key: each inventory host its own session
        hosts[f"soak-{i:02d}"] = vars_
    inventory = write_inventory(e2e.workdir / "soak-inv", hosts, group)
    warm = write_playbook(e2e.workdir / "warm.yml", [raw("warm", "Write-Output warm")])
    soak = write_playbook(e2e.workdir / "soak.yml", [
        raw(f"t{n}", f"Write-Output \"{n} $env:COMPUTERNAME $(1..20 -join ',')\"") for n in range(rounds)])
    before = {h["name"]: e2e.lab.host_counters(h["name"]) for h in lab_hosts}
    args = ["-f", str(min(host_count, 20))]
    run_playbook(warm, inventory, e2e.workdir, extra_args=args).assert_ok()
    run_playbook(warm, inventory, e2e.workdir, extra_args=args).assert_ok()
    pid = daemon_pid(e2e)
    assert pid
    samples = [quiet_sample(e2e, pid)]
    durations = []
    results_ok = 0
    for _ in range(2):
        started = time.monotonic()
        run = run_playbook(soak, inventory, e2e.workdir, extra_args=args, timeout=600)
        durations.append(time.monotonic() - started)
        run.assert_ok()
        results_ok += sum(1 for r in run.task_results() if r["status"] == "ok")
        samples.append(quiet_sample(e2e, pid))
    after = {h["name"]: e2e.lab.host_counters(h["name"]) for h in lab_hosts}
    handshakes = sum(int(after[n].get("auth_handshakes", 0)) - int(before[n].get("auth_handshakes", 0)) for n in after)
    warm_s, first, second = samples
    row.see(f"{results_ok}/{2 * rounds * host_count} tasks ok in {durations[0]:.0f}s + {durations[1]:.0f}s; "
            f"{handshakes} host handshakes for {host_count} sessions; daemon after warm-up / soak 1 / soak 2: "
            f"fds {warm_s['fds']}/{first['fds']}/{second['fds']}, threads {warm_s['threads']}/{first['threads']}/"
            f"{second['threads']}, RSS {warm_s['rss_kib'] / 1024:.1f}/{first['rss_kib'] / 1024:.1f}/"
            f"{second['rss_kib'] / 1024:.1f} MiB")
    assert results_ok == 2 * rounds * host_count
    assert handshakes == host_count
    assert second["fds"] == first["fds"] == warm_s["fds"]
    assert second["threads"] <= first["threads"] + 1
    assert abs(second["rss_kib"] - first["rss_kib"]) / 1024 < RSS_NOISE_MIB
