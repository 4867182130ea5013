"""Small helpers of the reliability suite: playbooks, the daemon's process, the lab host's disk."""

from __future__ import annotations

import collections
import os
import pathlib
import socket
import time
import typing as t

import yaml

from tests._procfs import fd_links, pid_alive, socket_inode, wait_until
from tests.integration.e2e.conftest import E2E

wait_for = wait_until  # the reliability suite's name for it (pid_alive is imported from here too)

ACTION_PLUGINS = pathlib.Path(__file__).parent / "action_plugins"


def write_playbook(path: pathlib.Path, tasks: list[dict[str, t.Any]], *, hosts: str = "windows") -> str:
    """A one-play playbook of the given tasks (no facts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump([{"name": "reliability", "hosts": hosts, "gather_facts": False,
                                     "tasks": tasks}], allow_unicode=True), encoding="utf-8")
    return str(path)


def raw(name: str, command: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "ansible.builtin.raw": command, "changed_when": False, **extra}


class Gate:
    """A `rel_gate` task that holds a run between two tasks, and the test's side of it.

    The playbook runs with action_env(). The test waits for `wait()` (the run reached the gate), does what
    must happen between the tasks, then `open()`s the gate; `open()` in a `finally` so the run never hangs.
    """

    def __init__(self, e2e: E2E, name: str) -> None:
        directory = e2e.workdir / "gates"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name

    def task(self) -> dict[str, t.Any]:
        return {"name": f"gate {self.path.name}", "rel_gate": {"path": str(self.path)}}

    def wait(self, timeout: float = 240) -> bool:
        return wait_for(lambda: pathlib.Path(f"{self.path}.ready").exists(), timeout, step=0.02)

    def open(self) -> None:
        pathlib.Path(f"{self.path}.go").touch()


def daemon_idle(e2e: E2E, timeout: float = 120) -> bool:
    """Wait until the pin daemon holds no busy session (it has finished the last task's pipeline too)."""
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

    client = PinClient(str(e2e.workdir / "pc"), autostart=False)
    return wait_for(lambda: all(s["state"] == "idle" for s in client.list_sessions()), timeout)


def arm_when_idle(e2e: E2E, host: str, **settings: t.Any) -> None:
    """Set fault switches counted by action (the next or n-th Receive, Command or Send) once the pin daemon holds
    no busy session. A warm run ends at its task's reply; its session's work after the reply (the Signal, a memory
    reading, a restore or recycle when due, with requests of their own) would otherwise take the count, and the
    measured task would run on a rebuilt session."""
    assert daemon_idle(e2e), "the warm run's session stayed busy after its reply"
    e2e.lab.set_faults(host, **settings)


def action_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes this suite's test-only action plugins visible to ansible-playbook."""
    return {"ANSIBLE_ACTION_PLUGINS": str(ACTION_PLUGINS), **(extra or {})}


def squid_ntlm(e2e: E2E, name: str = "squid_ntlm") -> dict[str, t.Any]:
    proxy = e2e.proxy(name)
    return {
        "ansible_psrp_auth": "ntlm",
        "ansible_psrp_proxy": proxy["url"],
        "ansible_psrp_proxy_auth": "ntlm",
        "ansible_psrp_proxy_user": proxy["username"],
        "ansible_psrp_proxy_password": proxy["password"],
    }


def host_password(e2e: E2E, index: int = 0, user: str = "ansible") -> str:
    return next(u["password"] for u in e2e.host(index)["users"] if u["username"] == user)


def daemon_pids(e2e: E2E) -> list[int]:
    """The pids of the pin daemons serving this test's persist dir (one per trust profile), from /proc."""
    wanted = [b"_pin_daemon", b"--dir", str(e2e.workdir / "pc").encode()]
    pids = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(wanted[0]) for a in argv) and wanted[2] in argv:
            pids.append(int(proc.name))
    return sorted(pids)


def daemon_pid(e2e: E2E) -> int | None:
    """The pin daemon's pid for this test's persist dir (None when none runs; the first of several)."""
    pids = daemon_pids(e2e)
    return pids[0] if pids else None


def daemon_log(e2e: E2E) -> str:
    text = ""
    for path in sorted((e2e.workdir / "pc").glob("pinned-winrm-*/daemon*.log*")):
        text += path.read_text(encoding="utf-8", errors="replace")
    return text


def proc_sample(pid: int) -> dict[str, int]:
    """Open file descriptors, threads, RSS and its high-water mark (KiB) of a process, from /proc."""
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"].strip()),
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "hwm_kib": int(fields["VmHWM"].split()[0]),
    }


def unix_clients(pid: int, socket_path: str) -> int:
    """How many connected UNIX sockets on socket_path the process holds: the pin daemon's client connections."""
    inodes = {inode for inode in map(socket_inode, fd_links(pid)) if inode is not None}
    count = 0
    # /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path; St 03 is connected (the listener is 01).
    for line in pathlib.Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == socket_path and parts[5] == "03" and parts[6] in inodes:
            count += 1
    return count


