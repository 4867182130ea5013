"""Run one playbook through pinned.winrm.psrp and through ansible.builtin.psrp on the same lab host."""

from __future__ import annotations

import typing as t

from tests.integration.e2e.conftest import E2E
from tests.integration.peers._inventory import group_vars as peer_group_vars
from tests.integration.reliability._helpers import action_env

HOST = "win-lab1"
PLUGINS = ("pinned", "builtin_psrp")


def connection_vars(e2e: E2E, plugin: str) -> dict[str, t.Any]:
    """HTTPS with NTLM straight to the host, the lab's CA trusted, alike for both plugins."""
    return peer_group_vars(plugin, e2e.desc)


def run_with(e2e: E2E, plugin: str, playbook: str, *, name: str, extra: dict[str, t.Any] | None = None,
             extra_args: t.Sequence[str] = (), env: dict[str, str] | None = None) -> t.Any:
    """ansible-playbook of `playbook` through `plugin`, this suite's transfer action visible."""
    return e2e.run({**connection_vars(e2e, plugin), **(extra or {})}, playbook=playbook, env=action_env(env),
                   extra_args=extra_args, name=f"{name}-{plugin}")


def statuses(run: t.Any) -> dict[str, str]:
    """Task name -> status (ok, failed, ignored, unreachable, skipped) for the lab host."""
    return {r["task"]: r["status"] for r in run.task_results(HOST)}
