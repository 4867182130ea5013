# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only action: drive the connection plugin's put_file and fetch_file directly.

Ansible's own file actions (win_copy, fetch) need Windows modules the lab cannot run, so this action
calls ``self._connection.put_file(src, dest)`` then ``fetch_file(dest, fetch_to)`` and reports the
SHA-256 and size of what it sent and what it got back, and how long each call took.
"""

from __future__ import annotations

import hashlib
import os
import time
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("src", "dest", "fetch_to", "skip_fetch"))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            src, dest = str(args["src"]), str(args["dest"])
        except KeyError as e:
            raise AnsibleActionFail(f"transfer_probe needs {e.args[0]}") from None
        fetch_to = args.get("fetch_to")
        if not os.path.isfile(src):
            raise AnsibleActionFail(f"transfer_probe: no local file {src}")

        started = time.monotonic()
        self._connection.put_file(src, dest)
        put_s = time.monotonic() - started
        result.update({"src_sha256": _sha256(src), "size": os.path.getsize(src), "put_s": put_s})

        if fetch_to and not args.get("skip_fetch"):
            fetch_to = str(fetch_to)
            if os.path.exists(fetch_to):
                os.unlink(fetch_to)  # the fetched copy must come from this run
            started = time.monotonic()
            self._connection.fetch_file(dest, fetch_to)
            result["fetch_s"] = time.monotonic() - started
            result["fetched_sha256"] = _sha256(fetch_to)
            result["fetched_size"] = os.path.getsize(fetch_to)
        result["changed"] = True
        return result
