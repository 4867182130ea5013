"""Run ansible-playbook with wall time, CPU time and peak memory of its process tree and of the pin daemon.

CPU time is what the controller pays, and it is measurable on a loaded machine where wall time is not: the
kernel's rusage of ansible-playbook counts every worker fork it reaped (wait4 returns the child's own
usage plus its reaped descendants'), and the pin daemon, which is nobody's child, is read from
/proc/<pid>/stat (utime + stime of all its threads, in clock ticks) before and after the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
import typing as t

from tests.integration._ansible import VENV_BIN, ROOT, base_env

_SAMPLE_S = 0.05
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process, all its threads, from /proc/<pid>/stat (None once gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command name: state is field 3, utime 14 and stime 15 (proc(5)), so indexes 11 and 12 here
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def own_and_children_cpu_s(pid: int) -> tuple[float, float] | None:
    """(the process's own CPU, the CPU of the children it reaped) from /proc/<pid>/stat: read from the zombie of a
    process that exited but is not reaped yet, the split is exact (cutime/cstime, fields 16 and 17)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK, (int(fields[13]) + int(fields[14])) / _CLK_TCK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, all) CPU seconds of every core since boot, from /proc/stat's first line (proc(5)): busy is all
    but idle and iowait. The difference of two readings over a run, busy / all, is the share of the machine's
    cores the run kept busy, whoever used them (the controller, the pin daemon, the lab)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
    total = sum(ticks[:8])
    return (total - ticks[3] - ticks[4]) / _CLK_TCK, total / _CLK_TCK


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of pid and every descendant alive now (/proc/<pid>/stat of each)."""
    return sum(c for p in tree(pid) if (c := cpu_s(p)) is not None)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field in KiB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out.extend(int(c) for c in f.read().split())
    except (OSError, ValueError):
        pass
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants now (bounded walk: a process tree of at most 10000)."""
    seen, todo = [], [pid]
    while todo and len(seen) < 10000:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


class MemorySampler:
    """Samples RSS of a process tree (summed) and of extra processes (the pin daemon) every 50 ms."""

    def __init__(self, root_pid: int, daemon_pid: t.Callable[[], int | None]) -> None:
        self.root_pid = root_pid
        self.daemon_pid = daemon_pid
        self.tree_peak_kib = 0
        self.daemon_peak_kib = 0
        self.total_peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            daemon = self.daemon_pid()
            pids = [p for p in tree(self.root_pid) if p != daemon]
            tree_kib = sum(rss_kib(p) for p in pids)
            daemon_kib = rss_kib(daemon) if daemon else 0
            self.tree_peak_kib = max(self.tree_peak_kib, tree_kib)
            self.daemon_peak_kib = max(self.daemon_peak_kib, daemon_kib, rss_kib(daemon, "VmHWM") if daemon else 0)
            self.total_peak_kib = max(self.total_peak_kib, tree_kib + daemon_kib)
            self._stop.wait(_SAMPLE_S)


@dataclasses.dataclass
class Run:
    rc: int
    wall_s: float
    results: dict[str, t.Any]
    stdout: str
    tree_peak_mib: float = 0.0
    daemon_peak_mib: float = 0.0
    total_peak_mib: float = 0.0
    cpu_s: float = 0.0  # ansible-playbook and every process it reaped (its workers)
    # the split of cpu_s (None where it could not be read): the ansible-playbook process itself (its strategy
    # loop, result processing, callbacks), and the task workers it forked and reaped
    parent_cpu_s: float | None = None
    workers_cpu_s: float | None = None
    daemon_cpu_s: float | None = None  # the pin daemon during the run (None: no daemon ran)

    def task_results(self) -> list[dict[str, t.Any]]:
        return [{"task": task["task"]["name"], "host": h, **r}
                for play in self.results.get("plays", []) for task in play.get("tasks", [])
                for h, r in task.get("hosts", {}).items()]

    def failures(self) -> list[str]:
        return [f"{r['host']}: {r['task']}: {str(r.get('msg', ''))[:300]}" for r in self.task_results()
                if r.get("status") not in ("ok", "skipped")]


