"""`make demo`: start the lab with a real Squid, run examples/ through pinned.winrm.psrp, say what happened.

The plays: raw PowerShell (raw_commands.yml), a Windows administrator's play with unmodified ansible.windows
modules (windows_admin.yml: facts, win_ping, a file copied in and fetched back, an environment variable for one
task, a service, a reboot), and meta: reset_connection (reset_connection.yml).

Human-readable progress goes to stderr; stdout gets ONE line of JSON read from the lab's own counters:
{"tasks": N, "failed": 0, "host_tcp_connections": C, "auth_handshakes": H, "runspace_pools": P, ...}
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration._ansible import WITH_PRELOAD, run_playbook, write_inventory  # noqa: E402
from tests.lab._control import LabClient  # noqa: E402

PLAYBOOKS = ["raw_commands.yml", "windows_admin.yml", "reset_connection.yml"]
# What a result shows in the progress lines, first key present wins.
DETAIL_KEYS = ("stdout", "msg", "ping", "state", "checksum")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def start_lab(workdir: pathlib.Path) -> tuple[subprocess.Popen[str], dict[str, t.Any]]:
    cmd = [sys.executable, "-m", "tests.lab", "up", "--json", "--hosts", "2", "--squid-auth", "ntlm",
           "--reboot-down-s", "1", "--workdir", str(workdir / "lab"), "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(workdir / "lab.stderr", "w"),
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise SystemExit(f"the lab did not start; see {workdir / 'lab.stderr'}:\n"
                         + (workdir / "lab.stderr").read_text()[-3000:])
    return proc, json.loads(line)


def stop_lab(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def main() -> int:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinned-demo-"))
    os.chmod(workdir, 0o700)
    say(f"Starting the lab (2 simulated Windows hosts, Squid with NTLM proxy authentication) in {workdir} ...")
    proc, lab = start_lab(workdir)
    try:
        client = LabClient(lab["control_url"])
        squid = lab["proxies"]["squid_ntlm"]
        hosts = {}
        for host in lab["hosts"]:
            user = host["users"][0]
            hosts[host["name"].lower()] = {
                "ansible_host": host["address"],
                "ansible_port": host["https_port"],
                "ansible_user": user["username"],
                "ansible_password": user["password"],
            }
        group_vars = {
            "ansible_connection": "pinned.winrm.psrp",
            "ansible_psrp_protocol": "https",
            "ansible_psrp_auth": "ntlm",
            "ansible_psrp_ca_cert": lab["ca_cert"],
            "ansible_psrp_proxy": squid["url"],
            "ansible_psrp_proxy_auth": "ntlm",
            "ansible_psrp_proxy_user": squid["username"],
            "ansible_psrp_proxy_password": squid["password"],
        }
        inventory = write_inventory(workdir / "inventory", hosts, group_vars)
        say(f"Inventory: {len(hosts)} hosts via {squid['url']} (CONNECT, NTLM proxy auth), NTLM to the hosts over HTTPS")
        for host in lab["hosts"]:
            client.reset_host(host["name"])

        demo_file = workdir / "report.txt"
        demo_file.write_bytes("Quarterly report ✓\r\n".encode() + os.urandom(4096))
        fetch_dir = workdir / "fetched"
        fetch_dir.mkdir()
        extra = workdir / "vars.json"
        extra.write_text(json.dumps({"demo_file": str(demo_file), "fetch_dir": str(fetch_dir)}))

        tasks = failed = 0
        env_next: list[str] = []
        for name in PLAYBOOKS:
            say(f"\n== ansible-playbook examples/{name}")
            # as docs/pinning.md recommends: the connection plugin loaded once per run, not in every task's worker
            run = run_playbook(ROOT / "examples" / name, inventory, workdir, extra_args=["-e", f"@{extra}"],
                               env={"ANSIBLE_CALLBACKS_ENABLED": WITH_PRELOAD})
            for result in run.task_results():
                tasks += 1
                status = result.get("status")
                failed += status in ("failed", "unreachable")
                value = next((result[k] for k in DETAIL_KEYS if result.get(k) not in (None, "")), "")
                detail = str(value).strip().splitlines()
                say(f"  [{status:>11}] {result['task']}" + (f": {detail[0][:70]}" if detail else ""))
                if result["task"] == "The next task does not see it":
                    env_next.append(str(result.get("stdout", "")).strip())
            if run.rc != 0:
                say(run.stdout[-3000:] + run.stderr[-3000:])

        copied_back = sorted(fetch_dir.iterdir())
        same = all(p.read_bytes() == demo_file.read_bytes() for p in copied_back)
        say(f"\nFetched back {len(copied_back)} copies of the file; byte for byte the same: {same}")
        isolated = bool(env_next) and all(line == "DEMO_SETTING=" for line in env_next)
        say("The next task did not see the environment variable." if isolated else
            f"The next task saw the environment variable ({env_next[0] if env_next else 'no result'}): task "
            f"isolation (rule T1) is broken.")

        counters = [client.host_counters(h["name"]) for h in lab["hosts"]]
        squid_counters = client.proxy_counters("squid_ntlm")

        def total(name: str) -> int:
            return sum(int(c.get(name, 0)) for c in counters)

        summary = {
            "tasks": tasks,
            "failed": failed,
            "hosts": len(lab["hosts"]),
            "host_tcp_connections": total("tcp_connections"),
            "auth_handshakes": total("auth_handshakes"),
            "reauth_on_connection": total("reauth_on_connection"),
            "runspace_pools": total("runspace_pools_created"),
            "wsman_requests": total("http_requests"),
            "proxy_connects": int(squid_counters.get("connects", squid_counters.get("CONNECT", 0)) or 0),
            "reboots": total("reboots"),
            "fetched_same": same and len(copied_back) == len(lab["hosts"]),
            "environment_isolated": isolated,
        }
        say(
            f"\n{tasks} task results, {failed} failed. The hosts counted {summary['host_tcp_connections']} TCP "
            f"connections, {summary['auth_handshakes']} authentication handshakes and {summary['runspace_pools']} "
            f"Runspace Pools for all of them (one pinned session per host, opened again after win_reboot resets the "
            f"connection and after reset_connection)."
        )
        print(json.dumps(summary), flush=True)
        return 0 if failed == 0 and tasks > 0 and summary["fetched_same"] and isolated else 1
    finally:
        subprocess.run([sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
                        "--dir", str(workdir / "pc"), "close", "--all"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
                       capture_output=True, timeout=30)
        stop_lab(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
