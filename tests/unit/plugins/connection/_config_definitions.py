"""The connection plugin's configuration definitions as Ansible parses them, and the copy the collection carries.

Ansible parses a plugin's DOCUMENTATION (YAML, with its doc fragments) into configuration definitions in every
process that loads the plugin, and every task's worker is such a process. plugin_utils/_option_definitions.py
carries that result, generated here from psrp.py's DOCUMENTATION: the plugin hands it to Ansible's config manager
when it is loaded, so the worker skips the parse (issue 14), and the spec reads defaults and choices from it.
test_psrp_worker_cost.py and test_psrp_documented_options.py check the copy against Ansible's parse.

    python -m tests.unit.plugins.connection._config_definitions          # exit 1 if the copy is stale
    python -m tests.unit.plugins.connection._config_definitions --write  # regenerate it
"""

from __future__ import annotations

import ast
import json
import pathlib
import re
import sys
import typing as t

ROOT = pathlib.Path(__file__).resolve().parents[4]
PLUGIN = ROOT / "plugins" / "plugin_utils" / "_option_definitions.py"  # where the copy lives
BEGIN = "CONFIG_DEFINITIONS = ("
END = ")  # end of CONFIG_DEFINITIONS"
LINE = 120  # each piece's literal stays well inside ansible-test's pep8 line length (160)


def parsed_by_ansible() -> dict[str, t.Any]:
    """The options Ansible's plugin loader registers for the plugin: its own YAML loader and fragment merge."""
    import yaml
    from ansible.parsing.yaml.loader import AnsibleLoader  # what ansible.plugins.loader parses with
    from ansible.plugins.loader import fragment_loader
    from ansible.utils.plugin_docs import add_fragments

    from ansible_collections.pinned.winrm.plugins.connection import psrp

    doc = yaml.load(psrp.DOCUMENTATION, Loader=AnsibleLoader)
    add_fragments(doc, psrp.__file__, fragment_loader=fragment_loader, is_module=False, section="DOCUMENTATION")
    return json.loads(json.dumps(doc["options"]))  # plain values: the tags Ansible adds compare equal anyway


def render(options: dict[str, t.Any]) -> str:
    """The JSON text the collection carries: one option per line, in DOCUMENTATION's order."""
    lines = [f"{json.dumps(name)}: {json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
             for name, value in options.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def as_source(text: str) -> str:
    """The JSON text as adjacent string literals, one per line, each short (Python joins them when it compiles)."""
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        while line:
            size = len(line)
            while len(repr(line[:size])) > LINE:
                size = size * 3 // 4
            pieces.append("    " + repr(line[:size]))
            line = line[size:]
    return "\n".join(pieces)


def carried(text: str | None = None) -> str:
    """The JSON text the collection carries between the markers."""
    text = PLUGIN.read_text(encoding="utf-8") if text is None else text
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.DOTALL)
    if match is None:
        raise SystemExit(f"{PLUGIN}: no {BEGIN} ... {END} block")
    return ast.literal_eval("(\n" + match.group(1) + "\n)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fresh = render(parsed_by_ansible())
    text = PLUGIN.read_text(encoding="utf-8")
    if carried(text) == fresh:
        return 0
    if "--write" in args:
        start = text.index(BEGIN) + len(BEGIN) + 1
        end = text.index("\n" + END)
        PLUGIN.write_text(text[:start] + as_source(fresh) + text[end:], encoding="utf-8")
        print(f"rewrote the configuration definitions in {PLUGIN}")
        return 0
    print(f"{PLUGIN}: the configuration definitions differ from DOCUMENTATION; run "
          "python -m tests.unit.plugins.connection._config_definitions --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(ROOT / "build" / "collections")])
    sys.exit(main())
