"""`make bench`: pinned.winrm.psrp beside ansible.builtin.psrp and ansible.builtin.winrm, on one lab.

    python -m benchmarks.run [--quick] [--reps N] [--skip WORKLOAD ...] [--out PATH] [--doc PATH] [--chart PATH]

Starts a lab (50 hosts, latency relays, the Basic and NTLM Squids), runs the workloads of issue 5
(benchmarks/_workloads.py), and writes benchmarks/results/latest.json, benchmarks/results/raw_tasks.png and
the results section of docs/benchmarks.md. Every loop is bounded in count; --max-minutes bounds the whole
run (workloads not started by then are skipped and listed as errors).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import pathlib
import signal
import sys
import tempfile
import time
import typing as t

from . import _controller, _report, _workloads
from ._lab import BenchLab

log = logging.getLogger("benchmarks")

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKLOADS = ("raw_tasks", "module_tasks", "many_hosts", "transfer", "pinning_scale", "isolation", "controller_cpu",
             "fleet")
# where each workload's function lives
_RUNNERS = {name: getattr(_controller if name in ("controller_cpu", "fleet") else _workloads, name) for name in WORKLOADS}


def _sizes(args: argparse.Namespace) -> _workloads.Sizes:
    if args.quick:
        sizes = _workloads.Sizes(reps=1, raw_tasks=3, rtts=(0.0, 10.0), many_hosts=3, many_tasks=2, many_forks=3,
                                 many_reps=1, transfer_mib=(0.25, 1.0), transfer_reps=1, sessions=(1, 2, 4),
                                 cpu_reps=1, cpu_tasks=8, cpu_hosts=3, cpu_hosts_tasks=3, cpu_hosts_forks=3,
                                 fleet_hosts=4, fleet_tasks=2, fleet_forks=4, fleet_reps=1, fleet_sweep_tasks=8,
                                 module_tasks=2, module_copy_kib=16)
    else:
        sizes = _workloads.Sizes()
    if args.reps:
        sizes.reps = args.reps
    if args.plugins:
        sizes.plugins = tuple(args.plugins)
    if args.transfer_mib:
        sizes.transfer_mib = tuple(args.transfer_mib)
    if args.cpu_reps:
        sizes.cpu_reps = args.cpu_reps
    if args.fleet_hosts:
        sizes.fleet_hosts = args.fleet_hosts
    return sizes


def targets(results: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """Issue 5's targets, each with what was measured and whether it was met (None: not measured)."""
    out: dict[str, dict[str, t.Any]] = {}
    raw = results.get("raw_tasks", {})

    def wall(rtt: str, plugin: str) -> float | None:
        return (raw.get(rtt, {}).get(plugin) or {}).get("wall_s")

    top = max(raw, key=float) if raw else None
    if top is not None:
        f, p, b = wall(top, "local_floor"), wall(top, "pinned"), wall(top, "builtin_psrp")
        ok = None if None in (f, p, b) else (p - f) <= 0.25 * (b - f)
        out[f"{top} ms: pinned above local_floor <= 1/4 of builtin_psrp above it"] = {
            "measured": "n/a" if ok is None else f"{p - f:.2f} s vs {b - f:.2f} s (ratio {(p - f) / max(b - f, 1e-9):.2f})",
            "met": ok}
    if "0" in raw:
        p, b, w = wall("0", "pinned"), wall("0", "builtin_psrp"), wall("0", "builtin_winrm")
        peers = [x for x in (b, w) if x is not None]
        ok = None if p is None or len(peers) < 2 else all(p < x for x in peers)
        out["0 ms: pinned faster than both peers"] = {
            "measured": f"pinned {p} s, builtin_psrp {b} s, builtin_winrm {w} s", "met": ok}
        req = (raw["0"].get("pinned") or {}).get("requests_per_task")
        floor = results["floor"]["requests_per_task"]
        row: dict[str, t.Any] = {"measured": f"{req} (minimum {floor})", "met": None if req is None else req <= floor}
        if row["met"] is False:
            row["bound"] = _requests_bound(results)
        out["WinRM requests per task, warm session: the protocol minimum"] = row
    transfer = results.get("transfer", {})
    if transfer:
        slower = []
        measured = []
        for size, rows in transfer.items():
            p, b = rows.get("pinned"), rows.get("builtin_psrp")
            if p and b:
                measured.append(f"{size} MiB put {p['put_mib_s']}/{b['put_mib_s']}, fetch {p['fetch_mib_s']}/"
                                f"{b['fetch_mib_s']}")
                if p["put_mib_s"] < b["put_mib_s"] or p["fetch_mib_s"] < b["fetch_mib_s"]:
                    slower.append(size)
        out["transfer throughput >= builtin_psrp (pinned/builtin_psrp MiB/s)"] = {
            "measured": "; ".join(measured) or "n/a", "met": (not slower) if measured else None}
        sizes = sorted((s for s in transfer if transfer[s].get("pinned")), key=float)
        if len(sizes) >= 2:
            lo, hi = transfer[sizes[0]]["pinned"]["peak_rss_mib"], transfer[sizes[-1]]["pinned"]["peak_rss_mib"]
            growth = hi - lo
            # "does not grow with file size": less than a tenth of the size difference (and under 32 MiB)
            allowed = min(32.0, 0.1 * (float(sizes[-1]) - float(sizes[0])))
            out["pinned peak RSS does not grow with file size"] = {
                "measured": f"{lo} MiB at {sizes[0]} MiB, {hi} MiB at {sizes[-1]} MiB (+{growth:.1f})",
                "met": growth <= max(allowed, 8.0)}
    isolation = results.get("isolation", {})
    if isolation:
        costs = [rows["cost"]["requests_per_task"] for by_kind in isolation.values() for rows in by_kind.values()
                 if "cost" in rows]
        # a memory reading after at most every 32nd task's reply is all isolation may add
        row = {"measured": ", ".join(f"{c:+.2f}" for c in costs) or "n/a",
               "met": all(c <= 1 / 32 + 0.005 for c in costs) if costs else None}
        if row["met"] is False:
            row["bound"] = _isolation_bound(isolation)
        out["isolation adds no WinRM request to a warm task"] = row
    scale = results.get("pinning_scale") or {}
    per = scale.get("mib_per_session")
    if per is not None or "pinning_scale" in results:
        counts = sorted(int(k) for k, v in (scale.get("rss_mib") or {}).items() if v is not None)
        at = f" at {counts[-1]:,} sessions" if counts else ""
        out[f"at most 3 MiB per pinned session{at}"] = {
            "measured": f"{per} MiB per added session" + (f" ({counts[0]} to {counts[-1]})" if len(counts) > 1 else ""),
            "met": None if per is None else per <= 3}
    out.update(_controller.targets(results))
    return out


