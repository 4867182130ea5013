"""Language modes as unmodified pypsrp meets them (docs/lab-engine.md, "Language modes").

ConstrainedLanguage is a host switch (what a WDAC or AppLocker lockdown imposes on every PowerShell): a
script keeps the whole language and every cmdlet, but may not call methods of, set properties of, create
or cast to .NET types that are not PowerShell's core types, nor Add-Type. A JEA endpoint
(RestrictedRemoteServer) is NoLanguage: no script at all, only its role's commands and providers.
"""

from __future__ import annotations

import pathlib
import typing as t

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from tests.integration.lab_wsman.conftest import InProcessTransport
from tests.lab._config import HostConfig, SessionConfiguration
from tests.lab._counters import Counters
from tests.lab._engine import Engine
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService

pytestmark = pytest.mark.timeout(60)

CLM_METHOD = "Cannot invoke method. Method invocation is supported only on core types in this language mode."


@pytest.fixture
def host(tmp_path: pathlib.Path) -> t.Iterator[tuple[HostConfig, t.Callable[..., RunspacePool]]]:
    config = HostConfig(name="WIN-LAB1", users={"alice": "pw-a"}, root=tmp_path,
                        extra_configurations=("Lab.JEA",),
                        session_configurations={"lab.jea": SessionConfiguration(
                            "RestrictedRemoteServer", visible_cmdlets=("Get-Item",), visible_providers=("WSMan",))})
    service = WSManService(config, Counters(), Faults(), engine_factory=lambda c, u: Engine(c.root, c.name, u))
    pools: list[RunspacePool] = []

    def open_pool(**kwargs: t.Any) -> RunspacePool:
        wsman = WSMan("127.0.0.1", username="alice", password="unused", ssl=False, auth="basic", encryption="never",
                      operation_timeout=5)
        wsman.transport = InProcessTransport(service, "alice", wsman.transport.endpoint)  # type: ignore[assignment]
        pool = RunspacePool(wsman, **kwargs)
        pool.open()
        pools.append(pool)
        return pool

    yield config, open_pool
    for pool in pools:
        pool.close()
    service.close()


def run(pool: RunspacePool, script: str) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_script(script)
    ps.invoke()
    return ps


def errors(ps: PowerShell) -> list[tuple[str, str]]:
    return [(str(e), e.fq_error) for e in ps.streams.error]


@pytest.mark.parametrize(("script", "message", "fq_error"), [
    ("$fs = [System.IO.File]::OpenRead('C:\\Windows\\x.txt')", CLM_METHOD,
     "MethodInvocationNotSupportedInConstrainedLanguage"),
    ("[Convert]::ToBase64String([byte[]](1, 2, 3))", CLM_METHOD, "MethodInvocationNotSupportedInConstrainedLanguage"),
    ("(Get-Item C:\\Windows).GetFiles()", CLM_METHOD, "MethodInvocationNotSupportedInConstrainedLanguage"),
    ("New-Object System.IO.MemoryStream", "Cannot create type. Only core types are supported in this language mode.",
     "CannotCreateTypeConstrainedLanguage,Microsoft.PowerShell.Commands.NewObjectCommand"),
    ("[System.IO.MemoryStream]::new()", "Cannot create type. Only core types are supported in this language mode.",
     "CannotCreateTypeConstrainedLanguage"),
    ("[System.IO.FileInfo]'C:\\Windows\\x.txt'",
     'Cannot convert value to type "System.IO.FileInfo". Only core types are supported in this language mode.',
     "ConversionSupportedOnlyToCoreTypes"),
    ("Add-Type -TypeDefinition 'public class Lab {}'",
     "Cannot add type. Definition of new types is not supported in this language mode.",
     "CannotDefineNewType,Microsoft.PowerShell.Commands.AddTypeCommand"),
])
def test_constrained_language_refuses_what_windows_refuses(host, script, message, fq_error) -> None:
    config, open_pool = host
    config.language_mode = "ConstrainedLanguage"
    (root := pathlib.Path(config.root) / "Windows").mkdir(parents=True, exist_ok=True)
    (root / "x.txt").write_text("x")
    ps = run(open_pool(), script)
    assert ps.had_errors and errors(ps) == [(message, fq_error)]


def test_constrained_language_still_runs_the_language_cmdlets_and_core_types(host) -> None:
    config, open_pool = host
    config.language_mode = "ConstrainedLanguage"
    ps = run(open_pool(), """
        Set-Content -Path C:\\Windows\\Temp\\clm.txt -Value 'written by a cmdlet'
        $text = Get-Content -Path C:\\Windows\\Temp\\clm.txt
        $o = [pscustomobject]@{ Name = 'x' }; $o.Name = 'core object set'
        $h = @{ a = 1 }
        "$($text.ToUpper()) | $($h.ContainsKey('a')) | $([int]'41' + 1) | $($o.Name) | $((Get-Item C:\\Windows).Name) | $((Get-Date).ToString() -ne '')"
        $ExecutionContext.SessionState.LanguageMode
    """)
    assert not ps.had_errors, errors(ps)
    assert ps.output == ["WRITTEN BY A CMDLET | True | 42 | core object set | Windows | True", "ConstrainedLanguage"]


def test_a_full_language_host_runs_the_same_dotnet_calls(host) -> None:
    _config, open_pool = host
    ps = run(open_pool(), "[Convert]::ToBase64String([byte[]](1, 2, 3)); $ExecutionContext.SessionState.LanguageMode")
    assert ps.output == ["AQID", "FullLanguage"]


def test_a_jea_endpoint_runs_its_roles_commands_and_refuses_scripts_and_hidden_providers(host) -> None:
    _config, open_pool = host
    pool = open_pool(configuration_name="Lab.JEA")
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Item").add_parameter("Path", "WSMan:\\localhost\\Service\\AllowUnencrypted")
    (leaf,) = ps.invoke()
    assert leaf.extended_properties["Value"] == "false" and not ps.had_errors
    refused = PowerShell(pool)
    refused.add_cmdlet("Get-Item").add_parameter("Path", "C:\\Windows")
    refused.add_statement().add_script("'a script'")
    assert refused.invoke() == []
    assert errors(refused) == [
        ("Cannot find a provider with the name 'FileSystem'.", "ProviderNotFound,Microsoft.PowerShell.Commands.GetItemCommand"),
        ("The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode.",
         "ScriptsNotAllowed"),
    ]
    hidden = PowerShell(pool)
    hidden.add_cmdlet("Get-ChildItem")
    hidden.invoke()
    assert errors(hidden)[0][1] == "CommandNotFoundException"
