"""What a task costs the controller (issue 14): CPU per task, and wall time across a fleet of hosts.

controller_cpu: the CPU time of `ansible-playbook` with every worker it forked (the kernel's rusage of the
process and the children it reaped), plus, for pinned, the pin daemon's CPU during the run (it is nobody's
child: /proc/<pid>/stat before and after), minus the same playbook on `ansible_connection: local`, per task.
Direct HTTPS with NTLM to the lab host, no proxy and no added RTT, so the figure is the plugins' own work on
the controller. Pinned is measured warm: a first run pins the sessions, the measured run reuses them. CPU time
is counted by the kernel per process, so other load on the machine slows a run without adding to its figure
(a busy machine still adds some: more context switches and colder caches); medians of interleaved runs.

fleet: many hosts through the latency relays at forks 20: wall time of pinned (warm), builtin psrp and the
local floor, and the pin daemon's CPU per task at 1, 20 and all the hosts (flat: the daemon's work per task
does not grow with the sessions it holds).
"""

from __future__ import annotations

import logging
import os
import shutil
import typing as t

from tests.integration._ansible import ROOT

from ._proc import machine_cpu_s, tree_cpu_s
from ._workloads import Bench, Sizes, median, rotated

log = logging.getLogger(__name__)

# pinned with no bytecode cache for the collection (PYTHONDONTWRITEBYTECODE=1 and no __pycache__): every worker
# compiles the plugin and its worker-side modules, as from a read-only collection directory never compiled
NO_BYTECODE = "pinned_no_bytecode"
# pinned with the pinned.winrm.preload callback enabled: the connection plugin loaded once, in ansible-playbook,
# rather than by each task's worker
PRELOAD = "pinned_preload"


def clear_bytecode() -> None:
    """Remove the collection's own bytecode caches (plugins/**/__pycache__)."""
    for cache in (ROOT / "plugins").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _raw(n: int, local: bool) -> list[dict[str, t.Any]]:
    command = "echo task {i}" if local else 'Write-Output "task {i}"'
    return [{"name": f"task {i}", "ansible.builtin.raw": command.format(i=i), "changed_when": False}
            for i in range(n)]


def _hosts(bench: Bench, count: int, *, via_relay: bool) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """`count` lab hosts, each its own session (and as many local stand-ins for the floor)."""
    if count > len(bench.desc["hosts"]):
        raise ValueError(f"the lab runs {len(bench.desc['hosts'])} hosts, not {count}")
    remote = {bench.desc["hosts"][i]["name"].lower(): bench.host_entry(i, via_relay=via_relay) for i in range(count)}
    local = {f"local{i}": {"ansible_host": "127.0.0.1"} for i in range(count)}
    return remote, local


def _cpu_sample(run: t.Any, plugin: str) -> dict[str, t.Any]:
    daemon = run.daemon_cpu_s if plugin == "pinned" and run.daemon_cpu_s is not None else 0.0
    return {"ok": run.rc == 0, "wall_s": run.wall_s, "playbook_cpu_s": run.cpu_s, "daemon_cpu_s": daemon,
            "cpu_s": run.cpu_s + daemon, "parent_cpu_s": run.parent_cpu_s, "workers_cpu_s": run.workers_cpu_s}


def cpu_workloads(sizes: Sizes) -> list[tuple[str, int, int, int]]:
    """(name, hosts, tasks per host, forks) of the controller_cpu workloads."""
    return [("one_host", 1, sizes.cpu_tasks, sizes.cpu_forks),
            ("many_hosts", sizes.cpu_hosts, sizes.cpu_hosts_tasks, sizes.cpu_hosts_forks)]


