"""Run ansible-playbook with wall time and peak memory of its process tree and of the pin daemon."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import threading
import time
import typing as t

from tests.integration._ansible import VENV_BIN, ROOT, base_env

_SAMPLE_S = 0.05


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
                 sample_memory: bool = False, timeout: float = 1800) -> Run:
    """ansible-playbook, timed from spawn to exit; memory sampled when asked."""
    run_env = base_env(workdir, {"ANSIBLE_PSRP_PERSIST_DIR": str(persist_dir), **(env or {})})
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), "-f", str(forks)]
    cached_daemon: list[int | None] = [None]

    def current_daemon() -> int | None:
        if cached_daemon[0] is None or not rss_kib(cached_daemon[0]):
            cached_daemon[0] = daemon_pid(persist_dir)
        return cached_daemon[0]

    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    sampler = MemorySampler(proc.pid, current_daemon) if sample_memory else None
    if sampler:
        sampler.__enter__()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
    finally:
        if sampler:
            sampler.__exit__()
    wall = time.monotonic() - started
    results_path = pathlib.Path(run_env["PINNED_TEST_RESULTS"])
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        results_path.unlink()
    except (OSError, ValueError):
        results = {}
    run = Run(proc.returncode, wall, results, stdout)
    if sampler:
        run.tree_peak_mib = sampler.tree_peak_kib / 1024
        run.daemon_peak_mib = sampler.daemon_peak_kib / 1024
        run.total_peak_mib = sampler.total_peak_kib / 1024
    return run
