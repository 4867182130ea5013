"""What a task's worker loads (issue 14): Ansible forks a worker per task, and whatever the plugin loads there is
paid again by every task.

- The configuration definitions the collection carries (plugin_utils/_option_definitions.py) are Ansible's own
  parse of psrp.py's DOCUMENTATION (with fragments), and loading the plugin registers them, so Ansible skips its
  YAML parse in the worker; option resolution is unchanged because the definitions are equal, less `choices:`
  (the spec checks those with messages naming the inventory variable).
- With persistence on, a worker that opens its connection loads neither the spec module (the pin daemon
  validates the options) nor pypsrp or the engine's transport, and the modules it does load come from Python's
  bytecode cache once written (Ansible's collection loader would compile them in every worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.unit.plugins.connection import _config_definitions as defs

COLLECTIONS = str(defs.ROOT / "build" / "collections")


def _fresh_python(code: str, env: dict[str, str | None] | None = None) -> dict:
    """Run `code` in a fresh interpreter (a worker loads the plugin once) and return the JSON it prints last.

    `env` entries are set in its environment (None: removed).
    """
    prelude = textwrap.dedent(
        f"""
        import json, sys
        from ansible.plugins.loader import init_plugin_loader
        init_plugin_loader([{COLLECTIONS!r}])
        """
    )
    environ: dict[str, str | None] = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    environ.update(env or {})
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in environ.items() if v is not None}, cwd=str(defs.ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.compat
def test_the_carried_configuration_definitions_are_ansibles_own_parse_of_the_documentation():
    assert defs.carried() == defs.render(defs.parsed_by_ansible()), (
        "_option_definitions.CONFIG_DEFINITIONS is stale: python -m tests.unit.plugins.connection._config_definitions "
        "--write")


@pytest.mark.compat
def test_loading_the_plugin_registers_its_definitions_and_ansible_skips_the_yaml_parse():
    seen = _fresh_python(
        """
        import io, yaml
        from ansible import constants as C
        from ansible.playbook.play_context import PlayContext
        from ansible.plugins.loader import connection_loader
        parsed = []
        real_load = yaml.load
        def counting_load(stream, Loader):
            parsed.append("pinned.winrm" in str(stream) or "persist_idle_timeout" in str(stream))
            return real_load(stream, Loader=Loader)
        yaml.load = counting_load
        conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
        conn.set_options(var_options={"ansible_host": "w1", "ansible_psrp_persist_idle_timeout": 7})
        name = conn._load_name
        print(json.dumps({"ours_parsed": any(parsed), "name": name,
                          "module": type(conn).__module__,
                          "defs": C.config.get_configuration_definitions("connection", name),
                          "idle": conn.get_option("persist_idle_timeout"), "auth": conn.get_option("auth")}))
        """
    )
    assert seen["ours_parsed"] is False
    assert seen["name"] == seen["module"]  # the name Ansible asks for is the module's, where the plugin registers
    documented = defs.parsed_by_ansible()
    assert seen["defs"] == {name: {k: v for k, v in option.items() if k != "choices"}
                            for name, option in documented.items()}
    assert any("choices" in option for option in documented.values())  # ansible-doc shows them; Ansible checks none
    assert (seen["idle"], seen["auth"]) == (7, "negotiate")  # a variable and a DOCUMENTATION default


def _connected(persist_dir) -> str:
    """Code that loads the plugin as a task's worker does and opens a persistent connection (no daemon yet)."""
    return f"""
        import io
        from ansible.playbook.play_context import PlayContext
        from ansible.plugins.loader import connection_loader
        conn = connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
        conn.set_options(var_options={{"ansible_host": "w1", "ansible_user": "u", "ansible_password": "Pw-1",
                                       "ansible_psrp_persist_dir": {str(persist_dir)!r}}})
        conn._connect()
    """


