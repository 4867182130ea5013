"""What /proc says about a process, and polling for a state something else reaches.

Shared by the pin daemon's unit tests and the reliability suite (Linux only, as the lab is).
"""

from __future__ import annotations

import os
import time
import typing as t


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: t.Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll for a state something else reaches by itself; the timeout only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def fd_links(pid: int) -> t.Iterator[str]:
    """Where each open file descriptor of the process points (`socket:[<inode>]` for a socket)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            yield os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue


def socket_inode(link: str) -> str | None:
    """The inode of a socket descriptor's link, None for anything else."""
    return link[len("socket:["):-1] if link.startswith("socket:[") else None
