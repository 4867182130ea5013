"""pinned-winrm-sessions: list, check and close pinned WinRM sessions (like `ssh -O check|exit`).

    python -m ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli list|check|close HOST|close --all|stop

Never starts a daemon. Exit codes: 0 success; 1 `check` found no daemon; 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing as t

from ._errors import PinnedError
from ._pin_client import running_daemons
from ._pin_paths import PinPaths


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _table(rows: list[dict[str, t.Any]]) -> str:
    headers = ["HOST", "USER", "PROXY", "STATE", "AGE", "IDLE", "TASKS", "REAUTHS", "REBUILDS", "ENDPOINT"]
    lines = [headers]
    for r in rows:
        proxy = r.get("proxy") or "-"
        if r.get("proxy_user"):
            proxy = f"{r['proxy_user']}@{proxy}"
        lines.append(
            [
                str(r.get("host")), str(r.get("user") or "-"), proxy, str(r.get("state")),
                _duration(r.get("age", 0)), _duration(r.get("idle", 0)), str(r.get("tasks", 0)),
                str(r.get("reauths", 0)), str(r.get("pool_rebuilds", 0)), str(r.get("endpoint")),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def main(argv: t.Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="pinned-winrm-sessions",
        description="List, check and close the WinRM sessions pinned by the pinned.winrm.psrp connection plugin.",
    )
    parser.add_argument("--dir", help="persist directory (ansible_psrp_persist_dir; default: Ansible's control path dir)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list pinned sessions")
    sub.add_parser("check", help="exit 0 if the pin daemon runs, 1 if not")
    close = sub.add_parser("close", help="close the sessions to HOST, or all of them")
    target = close.add_mutually_exclusive_group(required=True)
    target.add_argument("host", nargs="?", help="host name as in ansible_host")
    target.add_argument("--all", action="store_true", help="close every pinned session")
    sub.add_parser("stop", help="close every session and stop the daemon")
    args = parser.parse_args(argv)

    try:
        # one daemon per trust profile (_pin_paths.TRUST_ENV): the commands act on all of them
        clients = running_daemons(args.dir)
        where = PinPaths(args.dir).dir
        if args.command in ("list", "check"):
            hellos = [(c, h) for c in clients if (h := c.hello())]
            daemons = [hello for _client, hello in hellos]
            if args.command == "list":
                rows = [row for client, _hello in hellos for row in client.list_sessions()]
                if args.json:
                    print(json.dumps({"daemon": daemons[0] if daemons else None, "daemons": daemons,
                                      "sessions": rows}, sort_keys=True))
                elif not daemons:
                    print(f"no pin daemon running ({where})")
                elif not rows:
                    print(f"pin daemon {', '.join(str(h['pid']) for h in daemons)} holds no sessions")
                else:
                    print(_table(rows))
                return 0
            if args.json:
                print(json.dumps({"running": bool(daemons), "daemon": daemons[0] if daemons else None,
                                  "daemons": daemons}, sort_keys=True))
            elif daemons:
                for hello in daemons:
                    up = _duration(time.time() - hello["started"])
                    print(f"pin daemon running (pid {hello['pid']}, up {up}, {hello['sessions']} sessions)")
            else:
                print(f"no pin daemon running ({where})")
            return 0 if daemons else 1
        if args.command == "close":
            closed = sum(c.close(None if args.all else args.host) for c in clients)
            if args.json:
                print(json.dumps({"closed": closed}))
            else:
                print(f"closed {closed} session{'s' if closed != 1 else ''}")
            return 0
        replies = [r for c in clients if (r := c.shutdown())]
        closed = sum(int(r.get("closed", 0)) for r in replies)
        if args.json:
            print(json.dumps({"stopped": bool(replies), "closed": closed}))
        elif not replies:
            print("no pin daemon running")
        else:
            pids = ", ".join(str(r["pid"]) for r in replies)
            print(f"stopped pin daemon {pids} ({closed} sessions closed)")
        return 0
    except PinnedError as exc:
        print(f"pinned-winrm-sessions: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
