# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only action: a gate between two tasks of one run, held on the controller (never touches the host).

Args: ``path`` (a file path prefix), ``timeout`` (seconds, default 240). The action writes ``<path>.ready``,
then waits until ``<path>.go`` exists; the test does what it must between the tasks in between. It replaces
``pause``: the run is held exactly as long as the test needs, however slow the machine is.
"""

from __future__ import annotations

import os
import time
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(("path", "timeout"))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        path = str(self._task.args.get("path") or "")
        if not path:
            raise AnsibleActionFail("rel_gate needs path")
        timeout = float(self._task.args.get("timeout", 240))
        with open(f"{path}.ready", "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
        deadline = time.monotonic() + timeout
        while not os.path.exists(f"{path}.go"):
            if time.monotonic() > deadline:
                raise AnsibleActionFail(f"rel_gate: {path}.go did not appear within {timeout:g} s")
            time.sleep(0.02)
        result.update(changed=False, gate=path)
        return result
