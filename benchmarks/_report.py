"""Write the benchmark results: JSON, the chart (PNG) and the table in docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import typing as t

PLUGIN_LINES = ("pinned", "pinned_cold", "builtin_psrp", "builtin_winrm", "local_floor")


def machine() -> dict[str, t.Any]:
    """nproc, CPU model, RAM and OS of this machine."""
    cpu = platform.processor() or ""
    mem_kib = 0
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kib / 1024 / 1024, 1),
            "os": platform.platform()}


def versions() -> dict[str, str]:
    """python, ansible-core, pypsrp, pywinrm, pyspnego and squid."""
    out = {"python": platform.python_version()}
    for dist in ("ansible-core", "pypsrp", "pywinrm", "pyspnego", "requests"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    squid = shutil.which("squid") or "/usr/sbin/squid"
    try:
        text = subprocess.run([squid, "-v"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"Version (\S+)", text)
        out["squid"] = match.group(1) if match else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        out["squid"] = "not found"
    return out


def chart(results: dict[str, t.Any], path: str) -> bool:
    """Seconds per task against added RTT, one line per plugin, beside the controller's CPU per task (PNG).

    False without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    raw = results.get("raw_tasks", {})
    rtts = sorted(raw, key=float)
    cpu = {k: v for k, v in (results.get("controller_cpu") or {}).items() if isinstance(v, dict) and "hosts" in v}
    if cpu:
        fig, (ax, cpu_ax) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110, gridspec_kw={"width_ratios": [7, 5]})
        _cpu_panel(cpu_ax, cpu)
    else:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for plugin in PLUGIN_LINES:
        xs, ys = [], []
        for rtt in rtts:
            row = raw[rtt].get(plugin) or {}
            if row.get("s_per_task") is not None:
                xs.append(float(rtt))
                ys.append(row["s_per_task"])
        if xs:
            style = "--" if plugin in ("local_floor", "pinned_cold") else "-"
            ax.plot(xs, ys, style, marker="o", label=plugin)
    ax.set_xlabel("added round-trip time, proxy to host (ms)")
    ax.set_ylabel("seconds per raw task (median)")
    ax.set_title(f"{results.get('sizes', {}).get('raw_tasks', 20)} raw tasks, one host, through Squid (TLS, Basic)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


CPU_PLUGINS = ("pinned_preload", "pinned", "pinned_no_bytecode", "builtin_psrp", "builtin_winrm")


def _cpu_panel(ax: t.Any, cpu: dict[str, t.Any]) -> None:
    """Controller CPU ms per task above local_floor, a bar per plugin and workload; pinned's daemon share hatched."""
    names = list(cpu)
    width = 0.8 / len(CPU_PLUGINS)
    for i, plugin in enumerate(CPU_PLUGINS):
        xs, ys, daemon = [], [], []
        for j, name in enumerate(names):
            row = cpu[name].get(plugin) or {}
            if row.get("cpu_ms_per_task") is not None:
                xs.append(j + (i - (len(CPU_PLUGINS) - 1) / 2) * width)
                ys.append(row["cpu_ms_per_task"])
                daemon.append(row.get("daemon_cpu_ms_per_task") or 0.0)
        if xs:
            ax.bar(xs, ys, width, label=plugin)
            if any(daemon):
                ax.bar(xs, daemon, width, color="none", hatch="///", edgecolor="black", linewidth=0,
                       label="of which the pin daemon" if i == 0 else None)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{cpu[n]['hosts']} host{'s' if cpu[n]['hosts'] > 1 else ''} x {cpu[n]['tasks_per_host']}"
                        f"\nforks {cpu[n]['forks']}" for n in names])
    ax.set_ylabel("controller CPU ms per task above local_floor")
    ax.set_title("controller CPU per raw task (direct HTTPS, NTLM)")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _fmt(value: t.Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


def markdown_tables(results: dict[str, t.Any]) -> str:
    """The results section of docs/benchmarks.md, generated from results/latest.json."""
    lines: list[str] = []
    m, v = results["machine"], results["versions"]
    lines += [f"Measured {results['finished']} in {results['duration_s']:.0f} s "
              f"({results['sizes']['reps']} repetitions, medians).", "",
              f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_gib']} GiB RAM, {m['os']}",
              "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), ""]
    raw = results.get("raw_tasks", {})
    if raw:
        floor = results.get("floor", {})
        lines += ["### Raw tasks (one host, through Squid over TLS with Basic, HTTPS and NTLM to the host)", "",
                  "| added RTT | plugin | wall (s) | s/task | above local_floor (s) | WinRM requests/task "
                  "(floor " + _fmt(floor.get("requests_per_task")) + ") | TCP conn./task | handshakes/task |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for rtt in sorted(raw, key=float):
            base = (raw[rtt].get("local_floor") or {}).get("wall_s")
            for plugin in PLUGIN_LINES:
                row = raw[rtt].get(plugin)
                if not row:
                    continue
                if row.get("wall_s") is None:
                    lines.append(f"| {rtt} ms | {plugin} | failed ({row.get('failed_runs')} runs) | | | | | |")
                    continue
                above = row["wall_s"] - base if base is not None and plugin != "local_floor" else None
                lines.append(f"| {rtt} ms | {plugin} | {_fmt(row['wall_s'], 2)} | {_fmt(row['s_per_task'], 3)} | "
                             f"{_fmt(above, 2)} | {_fmt(row.get('requests_per_task'), 2)} | "
                             f"{_fmt(row.get('tcp_connections'), 2)} | {_fmt(row.get('handshakes'), 2)} |")
        lines.append("")
    modules = results.get("module_tasks", {})
    if modules:
        sizes = results.get("sizes", {})
        lines += [f"### Module tasks ({sizes.get('module_tasks')} tasks of each module per run, one host, through "
                  f"Squid over TLS with Basic; win_copy copies {sizes.get('module_copy_kib')} KiB to a new file)", "",
                  "| added RTT | module | plugin | wall (s) | s/task | WinRM requests/task | KiB on the wire/task "
                  "| TCP connections |", "|---:|---|---|---:|---:|---:|---:|---:|"]
        for rtt in sorted(modules, key=float):
            for module, by_plugin in modules[rtt].items():
                for plugin in PLUGIN_LINES:
                    row = by_plugin.get(plugin)
                    if not row:
                        continue
                    if row.get("wall_s") is None:
                        lines.append(f"| {rtt} ms | {module} | {plugin} | failed ({row.get('failed_runs')} runs) "
                                     "| | | | |")
                        continue
                    lines.append(f"| {rtt} ms | {module} | {plugin} | {_fmt(row['wall_s'], 2)} | "
                                 f"{_fmt(row['s_per_task'], 3)} | {_fmt(row['requests_per_task'], 2)} | "
                                 f"{_fmt(row['kib_per_task'], 1)} | {_fmt(row['tcp_connections_total'])} |")
        lines += ["", "KiB on the wire: HTTP bytes the host received and sent (inside TLS), per task.", ""]
    many = results.get("many_hosts", {})
    setup = results.get("many_hosts_setup", {})
    if many:
        lines += [f"### Many hosts ({setup.get('hosts')} hosts x {setup.get('tasks')} raw tasks, forks "
                  f"{setup.get('forks')}, {_fmt(setup.get('rtt_ms'))} ms added RTT)", "",
                  "| plugin | wall (s) | runs |", "|---|---:|---:|"]
        for plugin in PLUGIN_LINES:
            row = many.get(plugin)
            if isinstance(row, dict):
                wall = _fmt(row.get("wall_s"), 2) if row.get("wall_s") else f"failed ({row.get('failed_runs')} runs)"
                lines.append(f"| {plugin} | {wall} | {row.get('runs')} |")
        lines.append("")
    transfer = results.get("transfer", {})
    if transfer:
        lines += ["### File transfer (through Squid over TLS with Basic, no added RTT)", "",
                  "| size (MiB) | plugin | put MiB/s | fetch MiB/s | peak RSS total (MiB) | ansible-playbook tree "
                  "(MiB) | pin daemon (MiB) |", "|---:|---|---:|---:|---:|---:|---:|"]
        for size in sorted(transfer, key=float):
            for plugin in PLUGIN_LINES:
                row = transfer[size].get(plugin)
                if row:
                    lines.append(f"| {size} | {plugin} | {_fmt(row['put_mib_s'], 2)} | {_fmt(row['fetch_mib_s'], 2)} | "
                                 f"{_fmt(row['peak_rss_mib'], 1)} | {_fmt(row['playbook_peak_rss_mib'], 1)} | "
                                 f"{_fmt(row['daemon_peak_rss_mib'], 1)} |")
        lines.append("")
    scale = results.get("pinning_scale", {})
    if scale:
        opened = scale.get("open_seconds") or {}
        lines += ["### Scale of pinning (pin daemon RSS)", "", "| sessions | daemon RSS (MiB) | seconds to open them |",
                  "|---:|---:|---:|"]
        for n, rss in sorted(results.get("pinning_rss_mib", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {n} | {_fmt(rss, 1)} | {_fmt(opened.get(n), 1)} |")
        lines += ["", f"Memory per added session: {_fmt(scale.get('mib_per_session'), 3)} MiB "
                  f"({scale.get('method')}).", ""]
    isolation = results.get("isolation", {})
    if isolation:
        lines += ["### What isolation costs a warm pinned task (one Session through Squid and the relay)", "",
                  "A restore statement after the task's, in the same pipeline (docs/pinning.md, T1), against the "
                  "same Session without it; the time after the reply is the Signal and, when due, a memory reading.",
                  "", "| RTT (ms) | task | isolated | ms per task | ms after the reply | controller CPU ms | "
                  "WinRM requests | bytes up | bytes down |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        for rtt in sorted(isolation, key=float):
            for kind, rows in isolation[rtt].items():
                for mode in ("isolated", "not_isolated", "cost"):
                    row = rows.get(mode)
                    if row:
                        label = {"isolated": "yes", "not_isolated": "no", "cost": "**cost**"}[mode]
                        lines.append(f"| {rtt} | {kind} | {label} | {_fmt(row['ms_per_task'], 1)} | "
                                     f"{_fmt(row['after_reply_ms_per_task'], 1)} | {_fmt(row['cpu_ms_per_task'], 1)} | "
                                     f"{_fmt(row['requests_per_task'], 2)} | {_fmt(row['bytes_up_per_task'], 0)} | "
                                     f"{_fmt(row['bytes_down_per_task'], 0)} |")
        lines.append("")
    lines += _controller_tables(results)
    targets = results.get("targets", {})
    if targets:
        lines += ["### Targets (issues 5 and 14)", "", "| target | measured | met | what bounds a missed one |",
                  "|---|---|---|---|"]
        for name, row in targets.items():
            met = {True: "yes", False: "**no**", None: "not measured"}[row.get("met")]
            lines.append(f"| {name} | {row.get('measured')} | {met} | {row.get('bound', '')} |")
        lines += ["", "What bounds a missed target is derived from this run's own figures, as its measure is."]
        lines.append("")
    if results.get("errors"):
        lines += ["### Errors during the run", ""] + [f"- `{' '.join(e.split())[:400].replace('`', chr(39))}`" for e in results["errors"][:20]] + [""]
    return "\n".join(lines)


def _controller_tables(results: dict[str, t.Any]) -> list[str]:
    """The controller_cpu and fleet tables."""
    lines: list[str] = []
    cpu = {k: v for k, v in (results.get("controller_cpu") or {}).items() if isinstance(v, dict) and "hosts" in v}
    if cpu:
        lines += ["### Controller CPU per task (direct HTTPS and NTLM to the host, no added RTT)", "",
                  "| workload | plugin | CPU ms/task above local_floor | of which pin daemon | of which ansible-playbook "
                  "| of which its workers | total CPU ms/task | wall (s) | runs |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in cpu.values():
            label = f"{row['hosts']} host(s) x {row['tasks_per_host']} tasks, forks {row['forks']}"
            for plugin in (*CPU_PLUGINS, "local_floor"):
                r = row.get(plugin)
                if r:
                    lines.append(f"| {label} | {plugin} | {_fmt(r.get('cpu_ms_per_task'), 1)} | "
                                 f"{_fmt(r.get('daemon_cpu_ms_per_task'), 1)} | "
                                 f"{_fmt(r.get('parent_above_floor_ms_per_task'), 1)} | "
                                 f"{_fmt(r.get('workers_above_floor_ms_per_task'), 1)} | {_fmt(r.get('total_cpu_ms_per_task'), 1)} "
                                 f"| {_fmt(r.get('wall_s'), 2)} | {r.get('runs')} |")
        lines += ["", "CPU: user + system time of ansible-playbook and every worker it forked (their rusage), plus the "
                  "pin daemon's (/proc) for pinned, minus local_floor's run of the same repetition. ansible-playbook's own CPU and "
                  "its workers' are read apart from its /proc entry once it has exited, before it is reaped (each less "
                  "local_floor's); ansible-playbook polls for results every millisecond, and for a free worker every 0.1 ms "
                  "while every fork is busy, so its share grows with the time tasks wait and the CPU they leave idle.", ""]
    fleet = results.get("fleet") or {}
    setup = results.get("fleet_setup") or {}
    if fleet:
        base = (fleet.get("local_floor") or {}).get("wall_s")
        lines += [f"### Fleet ({setup.get('hosts')} hosts x {setup.get('tasks')} raw tasks, forks {setup.get('forks')}, "
                  f"{_fmt(setup.get('rtt_ms'))} ms added RTT, direct)", "",
                  "| plugin | wall (s) | above local_floor (s) | controller CPU ms/task | lab CPU ms/task | machine's "
                  "cores busy | lab's share of one core | runs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for plugin in ("pinned_preload", *PLUGIN_LINES):
            r = fleet.get(plugin)
            if isinstance(r, dict):
                above = r["wall_s"] - base if r.get("wall_s") and base and plugin != "local_floor" else None
                lines.append(f"| {plugin} | {_fmt(r.get('wall_s'), 2)} | {_fmt(above, 2)} | "
                             f"{_fmt(r.get('cpu_ms_per_task'), 1)} | {_fmt(r.get('lab_cpu_ms_per_task'), 1)} | "
                             f"{_fmt(r.get('machine_busy_share'), 2)} | "
                             f"{_fmt(r.get('lab_core_share'), 2)} | {r.get('runs')} |")
        per = fleet.get("daemon_cpu_ms_per_task") or {}
        if per:
            lines += ["", "Pin daemon CPU per task by hosts pinned: " +
                      ", ".join(f"{n} hosts {_fmt(v, 2)} ms" for n, v in sorted(per.items(), key=lambda kv: int(kv[0])))
                      + f"; during the warm fleet runs the daemon used {_fmt(fleet.get('daemon_core_share'), 2)} of one "
                      "CPU core."]
        lines += ["", f"Machine's cores busy: the share of all {fleet.get('cores')} cores' time (/proc/stat) busy during "
                  "the run, whoever used it; lab's share: the CPU of the lab process (hosts and latency relays) per "
                  "second of the run, and per task. The lab stands in for every host on the controller's own cores; a real "
                  "fleet's hosts spend theirs."]
        lines.append("")
    return lines


BEGIN, END = "<!-- results:begin (generated by python -m benchmarks.run) -->", "<!-- results:end -->"


def update_doc(doc_path: str, results: dict[str, t.Any]) -> None:
    """Replace the generated section of docs/benchmarks.md (between the markers) with fresh tables."""
    try:
        with open(doc_path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        text = f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{markdown_tables(results)}\n{END}{tail}")
