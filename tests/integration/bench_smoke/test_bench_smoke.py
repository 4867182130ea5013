"""`make bench` works: the benchmark harness, run with tiny sizes, measures every plugin and writes its outputs.

The full run (python -m benchmarks.run) takes many minutes; this runs the same code end to end with --quick
(3 raw tasks, 3 hosts, 256 KiB and 1 MiB files, 1/2/4 sessions) against its own lab.
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
    for rtt, by_kind in results["isolation"].items():
        for kind, rows in by_kind.items():
            assert {"isolated", "not_isolated", "cost"} <= set(rows), (rtt, kind, rows)
            assert rows["isolated"]["ms_per_task"] > 0 and rows["isolated"]["requests_per_task"] > 0
    rss = results["pinning_rss_mib"]
    assert set(rss) == {"1", "2", "4"} and all(v > 0 for v in rss.values())
    assert results["targets"]


def test_quick_bench_draws_the_chart_and_keeps_the_docs_prose(quick_bench: dict) -> None:
    assert quick_bench["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = quick_bench["doc"].read_text()
    assert "kept prose" in text
    assert "| 0 ms | pinned |" in text and "builtin_winrm" in text and "local_floor" in text