def _isolation_bound(isolation: dict[str, t.Any]) -> str:
    """What a missed isolation request target measured beside its requests: the restore's time on the host."""
    pairs = "; ".join(f"{rtt} ms, task {kind}: {rows['cost']['requests_per_task']:+.2f}, isolation's time "
                      f"{rows['cost']['ms_per_task']} ms a task"
                      for rtt, by_kind in sorted(isolation.items(), key=lambda kv: float(kv[0]))
                      for kind, rows in by_kind.items() if "cost" in rows)
    return (f"the extra request is a second Receive: the host answers the first as soon as the task's output is ready, "
            f"while the restore after it (T1) still runs, so the client asks again for the pipeline's end; it comes "
            f"more often the longer the restore beside a round trip ({pairs})")


def _requests_bound(results: dict[str, t.Any]) -> str:
    """What a missed requests target measured at each added RTT, and isolation's share of it."""
    raw = results.get("raw_tasks", {})
    by_rtt = ", ".join(f"{(raw[r].get('pinned') or {}).get('requests_per_task')} at {r} ms"
                       for r in sorted(raw, key=float) if (raw[r].get("pinned") or {}).get("requests_per_task"))
    extra = [rows["cost"]["requests_per_task"] for rows in (results.get("isolation", {}).get("0") or {}).values()
             if "cost" in rows]
    iso = "" if not extra else (f"; isolation alone adds {min(extra):+.2f} to {max(extra):+.2f} at 0 ms (its "
                                f"restore's second Receive, see the isolation target)")
    return f"requests per warm task by added RTT: {by_rtt}{iso}"


