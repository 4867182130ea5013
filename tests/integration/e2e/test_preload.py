"""pinned.winrm.preload through a real ansible-playbook: its task workers build the connection from the module
ansible-playbook loaded as the run started, rather than each loading the plugin again (issue 14).

Ansible says which it was: with ANSIBLE_DEBUG its plugin loader logs every load, with `found_in_cache=True` when
the module was already loaded in the process (for a worker: in ansible-playbook, before the fork).
"""

from __future__ import annotations

import re

import pytest

from tests.integration._ansible import RESULTS_CALLBACK, WITH_PRELOAD

from .conftest import E2E
from .test_pinning import _write_playbook

# "<pid> <time>: Loading Connection '<name>' from <path>[ (found_in_cache=..., class_only=...)]" (a worker's debug
# lines reach the output through ansible-playbook, under its pid); ours by its path in the collection
_LOADS = re.compile(r"^\s*\d+ [\d.]+: Loading Connection '[^']+' from \S+/ansible_collections/pinned/winrm/plugins/"
                    r"connection/psrp\.py( \(found_in_cache=(\w+), class_only=(\w+)\))?$", re.MULTILINE)


def _run(e2e: E2E, *, preload: bool, name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The tasks' outputs and each load of our plugin Ansible logged: (found_in_cache, class_only), "" if unsaid."""
    playbook = _write_playbook(e2e.workdir / f"{name}.yml", [f'Write-Output "task {i}"' for i in range(3)])
    callbacks = WITH_PRELOAD if preload else RESULTS_CALLBACK
    run = e2e.run({}, playbook=playbook, env={"ANSIBLE_CALLBACKS_ENABLED": callbacks, "ANSIBLE_DEBUG": "1"}, name=name)
    run.assert_ok()
    outputs = [r.get("stdout", "").strip() for r in run.task_results("win-lab1")]
    return outputs, [(m.group(2) or "", m.group(3) or "") for m in _LOADS.finditer(run.stdout)]


@pytest.mark.compat
def test_with_the_callback_every_task_worker_finds_the_plugin_already_loaded(e2e: E2E) -> None:
    outputs, loads = _run(e2e, preload=True, name="preloaded")
    assert outputs == ["task 0", "task 1", "task 2"]
    # the callback's load of the class, in ansible-playbook as the run starts, then each task's worker's
    assert loads[0] == ("False", "True"), loads
    assert loads[1:] == [("True", "False")] * 3, loads


@pytest.mark.compat
def test_without_it_each_task_worker_loads_the_plugin_itself(e2e: E2E) -> None:
    outputs, loads = _run(e2e, preload=False, name="plain")
    assert outputs == ["task 0", "task 1", "task 2"]
    assert loads == [("", "")] * 3, loads  # loaded afresh by each (Ansible says no more then)
