"""Small helpers of the reliability suite: playbooks, the daemon's process, the lab host's disk."""

from __future__ import annotations

import os
import pathlib
import socket
import time
import typing as t

import yaml

from tests.integration.e2e.conftest import E2E

ACTION_PLUGINS = pathlib.Path(__file__).parent / "action_plugins"


def write_playbook(path: pathlib.Path, tasks: list[dict[str, t.Any]], *, hosts: str = "windows") -> str:
    """A one-play playbook of the given tasks (no facts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump([{"name": "reliability", "hosts": hosts, "gather_facts": False,
                                     "tasks": tasks}], allow_unicode=True), encoding="utf-8")
    return str(path)


def raw(name: str, command: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"name": name, "ansible.builtin.raw": command, "changed_when": False, **extra}


def pause(seconds: float) -> dict[str, t.Any]:
    return {"name": f"pause {seconds}s", "ansible.builtin.pause": {"seconds": int(seconds)}}


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


def wait_for(predicate: t.Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


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
