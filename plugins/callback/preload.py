# Copyright (c) 2026 pinned.winrm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
author: pinned.winrm contributors (@pinned-winrm)
name: preload
type: aggregate
short_description: Load the pinned.winrm.psrp connection plugin once per run, not once per task
description:
- Ansible forks a worker process for every task, and each worker loads a collection's connection
  plugin afresh, finding it in its collection and executing its module and the modules a task needs
  (Ansible loads its own connection and shell plugins once, in C(ansible-playbook), before it forks).
  For a warm pinned task that is most of what the worker costs the controller beyond any other task.
- Enabled, this callback loads the P(pinned.winrm.psrp#connection) connection plugin in the
  C(ansible-playbook) process as the run starts. Every worker forked after that inherits it, already
  loaded, and only reads the task's options and sends the task to the pin daemon.
- It prints nothing and changes no task, result or setting. A plugin it cannot load is left for
  each task to load, as without it, after one warning.
- "Measured by C(make bench), C(controller_cpu): docs/benchmarks.md; why, docs/pinning.md."
version_added: 1.0.0
requirements:
- Enabled in the configuration, for example C(callbacks_enabled = pinned.winrm.preload) in the
  C([defaults]) section of C(ansible.cfg), or C(ANSIBLE_CALLBACKS_ENABLED=pinned.winrm.preload).
"""

import typing as t

from ansible.plugins.callback import CallbackBase
from ansible.utils.display import Display

display = Display()

# What a worker running a pinned task loads that ansible-playbook has not: the connection plugin, with the engine
# modules it imports (the powershell shell plugin it names, Ansible loads before it forks).
PRELOADED = ("pinned.winrm.psrp",)


def preload(names: t.Sequence[str] = PRELOADED) -> list[str]:
    """Load each connection plugin's module in this process (the loader keeps it for every fork); those loaded."""
    from ansible.plugins.loader import connection_loader

    loaded = []
    for name in names:
        try:
            found = connection_loader.get(name, class_only=True)
        except Exception as exc:  # a task loads it as it would without this callback, and says why it fails
            display.warning(f"pinned.winrm.preload: the connection plugin {name} did not load ahead of the tasks "
                            f"({type(exc).__name__}: {exc}); each task loads it")
            continue
        if found is None:
            display.warning(f"pinned.winrm.preload: no connection plugin {name} was found; each task looks for it")
            continue
        loaded.append(name)
    return loaded


class CallbackModule(CallbackBase):
    """Loads the pinned connection plugin in ansible-playbook itself, before the task workers are forked."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "pinned.winrm.preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        # Ansible builds its callbacks when the run starts, before it forks any worker
        self.preloaded = preload()
        display.vvvv(f"pinned.winrm.preload: loaded {', '.join(self.preloaded) or 'nothing'} for every task's worker")
