# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only action: put_file and/or fetch_file through the connection plugin, reporting SHA-256 hashes.

Args: ``src`` (local file to put), ``dest`` (path on the host), ``fetch_to`` (local path to fetch
``dest`` into). Either or both of put (src+dest) and fetch (dest+fetch_to) run, in that order, and nothing
else: no remote temporary directory is made (TRANSFERS_FILES is off), so every request the host sees for the
task belongs to the transfer, and a fault switch counting Sends or Receives hits the transfer itself.
"""

from __future__ import annotations

import hashlib
import os
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # the connection's own put_file/fetch_file need no remote temporary directory
    _VALID_ARGS = frozenset(("src", "dest", "fetch_to"))

    def run(self, tmp: t.Any = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        args = self._task.args
        dest = args.get("dest")
        if not dest:
            raise AnsibleActionFail("rel_transfer needs dest")
        src, fetch_to = args.get("src"), args.get("fetch_to")
        if src:
            self._connection.put_file(str(src), str(dest))
            result.update(src_sha256=_sha256(str(src)), src_size=os.path.getsize(str(src)))
        if fetch_to:
            self._connection.fetch_file(str(dest), str(fetch_to))
            result.update(fetched_sha256=_sha256(str(fetch_to)), fetched_size=os.path.getsize(str(fetch_to)))
        result["changed"] = bool(src)
        return result
