"""What ansible.builtin.psrp accepts, pinned.winrm.psrp accepts too: one playbook, both plugins, the same lab host.

CredSSP over http, an operation timeout equal to the read timeout, a CA bundle named by REQUESTS_CA_BUNDLE,
and fetched files that get the mode builtin's would. Basic to an http:// proxy, which builtin sends without a
word, needs an explicit opt-in here and warns on every run.
"""

from __future__ import annotations

import os
import stat
import typing as t

import pytest

from tests.integration.e2e.conftest import E2E, delta
from tests.integration.reliability._helpers import host_path, raw, write_playbook

from ._plays import HOST, PLUGINS, run_with, statuses

pytestmark = [pytest.mark.timeout(300)]


def _probe(e2e: E2E) -> str:
    return write_playbook(e2e.workdir / "probe.yml", [raw("probe", "Write-Output \"probe $env:COMPUTERNAME\"")])


def _both(e2e: E2E, extra: dict[str, t.Any], name: str, **kwargs: t.Any) -> dict[str, t.Any]:
    runs = {}
    for plugin in PLUGINS:
        run = run_with(e2e, plugin, _probe(e2e), name=name, extra=extra, **kwargs)
        assert statuses(run) == {"probe": "ok"}, (plugin, run.stdout[-3000:], run.stderr[-2000:])
        assert run.task_results(HOST)[0]["stdout"].strip() == "probe WIN-LAB1"
        runs[plugin] = run
    return runs


def test_credssp_over_http_works_as_with_builtin_and_every_message_is_encrypted(e2e: E2E) -> None:
    before = e2e.counters()
    _both(e2e, {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "credssp",
                "ansible_psrp_credssp_auth_mechanism": "ntlm"}, "credssp-http")
    after = e2e.counters()
    assert delta(after, before, "auth_handshakes.credssp") == 2  # one per plugin: pinned's session, builtin's task
    assert delta(after, before, "rejected.unencrypted") == 0
    posts = [e for e in e2e.lab.host_log(e2e.host()["name"]) if e.get("request_bytes") and e.get("encrypted") is not None]
    assert posts and all(e["encrypted"] for e in posts[-4:]), posts[-4:]


def test_operation_timeout_equal_to_the_read_timeout_is_adjusted_and_said_at_vvv(e2e: E2E) -> None:
    runs = _both(e2e, {"ansible_psrp_operation_timeout": 30}, "op-timeout", extra_args=["-vvv"])
    assert "ansible_psrp_read_timeout 30s raised to 35s" in runs["pinned"].stdout


def test_a_ca_bundle_named_by_requests_ca_bundle_is_trusted(e2e: E2E) -> None:
    # no ansible_psrp_ca_cert: the lab's CA comes only from the environment, as requests takes it for builtin
    runs = _both(e2e, {"ansible_psrp_ca_cert": None}, "ca-env", env={"REQUESTS_CA_BUNDLE": e2e.desc["ca_cert"]},
                 extra_args=["-vvv"])
    assert "from REQUESTS_CA_BUNDLE" in runs["pinned"].stdout


def test_without_a_ca_bundle_the_lab_certificate_is_refused_by_both(e2e: E2E) -> None:
    # the control: the run above passed because of the variable, not because nothing is checked
    for plugin in PLUGINS:
        run = run_with(e2e, plugin, _probe(e2e), name="no-ca", extra={"ansible_psrp_ca_cert": None})
        assert statuses(run) == {"probe": "unreachable"}, (plugin, run.stdout[-2000:])


def test_basic_to_an_http_proxy_needs_the_opt_in_and_warns_on_every_run(e2e: E2E) -> None:
    squid = e2e.proxy("squid")
    group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": squid["url"], "ansible_psrp_proxy_user": squid["username"],
             "ansible_psrp_proxy_password": squid["password"]}
    refused = e2e.run(group, playbook=_probe(e2e), name="basic-http-refused")
    assert statuses(refused) == {"probe": "failed"}
    assert "ansible_psrp_proxy_allow_basic_over_http" in refused.task_results(HOST)[0]["msg"]
    for attempt in ("cold", "warm"):
        run = e2e.run({**group, "ansible_psrp_proxy_allow_basic_over_http": True}, playbook=_probe(e2e),
                      name=f"basic-http-{attempt}")
        run.assert_ok()
        output = run.stdout + run.stderr
        assert "crosses the network readable" in output and squid["username"] in output, attempt
        assert squid["password"] not in output


def test_fetched_files_get_the_mode_builtin_gives_them(e2e: E2E, tmp_path) -> None:
    host_path(e2e, "C:\\temp\\sem-mode").mkdir(parents=True, exist_ok=True)
    host_path(e2e, "C:\\temp\\sem-mode\\f.txt").write_text("fetched\n")
    modes: dict[str, dict[str, int]] = {}
    old_umask = os.umask(0o027)  # the controller's umask: inherited by ansible-playbook and its workers
    try:
        for plugin in PLUGINS:
            new = tmp_path / plugin / "new.txt"
            kept = tmp_path / plugin / "kept.txt"
            new.parent.mkdir()
            kept.write_text("old\n")
            kept.chmod(0o604)
            playbook = write_playbook(e2e.workdir / f"fetch-{plugin}.yml", [
                {"name": "new file", "rel_transfer": {"dest": "C:\\temp\\sem-mode\\f.txt", "fetch_to": str(new)}},
                {"name": "existing file", "rel_transfer": {"dest": "C:\\temp\\sem-mode\\f.txt", "fetch_to": str(kept)}},
            ])
            run_with(e2e, plugin, playbook, name="fetch-mode").assert_ok()
            modes[plugin] = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (new, kept)}
            assert new.read_text() == kept.read_text() == "fetched\n"
    finally:
        os.umask(old_umask)
    assert modes["builtin_psrp"] == {"new.txt": 0o640, "kept.txt": 0o604}
    assert modes["pinned"] == modes["builtin_psrp"]