def _write_views(args: argparse.Namespace, results: dict[str, t.Any]) -> None:
    if args.chart and _report.chart(results, args.chart):
        log.info("chart %s", args.chart)
    if args.doc:
        _report.update_doc(args.doc, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CI smoke run)")
    parser.add_argument("--reps", type=int, default=0, help="repetitions of the raw-task workload (default 3)")
    parser.add_argument("--plugins", nargs="+", choices=_workloads.REMOTE, help="plugins to measure (default all)")
    parser.add_argument("--transfer-mib", nargs="+", type=float, help="file sizes in MiB (default 1 256)")
    parser.add_argument("--cpu-reps", type=int, default=0, help="repetitions of controller_cpu (default 5)")
    parser.add_argument("--fleet-hosts", type=int, default=0, help="hosts of the fleet workload (default 200)")
    parser.add_argument("--skip", nargs="*", default=[], choices=WORKLOADS, help="workloads to leave out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    parser.add_argument("--chart", default=str(ROOT / "benchmarks" / "results" / "raw_tasks.png"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="markdown file whose generated section is replaced ('' for none)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: redraw the chart and the doc from the JSON at --out")
    parser.add_argument("--max-minutes", type=float, default=90.0, help="start no workload after this long")
    args = parser.parse_args(argv)
    # a stopped run still stops its lab and pin daemons (the context managers below run on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    if args.report_only:
        results = json.loads(pathlib.Path(args.out).read_text(encoding="utf-8"))
        results["targets"] = targets(results)
        pathlib.Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        _write_views(args, results)
        return 0

    sizes = _sizes(args)
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    # pinning scale: at most 20 of its sessions per (host, host user) pair (Windows allows 30 shells per user)
    hosts = max(sizes.many_hosts, -(-max(sizes.sessions) // 40), 1)
    if "controller_cpu" not in args.skip:
        hosts = max(hosts, sizes.cpu_hosts)
    if "fleet" not in args.skip:
        hosts = max(hosts, sizes.fleet_hosts)
    results: dict[str, t.Any] = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _report.machine(), "versions": _report.versions(),
        "sizes": {k: v for k, v in vars(sizes).items()},
        "setup": {"proxy": "squid_https (Basic proxy auth over TLS to the proxy; the builtin plugins put the credentials in the proxy URL)",
                  "host": "HTTPS, NTLM, lab CA validated", "relay": "latency relay between Squid and the host",
                  "lab_hosts": hosts},
        "floor": {"requests_per_task": _workloads.FLOOR_REQUESTS_PER_TASK,
                  "what": "Command (with CreatePipeline), Receive (output + Completed state), Signal terminate, "
                          "on a Runspace Pool that already exists"},
    }
    with tempfile.TemporaryDirectory(prefix="pinned-bench-") as tmp, BenchLab(hosts) as lab:
        bench = _workloads.Bench(lab, pathlib.Path(tmp))
        log.info("lab with %d hosts up after %.1f s", hosts, time.monotonic() - started)
        for name in WORKLOADS:
            if name in args.skip:
                continue
            if time.monotonic() > deadline:
                bench.errors.append(f"{name}: skipped, --max-minutes {args.max_minutes} reached")
                continue
            t0 = time.monotonic()
            log.info("workload %s", name)
            value = _RUNNERS[name](bench, sizes)
            results.setdefault("workload_s", {})[name] = round(time.monotonic() - t0, 1)
            if name == "raw_tasks":
                results["raw_tasks"], results["raw_tasks_samples"] = value["summary"], value["samples"]
                for rtt, rows in value["summary"].items():
                    rows["floor_requests_per_task"] = _workloads.FLOOR_REQUESTS_PER_TASK
            elif name == "many_hosts":
                results["many_hosts_setup"] = {k: value.pop(k) for k in ("hosts", "tasks", "forks", "rtt_ms")}
                results["many_hosts"] = value
            elif name == "fleet":
                results["fleet_setup"] = {k: value.pop(k) for k in ("hosts", "tasks", "forks", "rtt_ms")}
                results["fleet"] = value
            elif name == "pinning_scale":
                results["pinning_scale"] = value
                results["pinning_rss_mib"] = value["rss_mib"]
            else:
                results[name] = value
        results["errors"] = bench.errors
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results["targets"] = targets(results)
    for rows in results.get("raw_tasks", {}).values():
        rows.pop("floor_requests_per_task", None)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    _write_views(args, results)
    log.info("done in %.0f s: %s", results["duration_s"], args.out)
    for name, row in results["targets"].items():
        log.info("target %s: %s (%s)", name, row["met"], row["measured"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