def quiet_sample(e2e: E2E, pid: int) -> dict[str, int]:
    """proc_sample() of the pin daemon once it is quiet: every session idle and no client connection open.

    A task's answer reaches the client before the daemon finishes its pipeline and closes the client's socket,
    so a sample taken the moment a run ends may count a few of those; at rest the count is exact.
    """
    from ansible_collections.pinned.winrm.plugins.plugin_utils._pin_client import PinClient

    socket_path = PinClient(str(e2e.workdir / "pc"), autostart=False).paths.socket
    assert daemon_idle(e2e), "a pinned session stayed busy after its run ended"
    # The list request daemon_idle() made is a client connection too; it closes just after its answer.
    assert wait_for(lambda: unix_clients(pid, socket_path) == 0, 30), "a client connection stayed open"
    return proc_sample(pid)


def resting_threads(pid: int, samples: int = 10) -> int:
    """The process's thread count at rest: the least of a few samples (a request's handler thread that is just
    ending can only add to a sample, never take from it)."""
    counts = []
    for _ in range(samples):
        counts.append(proc_sample(pid)["threads"])
        time.sleep(0.05)
    return min(counts)


def resting_fds(pid: int, samples: int = 10) -> int:
    """The process's descriptor count at rest: the least of a few samples (a client connection that its handler
    is just closing can only add to a sample, never take from it; a leaked descriptor stays in every one)."""
    counts = []
    for _ in range(samples):
        counts.append(proc_sample(pid)["fds"])
        time.sleep(0.05)
    return min(counts)


def fd_kinds(pid: int) -> collections.Counter[str]:
    """What a process's descriptors point at (a socket by its kind, a file by its path): names a growth."""
    inodes = {}
    for table in ("tcp", "tcp6", "udp", "unix"):
        try:
            lines = pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            inodes[fields[6] if table == "unix" else fields[9]] = table
    kinds: collections.Counter[str] = collections.Counter()
    for link in fd_links(pid):
        inode = socket_inode(link)
        kinds[link if inode is None else f"socket ({inodes.get(inode, 'other')})"] += 1
    return kinds


def settled_fd_kinds(pid: int, sessions: int, timeout: float = 30) -> collections.Counter[str]:
    """The pin daemon's descriptors by kind once none is closing: one UNIX socket (its listener) and at most one
    TCP connection per session. A client connection or a host connection being replaced is seen closing for as
    long as the machine takes to run its handler; the timeout only ends the wait for a leak, which stays."""
    def settled() -> bool:
        kinds = fd_kinds(pid)
        return kinds["socket (unix)"] <= 1 and kinds["socket (tcp)"] + kinds["socket (tcp6)"] <= sessions
    wait_for(settled, timeout)
    return fd_kinds(pid)


def threads_back_to(pid: int, count: int, timeout: float = 30) -> bool:
    """Whether the process's threads come back down to `count`; a leaked thread never does (the timeout only
    keeps a broken run from hanging)."""
    return wait_for(lambda: proc_sample(pid)["threads"] <= count, timeout)


def children_of(pid: int) -> list[int]:
    """Every descendant of pid (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    for _ in range(1000):  # bounded walk
        if not todo:
            break
        current = todo.pop()
        for task in pathlib.Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def log_mark(e2e: E2E, index: int = 0) -> int:
    """Where the host's request log ends now (what script_runs() counts from)."""
    return len(e2e.lab.host_log(e2e.host(index)["name"]))


def script_runs(e2e: E2E, script: str, since: int, index: int = 0) -> int:
    """How many PSRP pipelines running `script` the host started after log entry `since` (the lab logs each
    pipeline's script by its SHA-256): what "never run twice" counts for one script among a task's others."""
    import hashlib

    digest = hashlib.sha256(script.encode("utf-8")).hexdigest()
    return sum(1 for e in e2e.lab.host_log(e2e.host(index)["name"])[since:]
               if e.get("kind") == "pipeline" and e.get("script_sha256") == digest)


def host_path(e2e: E2E, windows_path: str, index: int = 0) -> pathlib.Path:
    """Where the lab keeps a host's C:\\ path on this machine's disk."""
    root = pathlib.Path(e2e.host(index)["root"])
    drive, _, rest = windows_path.partition(":\\")
    assert drive.upper() == "C", windows_path
    return root.joinpath(*[p for p in rest.split("\\") if p])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64_aligned(data: bytes) -> list[bytes]:
    """The base64 text of `data` as it appears inside a longer base64 stream, at each of the 3 alignments."""
    import base64

    out = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + data)
        skip = 4 if pad else 0
        core = enc[skip:-4] if len(enc) - skip > 8 else b""
        if len(core) >= 8:
            out.append(core)
    return out


def forms(text: str) -> list[bytes]:
    """Every encoding in which `text` could be readable: raw, UTF-16-LE, URL-quoted, base64 and base64 of base64."""
    import urllib.parse

    level0 = [text.encode("utf-8"), text.encode("utf-16-le"), urllib.parse.quote(text).encode()]
    level1 = [b for raw_ in level0[:2] for b in _b64_aligned(raw_)]
    level2 = [b for enc in level1 for b in _b64_aligned(enc)]
    return list(dict.fromkeys(level0 + level1 + level2))


def leaks(blob: bytes, secrets_: dict[str, str]) -> list[str]:
    """Names of the secrets found in blob, in any of their forms."""
    return [name for name, value in secrets_.items() if any(f in blob for f in forms(value))]
