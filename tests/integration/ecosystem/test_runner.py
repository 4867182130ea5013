"""A job the way AWX and Automation Platform run one: ansible-runner, process mode, the collection from its tarball.

An AWX execution node runs each job with `ansible-runner` in its own private data directory (inside the
execution environment's container, or as a process). Persistence there lasts one job: the pin daemon lives
in the job's private data directory (ansible-runner names it to the job through AWX_ISOLATED_DATA_DIR), so a
second job starts its own daemon and rides nothing of the first, and each daemon closes its sessions after
their idle timeout and exits. The daemons' own logs are the record: what each served, why it closed its
session, that it exited.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import time
import typing as t

import pytest
import yaml

from tests.integration._ansible import ROOT

from .conftest import Installed

ansible_runner = pytest.importorskip("ansible_runner", reason="ansible-runner is in tests/requirements.txt")

PLAYBOOK = pathlib.Path(__file__).parent / "playbooks" / "three_tasks.yml"
IDLE_TIMEOUT_S = 5  # set on the playbook's last task only (playbooks/three_tasks.yml)
JOB_IDLE_TIMEOUT_S = 600  # the job's own, for the gaps between tasks however slow the machine
DAEMON_EXIT_BOUND_S = 120.0  # generous: a loaded machine; the daemon's own log says why and when it ended


def _job(installed: Installed, pdd: pathlib.Path, inventory: dict[str, t.Any]) -> t.Any:
    """One ansible-runner job in its own private data directory (process mode, as on an execution node)."""
    (pdd / "project").mkdir(parents=True)
    (pdd / "inventory").mkdir()
    shutil.copy(PLAYBOOK, pdd / "project" / PLAYBOOK.name)
    fd = os.open(pdd / "inventory" / "hosts.yml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # lab test data
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(inventory, f)
    envvars = {
        "ANSIBLE_CONFIG": str(installed.home / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(installed.collections_path),
        "ANSIBLE_HOME": str(pdd / "ansible-home"),
        "ANSIBLE_PSRP_PERSIST_IDLE_TIMEOUT": str(JOB_IDLE_TIMEOUT_S),
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "http_proxy": "", "https_proxy": "", "HTTP_PROXY": "", "HTTPS_PROXY": "", "no_proxy": "", "NO_PROXY": "",
    }
    return ansible_runner.run(private_data_dir=str(pdd), playbook=PLAYBOOK.name, envvars=envvars, quiet=True,
                              ident="job")


def _inventory(desc: dict[str, t.Any]) -> dict[str, t.Any]:
    host, proxy = desc["hosts"][0], desc["proxies"]["squid_ntlm"]
    account = next(u for u in host["users"] if u["username"] == "ansible")
    return {"windows": {"hosts": {host["name"].lower(): {
        "ansible_host": host["address"], "ansible_port": host["https_port"],
        "ansible_user": account["username"], "ansible_password": account["password"]}}, "vars": {
        "ansible_connection": "pinned.winrm.psrp", "ansible_psrp_auth": "ntlm", "ansible_psrp_ca_cert": desc["ca_cert"],
        "ansible_psrp_proxy": proxy["url"], "ansible_psrp_proxy_auth": "ntlm",
        "ansible_psrp_proxy_user": proxy["username"], "ansible_psrp_proxy_password": proxy["password"]}}}


def _daemon_log(pdd: pathlib.Path) -> pathlib.Path:
    """The job's pin daemon log: the daemon's directory is in the job's private data directory."""
    logs = list((pdd / f"pinned-winrm-{os.geteuid()}").glob("daemon-*.log"))
    assert len(logs) == 1, logs
    return logs[0]


def _wait_for_exit(log: pathlib.Path) -> str:
    """The daemon's log once it says it exited (its own event), within a generous bound."""
    deadline = time.monotonic() + DAEMON_EXIT_BOUND_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(r"pin daemon \d+ exits", text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"the job's pin daemon did not exit:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_runner_jobs_each_get_their_own_daemon_which_ends_after_its_idle_timeout(
        installed_collection: Installed, lab: t.Any, tmp_path: pathlib.Path) -> None:
    desc = lab.describe()
    host = desc["hosts"][0]
    lab.clear_faults(host["name"])
    lab.reset_host(host["name"])
    inventory = _inventory(desc)
    jobs = [_job(installed_collection, tmp_path / name, inventory) for name in ("job1", "job2")]
    after = lab.host_counters(host["name"])

    for job in jobs:
        assert (job.status, job.rc) == ("successful", 0), job.stdout.read()[-3000:]
        events = [e["event"] for e in job.events]
        assert events[0] == "playbook_on_start" and events[-1] == "playbook_on_stats", events
        assert events.count("runner_on_ok") == 3, events
        outputs = [e["event_data"]["res"]["stdout"] for e in job.events if e["event"] == "runner_on_ok"]
        assert all(f"probe {host['name'].upper()} 42" in out for out in outputs), outputs
    # one login per job: within a job the tasks rode one pinned session; the second job rode nothing of the first
    assert after.get("auth_handshakes.ntlm", 0) == 2, after
    assert after.get("tcp_connections", 0) == 2, after

    for name in ("job1", "job2"):
        pdd = tmp_path / name
        text = _wait_for_exit(_daemon_log(pdd))
        served = re.findall(r"exec on \S+: session (\w+) (opened|reused)", text)
        # this job's three tasks, on one session it opened itself
        assert [state for _id, state in served] == ["opened", "reused", "reused"], served
        assert len({session for session, _state in served}) == 1
        closed = re.findall(r"closing session (\w+) to \S+ \((.*)\)", text)
        assert closed == [(served[0][0], f"idle for {IDLE_TIMEOUT_S}s")], closed  # the last task's, not the job's
        assert text.index("closing session") < text.index(" exits (")
        pid = int(re.search(r"pin daemon (\d+) serving", text).group(1))
        assert f"{pdd}/pinned-winrm-{os.geteuid()}/" in text  # its socket was in the job's private data directory
        assert _gone(pid), f"pin daemon {pid} of {name} is still running"
        assert inventory["windows"]["vars"]["ansible_psrp_proxy_password"] not in text


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + DAEMON_EXIT_BOUND_S
    while time.monotonic() < deadline:
        try:
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in status:
            return True
        time.sleep(0.1)
    return False


def test_the_daemons_imports_are_all_in_the_collections_requirements() -> None:
    """What an execution environment installs (requirements.txt) covers every library the engine imports."""
    import ast
    import importlib.metadata

    requirements = {re.split(r"[\[<>=!~ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
                    for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    distributions = importlib.metadata.packages_distributions()
    needed: set[str] = set()
    for path in (ROOT / "plugins" / "plugin_utils").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ansible", "ansible_collections"):
                    continue
                needed.update(d.lower().replace("_", "-") for d in distributions.get(top, [top]))
    # krb5 and gssapi come with pyspnego[kerberos]; requests with requests-credssp and pypsrp
    provided = requirements | {"krb5", "gssapi", "requests", "pyspnego", "cryptography"}
    assert needed <= provided, f"imported by the engine but not in requirements.txt: {sorted(needed - provided)}"
    assert "python-socks" in requirements and "pyspnego" in requirements
