"""Unmodified ansible.windows modules, wrapped by ansible-core's own payload builder, run in the lab engine.

No connection and no ansible-playbook: each test builds the payload Ansible sends for a module task
(module_manifest, the code ansible's executor calls) and feeds it to bootstrap_wrapper.ps1 on an Engine with
a Machine attached, as the WinRM host does. What the modules do end to end, through every plugin, is in
tests/integration/modules; these pin down the engine's side of it (docs/lab-engine.md, "Modules").
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import re
import threading
import typing as t
import warnings

import pytest
from ansible.executor.powershell import module_manifest
from ansible.plugins.loader import become_loader, init_plugin_loader

from tests.lab._engine import Engine
from tests.lab._machine import Machine
from tests.lab.pwsh.csharp.registry import EMULATIONS, source_hash
from tests.unit.lab.conftest import RecordingStreams

SITE = pathlib.Path(module_manifest.__file__).resolve().parents[3]
MODULES = SITE / "ansible_collections" / "ansible" / "windows" / "plugins" / "modules"
ASYNC_DIR = "%USERPROFILE%\\.ansible_async"

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # another test module may have configured the collection finder already
    init_plugin_loader()


def payload(module: str, args: dict[str, t.Any], *, check_mode: bool = False, environment: dict[str, str] | None = None,
            async_timeout: int = 0, become: t.Any = None) -> bytes:
    """The bytes ansible-core sends to bootstrap_wrapper.ps1's stdin for this module task."""
    path = MODULES / f"{module}.ps1"
    module_args = {"_ansible_check_mode": check_mode, "_ansible_no_log": False, "_ansible_debug": False,
                   "_ansible_diff": False, "_ansible_verbosity": 0, "_ansible_version": "2.21.0",
                   "_ansible_module_name": module, "_ansible_keep_remote_files": False, "_ansible_remote_tmp": "%TEMP%",
                   "_ansible_tmpdir": None, "_ansible_ignore_unknown_opts": False, "_ansible_target_log_info": None,
                   "_ansible_tracebacks_for": [], **args}
    return module_manifest._create_powershell_wrapper(
        name=f"ansible_collections.ansible.windows.plugins.modules.{module}", module_data=path.read_bytes(),
        module_path=str(path), module_args=module_args, environment=environment or {}, async_timeout=async_timeout,
        become_plugin=become, substyle="powershell", task_vars={}, profile="legacy")


@pytest.fixture
def machine() -> t.Iterator[Machine]:
    m = Machine("WIN-LAB1", {"ansible": "Passw0rd!", "labuser": "L4bUser!"}, admins=("ansible",), reboot_down_s=0)
    yield m
    m.close()


@pytest.fixture
def host(root: pathlib.Path, machine: Machine) -> Engine:
    root.mkdir()
    engine = Engine(root, "WIN-LAB1", "ansible")
    engine.attach_machine(machine)
    return engine


def run(engine: Engine, module: str, args: dict[str, t.Any] | None = None, **options: t.Any) -> dict[str, t.Any]:
    """Runs the module task as the WinRM host runs what Ansible sends; returns its JSON result."""
    if options.get("async_timeout"):
        options.setdefault("environment", {})["ANSIBLE_ASYNC_DIR"] = ASYNC_DIR
    streams = RecordingStreams()
    bootstrap = module_manifest._get_powershell_script("bootstrap_wrapper.ps1").decode()
    lines = payload(module, args or {}, **options).decode().split("\n")
    engine.run_powershell(bootstrap, [], iter(lines), streams)
    assert not streams.all_errors, [e.message for e in streams.all_errors]
    # the result is output, or host text where the wrapper writes the child process's stdout (become)
    text = "".join(str(o) for o in streams.out) + "".join(text for text, _, to_stderr in streams.host if not to_stderr)
    return t.cast(dict[str, t.Any], json.loads(text))


# ---- the emulated C# is the source Ansible ships ----------------------------------------------------------------

def _shipped_text(origin: str) -> str:
    m = re.fullmatch(r"(ansible-core|ansible\.windows) (\S+) (\S+)(?: \(inline .*\))?", origin)
    assert m, origin
    package, _version, path = m.groups()
    base = SITE / "ansible" if package == "ansible-core" else SITE / "ansible_collections" / "ansible" / "windows"
    return (base / path.removeprefix("lib/ansible/")).read_text(encoding="utf-8-sig")


@pytest.mark.parametrize("digest", sorted(EMULATIONS), ids=lambda d: EMULATIONS[d].origin.split("/")[-1])
def test_every_emulated_csharp_source_is_the_text_the_installed_ansible_ships(digest: str) -> None:
    emulation = EMULATIONS[digest]
    text = _shipped_text(emulation.origin)
    # a whole .cs file, or a C# here-string inside a module or module util
    candidates = [text, *re.findall(r"@['\"]\r?\n(.*?)\r?\n['\"]@", text, re.S)]
    versions = {"ansible-core": importlib.metadata.version("ansible-core"),
                "ansible.windows": importlib.metadata.version("ansible")}
    assert digest in {source_hash(c) for c in candidates}, (
        f"{emulation.origin} changed (installed: {versions}); update the emulation and its SHA-256")


