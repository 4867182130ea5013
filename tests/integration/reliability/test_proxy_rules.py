"""Which proxy a run uses, and what the rules let a proxy see (R1, R3, R7), through real proxies.

- NO_PROXY and the proxy variables are read as curl and Python's urllib read them (``host:port`` entries,
  a bare domain covering the names below it, lowercase variables winning): proven against the lab's
  inspecting proxy, which records every byte it relays, so "bypassed" means zero bytes reached it.
"""

from __future__ import annotations

import pytest

from tests.integration.e2e.conftest import E2E

from . import report
from ._helpers import closed_port, raw, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


def _recorded(e2e: E2E) -> int:
    return len(e2e.lab.proxy_recorded("mitm"))


def test_no_proxy_host_port_entry_keeps_winrm_away_from_the_environment_proxy(e2e: E2E, check) -> None:
    row = check("Hostile proxy", "proxy_from_env with HTTPS_PROXY = the inspecting proxy and NO_PROXY = "
                "'<host>:<https port>' (a host:port entry, as curl and urllib read it)",
                "the task runs directly: zero bytes reach the proxy", report.LEAK)
    host = e2e.host()
    env = {"HTTPS_PROXY": e2e.proxy("mitm")["url"], "NO_PROXY": f"other.example,{host['address']}:{host['https_port']}"}
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output bypassed")])
    before = _recorded(e2e)
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True}, playbook=one, env=env,
                  name="no-proxy-port")
    e2e.close_sessions()
    relayed = _recorded(e2e) - before
    row.see(f"rc {run.rc}; {relayed} bytes reached the proxy")
    run.assert_ok()
    assert relayed == 0


def test_lowercase_https_proxy_wins_over_uppercase(e2e: E2E, check) -> None:
    row = check("Hostile proxy", "proxy_from_env with https_proxy = the inspecting proxy and HTTPS_PROXY = a dead "
                "port (both set, as curl and urllib read them the lowercase one wins)",
                "the task runs through the inspecting proxy", report.FAULT)
    env = {"https_proxy": e2e.proxy("mitm")["url"], "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}"}
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output lowercase")])
    before = _recorded(e2e)
    run = e2e.run({"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_from_env": True}, playbook=one, env=env,
                  name="lowercase")
    e2e.close_sessions()
    relayed = _recorded(e2e) - before
    row.see(f"rc {run.rc}; {relayed} bytes through the inspecting proxy")
    run.assert_ok()
    assert relayed > 0
