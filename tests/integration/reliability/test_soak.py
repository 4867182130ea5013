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
import shutil
import tempfile
import time
import typing as t

import pytest

from tests.integration._ansible import run_playbook, write_inventory
from tests.integration.e2e.conftest import E2E

from . import report
from ._helpers import (
    daemon_pid,
    fd_kinds,
    settled_fd_kinds,
    proc_sample,
    quiet_sample,
    raw,
    resting_fds,
    resting_threads,
    squid_ntlm,
    threads_back_to,
    unix_clients,
    wait_for,
    write_playbook,
)

pytestmark = [pytest.mark.timeout(900), pytest.mark.soak, pytest.mark.slow]

RSS_NOISE_MIB = 8  # allowed RSS change between the two soak runs (allocator, caches)
TASKS_TOTAL = int(os.environ.get("PINNED_SOAK_TASKS", "200"))
HOST_COUNT = int(os.environ.get("PINNED_SOAK_HOSTS", "20"))
ROUNDS = max(1, TASKS_TOTAL // HOST_COUNT)
SESSIONS = int(os.environ.get("PINNED_SOAK_SESSIONS", "200"))
SOAK_LAB_HOSTS = int(os.environ.get("PINNED_SOAK_LAB_HOSTS", "2"))
PER_USER = -(-SESSIONS // (SOAK_LAB_HOSTS * 2))


@report.row("Load", f"soak: {ROUNDS * HOST_COUNT} tasks over {HOST_COUNT} pinned sessions through Squid (NTLM), "
            "run twice after a warm-up", "every task ok; one handshake per session; the daemon's fds and threads "
            f"(sampled at rest) unchanged and RSS within {RSS_NOISE_MIB} MiB between the two soak runs", report.LOAD)
def test_soak_many_tasks_over_many_pinned_sessions_without_growth(e2e: E2E, check) -> None:
    host_count, rounds = HOST_COUNT, ROUNDS
    row = check()
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
    # What the daemon holds open, by kind, once the descriptors that were closing have closed (a leaked one never
    # does): compared exactly between the samples, where a count taken at one instant could catch a closing one.
    kinds = [settled_fd_kinds(pid, host_count)]
    resting = resting_threads(pid)
    durations = []
    back: list[bool] = []  # after each soak run: the daemon's threads came back to the warm-up's resting count
    results_ok = 0
    for _ in range(2):
        started = time.monotonic()
        run = run_playbook(soak, inventory, e2e.workdir, extra_args=args, timeout=600)
        durations.append(time.monotonic() - started)
        run.assert_ok()
        results_ok += sum(1 for r in run.task_results() if r["status"] == "ok")
        samples.append(quiet_sample(e2e, pid))
        kinds.append(settled_fd_kinds(pid, host_count))
        back.append(threads_back_to(pid, resting))
    after = {h["name"]: e2e.lab.host_counters(h["name"]) for h in lab_hosts}
    handshakes = sum(int(after[n].get("auth_handshakes", 0)) - int(before[n].get("auth_handshakes", 0)) for n in after)
    warm_s, first, second = samples
    row.see(f"{results_ok}/{2 * rounds * host_count} tasks ok in {durations[0]:.0f}s + {durations[1]:.0f}s; "
            f"{handshakes} host handshakes for {host_count} sessions; daemon after warm-up / soak 1 / soak 2: "
            f"fds {sum(kinds[0].values())}/{sum(kinds[1].values())}/{sum(kinds[2].values())}, threads {warm_s['threads']}/{first['threads']}/"
            f"{second['threads']} (at rest {resting}; back to it after each run: {back}), RSS "
            f"{warm_s['rss_kib'] / 1024:.1f}/{first['rss_kib'] / 1024:.1f}/{second['rss_kib'] / 1024:.1f} MiB")
    assert results_ok == 2 * rounds * host_count
    assert handshakes == host_count
    assert kinds[2] == kinds[1] == kinds[0], f"descriptors by kind after warm-up / soak 1 / soak 2: {kinds}"
    assert back == [True, True], "the daemon's threads grew and stayed grown"
    assert abs(second["rss_kib"] - first["rss_kib"]) / 1024 < RSS_NOISE_MIB


@report.row("Load", f"soak: {SESSIONS} pinned sessions in one daemon ({SOAK_LAB_HOSTS} lab hosts x 2 users x "
            f"{PER_USER}), a task on each, then a second task on each", "every task ok; every second task reuses its "
            "session; the daemon holds a descriptor per session and its descriptors and threads (sampled at rest) do "
            "not grow in the second pass", report.LOAD)
def test_soak_thousands_of_pinned_sessions_in_one_daemon(check, tmp_path) -> None:
    """Review point 10 at full size: PINNED_SOAK_SESSIONS sessions (2,000 for the real soak) in one daemon.

    A lab of its own: PINNED_SOAK_LAB_HOSTS hosts (default 2) x their two local users, each host allowing as
    many shells per user as the share needs (MaxShellsPerUser, which Windows lets an administrator raise).
    The sessions are opened by PinClient from PINNED_SOAK_THREADS threads (default 8), each with a distinct
    pin key (read_timeout), then every one runs a second task; the daemon's descriptors, threads and RSS are
    read from /proc after each pass.
    """
    import concurrent.futures

    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient
    from ansible_collections.pinned.winrm.plugins.plugin_utils._spec import build_spec
    from tests.lab._lab import Lab, LabOptions

    sessions, lab_hosts, per_user = SESSIONS, SOAK_LAB_HOSTS, PER_USER
    threads = int(os.environ.get("PINNED_SOAK_THREADS", "8"))
    row = check()
    lab = Lab(LabOptions(hosts=lab_hosts, squid_auth=(), tinyproxy=False, mitm=False, kdc=False, relays=False,
                         control=False,
                         limits=((None, "MaxShellsPerUser", per_user + 5),)))
    lab.start()
    root = tempfile.mkdtemp(prefix="pins", dir="/tmp")
    client = PinClient(root, pool_max=1)
    try:
        desc = lab.describe()
        specs = []
        for i in range(sessions):
            host = desc["hosts"][i % lab_hosts]
            user = host["users"][(i // lab_hosts) % 2]
            specs.append(build_spec({
                "remote_addr": host["address"], "port": host["http_port"], "protocol": "http", "auth": "ntlm",
                "remote_user": user["username"], "remote_password": user["password"],
                "read_timeout": 60 + i / 1000,  # a distinct pin key: each its own session
            }))

        def task(spec: t.Any) -> str:
            result, info = client.exec(spec, "Write-Output soak", idle_timeout=1800, max_age=3600)
            assert result.rc == 0 and result.stdout.strip() == b"soak", result
            return str(info["session"])

        def run_all() -> tuple[list[str], float]:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                outcomes = list(pool.map(task, specs))
            return outcomes, time.monotonic() - started

        pid = client._simple({"op": "hello"}, start=True)["pid"]
        baseline = proc_sample(pid)

        def quiet_sample() -> dict[str, int]:
            # sampled once the daemon serves nothing and no client connection is open: a task's handler that is
            # still releasing its session must not count as growth
            assert wait_for(lambda: client.hello()["serving"] == 0, 60)
            assert wait_for(lambda: unix_clients(pid, client.paths.socket) == 0, 60)
            return {**proc_sample(pid), "fds": resting_fds(pid), "threads": resting_threads(pid),
                    "fd_kinds": fd_kinds(pid)}

        first, first_s = run_all()
        after_first = quiet_sample()
        second, second_s = run_all()
        after_second = quiet_sample()
        threads_back = threads_back_to(pid, after_first["threads"])
        held = len(client.list_sessions())
    finally:
        try:
            client.shutdown()
        finally:
            lab.stop()
            shutil.rmtree(root, ignore_errors=True)
    opened = sum(1 for s in first if s == "opened")
    reused = sum(1 for s in second if s == "reused")
    row.see(f"{held} sessions held; pass 1: {opened} opened in {first_s:.0f}s; pass 2: {reused} reused in "
            f"{second_s:.0f}s; daemon after pass 1 / pass 2: fds {after_first['fds']}/{after_second['fds']}, threads "
            f"{after_first['threads']}/{after_second['threads']}, RSS {after_first['rss_kib'] / 1024:.0f}/"
            f"{after_second['rss_kib'] / 1024:.0f} MiB; "
            f"{(after_second['rss_kib'] - baseline['rss_kib']) / max(1, sessions):.0f} KiB per session over the empty "
            f"daemon's {baseline['rss_kib'] / 1024:.0f} MiB ({baseline['fds']} fds, {baseline['threads']} threads)")
    assert held == sessions and opened == sessions and reused == sessions
    assert sessions <= after_first["fds"] <= sessions + baseline["fds"] + 8
    assert after_second["fds"] == after_first["fds"], (
        f"descriptors grew in pass 2: {after_second['fd_kinds'] - after_first['fd_kinds']} more, "
        f"{after_first['fd_kinds'] - after_second['fd_kinds']} fewer")
    assert threads_back and after_second["threads"] <= after_first["threads"]
