"""A locked-down host (ConstrainedLanguage, as a WDAC or AppLocker policy imposes) as unmodified clients meet it.

Cmdlets and the language run; a call of a .NET method of a non-core type ([System.IO.File]::WriteAllText,
the transfer scripts' [System.IO.Path]::GetTempFileName and [Convert]::FromBase64String) fails with the error
Windows gives in ConstrainedLanguage.
"""

from __future__ import annotations

import pathlib
import typing as t

import pytest
from pypsrp.client import Client

from .test_peers import Peers

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.fixture
def locked_down(lab: t.Any, tmp_path: pathlib.Path) -> t.Iterator[Peers]:
    env = Peers(lab, tmp_path)
    lab.clear_faults(env.host["name"])
    lab.set_language_mode(env.host["name"], "ConstrainedLanguage")
    try:
        yield env
    finally:
        lab.set_language_mode(env.host["name"], "FullLanguage")
        env.close_pinned_sessions()


def test_builtin_psrp_runs_cmdlets_and_gets_windows_error_for_dotnet_calls(locked_down: Peers) -> None:
    run = locked_down.run("builtin_psrp", "direct", [
        {"name": "mode", "ansible.builtin.raw": "$ExecutionContext.SessionState.LanguageMode", "changed_when": False},
        {"name": "cmdlet", "ansible.builtin.raw": "Set-Content C:\\Users\\ansible\\clm.txt 'by a cmdlet'; "
                                                  "Get-Content C:\\Users\\ansible\\clm.txt", "changed_when": False},
        {"name": "dotnet", "ansible.builtin.raw": "[System.IO.File]::WriteAllText('C:\\Users\\ansible\\x.txt', 'y')",
         "register": "dotnet", "changed_when": False, "failed_when": "dotnet.rc == 0"},
    ], "clm-builtin-psrp")
    run.assert_ok()
    mode, cmdlet, dotnet = run.task_results(locked_down.host["name"].lower())
    assert mode["stdout_lines"] == ["ConstrainedLanguage"]
    assert cmdlet["stdout_lines"] == ["by a cmdlet"]
    assert "Method invocation is supported only on core types in this language mode" in dotnet["stderr"]
    assert not (pathlib.Path(locked_down.host["root"]) / "Users" / "ansible" / "x.txt").exists()


def test_pypsrp_copy_script_is_refused_by_constrained_language(locked_down: Peers) -> None:
    account = next(u for u in locked_down.host["users"] if u["username"] == "ansible")
    src = locked_down.workdir / "small.bin"
    src.write_bytes(b"locked down")
    with Client(locked_down.host["address"], port=locked_down.host["https_port"], username=account["username"],
                password=account["password"], ssl=True, auth="ntlm", cert_validation=locked_down.desc["ca_cert"],
                no_proxy=True) as client:
        with pytest.raises(Exception, match="Method invocation is supported only on core types"):
            client.copy(str(src), "C:\\Users\\ansible\\copied.bin")
