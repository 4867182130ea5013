# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: writes every task result of a run as JSON to $PINNED_TEST_RESULTS."""

from __future__ import annotations

DOCUMENTATION = """
name: record_results
type: aggregate
short_description: write task results as JSON for the test suite
description: [Test-only. Writes plays, tasks, per-host results and stats to the file named by PINNED_TEST_RESULTS.]
requirements: [enable in the test environment]
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._doc: dict = {"plays": [], "stats": {}}
        self._current: dict | None = None

    def v2_playbook_on_play_start(self, play) -> None:
        self._doc["plays"].append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._current = {"task": {"name": task.get_name()}, "hosts": {}}
        self._doc["plays"][-1]["tasks"].append(self._current)

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, status: str) -> None:
        data = dict(result._result)
        data["status"] = status
        host = result._host.get_name()
        task_entry = self._current
        if task_entry is None:
            return
        task_entry["hosts"][host] = json.loads(json.dumps(data, default=str))

    def v2_runner_on_ok(self, result) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result) -> None:
        self._record(result, "unreachable")

    def v2_runner_on_skipped(self, result) -> None:
        self._record(result, "skipped")

    def v2_playbook_on_stats(self, stats) -> None:
        for host in sorted(stats.processed.keys()):
            self._doc["stats"][host] = stats.summarize(host)
        path = os.environ.get("PINNED_TEST_RESULTS")
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self._doc, f)