@pytest.mark.compat
def test_a_persistent_connection_loads_neither_the_spec_module_nor_pypsrp_in_the_worker(tmp_path):
    seen = _fresh_python(
        _connected(tmp_path) + """
        loaded = sorted(m for m in sys.modules if m.startswith("ansible_collections.pinned") or
                        m.split(".")[0] in ("pypsrp", "spnego", "h11", "requests"))
        print(json.dumps({"loaded": loaded, "target": type(conn._spec).__name__}))
        """
    )
    assert seen["target"] == "SessionOptions"
    engine = "ansible_collections.pinned.winrm.plugins.plugin_utils."
    assert engine + "_spec" not in seen["loaded"]
    assert not [m for m in seen["loaded"] if m.split(".")[0] in ("pypsrp", "spnego", "h11", "requests")]
    # the session and what only it uses (isolation's scripts, chunked transfers) live in the daemon
    session_side = ("_session", "_isolation", "_transfers", "_transport", "_connection")
    assert not [m for m in seen["loaded"] if m.startswith(tuple(engine + n for n in session_side))]


@pytest.mark.compat
def test_the_worker_side_modules_come_from_pythons_bytecode_cache_once_written(tmp_path):
    # Ansible's collection loader compiles every collection module it imports; the plugin loads its worker-side
    # modules with Python's file loader instead, which writes bytecode once and reads it in every later worker.
    probe = """
        import importlib._bootstrap_external as external
        compiled = []
        real = external.SourceLoader.source_to_code
        def counting(self, data, path, *args, **kwargs):
            compiled.append(path)
            return real(self, data, path, *args, **kwargs)
        external.SourceLoader.source_to_code = counting
        import io
        from ansible.playbook.play_context import PlayContext
        from ansible.plugins.loader import connection_loader
        connection_loader.get("pinned.winrm.psrp", PlayContext(), io.StringIO())
        engine = "ansible_collections.pinned.winrm.plugins.plugin_utils."
        print(json.dumps({"compiled": [p for p in compiled if "/plugins/" in p],
                          "loaders": {n: type(sys.modules[engine + n].__loader__).__name__
                                      for n in ("_errors", "_pin_protocol", "_pin_paths", "_pin_client")}}))
    """
    # Python's default bytecode writing, into a private cache tree
    cache: dict[str, str | None] = {"PYTHONPYCACHEPREFIX": str(tmp_path / "pycache"), "PYTHONDONTWRITEBYTECODE": None}
    first = _fresh_python(probe, env=cache)
    second = _fresh_python(probe, env=cache)
    assert set(first["loaders"].values()) == {"SourceFileLoader"}
    assert {p.rsplit("/", 1)[1] for p in first["compiled"]} >= {"psrp.py", "_pin_client.py", "_pin_protocol.py"}
    assert second["compiled"] == []


@pytest.mark.compat
def test_no_worker_side_class_is_built_by_typings_or_dataclasses_code_generators(tmp_path):
    # NamedTuple and dataclass generate and evaluate source for each class, TypedDict and Protocol run typing's
    # metaclasses: the largest part of _runner's import in a fresh worker, paid by every task. Such classes belong
    # to the type checker (under TYPE_CHECKING) or to modules only the daemon loads.
    seen = _fresh_python(
        _connected(tmp_path) + """
        built = {}
        for name, module in list(sys.modules.items()):
            if not name.startswith("ansible_collections.pinned.") or module is None:
                continue
            for attr, value in vars(module).items():
                if not isinstance(value, type) or value.__module__ != name:
                    continue
                kinds = [kind for kind, marker in (("NamedTuple", "_fields"), ("TypedDict", "__total__"),
                                                   ("dataclass", "__dataclass_fields__"))
                         if marker in vars(value)]
                if getattr(value, "_is_protocol", False):
                    kinds.append("Protocol")
                if kinds:
                    built[name.rsplit(".", 1)[1] + "." + attr] = kinds
        print(json.dumps({"built": built, "modules": sorted(m.rsplit(".", 1)[1] for m in sys.modules
                                                            if m.startswith("ansible_collections.pinned."))}))
        """
    )
    assert "_runner" in seen["modules"] and "_pin_client" in seen["modules"]
    assert seen["built"] == {}