def controller_cpu(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """Controller CPU per task above the local floor, per workload and plugin (medians of interleaved runs)."""
    bench.client.set_rtt(0)
    pdir = bench.persist_dir("pc-cpu")
    out: dict[str, t.Any] = {}
    try:
        for name, host_count, tasks, forks in cpu_workloads(sizes):
            remote, local = _hosts(bench, host_count, via_relay=False)
            samples: dict[str, list[dict[str, t.Any]]] = {}
            variants = [*sizes.plugins, "local_floor"] + ([NO_BYTECODE, PRELOAD] if "pinned" in sizes.plugins else [])
            for rep in range(sizes.cpu_reps):
                for variant in rotated(variants, rep):
                    plugin = "pinned" if variant in (NO_BYTECODE, PRELOAD) else variant
                    is_local = plugin == "local_floor"
                    play = dict(hosts=local if is_local else remote, tasks=_raw(tasks, is_local), forks=forks,
                                persist_dir=pdir, proxy=None, label=f"controller cpu {name}", preload=variant == PRELOAD)
                    if plugin == "pinned":
                        # pins the sessions (or finds them pinned), and writes the bytecode caches: the next run is warm
                        bench.play(plugin, **play)
                    if variant == NO_BYTECODE:
                        clear_bytecode()
                    run = bench.play(plugin, **play, bytecode=variant != NO_BYTECODE)
                    samples.setdefault(variant, []).append(_cpu_sample(run, plugin))
            bench.pin_cli(pdir, "stop")
            out[name] = {"hosts": host_count, "tasks_per_host": tasks, "forks": forks,
                         **_summarise_cpu(samples, host_count * tasks)}
    finally:
        bench.pin_cli(pdir, "stop")
    return out


def _summarise_cpu(samples: dict[str, list[dict[str, t.Any]]], tasks: int) -> dict[str, t.Any]:
    """Per plugin: median CPU ms per task above the floor (each run less the floor's run of its repetition)."""
    floor = samples.get("local_floor", [])
    out: dict[str, t.Any] = {}
    for plugin, rows in samples.items():
        pairs = [(r, f) for r, f in zip(rows, floor) if r["ok"] and f["ok"]]
        row: dict[str, t.Any] = {"runs": len(rows), "failed_runs": sum(1 for r in rows if not r["ok"])}
        ok = [r for r in rows if r["ok"]]
        if ok:
            row.update({
                "total_cpu_ms_per_task": round(1000 * median([r["cpu_s"] for r in ok]) / tasks, 2),
                "wall_s": round(median([r["wall_s"] for r in ok]), 3),
            })
        if plugin != "local_floor" and pairs:
            above = [(r["cpu_s"] - f["cpu_s"]) for r, f in pairs]
            row["cpu_ms_per_task"] = round(1000 * median(above) / tasks, 2)
            row["cpu_ms_per_task_samples"] = [round(1000 * a / tasks, 2) for a in above]
            if plugin.startswith("pinned"):
                row["daemon_cpu_ms_per_task"] = round(1000 * median([r["daemon_cpu_s"] for r, _ in pairs]) / tasks, 2)
                row["workers_cpu_ms_per_task"] = round(
                    1000 * median([r["playbook_cpu_s"] - f["cpu_s"] for r, f in pairs]) / tasks, 2)
            # where the CPU above the floor went: the ansible-playbook process itself (it polls for results every
            # millisecond and, with every fork busy, for a free worker every 0.1 ms: that grows with the time tasks
            # wait and the CPU they leave idle) and the task workers it forked (the plugin, its options, the task)
            split = [(r, f) for r, f in pairs if None not in (r["parent_cpu_s"], r["workers_cpu_s"],
                                                                f["parent_cpu_s"], f["workers_cpu_s"])]
            if split:
                for part in ("parent", "workers"):
                    row[f"{part}_above_floor_ms_per_task"] = round(
                        1000 * median([r[f"{part}_cpu_s"] - f[f"{part}_cpu_s"] for r, f in split]) / tasks, 2)
        out[plugin] = row
    return out


FLEET_IDLE_TIMEOUT_S = 1800


def fleet(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """sizes.fleet_hosts hosts x sizes.fleet_tasks raw tasks at forks sizes.fleet_forks and sizes.fleet_rtt ms.

    Wall time of pinned with the pinned.winrm.preload callback and without (warm: each repetition's first pinned
    run pins every session, the measured runs reuse them), builtin psrp and the local floor, interleaved; for each,
    what the run kept busy: the machine's cores (/proc/stat) and the lab's own share (the lab process and its
    relays). And the pin daemon's CPU per task with 1, 20 and all the hosts at the same forks and RTT.
    """
    bench.client.set_rtt(sizes.fleet_rtt)
    pdir = bench.persist_dir("pc-fleet")
    plugins = [p for p in sizes.plugins if p in ("pinned", "builtin_psrp")]
    variants = [*plugins, "local_floor"] + ([PRELOAD] if "pinned" in plugins else [])
    remote, local = _hosts(bench, sizes.fleet_hosts, via_relay=True)
    # the sessions one repetition's cold run pinned outlive the builtin and floor runs between its pinned runs
    # (the default idle timeout is 60 s); pinned's inventory only (builtin psrp warns of a variable it lacks)
    pinned_hosts = {h: {**v, "ansible_psrp_persist_idle_timeout": FLEET_IDLE_TIMEOUT_S} for h, v in remote.items()}
    lab_pid = bench.lab.proc.pid if bench.lab.proc else None
    tasks = sizes.fleet_tasks
    total = sizes.fleet_hosts * tasks
    walls: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}  # share of all the machine's cores busy during the run
    lab_share: dict[str, list[float]] = {}  # the lab's CPU seconds per second of the run: its share of one core
    lab_cpu_s: dict[str, list[float]] = {}  # the lab's CPU seconds during the run: what the simulated hosts cost
    failed: dict[str, int] = {}
    daemon_per_task: dict[str, list[float]] = {}
    daemon_busy: list[float] = []  # the daemon's CPU seconds per second of the fleet run: its share of one core

    def measured(name: str, play: dict[str, t.Any]) -> None:
        lab0 = tree_cpu_s(lab_pid) if lab_pid else None
        machine0 = machine_cpu_s()
        run = bench.play("pinned" if name == PRELOAD else name, **play, preload=name == PRELOAD)
        machine1 = machine_cpu_s()
        if run.rc != 0:
            failed[name] = failed.get(name, 0) + 1
            return
        wall = max(run.wall_s, 1e-9)
        walls.setdefault(name, []).append(run.wall_s)
        busy.setdefault(name, []).append((machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1e-9))
        if lab0 is not None:
            lab_cpu = tree_cpu_s(lab_pid) - lab0
            lab_share.setdefault(name, []).append(lab_cpu / wall)
            lab_cpu_s.setdefault(name, []).append(lab_cpu)
        daemon = run.daemon_cpu_s if name.startswith("pinned") and run.daemon_cpu_s is not None else 0.0
        cpu.setdefault(name, []).append(run.cpu_s + daemon)
        if name.startswith("pinned") and run.daemon_cpu_s is not None:
            daemon_per_task.setdefault(str(sizes.fleet_hosts), []).append(1000 * run.daemon_cpu_s / total)
            daemon_busy.append(run.daemon_cpu_s / wall)

    try:
        for rep in range(sizes.fleet_reps):
            bench.pin_cli(pdir, "stop")
            pinned_this_rep = False
            for name in rotated(variants, rep):
                is_local = name == "local_floor"
                hosts = local if is_local else pinned_hosts if name.startswith("pinned") else remote
                play = dict(hosts=hosts, tasks=_raw(tasks, is_local), forks=sizes.fleet_forks, persist_dir=pdir,
                            proxy=None, label="fleet")
                if name.startswith("pinned") and not pinned_this_rep:
                    pinned_this_rep = True
                    # the repetition's first pinned run pins every session (no daemon yet): the cold figure
                    cold = bench.play("pinned", **play)
                    if cold.rc == 0:
                        walls.setdefault("pinned_cold", []).append(cold.wall_s)
                measured(name, play)
        if "pinned" in plugins:
            # the daemon's CPU per task as it holds more sessions, same forks and RTT; at least fleet_sweep_tasks
            # tasks a run, so the daemon's CPU (read in clock ticks of 10 ms) is measured to a few per cent
            for count in sorted({1, min(20, sizes.fleet_hosts)}):
                per_host = max(tasks, -(-sizes.fleet_sweep_tasks // count))
                few = dict(list(remote.items())[:count])
                play = dict(hosts=few, tasks=_raw(per_host, False), forks=sizes.fleet_forks, persist_dir=pdir,
                            proxy=None, label=f"fleet daemon {count} hosts")
                bench.pin_cli(pdir, "stop")
                bench.play("pinned", **play)
                for _ in range(max(1, sizes.fleet_reps)):
                    run = bench.play("pinned", **play)
                    if run.rc == 0 and run.daemon_cpu_s is not None:
                        daemon_per_task.setdefault(str(count), []).append(
                            1000 * run.daemon_cpu_s / (count * per_host))
    finally:
        bench.pin_cli(pdir, "stop")
        bench.client.set_rtt(0)
    out: dict[str, t.Any] = {"hosts": sizes.fleet_hosts, "tasks": tasks, "forks": sizes.fleet_forks,
                             "rtt_ms": sizes.fleet_rtt}
    for name in sorted(set(walls) | set(failed)):
        wall = median(walls.get(name, []))
        row: dict[str, t.Any] = {"wall_s": round(wall, 3) if wall else None, "runs": len(walls.get(name, [])),
                                 "failed_runs": failed.get(name, 0)}
        if cpu.get(name):
            row["cpu_ms_per_task"] = round(1000 * median(cpu[name]) / total, 2)
        if busy.get(name):
            row["machine_busy_share"] = round(median(busy[name]), 3)
        if lab_share.get(name):
            row["lab_core_share"] = round(median(lab_share[name]), 3)
            row["lab_cpu_ms_per_task"] = round(1000 * median(lab_cpu_s[name]) / total, 2)
        out[name] = row
    out["daemon_cpu_ms_per_task"] = {k: round(median(v), 2) for k, v in
                                     sorted(daemon_per_task.items(), key=lambda kv: int(kv[0]))}
    out["daemon_core_share"] = round(median(daemon_busy), 3) if daemon_busy else None
    out["cores"] = os.cpu_count()
    return out


# the fleet's pin daemon CPU per task may grow by this much from 1 host to the most: "flat"
DAEMON_FLAT_RATIO = 1.5


def targets(results: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """Issue 14's targets, each with what was measured and whether it was met (None: not measured)."""
    out: dict[str, dict[str, t.Any]] = {}
    for name, row in (results.get("controller_cpu") or {}).items():
        if not isinstance(row, dict) or "hosts" not in row:
            continue
        # pinned as configured for it: with the pinned.winrm.preload callback (docs/pinning.md); without, beside it
        p = (row.get(PRELOAD) or {}).get("cpu_ms_per_task")
        plain = (row.get("pinned") or {}).get("cpu_ms_per_task")
        b = (row.get("builtin_psrp") or {}).get("cpu_ms_per_task")
        daemon = (row.get(PRELOAD) or {}).get("daemon_cpu_ms_per_task")
        ok = None if p is None or b is None else p <= 0.25 * b
        parts = "; ".join(
            f"{plugin} ansible-playbook {r['parent_above_floor_ms_per_task']}, its workers "
            f"{r['workers_above_floor_ms_per_task']}" for plugin in (PRELOAD, "pinned", "builtin_psrp")
            if "parent_above_floor_ms_per_task" in (r := row.get(plugin) or {}))
        without = "" if plain is None or b is None else (
            f"; without the callback pinned {plain} ms (ratio {plain / max(b, 1e-9):.2f})")
        label = (f"controller CPU per warm task above local_floor, {row['hosts']} host{'s' if row['hosts'] > 1 else ''} "
                 f"x {row['tasks_per_host']} raw tasks, forks {row['forks']}: pinned (pinned.winrm.preload enabled) "
                 f"<= 1/4 of builtin_psrp")
        out[label] = {"measured": "n/a" if ok is None else
                      f"{p} ms vs {b} ms (ratio {p / max(b, 1e-9):.2f}; pin daemon {daemon} ms of pinned's{without}"
                      + (f"; above the floor: {parts}" if parts else "") + ")",
                      "met": ok}
    out.update(_module_targets(results))
    fleet = results.get("fleet") or {}
    setup = results.get("fleet_setup") or {}
    if fleet:
        # judged, as controller_cpu, on pinned as configured for it: with the pinned.winrm.preload callback
        f, b = ((fleet.get(k) or {}).get("wall_s") for k in ("local_floor", "builtin_psrp"))
        p = (fleet.get(PRELOAD) or {}).get("wall_s")
        plain = (fleet.get("pinned") or {}).get("wall_s")
        ok = None if None in (f, p, b) else (p - f) <= 0.5 * (b - f)
        without = "" if None in (f, plain, b) else (
            f"; without the callback pinned {plain - f:.2f} s (ratio {(plain - f) / max(b - f, 1e-9):.2f})")
        load = "; ".join(f"{k} {r['machine_busy_share']:.2f} of the machine's {fleet.get('cores')} cores busy, "
                         f"CPU a task {r.get('cpu_ms_per_task')} ms on the controller and "
                         f"{r.get('lab_cpu_ms_per_task')} ms in the lab ({r.get('lab_core_share', 0):.2f} of one core)"
                         for k in (PRELOAD, "builtin_psrp", "local_floor")
                         if "machine_busy_share" in (r := fleet.get(k) or {}))
        row = {"measured": "n/a" if ok is None else
               f"{p - f:.2f} s vs {b - f:.2f} s (ratio {(p - f) / max(b - f, 1e-9):.2f}{without}"
               + (f"; during the runs: {load}" if load else "") + ")", "met": ok}
        if ok is False:
            row["bound"] = _fleet_bound(fleet)
        out[f"fleet ({setup.get('hosts')} hosts x {setup.get('tasks')} raw tasks, forks {setup.get('forks')}, "
            f"{setup.get('rtt_ms'):g} ms): pinned (pinned.winrm.preload enabled) above local_floor <= 1/2 of "
            f"builtin_psrp above it"] = row
        per = fleet.get("daemon_cpu_ms_per_task") or {}
        counts = sorted(per, key=int)
        if len(counts) >= 2:
            first, last = per[counts[0]], per[counts[-1]]
            out[f"pin daemon CPU per task flat from {counts[0]} to {counts[-1]} hosts (at most "
                f"{DAEMON_FLAT_RATIO:g}x)"] = {
                "measured": ", ".join(f"{per[c]} ms at {c}" for c in counts),
                "met": last <= DAEMON_FLAT_RATIO * first}
    return out


def _fleet_bound(fleet: dict[str, t.Any]) -> str:
    """What a missed fleet target measured: how busy the machine was, and the ratio on the controller's CPU alone."""
    rows = {k: fleet.get(k) or {} for k in (PRELOAD, "builtin_psrp", "local_floor")}
    busy = [r["machine_busy_share"] for r in rows.values() if "machine_busy_share" in r]
    cpu = {k: r.get("cpu_ms_per_task") for k, r in rows.items()}
    lab = {k: r.get("lab_cpu_ms_per_task") for k, r in rows.items()}
    parts = []
    if busy:
        parts.append(f"the machine's {fleet.get('cores')} cores were {min(busy):.2f} to {max(busy):.2f} busy in "
                     f"the measured runs, so CPU, not round trips, sets their wall time")
    if None not in (lab[PRELOAD], lab["builtin_psrp"]):
        parts.append(f"the lab, which stands in for every host on those same cores, spent {lab[PRELOAD]} ms a "
                     f"pinned task and {lab['builtin_psrp']} ms a builtin_psrp task")
    if None not in cpu.values():
        p, b, f = cpu[PRELOAD], cpu["builtin_psrp"], cpu["local_floor"]
        parts.append(f"on the controller's CPU alone (a real fleet's hosts spend their own), pinned's CPU a task "
                     f"above the floor's is {p - f:.1f} ms against builtin_psrp's {b - f:.1f} "
                     f"(ratio {(p - f) / max(b - f, 1e-9):.2f})")
    return "; ".join(parts) or "n/a"


def _module_targets(results: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    """Issue 14's 50 ms target for module tasks: pinned's time per task above the floor at most a quarter of
    builtin psrp's. The floor is the raw tasks' local_floor per task at the same RTT (no module runs on `local`):
    Ansible's own cost of a task, without the module payload it builds for every plugin alike."""
    out: dict[str, dict[str, t.Any]] = {}
    modules, raw = results.get("module_tasks") or {}, results.get("raw_tasks") or {}
    for rtt in sorted(set(modules) & set(raw), key=float):
        if float(rtt) < 50:
            continue
        floor = (raw[rtt].get("local_floor") or {}).get("s_per_task")
        for module, rows in modules[rtt].items():
            p, b = ((rows.get(k) or {}).get("s_per_task") for k in ("pinned", "builtin_psrp"))
            ok = None if None in (floor, p, b) else (p - floor) <= 0.25 * (b - floor)
            row: dict[str, t.Any] = {
                "measured": "n/a" if ok is None else f"{p - floor:.3f} s vs {b - floor:.3f} s per task "
                f"(ratio {(p - floor) / max(b - floor, 1e-9):.2f})", "met": ok}
            req, breq = ((rows.get(k) or {}).get("requests_per_task") for k in ("pinned", "builtin_psrp"))
            if ok is False and req is not None:  # missed: floor, p and b were all measured
                # the round trips alone: each request waits one RTT, whatever the host or the controller spends
                trips = req * float(rtt) / 1000
                row["bound"] = (f"pinned's {req} WinRM requests a task (builtin_psrp {breq}) x {rtt} ms are "
                                f"{trips:.3f} s of round trips alone, {trips / max(b - floor, 1e-9):.2f} of "
                                f"builtin_psrp's time above the floor (a quarter is {0.25 * (b - floor):.3f} s); "
                                f"the rest of pinned's, {p - floor - trips:.3f} s, "
                                f"is the host's and the controller's work. A module task's requests are the "
                                f"protocol's for each command it runs (Command, Send, Receive, Signal)")
            out[f"{rtt} ms, {module} tasks: pinned above local_floor <= 1/4 of builtin_psrp above it"] = row
    return out
