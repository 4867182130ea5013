"""Run real `ansible-playbook` subprocesses against the lab and read their results.

Inventories are written to a private (0700) directory per run: they hold the lab's throwaway
test users' passwords, which are test data; the plugin's own secrets never reach files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import typing as t
import uuid

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: dict[str, t.Any]  # the json callback's document

    def task_results(self, host: str | None = None) -> list[dict[str, t.Any]]:
        """Every task result, in order, for one host (or the only host)."""
        out = []
        for play in self.results.get("plays", []):
            for task in play.get("tasks", []):
                hosts = task.get("hosts", {})
                if host is None:
                    out.extend({"task": task["task"]["name"], **r} for r in hosts.values())
                elif host in hosts:
                    out.append({"task": task["task"]["name"], **hosts[host]})
        return out

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return self.results.get("stats", {})

    def assert_ok(self) -> None:
        assert self.rc == 0, f"ansible-playbook failed rc={self.rc}\nSTDOUT:\n{self.stdout[-6000:]}\nSTDERR:\n{self.stderr[-4000:]}"


def write_inventory(directory: pathlib.Path, hosts: dict[str, dict[str, t.Any]], group_vars: dict[str, t.Any]) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "inventory.yml"
    doc = {"windows": {"hosts": hosts, "vars": group_vars}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    return path


# the test callback that writes each task's result to PINNED_TEST_RESULTS (tests/integration/callback_plugins)
RESULTS_CALLBACK = "record_results"
# ANSIBLE_CALLBACKS_ENABLED for a run with pinned.winrm.preload too (the variable replaces the list, so it names both)
WITH_PRELOAD = f"{RESULTS_CALLBACK},pinned.winrm.preload"


def base_env(workdir: pathlib.Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for ansible-playbook: this checkout's collection, no stray proxies, private dirs."""
    # no stray proxies, and no CA bundle the machine happens to export: the plugin trusts REQUESTS_CA_BUNDLE and
    # CURL_CA_BUNDLE as ansible.builtin.psrp does, so a test that wants them sets them itself
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle")}
    env.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "build" / "collections"),
            "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "tests" / "integration" / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": RESULTS_CALLBACK,
            "PINNED_TEST_RESULTS": str(workdir / f"results-{uuid.uuid4().hex}.json"),
            "ANSIBLE_HOME": str(workdir / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
            "ANSIBLE_PSRP_PERSIST_DIR": str(workdir / "pc"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if extra:
        env.update(extra)
    return env


class RunningPlaybook:
    """An ansible-playbook started in the background (to interrupt it); finish() reads its results."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.results_path = pathlib.Path(env["PINNED_TEST_RESULTS"])
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self, timeout: float = 300) -> PlaybookRun:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        try:
            results = json.loads(self.results_path.read_text(encoding="utf-8"))
            self.results_path.unlink()
        except (OSError, ValueError):
            results = {}
        return PlaybookRun(self.proc.returncode, stdout, stderr, results)


def start_playbook(
    playbook: pathlib.Path | str,
    inventory: pathlib.Path,
    workdir: pathlib.Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: t.Sequence[str] = (),
) -> RunningPlaybook:
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra_args]
    return RunningPlaybook(cmd, base_env(workdir, env))


def run_playbook(
    playbook: pathlib.Path | str,
    inventory: pathlib.Path,
    workdir: pathlib.Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: t.Sequence[str] = (),
    timeout: float = 300,
) -> PlaybookRun:
    return start_playbook(playbook, inventory, workdir, env=env, extra_args=extra_args).finish(timeout)
