"""A hostile proxy reads everything it relays: prove nothing readable crosses it.

Through the lab's inspecting proxy (mitmproxy recording every relayed byte, TLS passed through), for
every way R3 allows to cross a proxy (HTTPS in a CONNECT tunnel; HTTP forwarded with WinRM message
encryption; HTTP in a CONNECT tunnel), a run executes a script and puts/fetches a file carrying unique
markers. The recorded bytes must hold none of: the host password, the proxy password, the script,
the command output, the file content, in any encoding a wire would carry them (raw, UTF-16, base64
and base64 of base64 at every alignment). Modes R1/R3 refuse send nothing at all.

A second observer (mitmproxy as a raw TCP relay in front of Squid) shows what crosses the network
between the controller and an authenticating proxy: the proxy password must not appear for Digest
and NTLM; Basic to a plain-http proxy would show it, so the plugin refuses that set-up before sending.
"""

from __future__ import annotations

import base64
import secrets

import pytest

from tests.integration.e2e.conftest import E2E
from tests.integration.positive_marker import recorded_before_marker

from . import report
from ._helpers import action_env, host_password, host_path, leaks, raw, write_playbook

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
HOST = "win-lab1"


@report.row("Hostile proxy", "control: the leak detector finds a marker raw, in UTF-16, base64 and base64 of base64",
            "found at every alignment (so a clean capture means clean)", report.LEAK)
def test_leak_detector_finds_markers_in_every_encoding(check) -> None:
    row = check()
    marker = "MARK-" + secrets.token_hex(8)
    hits = 0
    for prefix in ("", "a", "ab", "abc"):
        payload = (prefix + marker).encode()
        blobs = [payload, (prefix + marker).encode("utf-16-le"), base64.b64encode(payload),
                 base64.b64encode(base64.b64encode(payload)), base64.b64encode(b"x" + base64.b64encode(b"yy" + payload))]
        hits += sum(1 for blob in blobs if leaks(b"<<" + blob + b">>", {"m": marker}))
    row.see(f"found in {hits}/20 encoded blobs")
    assert hits == 20


MODES = {
    "https-tunnel": {"ansible_psrp_protocol": "https", "ansible_psrp_auth": "ntlm"},
    "http-forward-encrypted": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm"},
    "http-tunnel-encrypted": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm", "ansible_psrp_proxy_tunnel": True},
    # CredSSP over http (accepted as ansible.builtin.psrp accepts it): CredSSP's own TLS seals each message (R3)
    "http-forward-credssp": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "credssp",
                             "ansible_psrp_credssp_auth_mechanism": "ntlm"},
}


@pytest.mark.parametrize("mode", list(MODES))
@report.row("Hostile proxy", "inspecting proxy, {mode}: recorded bytes vs host password, proxy password, script, "
            "output, file content", "none of them in any encoding; the run succeeds through the proxy", report.LEAK)
def test_inspecting_proxy_reads_nothing_in_every_allowed_mode(e2e: E2E, check, tmp_path, mode: str) -> None:
    row = check()
    tag = secrets.token_hex(6)
    marks = {
        "script": f"SCRIPT-{tag}-MARK",
        "output": f"OUTPUT-{tag}-MARK",
        "file content": f"FILE-{tag}-MARK",
        "host password": host_password(e2e),
    }
    mitm = e2e.proxy("mitm")
    group = {**MODES[mode], "ansible_psrp_proxy": mitm["url"]}
    if mode == "https-tunnel":  # proxy credentials are only allowed with a tunnel to an https endpoint (R1)
        marks["proxy password"] = f"Proxy-{tag}-Pw"
        group.update({"ansible_psrp_proxy_auth": "ntlm", "ansible_psrp_proxy_user": "mitm-user",
                      "ansible_psrp_proxy_password": marks["proxy password"]})
    src = tmp_path / "marked.txt"
    src.write_text((marks["file content"] + "\n") * 200)
    back = tmp_path / "back.txt"
    dest = f"C:\\temp\\rel-mitm\\{mode}.txt"
    host_path(e2e, "C:\\temp\\rel-mitm").mkdir(parents=True, exist_ok=True)
    half = len(marks["output"]) // 2
    playbook = write_playbook(e2e.workdir / f"{mode}.yml", [
        raw("script", f"$null = '{marks['script']}'; Write-Output ('{marks['output'][:half]}' + '{marks['output'][half:]}')"),
        {"name": "transfer", "rel_transfer": {"src": str(src), "dest": dest, "fetch_to": str(back)}},
    ])
    start = len(e2e.lab.proxy_recorded("mitm"))
    run = e2e.run(group, playbook=playbook, env=action_env(), name=mode)
    e2e.close_sessions()  # the tunnel's last bytes are recorded when it closes
    recorded = e2e.lab.proxy_recorded("mitm")[start:]
    found = leaks(recorded, marks)
    outputs = [r.get("stdout", "").strip() for r in run.task_results(HOST)]
    row.see(f"rc {run.rc}; {len(recorded)} bytes recorded; output came back {'intact' if marks['output'] in outputs else 'WRONG'}; "
            f"file round trip {'intact' if back.exists() and back.read_text() == src.read_text() else 'BROKEN'}; "
            f"found: {found or 'nothing'}")
    assert not row.leak_verdict(found), found
    run.assert_ok()
    assert len(recorded) > 1000, "the proxy relayed nothing: the run did not go through it"
    assert marks["output"] in outputs