def daemon_pid(persist_dir: pathlib.Path) -> int | None:
    """The pin daemon serving persist_dir, if one runs (asked over its socket)."""
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import running_daemons

    if not persist_dir.exists():
        return None
    try:  # one daemon per trust profile; a benchmark's runs share one
        hello = next((h for c in running_daemons(str(persist_dir)) if (h := c.hello())), None)
    except Exception:  # no daemon yet, or it is starting
        return None
    return int(hello["pid"]) if hello and hello.get("pid") else None


def run_playbook(playbook: pathlib.Path, inventory: pathlib.Path, workdir: pathlib.Path, *,
                 persist_dir: pathlib.Path, env: dict[str, str] | None = None, forks: int = 5,
                 sample_memory: bool = False, timeout: float = 1800, bytecode: bool = True) -> Run:
    """ansible-playbook, timed from spawn to exit; memory sampled when asked.

    `bytecode`: Python's default, writing and reading bytecode caches (the installed ansible-core and the
    builtin plugins' libraries have theirs from pip); False runs with PYTHONDONTWRITEBYTECODE=1, which this
    machine's environment may set for every process.
    """
    run_env = base_env(workdir, {"ANSIBLE_PSRP_PERSIST_DIR": str(persist_dir), **(env or {})})
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-f", str(forks)]
    cached_daemon: list[int | None] = [None]

    def current_daemon() -> int | None:
        if cached_daemon[0] is None or not rss_kib(cached_daemon[0]):
            cached_daemon[0] = daemon_pid(persist_dir)
        return cached_daemon[0]

    daemon_before = current_daemon()
    daemon_cpu_before = cpu_s(daemon_before) if daemon_before else None
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    sampler = MemorySampler(proc.pid, current_daemon) if sample_memory else None
    if sampler:
        sampler.__enter__()
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read() if proc.stdout else ""),
                              name="playbook-output", daemon=True)
    reader.start()
    reaped = threading.Lock()  # held once wait4 returned: the timeout never signals a reused pid

    def kill() -> None:
        if reaped.acquire(blocking=False):
            os.kill(proc.pid, signal.SIGKILL)
            reaped.release()

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        # exited but not reaped: its /proc entry splits its own CPU from its workers' (reaping would remove it)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        split = own_and_children_cpu_s(proc.pid)
        # wait4, not communicate(): its rusage is the playbook's CPU plus that of every worker it reaped
        _, status, usage = os.wait4(proc.pid, 0)
        reaped.acquire()
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
        reader.join(60)
        if proc.stdout:
            proc.stdout.close()
        if sampler:
            sampler.__exit__()
    wall = time.monotonic() - started
    stdout = output[0] if output else ""
    daemon_after = current_daemon()
    daemon_cpu: float | None = None
    after = cpu_s(daemon_after) if daemon_after else None
    if after is not None:
        # the same daemon: its CPU during the run; one started during the run: all of it
        same = daemon_after == daemon_before and daemon_cpu_before is not None
        daemon_cpu = after - (daemon_cpu_before if same else 0.0)
    results_path = pathlib.Path(run_env["PINNED_TEST_RESULTS"])
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        results_path.unlink()
    except (OSError, ValueError):
        results = {}
    run = Run(proc.returncode, wall, results, stdout, cpu_s=usage.ru_utime + usage.ru_stime, daemon_cpu_s=daemon_cpu,
              parent_cpu_s=split[0] if split else None, workers_cpu_s=split[1] if split else None)
    if sampler:
        run.tree_peak_mib = sampler.tree_peak_kib / 1024
        run.daemon_peak_mib = sampler.daemon_peak_kib / 1024
        run.total_peak_mib = sampler.total_peak_kib / 1024
    return run