def test_a_csharp_source_the_lab_does_not_emulate_fails_naming_its_namespace_and_hash(ps) -> None:
    source = "namespace Contoso.Tools { public static class Probe { public static int Answer() { return 42; } } }"
    streams = ps(f"Add-Type -TypeDefinition @'\n{source}\n'@")
    [error] = streams.all_errors
    assert "namespace 'Contoso.Tools'" in error.message and source_hash(source) in error.message


# ---- modules --------------------------------------------------------------------------------------------------

def test_win_ping_answers_pong_and_echoes_data(host: Engine) -> None:
    assert run(host, "win_ping") == {"changed": False, "ping": "pong"}
    assert run(host, "win_ping", {"data": "hello"})["ping"] == "hello"


def test_win_ping_data_crash_fails_the_task_with_the_modules_exception(host: Engine) -> None:
    result = run(host, "win_ping", {"data": "crash"})
    assert result["failed"] is True and "boom" in result["msg"]


def test_an_option_the_module_does_not_declare_fails_argument_validation(host: Engine) -> None:
    result = run(host, "win_ping", {"colour": "blue"})
    assert result["failed"] is True
    assert result["msg"] == "Unsupported parameters for (win_ping) module: colour. Supported parameters include: data"


def test_win_command_reports_the_exit_code_of_the_process_it_ran(host: Engine) -> None:
    ok = run(host, "win_command", {"cmd": "cmd.exe /c echo hi"})
    assert (ok["rc"], ok["stdout"], ok.get("failed", False)) == (0, "hi\r\n", False)
    failed = run(host, "win_command", {"cmd": "cmd.exe /c exit 3"})
    assert failed["rc"] == 3 and failed["failed"] is True


def test_check_mode_reports_the_change_and_makes_none(host: Engine, root: pathlib.Path) -> None:
    result = run(host, "win_file", {"path": "C:\\Checked", "state": "directory"}, check_mode=True)
    assert result["changed"] is True and not (root / "Checked").exists()
    assert run(host, "win_file", {"path": "C:\\Checked", "state": "directory"})["changed"] is True
    assert (root / "Checked").is_dir()


def test_check_mode_reaches_shouldprocess_in_the_modules_own_functions(host: Engine, machine: Machine) -> None:
    args = {"name": "LAB_PLANNED", "value": "1", "level": "machine"}
    assert run(host, "win_environment", args, check_mode=True)["changed"] is True
    assert "LAB_PLANNED" not in machine.environment("machine", "ansible")
    assert run(host, "win_environment", args)["changed"] is True
    assert machine.environment("machine", "ansible")["LAB_PLANNED"] == "1"


def test_environment_reaches_the_module_process(host: Engine) -> None:
    result = run(host, "win_shell", {"cmd": "Write-Output $env:LAB_SETTING"}, environment={"LAB_SETTING": "on"})
    assert result["stdout"].strip() == "on"


def test_win_service_stops_and_starts_a_service_in_the_machines_table(host: Engine, machine: Machine) -> None:
    assert machine.services.get("Spooler").state == "running"
    stopped = run(host, "win_service", {"name": "Spooler", "state": "stopped"})
    assert stopped["changed"] is True and stopped["state"] == "stopped"
    assert machine.services.get("Spooler").state == "stopped"
    assert run(host, "win_service", {"name": "Spooler", "state": "stopped"})["changed"] is False
    assert run(host, "win_service", {"name": "Spooler", "state": "started"})["state"] == "running"


def test_setup_gathers_facts_of_the_machine_without_warnings(host: Engine) -> None:
    result = run(host, "setup")
    facts = result["ansible_facts"]
    assert facts["ansible_hostname"] == "WIN-LAB1" and facts["ansible_os_family"] == "Windows"
    assert not result.get("warnings"), result.get("warnings")


def test_become_runas_runs_the_module_as_the_other_user_and_refuses_a_wrong_password(host: Engine) -> None:
    def runas(password: str) -> dict[str, t.Any]:
        become = become_loader.get("runas")
        become.set_options(direct={"become_user": "labuser", "become_pass": password})
        return run(host, "win_command", {"cmd": "whoami.exe"}, become=become)

    assert runas("L4bUser!")["stdout"].strip().lower() == "win-lab1\\labuser"
    refused = runas("wrong")
    assert refused["failed"] is True and "The user name or password is incorrect" in refused["msg"]


def test_an_async_task_returns_at_once_and_async_status_reads_its_result(host: Engine) -> None:
    started = run(host, "win_shell", {"cmd": "Write-Output async-done"}, async_timeout=60)
    assert started["started"] == 1 and started["finished"] == 0
    for worker in [th for th in threading.enumerate() if th.name == "lab-async-process"]:
        worker.join(60)  # the break-away process of the job: its end, not a guess at how long it takes
    status = run(host, "async_status", {"jid": started["ansible_job_id"], "mode": "status", "_async_dir": ASYNC_DIR})
    assert status["finished"] == 1 and status["stdout"].strip() == "async-done"