REFUSED = {
    "R3: basic over http through the proxy": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "basic"},
    "R3: message_encryption never over http": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm",
                                              "ansible_psrp_message_encryption": "never"},
    "R1: proxy credentials with an http endpoint": {"ansible_psrp_protocol": "http", "ansible_psrp_auth": "ntlm",
                                                    "ansible_psrp_proxy_auth": "basic", "ansible_psrp_proxy_user": "u",
                                                    "ansible_psrp_proxy_password": "Refused-Pw-1"},
}


@pytest.mark.parametrize("name", list(REFUSED))
@report.row("Hostile proxy", "refused mode through the inspecting proxy: {name}",
            "task failed naming the rule; zero bytes reach the proxy (a marker sent after the run shows the "
            "proxy's record is up to date)", report.LEAK)
def test_refused_modes_send_nothing_to_the_proxy(e2e: E2E, check, name: str) -> None:
    row = check()
    mitm = e2e.proxy("mitm")
    one = write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output refused")])
    before = len(e2e.lab.proxy_recorded("mitm"))
    run = e2e.run({**REFUSED[name], "ansible_psrp_proxy": mitm["url"]}, playbook=one, name="refused")
    sent = recorded_before_marker(e2e.lab, "mitm", before)
    result = run.task_results(HOST)[0]
    row.see(f"{result['status']}; {len(sent)} bytes reached the proxy; "
            f"{str(result.get('msg', '')).split(': ', 2)[-1][:120]}")
    assert not row.leak_verdict(sent), sent[:200]
    assert result["status"] == "failed", result
    assert name[:2] in result.get("msg", ""), result["msg"]


# (lab proxy, its proxy auth scheme, where the observer sits, what it must see)
OBSERVED = [
    ("squid_digest", "digest", "an http:// proxy", "neither password visible"),
    ("squid_ntlm", "ntlm", "an http:// proxy", "neither password visible"),
    ("squid", "basic", "an http:// proxy",
     "refused before sending (Basic would show the proxy password): zero bytes observed"),
    ("squid_https", "basic", "an https:// proxy (inside TLS)", "neither password visible"),
]


@pytest.mark.parametrize("variant, scheme, where, expectation", OBSERVED, ids=[o[0] for o in OBSERVED])
@report.row("Hostile proxy", "observer on the wire between controller and Squid ({scheme} proxy auth to {where}): "
            "proxy and host passwords", "{expectation}", report.LEAK)
def test_network_observer_before_an_authenticating_proxy(e2e: E2E, check, tmp_path, variant: str, scheme: str,
                                                        where: str, expectation: str) -> None:
    from tests.lab._mitm import InspectingProxy

    row = check()
    proxy = e2e.proxy(variant)
    assert proxy["auth"] == scheme, f"the lab's {variant} authenticates with {proxy['auth']}, not {scheme}"
    tls = variant == "squid_https"
    basic = scheme == "basic" and not tls
    port = int((proxy["https_url"] if tls else proxy["url"]).rsplit(":", 1)[1])
    observer = InspectingProxy(tmp_path / "observer", mode=f"reverse:tcp://127.0.0.1:{port}")
    observer.start()
    try:
        group = {"ansible_psrp_auth": "ntlm", "ansible_psrp_proxy": observer.url, "ansible_psrp_proxy_auth": scheme,
                 "ansible_psrp_proxy_user": proxy["username"], "ansible_psrp_proxy_password": proxy["password"]}
        if tls:
            group.update({"ansible_psrp_proxy": observer.url.replace("http://", "https://"),
                          "ansible_psrp_proxy_ca_cert": e2e.desc["ca_cert"]})
        run = e2e.run(group, playbook=write_playbook(e2e.workdir / "one.yml", [raw("x", "Write-Output observed")]),
                      name=variant)
        e2e.close_sessions()
        recorded = observer.recorded_bytes()
    finally:
        observer.stop()
    found = leaks(recorded, {"proxy password": proxy["password"], "host password": host_password(e2e)})
    if basic:
        # Basic to a plain-http proxy would put the password on the wire: the plugin refuses it up front
        result = run.task_results(HOST)[0]
        row.see(f"{result['status']}; {len(recorded)} bytes observed; {str(result.get('msg', ''))[-160:]}")
        assert not row.leak_verdict(recorded != b"" or found), (len(recorded), found)
        assert result["status"] == "failed" and "proxy_auth=basic" in result["msg"], result
        return
    row.see(f"rc {run.rc}; {len(recorded)} bytes observed; "
            f"{'CONNECT with Proxy-Authorization seen' if b'Proxy-Authorization' in recorded else 'no readable Proxy-Authorization'}; "
            f"found: {found or 'nothing'}")
    assert not row.leak_verdict(found), found
    run.assert_ok()
    assert (b"Proxy-Authorization" in recorded) != tls  # inside TLS the observer cannot even see the header
