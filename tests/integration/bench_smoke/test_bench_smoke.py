"""`make bench` works: the benchmark harness, run with tiny sizes, measures every plugin and writes its outputs.

The full run (python -m benchmarks.run) takes many minutes; this runs the same code end to end with --quick
(3 raw tasks, 2 win_ping and 2 win_copy tasks, 3 hosts, 256 KiB and 1 MiB files, 1/2/4 sessions, controller CPU
of 8 tasks on one host and 3 x 3 hosts, a fleet of 4 hosts) against its own lab. Timings are never asserted, only
relations between plugins.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from benchmarks._workloads import FLOOR_REQUESTS_PER_TASK

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLUGINS = ("pinned", "builtin_psrp", "builtin_winrm")
# benchmarks.run --quick: one repetition of 3 raw tasks (benchmarks/run.py _sizes)
QUICK_REPS = 1
QUICK_TASKS = 3

pytestmark = [pytest.mark.soak, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    doc = out / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept prose\n")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out / "latest.json"),
         "--chart", str(out / "chart.png"), "--doc", str(doc), "--max-minutes", "12"],
        cwd=ROOT, capture_output=True, text=True, timeout=840, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"results": json.loads((out / "latest.json").read_text()), "chart": out / "chart.png", "doc": doc,
            "stderr": proc.stderr}


def test_quick_bench_measures_every_plugin_without_errors(quick_bench: dict) -> None:
    results = quick_bench["results"]
    assert results["errors"] == [], results["errors"]
    floor = results["floor"]["requests_per_task"]
    assert floor == FLOOR_REQUESTS_PER_TASK
    for rtt, rows in results["raw_tasks"].items():
        for plugin in (*PLUGINS, "local_floor", "pinned_cold"):
            row = rows[plugin]
            assert (row["runs"], row["failed_runs"]) == (QUICK_REPS, 0), (rtt, plugin, row)
            # a median lies between the extremes it was taken from, and per task is the whole over the tasks
            assert row["wall_s_min"] <= row["wall_s"] <= row["wall_s_max"], (rtt, plugin, row)
            # (wall_s is rounded to 1 ms and s_per_task to 0.1 ms, each from the unrounded median)
            assert row["s_per_task"] == pytest.approx(row["wall_s"] / QUICK_TASKS, abs=5e-4 / QUICK_TASKS + 5e-5), (
                rtt, plugin, row)
        warm, cold = rows["pinned"], rows["pinned_cold"]
        # Counted by the lab host. A warm pinned session opens nothing and costs the protocol minimum per task,
        # plus a second Receive when the host answers the first one with the task's output before the restore
        # statement (T1) has ended, which depends on timing; the cold run opens one connection and one
        # handshake for all its tasks, and builds...
        assert floor <= warm["requests_per_task"] <= floor + 1, (rtt, warm)
        assert (warm["tcp_connections_total"], warm["handshakes_total"], warm["shells_per_task"]) == (0, 0, 0), warm
        assert (cold["tcp_connections_total"], cold["handshakes_total"]) == (1, 1), (rtt, cold)
        # ... as many shells for all its tasks as builtin_psrp builds for each one (one Runspace Pool)
        assert round(cold["shells_per_task"] * QUICK_TASKS) == rows["builtin_psrp"]["shells_per_task"], (rtt, cold)
        assert cold["requests_per_task"] > warm["requests_per_task"], (rtt, cold, warm)
        for plugin in ("builtin_psrp", "builtin_winrm"):
            peer = rows[plugin]
            # the builtins open a connection, authenticate and build a shell for every task
            assert peer["handshakes"] == 1.0 and peer["tcp_connections"] >= 1.0, (rtt, plugin, peer)
            assert peer["shells_per_task"] >= 1.0, (rtt, plugin, peer)
            assert peer["requests_per_task"] > floor, (rtt, plugin, peer)
    # the target reports what was measured (whether it is met depends on the timing above)
    target = results["targets"]["WinRM requests per task, warm session: the protocol minimum"]
    assert target["met"] is (results["raw_tasks"]["0"]["pinned"]["requests_per_task"] <= floor), target


def test_quick_bench_writes_the_issue_json_shape(quick_bench: dict) -> None:
    results = quick_bench["results"]
    for rows in results["raw_tasks"].values():
        for plugin in PLUGINS:
            assert {"wall_s", "requests_per_task", "tcp_connections", "handshakes"} <= set(rows[plugin])
    assert set(PLUGINS) | {"local_floor", "pinned_cold"} <= set(results["many_hosts"])
    for plugin, row in results["many_hosts"].items():
        assert row["wall_s"] > 0 and (row["runs"], row["failed_runs"]) == (QUICK_REPS, 0), (plugin, row)
    for size, rows in results["transfer"].items():
        for plugin in PLUGINS:
            row = rows[plugin]
            assert row["runs"] == QUICK_REPS, (size, plugin, row)
            assert row["put_mib_s"] > 0 and row["fetch_mib_s"] > 0, (size, plugin)
            # The whole's peak is at least the playbook tree's and at most the tree's plus the daemon's peak
            # (each rounded to 0.01 MiB).
            assert row["playbook_peak_rss_mib"] > 0
            assert row["playbook_peak_rss_mib"] <= row["peak_rss_mib"] <= (
                row["playbook_peak_rss_mib"] + row["daemon_peak_rss_mib"] + 0.02), (size, plugin, row)
        assert rows["pinned"]["daemon_peak_rss_mib"] > 0  # the pin daemon was found and sampled
        for plugin in ("builtin_psrp", "builtin_winrm"):  # no daemon: nothing but the playbook's own processes
            assert rows[plugin]["daemon_peak_rss_mib"] == 0
            assert rows[plugin]["peak_rss_mib"] == rows[plugin]["playbook_peak_rss_mib"]
    for rtt, by_kind in results["isolation"].items():
        for kind, rows in by_kind.items():
            assert {"isolated", "not_isolated", "cost"} <= set(rows), (rtt, kind, rows)
            iso, plain, cost = rows["isolated"], rows["not_isolated"], rows["cost"]
            assert iso["ms_per_task"] > 0 and iso["requests_per_task"] >= results["floor"]["requests_per_task"]
            # Counted by the lab host: every isolated task also sends the call to the restore function, so it
            # uploads more than the same task without isolation, and the cost row is the difference of the two.
            assert iso["bytes_up_per_task"] > plain["bytes_up_per_task"], (rtt, kind, rows)
            assert cost["bytes_up_per_task"] == pytest.approx(
                iso["bytes_up_per_task"] - plain["bytes_up_per_task"], abs=0.02), (rtt, kind, rows)
    rss = results["pinning_rss_mib"]
    assert set(rss) == {"1", "2", "4"} and all(v > 0 for v in rss.values())
    # from the unrounded RSS figures: within their rounding (0.01 MiB each) of the rounded ones' slope
    assert results["pinning_scale"]["mib_per_session"] == pytest.approx((rss["4"] - rss["1"]) / 3, abs=0.01 / 3 + 5e-4)
    assert results["targets"]
    # a missed target says what bounds it, from the run's own figures, where the bench knows the bound; which
    # ones a quick run misses depends on its timing, so each that did is checked
    bounded = ("WinRM requests per task", "isolation adds", "50 ms, win_", "fleet")
    for name, row in results["targets"].items():
        if row["met"] is False and name.startswith(bounded):
            assert row["bound"] and "None" not in row["bound"], (name, row)
        assert "bound" not in row or row["met"] is False, (name, row)


def test_quick_bench_runs_the_modules_through_every_plugin_and_counts_their_wire_cost(quick_bench: dict) -> None:
    results = quick_bench["results"]
    copy_kib = results["sizes"]["module_copy_kib"]
    assert set(results["module_tasks"]) == {"0", "50"}
    for rtt, modules in results["module_tasks"].items():
        assert set(modules) == {"win_ping", "win_copy"}
        for plugin in (*PLUGINS, "pinned_cold"):
            ping, copy = modules["win_ping"][plugin], modules["win_copy"][plugin]
            assert ping["failed_runs"] == 0 and copy["failed_runs"] == 0, (rtt, plugin)
            # a module task sends the exec wrapper and the module: more requests than the raw-task floor
            assert ping["requests_per_task"] > results["floor"]["requests_per_task"], (rtt, plugin, ping)
            # win_copy also carries the file (base64 inside the WinRM messages) and runs the module twice
            assert copy["kib_per_task"] > ping["kib_per_task"] + copy_kib, (rtt, plugin, copy, ping)
        assert modules["win_ping"]["pinned_cold"]["tcp_connections_total"] >= 1  # counted by the lab host
    assert "| 50 ms | win_copy | builtin_winrm |" in quick_bench["doc"].read_text()


def test_quick_bench_measures_the_controller_cpu_of_every_plugin_and_the_pin_daemons_share(quick_bench: dict) -> None:
    results = quick_bench["results"]
    cpu = results["controller_cpu"]
    assert set(cpu) == {"one_host", "many_hosts"}
    for name, row in cpu.items():
        for plugin in (*PLUGINS, "pinned_no_bytecode", "pinned_preload", "local_floor"):
            assert row[plugin]["failed_runs"] == 0 and row[plugin]["total_cpu_ms_per_task"] > 0, (name, plugin, row)
        pinned, builtin = row["pinned"], row["builtin_psrp"]
        # the daemon was found and its CPU counted, and it is a part of pinned's
        assert 0 < pinned["daemon_cpu_ms_per_task"] <= pinned["total_cpu_ms_per_task"], (name, pinned)
        assert "daemon_cpu_ms_per_task" not in builtin
        # Whether a warm pinned task costs the controller less than a builtin psrp task, or even more than the
        # local floor, is the full bench's question, from medians of enough tasks: a few tasks on a shared machine
        # cannot decide it (Ansible's start-up alone varies by more; builtin came out below the floor once). What
        # the quick run does decide: each figure above the floor is its run less the floor's run of the same
        # repetition (one repetition here, so the medians are those runs).
        floor = row["local_floor"]["total_cpu_ms_per_task"]
        for plugin in (*PLUGINS, "pinned_no_bytecode", "pinned_preload"):
            measured = row[plugin]
            assert len(measured["cpu_ms_per_task_samples"]) == measured["runs"] == 1, (name, plugin, measured)
            assert abs(measured["cpu_ms_per_task"] - (measured["total_cpu_ms_per_task"] - floor)) <= 0.02, (
                name, plugin, measured, floor)
            # ansible-playbook's own share and its workers' (read from its exited, unreaped process) add up to
            # what its rusage counted, the daemon's aside: the kernel's clock ticks (10 ms) bound the difference
            tasks = row["hosts"] * row["tasks_per_host"]
            split = measured["parent_above_floor_ms_per_task"] + measured["workers_above_floor_ms_per_task"]
            daemon = measured.get("daemon_cpu_ms_per_task", 0.0)
            assert abs(split - (measured["cpu_ms_per_task"] - daemon)) <= 1000 * 0.04 / tasks + 0.02, (
                name, plugin, measured)
    assert any(key.startswith("controller CPU per warm task") and row["met"] is not None
               for key, row in results["targets"].items())


def test_quick_bench_runs_the_fleet_and_the_daemons_cpu_per_task_by_hosts(quick_bench: dict) -> None:
    results = quick_bench["results"]
    fleet, hosts = results["fleet"], results["fleet_setup"]["hosts"]
    for plugin in ("pinned_preload", "pinned", "pinned_cold", "builtin_psrp", "local_floor"):
        assert fleet[plugin]["failed_runs"] == 0 and fleet[plugin]["wall_s"] > 0, (plugin, fleet)
    # what each measured run kept busy: a share of the machine's cores, and the lab's share of one core, which
    # works for the remote plugins and idles while the playbook runs on `local`
    for plugin in ("pinned_preload", "pinned", "builtin_psrp", "local_floor"):
        assert 0 < fleet[plugin]["machine_busy_share"] <= 1, (plugin, fleet)
    assert fleet["builtin_psrp"]["lab_core_share"] > fleet["local_floor"]["lab_core_share"], fleet
    assert fleet["pinned_preload"]["lab_core_share"] > fleet["local_floor"]["lab_core_share"], fleet
    assert fleet["builtin_psrp"]["lab_cpu_ms_per_task"] > fleet["local_floor"]["lab_cpu_ms_per_task"], fleet
    assert set(fleet["daemon_cpu_ms_per_task"]) == {"1", str(hosts)}
    assert all(v > 0 for v in fleet["daemon_cpu_ms_per_task"].values())
    assert any(key.startswith("fleet") and row["met"] is not None for key, row in results["targets"].items())
    text = quick_bench["doc"].read_text()
    assert "### Controller CPU per task" in text and "### Fleet" in text


def test_quick_bench_draws_the_chart_and_keeps_the_docs_prose(quick_bench: dict) -> None:
    assert quick_bench["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = quick_bench["doc"].read_text()
    assert "kept prose" in text
    assert "| 0 ms | pinned |" in text and "builtin_winrm" in text and "local_floor" in text
