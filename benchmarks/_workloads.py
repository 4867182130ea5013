"""The benchmark workloads (issue 5): raw tasks per RTT, module tasks, many hosts, file transfer, pinning scale.

Every plugin runs the same playbook against the same lab through the same Squid (the Basic one: the only
proxy authentication all three can do), HTTPS with NTLM to the host; runs are interleaved, the plugin order
rotated each repetition, and medians reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import typing as t

import yaml

from tests.integration._ansible import ROOT, WITH_PRELOAD, write_inventory
from tests.integration.peers._inventory import group_vars, host_vars

from ._lab import BenchLab
from ._proc import Run, daemon_pid, rss_kib, run_playbook

log = logging.getLogger(__name__)

ACTION_PLUGINS = ROOT / "tests" / "integration" / "peers" / "action_plugins"
REMOTE = ("pinned", "builtin_psrp", "builtin_winrm")
MIB = 1 << 20
# The one proxy all three plugins can use alike: Basic auth (all the builtins can do) on Squid's TLS port
# (pinned refuses to send a Basic password to an http:// proxy).
PROXY = "squid_https"
# What a raw task needs on a Runspace Pool that already exists (MS-PSRP/MS-WSMV): Command (carries
# CreatePipeline), one Receive (output and the Completed pipeline state), Signal terminate (releases the
# command, as PowerShell's own client does).
FLOOR_REQUESTS_PER_TASK = 3
# pinning scale: client threads opening sessions, and Windows' default MaxShellsPerUser (per user and host)
SCALE_THREADS = 8
SCALE_SHELLS_PER_USER = 30


@dataclasses.dataclass
class Sizes:
    """How big each workload is: `make bench` defaults, tiny ones for the CI smoke run."""

    reps: int = 3
    raw_tasks: int = 20
    rtts: tuple[float, ...] = (0.0, 10.0, 50.0)
    many_hosts: int = 50
    many_tasks: int = 5
    many_forks: int = 10
    many_rtt: float = 10.0
    many_reps: int = 3
    transfer_mib: tuple[float, ...] = (1.0, 256.0)
    transfer_reps: int = 3
    big_transfer_reps: int = 1  # files of 64 MiB and more
    sessions: tuple[int, ...] = (1, 10, 100, 2000)
    module_tasks: int = 10  # of each module, per playbook run
    module_rtts: tuple[float, ...] = (0.0, 50.0)
    module_copy_kib: int = 64
    # controller cost (benchmarks/_controller.py): CPU per task, and a fleet
    # The CPU of a whole run varies by 0.1 to 0.6 s between repetitions (the floor's too): over 20 tasks up to
    # 25 ms per task, as much as pinned's whole figure. Longer runs and more repetitions narrow it.
    cpu_reps: int = 7
    cpu_tasks: int = 60  # raw tasks on one host, forks cpu_forks
    cpu_forks: int = 5
    cpu_hosts: int = 20  # hosts x cpu_hosts_tasks raw tasks, forks cpu_hosts_forks
    cpu_hosts_tasks: int = 10
    cpu_hosts_forks: int = 10
    fleet_hosts: int = 200
    fleet_tasks: int = 5
    fleet_forks: int = 20
    fleet_rtt: float = 10.0
    fleet_reps: int = 2
    fleet_sweep_tasks: int = 100  # tasks per run of the daemon's CPU sweep (1 host, 20 hosts)
    plugins: tuple[str, ...] = REMOTE


def rotated(items: t.Sequence[str], rep: int) -> list[str]:
    """The plugin order for repetition `rep`: each plugin goes first in turn (machine noise hits all alike)."""
    k = rep % len(items)
    return list(items[k:]) + list(items[:k])


def median(values: t.Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


class Bench:
    """One lab, one work directory, and the pin daemon's directory for the pinned runs."""

    def __init__(self, lab: BenchLab, workdir: pathlib.Path) -> None:
        self.lab = lab
        self.desc = lab.desc
        self.client = lab.client
        self.workdir = workdir
        self.errors: list[str] = []
        self.counter = 0

    # ---- plumbing ----------------------------------------------------------------------------------
    def persist_dir(self, name: str = "pc") -> pathlib.Path:
        return self.workdir / name

    def pin_cli(self, persist_dir: pathlib.Path, *args: str) -> str:
        if not persist_dir.exists():
            return ""
        return subprocess.run(
            [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
             "--dir", str(persist_dir), *args], cwd=ROOT, capture_output=True, timeout=60, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")}).stdout

    def wait_settled(self, persist_dir: pathlib.Path) -> None:
        """Wait until the pin daemon has finished every task it answered.

        After a task's reply the daemon releases the task's pipeline and settles the pool (T1, T4), which can cost
        the host a request; counters read before that would count it in whichever window it happened to land.
        A barrier, not a timer: it asks the daemon until no session is busy (bounded).
        """
        for _ in range(600):
            out = self.pin_cli(persist_dir, "--json", "list")
            if not out or not any(row.get("state") == "busy" for row in json.loads(out).get("sessions", [])):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the pin daemon in {persist_dir} still had a busy session after 600 checks")

    def play(self, plugin: str, hosts: dict[str, dict[str, t.Any]], tasks: list[dict[str, t.Any]], *,
             persist_dir: pathlib.Path | None = None, forks: int = 5, sample_memory: bool = False,
             label: str, proxy: str | None = PROXY, bytecode: bool = True, preload: bool = False) -> Run:
        """Run `tasks` on `hosts` with `plugin` through `proxy` (None: direct); a failed task is recorded as an error.

        `preload`: with the pinned.winrm.preload callback enabled (the connection plugin loaded once per run).
        """
        self.counter += 1
        run_dir = self.workdir / "runs" / f"{self.counter:04d}-{plugin}"
        gvars = group_vars(plugin, self.desc, proxy=None if plugin == "local_floor" else proxy)
        inventory = write_inventory(run_dir, hosts, gvars)
        playbook = run_dir / "playbook.yml"
        playbook.write_text(yaml.safe_dump([{"name": label, "hosts": "windows", "gather_facts": False,
                                             "tasks": tasks}]))
        env = {"ANSIBLE_ACTION_PLUGINS": str(ACTION_PLUGINS)}
        if preload:
            env["ANSIBLE_CALLBACKS_ENABLED"] = WITH_PRELOAD
        run = run_playbook(playbook, inventory, self.workdir, persist_dir=persist_dir or self.persist_dir(),
                           env=env, forks=forks,
                           sample_memory=sample_memory, bytecode=bytecode)
        if plugin.startswith("pinned"):
            self.wait_settled(persist_dir or self.persist_dir())
        if run.rc != 0:
            failures = run.failures() or [run.stdout[-500:]]
            self.errors.append(f"{label} [{plugin}] rc={run.rc}: {failures[0]}")
            log.warning("%s [%s] failed: %s", label, plugin, failures[0])
        shutil.rmtree(run_dir, ignore_errors=True)
        return run

    def host_entry(self, index: int, *, user: str = "ansible", via_relay: bool = True) -> dict[str, t.Any]:
        return host_vars(self.desc, index, via_relay=via_relay, user=user)

    def counters(self, indexes: t.Iterable[int]) -> dict[str, int]:
        total: dict[str, int] = {}
        for i in indexes:
            for k, v in self.client.host_counters(self.desc["hosts"][i]["name"]).items():
                total[k] = total.get(k, 0) + int(v)
        return total


def _wsman_requests(delta: dict[str, int]) -> int:
    return sum(v for k, v in delta.items() if k.startswith("wsman."))


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


def _raw_tasks(n: int, local: bool) -> list[dict[str, t.Any]]:
    command = "echo task {i}" if local else 'Write-Output "task {i}"'
    return [{"name": f"task {i}", "ansible.builtin.raw": command.format(i=i), "changed_when": False}
            for i in range(n)]


# ---- 1. raw tasks per added RTT -----------------------------------------------------------------------
def raw_tasks(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """20 raw tasks on one host through Squid and the latency relay, per RTT; pinned warm and cold."""
    n = sizes.raw_tasks
    hosts = {"win-lab1": bench.host_entry(0)}
    local_hosts = {"win-lab1": {"ansible_host": "127.0.0.1"}}
    out: dict[str, t.Any] = {}
    samples_by_rtt: dict[str, dict[str, list[dict[str, float]]]] = {}
    for rtt in sizes.rtts:
        bench.client.set_rtt(rtt)
        samples: dict[str, list[dict[str, float]]] = {}
        for rep in range(sizes.reps):
            for plugin in rotated([*sizes.plugins, "local_floor"], rep):
                if plugin == "local_floor":
                    run = bench.play(plugin, local_hosts, _raw_tasks(n, True), label=f"raw rtt={rtt}")
                    samples.setdefault(plugin, []).append({"wall_s": run.wall_s, "ok": run.rc == 0})
                    continue
                if plugin == "pinned":
                    # cold: no daemon and no session; warm: the session that cold run pinned
                    bench.pin_cli(bench.persist_dir(), "stop")
                    _measure_raw(bench, "pinned", hosts, n, rtt, samples, record="pinned_cold")
                _measure_raw(bench, plugin, hosts, n, rtt, samples)
        bench.pin_cli(bench.persist_dir(), "stop")
        samples_by_rtt[_key(rtt)] = samples
        out[_key(rtt)] = {plugin: _summarise_raw(rows, n) for plugin, rows in samples.items()}
    bench.client.set_rtt(0)
    return {"summary": out, "samples": samples_by_rtt}


def _key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _measure_raw(bench: Bench, plugin: str, hosts: dict[str, t.Any], n: int, rtt: float,
                 samples: dict[str, list[dict[str, float]]], record: str | None = None) -> None:
    before = bench.counters([0])
    run = bench.play(plugin, hosts, _raw_tasks(n, False), label=f"raw rtt={rtt}")
    delta = _delta(bench.counters([0]), before)
    samples.setdefault(record or plugin, []).append({
        "wall_s": run.wall_s, "ok": run.rc == 0,
        "wsman_requests": _wsman_requests(delta), "http_requests": delta.get("http_requests", 0),
        "tcp_connections": delta.get("tcp_connections", 0), "handshakes": delta.get("auth_handshakes", 0),
        "runspace_pools": delta.get("runspace_pools_created", 0) + delta.get("shells_created", 0),
    })


def _summarise_raw(rows: list[dict[str, float]], n: int) -> dict[str, t.Any]:
    ok = [r for r in rows if r["ok"]]
    summary: dict[str, t.Any] = {"runs": len(rows), "failed_runs": len(rows) - len(ok)}
    if not ok:
        return summary
    wall = median([r["wall_s"] for r in ok])
    summary.update({"wall_s": round(wall, 3), "s_per_task": round(wall / n, 4),
                    "wall_s_min": round(min(r["wall_s"] for r in ok), 3),
                    "wall_s_max": round(max(r["wall_s"] for r in ok), 3)})
    if "wsman_requests" in ok[0]:
        summary.update({
            "requests_per_task": round(median([r["wsman_requests"] for r in ok]) / n, 2),
            "http_requests_per_task": round(median([r["http_requests"] for r in ok]) / n, 2),
            "tcp_connections": round(median([r["tcp_connections"] for r in ok]) / n, 2),
            "handshakes": round(median([r["handshakes"] for r in ok]) / n, 2),
            "shells_per_task": round(median([r["runspace_pools"] for r in ok]) / n, 2),
            "tcp_connections_total": median([r["tcp_connections"] for r in ok]),
            "handshakes_total": median([r["handshakes"] for r in ok]),
        })
    return summary


# ---- 2. module tasks per added RTT ----------------------------------------------------------------------
MODULES = ("win_ping", "win_copy")


def _module_tasks(module: str, n: int, src: pathlib.Path, tag: str) -> list[dict[str, t.Any]]:
    if module == "win_ping":
        return [{"name": f"ping {i}", "ansible.windows.win_ping": {}} for i in range(n)]
    # a new destination each task and each run: every task copies (put_file, then the module checks and moves it)
    return [{"name": f"copy {i}",
             "ansible.windows.win_copy": {"src": str(src), "dest": f"C:\\Users\\ansible\\{tag}-{i}.bin"}}
            for i in range(n)]


def module_tasks(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """sizes.module_tasks win_ping tasks, then as many win_copy tasks of a small file, per RTT and plugin.

    The unmodified ansible.windows modules run in the lab's PowerShell engine (docs/lab-engine.md "Modules"):
    a module task is the exec wrapper, the module and its utils sent to the host, so it costs more requests and
    bytes than a raw task. Per task: wall time, WinRM requests and HTTP bytes both ways as the host counted them.
    """
    n = sizes.module_tasks
    hosts = {"win-lab1": bench.host_entry(0)}
    src = bench.workdir / "module-copy.bin"
    _write_random(src, sizes.module_copy_kib * 1024)
    home = pathlib.Path(bench.desc["hosts"][0]["root"]) / "Users" / "ansible"
    out: dict[str, t.Any] = {}
    try:
        for rtt in sizes.module_rtts:
            bench.client.set_rtt(rtt)
            rows: dict[str, dict[str, list[dict[str, float]]]] = {}
            for rep in range(sizes.reps):
                for plugin in rotated(list(sizes.plugins), rep):
                    for module in MODULES:
                        records = [plugin]
                        if plugin == "pinned":
                            # cold: no daemon and no session; warm: the session that cold run pinned
                            bench.pin_cli(bench.persist_dir(), "stop")
                            records.insert(0, "pinned_cold")
                        for record in records:
                            tag = f"bench-{record}-{rep}-{_key(rtt)}"
                            before = bench.counters([0])
                            run = bench.play(plugin, hosts, _module_tasks(module, n, src, tag),
                                             label=f"{module} rtt={rtt}")
                            delta = _delta(bench.counters([0]), before)
                            for copied in home.glob(f"{tag}-*.bin"):
                                copied.unlink()
                            rows.setdefault(module, {}).setdefault(record, []).append({
                                "wall_s": run.wall_s, "ok": run.rc == 0, "wsman_requests": _wsman_requests(delta),
                                "bytes": delta.get("bytes_in", 0) + delta.get("bytes_out", 0),
                                "tcp_connections": delta.get("tcp_connections", 0)})
            bench.pin_cli(bench.persist_dir(), "stop")
            out[_key(rtt)] = {module: {record: _summarise_modules(samples, n) for record, samples in by.items()}
                              for module, by in rows.items()}
    finally:
        bench.client.set_rtt(0)
        src.unlink(missing_ok=True)
    return out


def _summarise_modules(rows: list[dict[str, float]], n: int) -> dict[str, t.Any]:
    ok = [r for r in rows if r["ok"]]
    summary: dict[str, t.Any] = {"runs": len(rows), "failed_runs": len(rows) - len(ok)}
    if ok:
        wall = median([r["wall_s"] for r in ok])
        summary.update({"wall_s": round(wall, 3), "s_per_task": round(wall / n, 4),
                        "requests_per_task": round(median([r["wsman_requests"] for r in ok]) / n, 2),
                        "kib_per_task": round(median([r["bytes"] for r in ok]) / n / 1024, 1),
                        "tcp_connections_total": median([r["tcp_connections"] for r in ok])})
    return summary


# ---- 3. many hosts ------------------------------------------------------------------------------------
def many_hosts(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """sizes.many_hosts hosts x sizes.many_tasks raw tasks, forks sizes.many_forks, at sizes.many_rtt."""
    count = min(sizes.many_hosts, len(bench.desc["hosts"]))
    hosts = {bench.desc["hosts"][i]["name"].lower(): bench.host_entry(i) for i in range(count)}
    local_hosts = {f"local{i}": {"ansible_host": "127.0.0.1"} for i in range(count)}
    bench.client.set_rtt(sizes.many_rtt)
    samples: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    try:
        for rep in range(sizes.many_reps):
            for plugin in rotated([*sizes.plugins, "local_floor"], rep):
                local = plugin == "local_floor"
                tasks = _raw_tasks(sizes.many_tasks, local)
                runs = []
                if plugin == "pinned":
                    bench.pin_cli(bench.persist_dir(), "stop")
                    runs.append(("pinned_cold", bench.play(plugin, hosts, tasks, forks=sizes.many_forks,
                                                           label="many hosts")))
                runs.append((plugin, bench.play(plugin, local_hosts if local else hosts, tasks,
                                                forks=sizes.many_forks, label="many hosts")))
                for name, run in runs:
                    if run.rc == 0:
                        samples.setdefault(name, []).append(run.wall_s)
                    else:
                        failed[name] = failed.get(name, 0) + 1
    finally:
        bench.pin_cli(bench.persist_dir(), "stop")
        bench.client.set_rtt(0)
    out: dict[str, t.Any] = {"hosts": count, "tasks": sizes.many_tasks, "forks": sizes.many_forks,
                             "rtt_ms": sizes.many_rtt}
    for name in sorted(set(samples) | set(failed)):
        wall = median(samples.get(name, []))
        out[name] = {"wall_s": round(wall, 3) if wall else None, "runs": len(samples.get(name, [])),
                     "failed_runs": failed.get(name, 0)}
    return out


# ---- 4. file transfer ---------------------------------------------------------------------------------
def transfer(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """put_file then fetch_file of each size with each plugin, through Squid at RTT 0, with peak RSS."""
    bench.client.set_rtt(0)
    root = pathlib.Path(bench.desc["hosts"][0]["root"]) / "Users" / "ansible"
    hosts = {"win-lab1": bench.host_entry(0)}
    out: dict[str, t.Any] = {}
    for mib in sizes.transfer_mib:
        src = bench.workdir / f"payload-{_key(mib)}.bin"
        _write_random(src, int(mib * MIB))
        reps = sizes.big_transfer_reps if mib >= 64 else sizes.transfer_reps
        rows: dict[str, list[dict[str, float]]] = {}
        for rep in range(reps):
            for plugin in rotated(list(sizes.plugins), rep):
                # a fresh daemon each time, so its high-water mark belongs to this transfer
                pdir = bench.persist_dir(f"pc-transfer-{rep}-{plugin}")
                name = f"bench-{plugin}.bin"
                fetched = bench.workdir / f"fetched-{plugin}.bin"
                run = bench.play(plugin, hosts, [{"name": "transfer", "transfer_probe": {
                    "src": str(src), "dest": f"C:\\Users\\ansible\\{name}", "fetch_to": str(fetched)}}],
                    persist_dir=pdir, sample_memory=True, label=f"transfer {_key(mib)} MiB")
                bench.pin_cli(pdir, "stop")
                shutil.rmtree(pdir, ignore_errors=True)
                result = next(iter(run.task_results()), {})
                same = result.get("fetched_sha256") == result.get("src_sha256") and "put_s" in result
                (root / name).unlink(missing_ok=True)
                fetched.unlink(missing_ok=True)
                if run.rc != 0 or not same:
                    if run.rc == 0:
                        bench.errors.append(f"transfer {mib} MiB [{plugin}]: fetched copy differs from the source")
                    continue
                rows.setdefault(plugin, []).append({
                    "put_mib_s": mib / max(result["put_s"], 1e-9), "fetch_mib_s": mib / max(result["fetch_s"], 1e-9),
                    "peak_rss_mib": run.total_peak_mib, "playbook_peak_rss_mib": run.tree_peak_mib,
                    "daemon_peak_rss_mib": run.daemon_peak_mib})
        src.unlink(missing_ok=True)
        out[_key(mib)] = {plugin: {k: round(median([r[k] for r in rs]) or 0.0, 2) for k in rs[0]} | {"runs": len(rs)}
                          for plugin, rs in rows.items()}
    return out


def _write_random(path: pathlib.Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = min(left, 4 * MIB)
            f.write(os.urandom(chunk))
            left -= chunk


# ---- 5. pinning scale ---------------------------------------------------------------------------------
def pinning_scale(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """RSS of one daemon as it pins 1, 10, 100, 2000 sessions, each a distinct pin key with a raw command run on it.

    The sessions are opened by the plugin's own client (PinClient, as a task's worker does), from
    SCALE_THREADS threads: thousands of one-task playbooks would measure Ansible's forks, not the daemon. They
    spread over the lab's hosts and its two host users (HTTPS, NTLM); past one session per (host, user) pair
    a distinct read timeout gives each its own pin key, as a different setting would in an inventory, staying
    within Windows' default of 30 shells per user and host (MaxShellsPerUser).
    """
    import concurrent.futures

    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient, SessionOptions

    users = ("ansible", "labuser")
    hosts = bench.desc["hosts"]
    pairs = [(i, u) for u in users for i in range(len(hosts))]
    most = max(sizes.sessions)
    if -(-most // len(pairs)) > SCALE_SHELLS_PER_USER:
        bench.errors.append(f"pinning scale: {most} sessions need more than {SCALE_SHELLS_PER_USER} shells per user "
                            f"on each of the lab's {len(hosts)} hosts")
        return {"rss_mib": {}, "mib_per_session": None}

    def target(k: int) -> SessionOptions:
        index, user = pairs[k % len(pairs)]
        entry = bench.host_entry(index, user=user, via_relay=False)
        return SessionOptions.from_plugin({
            "remote_addr": entry["ansible_host"], "port": entry["ansible_port"], "protocol": "https", "auth": "ntlm",
            "remote_user": entry["ansible_user"], "remote_password": entry["ansible_password"],
            "ca_cert": bench.desc["ca_cert"], "read_timeout": 60 + k // len(pairs)}, {})

    pdir = bench.persist_dir("pc-scale")
    bench.pin_cli(pdir, "stop")
    bench.client.set_rtt(0)
    client = PinClient(str(pdir), connect_timeout=60, pool_max=1)

    def pin(k: int) -> bool:
        result, info = client.exec(target(k), "Write-Output pinned", idle_timeout=1800, max_age=3600)
        return result.rc == 0 and info.get("session") == "opened"

    out: dict[str, t.Any] = {}
    seconds: dict[str, float] = {}
    pinned = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(SCALE_THREADS) as pool:
            for count in sorted(sizes.sessions):
                started = time.monotonic()
                try:
                    opened = sum(pool.map(pin, range(pinned, count)))
                except Exception as exc:  # a refused session ends the workload; what was measured stays
                    bench.errors.append(f"pinning scale: opening session {pinned + 1}..{count} failed: {exc}")
                    break
                seconds[str(count)] = round(time.monotonic() - started, 1)
                if opened != count - pinned:
                    bench.errors.append(f"pinning scale: {count - pinned - opened} of {count - pinned} sessions "
                                        "were not newly opened")
                    break
                pinned = count
                hello = _quiet_hello(client)
                out[str(count)] = round(rss_kib(int(hello["pid"])) / 1024, 2) if hello else None
    finally:
        bench.pin_cli(pdir, "stop")
    keys = sorted(int(k) for k, v in out.items() if v is not None)
    per_session = None
    if len(keys) >= 2:
        lo, hi = keys[0], keys[-1]
        per_session = round((out[str(hi)] - out[str(lo)]) / (hi - lo), 4)
    return {"rss_mib": out, "mib_per_session": per_session, "open_seconds": seconds,
            "method": f"one daemon; each session a distinct pin key (lab host, host user, read timeout), opened by "
                      f"PinClient from {SCALE_THREADS} threads with a raw command run on it; RSS (VmRSS) read once "
                      "the daemon serves no request"}


def _quiet_hello(client: t.Any, wait: float = 60.0) -> dict[str, t.Any] | None:
    """The daemon's hello once it serves nothing but the hello itself (a handler still releasing is not growth)."""
    deadline = time.monotonic() + wait
    hello = client.hello()
    while hello and hello.get("serving", 0) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        hello = client.hello()
    return hello


# ---- 6. what isolation costs per task -----------------------------------------------------------------
# The raw task builtin sends, and one that also leaves state the restore puts back (an environment variable,
# as the `environment:` keyword's module_wrapper leaves, and a global variable).
ISOLATION_TASKS = {
    "leaves nothing": 'Write-Output "task {i}"\nexit $LASTEXITCODE',
    "leaves state": '$env:BENCH_ENV = "{i}"; $global:bench{i} = {i}; Write-Output "task {i}"\nexit $LASTEXITCODE',
}


def isolation(bench: Bench, sizes: Sizes) -> dict[str, t.Any]:
    """Warm raw tasks on one Session through Squid and the latency relay, run as the pin daemon runs them (the task,
    then finish_pending() once its reply is out), with a pinned pool's isolation and without it, per RTT: the task's
    time (its critical path), the time after its reply, the controller's CPU, WinRM requests and bytes per task."""
    from ansible_collections.pinned.winrm.plugins.plugin_utils._session import Session

    spec = _pinned_spec(bench)
    out: dict[str, t.Any] = {}
    try:
        for rtt in sizes.rtts:
            bench.client.set_rtt(rtt)
            rows: dict[str, dict[str, list[dict[str, float]]]] = {}
            for rep in range(sizes.reps):
                for mode in rotated(["isolated", "not_isolated"], rep):
                    for kind, script in ISOLATION_TASKS.items():
                        session = Session(spec, isolate=mode == "isolated")
                        try:
                            sample = _isolation_sample(bench, session, script, sizes.raw_tasks)
                        except Exception as exc:  # a failed measurement is an error of the run, not a crash
                            bench.errors.append(f"isolation rtt={rtt} [{mode}, {kind}]: {type(exc).__name__}: {exc}")
                            continue
                        finally:
                            session.close()
                        rows.setdefault(kind, {}).setdefault(mode, []).append(sample)
            out[_key(rtt)] = {kind: _isolation_summary(by_mode) for kind, by_mode in rows.items()}
    finally:
        bench.client.set_rtt(0)
    return out


def _pinned_spec(bench: Bench) -> t.Any:
    """The SessionSpec the pinned runs of the other workloads use (host 0 through the relay and Squid)."""
    import io

    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    from ansible_collections.pinned.winrm.plugins.connection.psrp import build_session_spec

    conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
    conn.set_options(var_options={**group_vars("pinned", bench.desc, proxy=PROXY), **bench.host_entry(0)})
    return build_session_spec(conn.get_option, {})


def _isolation_sample(bench: Bench, session: t.Any, script: str, n: int) -> dict[str, float]:
    import time

    session.ensure_ready()
    session.run(script.format(i="warm"))
    session.finish_pending()
    before, cpu = bench.counters([0]), time.process_time()
    task_s, after_s = 0.0, 0.0
    for i in range(n):
        started = time.perf_counter()
        session.ensure_ready()
        result = session.run(script.format(i=i))
        replied = time.perf_counter()
        session.finish_pending()
        task_s += replied - started
        after_s += time.perf_counter() - replied
        if result.rc != 0 or result.stdout != f"task {i}".encode():
            raise RuntimeError(f"task {i} answered rc {result.rc}: {result.stdout[:200]!r} {result.stderr[:300]!r}")
    delta = _delta(bench.counters([0]), before)
    return {"ms_per_task": 1000 * task_s / n, "after_reply_ms_per_task": 1000 * after_s / n,
            "cpu_ms_per_task": 1000 * (time.process_time() - cpu) / n,
            "requests_per_task": _wsman_requests(delta) / n, "bytes_up_per_task": delta.get("bytes_in", 0) / n,
            "bytes_down_per_task": delta.get("bytes_out", 0) / n}


def _isolation_summary(by_mode: dict[str, list[dict[str, float]]]) -> dict[str, t.Any]:
    summary: dict[str, t.Any] = {}
    for mode, samples in by_mode.items():
        summary[mode] = {k: round(median([s[k] for s in samples]) or 0.0, 2) for k in samples[0]}
        summary[mode]["runs"] = len(samples)
    if "isolated" in summary and "not_isolated" in summary:
        summary["cost"] = {k: round(summary["isolated"][k] - summary["not_isolated"][k], 2)
                           for k in summary["isolated"] if k != "runs"}
    return summary
