"""Start a lab by hand: ``.venv/bin/python -m tests.lab up --json [options]`` (docs/lab.md).

Prints ONE line of JSON on stdout (the lab's description) once everything
listens, logs to stderr and to <workdir>/lab.log, runs until SIGINT or SIGTERM
(or until its parent process exits, or --max-seconds), then stops everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import signal
import sys
import threading
import time

from tests.lab import _limits
from tests.lab._lab import SQUID_AUTH_SCHEMES, Lab, LabError, LabOptions

log = logging.getLogger("tests.lab")

_DEFAULT_MAX_S = 8 * 3600  # a forgotten lab goes away by itself


def _schemes(value: str) -> tuple[str, ...]:
    schemes = tuple(s.strip().lower() for s in value.split(",") if s.strip())
    unknown = [s for s in schemes if s not in SQUID_AUTH_SCHEMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scheme(s) {unknown}; choose from {', '.join(SQUID_AUTH_SCHEMES)}")
    return schemes


def _limit(value: str) -> tuple[str | None, str, float | None]:
    target, sep, amount = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected [CONFIGURATION:]NAME=VALUE, not {value!r}")
    configuration, _, name = target.rpartition(":")
    try:
        q = _limits.quota(name.strip())
        parsed = _limits.parse_value(amount)
    except (KeyError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e.args[0] if isinstance(e, KeyError) else e)) from None
    return (configuration.strip() or None, q.name, parsed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a lab and run until SIGINT/SIGTERM")
    up.add_argument("--json", action="store_true", help="print the description as one line of JSON")
    up.add_argument("--hosts", type=int, default=2, help="simulated Windows hosts WIN-LAB1..N (default 2)")
    up.add_argument("--squid-auth", type=_schemes, default=("basic",), metavar="LIST",
                    help=f"comma-separated Squid variants, one process each: {','.join(SQUID_AUTH_SCHEMES)} "
                         "(default basic; '' for no Squid)")
    up.add_argument("--squid-https", action="store_true", help="also a Basic-auth Squid listening with TLS")
    up.add_argument("--no-tinyproxy", dest="tinyproxy", action="store_false", help="do not start tinyproxy")
    up.add_argument("--no-socks", dest="socks", action="store_false", help="do not start the SOCKS5 proxies (microsocks)")
    up.add_argument("--mitm", action="store_true", help="start the inspecting proxy (mitmproxy)")
    up.add_argument("--kdc", action="store_true", help="start the Kerberos realm LAB.TEST (implied by negotiate)")
    up.add_argument("--rtt-ms", type=float, default=0.0,
                    help="add this round-trip time with a relay in front of every host port (default 0: no relays)")
    up.add_argument("--relays", action="store_true",
                    help="start the latency relays even with --rtt-ms 0 (the control API can change the RTT)")
    up.add_argument("--host-auth", type=lambda v: tuple(s.strip() for s in v.split(",") if s.strip()),
                    default=None, metavar="LIST", help="auth schemes hosts offer (default: the host's own)")
    up.add_argument("--allow-unencrypted", action="store_true", help="WinRM AllowUnencrypted=true on hosts")
    up.add_argument("--reboot-down-s", type=float, default=5.0,
                    help="seconds a restarted host refuses connections before it boots (default 5)")
    up.add_argument("--limit", dest="limits", type=_limit, action="append", default=[],
                    metavar="[CONFIGURATION:]NAME=VALUE",
                    help="set a Windows quota on every host by its Windows name (MaxEnvelopeSizekb, MaxShellsPerUser, "
                         "MaxConcurrentOperationsPerUser, MaxMemoryPerShellMB, IdleTimeout, MaxTimeoutms, "
                         "MaximumReceivedDataSizePerCommandMB, MaximumReceivedObjectSizeMB); VALUE 'off' lifts it; "
                         "CONFIGURATION: sets a session configuration's own value (repeatable)")
    up.add_argument("--language-mode", choices=("FullLanguage", "ConstrainedLanguage"), default="FullLanguage",
                    help="the language mode of every PowerShell on the hosts (ConstrainedLanguage: a WDAC/AppLocker "
                         "lockdown; default FullLanguage)")
    up.add_argument("--no-limits", action="store_true",
                    help="lift every Windows quota (default: Windows' defaults, docs/lab-wsman.md)")
    up.add_argument("--workdir", type=pathlib.Path, default=None,
                    help="keep the lab's files here (default: a fresh private temp dir, removed at exit)")
    up.add_argument("--keep-workdir", action="store_true", help="do not remove the temp workdir at exit")
    up.add_argument("--max-seconds", type=float, default=_DEFAULT_MAX_S,
                    help=f"stop after this long even without a signal (default {_DEFAULT_MAX_S})")
    up.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    return parser


def _up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping the lab", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        options = LabOptions(hosts=args.hosts, squid_auth=args.squid_auth, squid_https=args.squid_https,
                             tinyproxy=args.tinyproxy, socks=args.socks, mitm=args.mitm, kdc=args.kdc, rtt_ms=args.rtt_ms,
                             relays=args.relays,
                             host_auth=args.host_auth, allow_unencrypted=args.allow_unencrypted,
                             reboot_down_s=args.reboot_down_s,
                             no_limits=args.no_limits, limits=tuple(args.limits), language_mode=args.language_mode,
                             workdir=args.workdir, keep_workdir=args.keep_workdir)
    except LabError as e:
        log.error("the lab did not start: %s", e)
        return 2
    lab = Lab(options)
    try:
        lab.start()
    except LabError as e:
        log.error("the lab did not start: %s", e)
        return 1
    except Exception:
        log.exception("the lab did not start")
        return 1
    try:
        assert lab.workdir is not None
        file_handler = logging.FileHandler(lab.workdir / "lab.log")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().addHandler(file_handler)
        description = lab.describe()
        if args.json:
            sys.stdout.write(json.dumps(description, separators=(",", ":"), default=str) + "\n")
        else:
            sys.stdout.write(json.dumps(description, indent=2, default=str) + "\n")
            sys.stdout.write("lab is up; Ctrl-C stops it\n")
        sys.stdout.flush()
        parent = os.getppid()
        deadline = time.monotonic() + args.max_seconds
        while not stop.wait(0.5):
            if os.getppid() != parent:
                log.info("parent process %d exited; stopping the lab", parent)
                break
            if time.monotonic() > deadline:
                log.info("--max-seconds reached; stopping the lab")
                break
    finally:
        lab.stop()
        log.info("lab stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "up":
        return _up(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
