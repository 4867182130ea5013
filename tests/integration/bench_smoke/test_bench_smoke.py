"""`make bench` works: the benchmark harness, run with tiny sizes, measures every plugin and writes its outputs.

The full run (python -m benchmarks.run) takes many minutes; this runs the same code end to end with --quick
(3 raw tasks, 3 hosts, 256 KiB and 1 MiB files, 1/2/4 sessions, controller CPU of 8 tasks on one host and 3 x 3
hosts, a fleet of 4 hosts) against its own lab. Timings are never asserted, only relations between plugins.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLUGINS = ("pinned", "builtin_psrp", "builtin_winrm")

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
    for rtt, rows in results["raw_tasks"].items():
        for plugin in (*PLUGINS, "local_floor", "pinned_cold"):
            assert rows[plugin]["wall_s"] > 0, (rtt, plugin, rows)
        for plugin in PLUGINS:
            # counted by the lab host: every plugin sent WinRM requests for its tasks
            assert rows[plugin]["requests_per_task"] > 0, (rtt, plugin)
        assert rows["pinned_cold"]["tcp_connections_total"] >= 1


def test_quick_bench_writes_the_issue_json_shape(quick_bench: dict) -> None:
    results = quick_bench["results"]
    for rows in results["raw_tasks"].values():
        for plugin in PLUGINS:
            assert {"wall_s", "requests_per_task", "tcp_connections", "handshakes"} <= set(rows[plugin])
    assert set(PLUGINS) | {"local_floor"} <= set(results["many_hosts"])
    assert all(results["many_hosts"][p]["wall_s"] > 0 for p in PLUGINS)
    for size, rows in results["transfer"].items():
        for plugin in PLUGINS:
            assert rows[plugin]["put_mib_s"] > 0 and rows[plugin]["fetch_mib_s"] > 0, (size, plugin)
            assert rows[plugin]["peak_rss_mib"] > 0
        assert rows["pinned"]["daemon_peak_rss_mib"] > 0  # the pin daemon was found and sampled
    rss = results["pinning_rss_mib"]
    assert set(rss) == {"1", "2", "4"} and all(v > 0 for v in rss.values())
    assert results["targets"]


def test_quick_bench_measures_the_controller_cpu_of_every_plugin_and_the_pin_daemons_share(quick_bench: dict) -> None:
    results = quick_bench["results"]
    cpu = results["controller_cpu"]
    assert set(cpu) == {"one_host", "many_hosts"}
    for name, row in cpu.items():
        for plugin in (*PLUGINS, "pinned_no_bytecode", "local_floor"):
            assert row[plugin]["failed_runs"] == 0 and row[plugin]["total_cpu_ms_per_task"] > 0, (name, plugin, row)
        pinned, builtin = row["pinned"], row["builtin_psrp"]
        # the daemon was found and its CPU counted, and it is a part of pinned's
        assert 0 < pinned["daemon_cpu_ms_per_task"] <= pinned["total_cpu_ms_per_task"], (name, pinned)
        assert "daemon_cpu_ms_per_task" not in builtin
        # a warm pinned task costs the controller less than a builtin psrp task (a handshake and a pool each)
        assert pinned["cpu_ms_per_task"] < builtin["cpu_ms_per_task"], (name, pinned, builtin)
    assert any(key.startswith("controller CPU per warm task") and row["met"] is not None
               for key, row in results["targets"].items())


def test_quick_bench_runs_the_fleet_and_the_daemons_cpu_per_task_by_hosts(quick_bench: dict) -> None:
    results = quick_bench["results"]
    fleet, hosts = results["fleet"], results["fleet_setup"]["hosts"]
    for plugin in ("pinned", "pinned_cold", "builtin_psrp", "local_floor"):
        assert fleet[plugin]["failed_runs"] == 0 and fleet[plugin]["wall_s"] > 0, (plugin, fleet)
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
