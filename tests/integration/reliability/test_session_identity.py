"""A pinned session serves only runs with the identity and trust it was opened with.

Each test opens a session with one real ansible-playbook run, changes what decides the identity or the
trust of the next run (a CA bundle rotated in place, a longer lifetime, ...) and runs again: the second
run must not ride the first run's session where that would trust or authenticate differently from what
it asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration._ansible import ROOT
from tests.integration.e2e.conftest import E2E, delta

from . import report
from ._helpers import raw, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


def sessions(e2e: E2E) -> list[dict]:
    """`pinned-winrm-sessions list --json` of this test's persist directory."""
    out = subprocess.run(
        [sys.executable, "-m", "ansible_collections.pinned.winrm.plugins.plugin_utils._pin_cli",
         "--dir", str(e2e.workdir / "pc"), "--json", "list"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "build" / "collections")},
        capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)["sessions"]


def test_a_ca_bundle_rotated_in_place_gets_a_new_session(e2e: E2E, check, tmp_path) -> None:
    from tests.lab._certs import LabCA

    row = check("No session theft", "the CA bundle named by ansible_psrp_ca_cert is replaced in place (same path) "
                "by one that does not trust the host, between two runs",
                "the second run does not ride the session opened under the old trust: it validates again and "
                "fails (unreachable, certificate not trusted)", report.LEAK)
    bundle = tmp_path / "corp-ca.pem"
    shutil.copy(e2e.desc["ca_cert"], bundle)
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output trusted")])
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_ca_cert": str(bundle)}
    e2e.run(group, playbook=one, name="before").assert_ok()
    shutil.copy(LabCA.create(tmp_path / "other-ca").cert_path, bundle)  # rotated: another CA, same path
    before = e2e.counters()
    after_run = e2e.run(group, playbook=one, name="after")
    result = after_run.task_results(HOST)[0]
    row.see(f"second run: {result['status']}; host +{delta(e2e.counters(), before, 'wsman.Command')} commands; "
            f"{str(result.get('msg', ''))[-140:]}")
    assert result["status"] == "unreachable" and "not trusted" in result["msg"], result
    assert delta(e2e.counters(), before, "wsman.Command") == 0


def test_a_later_run_with_longer_lifetimes_does_not_extend_the_pinned_session(e2e: E2E, check) -> None:
    row = check("No session theft", "a run with persist_idle_timeout 30/persist_max_age 600, then one with 300/3600 "
                "on the same session", "the session is reused and keeps 30 s idle / 600 s age: the shorter wins",
                report.LEAK)
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output lifetime")])
    group = {"ansible_psrp_auth": "ntlm"}
    e2e.run({**group, "ansible_psrp_persist_idle_timeout": 30, "ansible_psrp_persist_max_age": 600},
            playbook=one, name="short").assert_ok()
    e2e.run({**group, "ansible_psrp_persist_idle_timeout": 300, "ansible_psrp_persist_max_age": 3600},
            playbook=one, name="long").assert_ok()
    rows = sessions(e2e)
    row.see(f"{len(rows)} session(s): " + "; ".join(f"{r['tasks']} tasks, idle timeout {r['idle_timeout']:g}s, "
                                                   f"max age {r['max_age']:g}s" for r in rows))
    assert len(rows) == 1 and rows[0]["tasks"] == 2
    assert (rows[0]["idle_timeout"], rows[0]["max_age"]) == (30, 600)
