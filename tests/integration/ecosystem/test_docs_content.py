"""The user guide stays true to the code: every error message is in the troubleshooting table, every
inventory variable in the migration guide exists, and docs link to files that exist."""

from __future__ import annotations

import ast
import pathlib
import re

import yaml

from tests.integration._ansible import ROOT

DOCS = ROOT / "docs"
# the errors the engine raises on purpose, and Ansible's, as the plugin raises them
ERRORS = {"ConfigError", "TransportError", "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "ProxyAuthError",
          "AffinityLostError", "HostError", "HostAuthError", "PinnedError", "SessionOpenError", "LocalFileError",
          "PoolBusyError", "AnsibleError", "AnsibleConnectionFailure",
          "AnsibleAuthenticationFailure", "AnsibleFileNotFound"}
MIN_SIGNATURE = 12  # shorter constant text ("unreachable", "{e}") identifies nothing


def _chunks(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _chunks(node.left) + _chunks(node.right)
    return []


def error_signatures() -> list[tuple[str, str]]:
    """(where, longest literal part of the message) for every error raised in plugins/."""
    found = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in ERRORS:
                continue
            chunks = [c.strip(" .;:,'\"") for c in _chunks(node.exc.args[0])]
            longest = max(chunks, key=len, default="")
            if len(longest) >= MIN_SIGNATURE:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", longest))
    return found


def test_the_signature_finder_sees_the_rule_refusals() -> None:
    texts = " ".join(sig for _, sig in error_signatures())
    assert "R1: " in texts or "needs authentication, which is only allowed" in texts
    assert len(error_signatures()) > 50


def test_troubleshooting_lists_every_error_message_the_plugin_can_give() -> None:
    table = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    missing = [f"{where}: {sig!r}" for where, sig in error_signatures() if sig not in table]
    assert not missing, "error messages missing from docs/troubleshooting.md:\n" + "\n".join(missing)


def _plugin_variables() -> set[str]:
    from ansible.plugins.loader import connection_loader

    plugin = connection_loader.get("pinned.winrm.psrp", class_only=True)
    assert plugin is not None
    from ansible.utils.plugin_docs import get_docstring

    doc = get_docstring(str(ROOT / "plugins" / "connection" / "psrp.py"), fragment_loader=__import__(
        "ansible.plugins.loader", fromlist=["fragment_loader"]).fragment_loader)[0]
    return {v["name"] for o in doc["options"].values() for v in o.get("vars", [])}


def test_migration_guide_maps_onto_variables_the_plugin_has() -> None:
    text = (DOCS / "migration.md").read_text(encoding="utf-8")
    ours = _plugin_variables()
    # right-hand column of the mapping tables: what users should write for pinned.winrm.psrp
    targets = set(re.findall(r"\|\s*`[^`]+`\s*\|\s*`(ansible_[a-z0-9_]+)`", text))
    assert targets, "no mapping rows found"
    assert targets <= ours | {"ansible_connection"}, sorted(targets - ours)
    # every ansible.builtin.psrp variable we keep is listed as kept
    builtin = set(re.findall(r"`(ansible_psrp_[a-z0-9_]+)`", text))
    assert {"ansible_psrp_proxy", "ansible_psrp_auth", "ansible_psrp_cert_validation"} <= builtin


def test_docs_links_point_at_files_that_exist() -> None:
    broken = []
    for path in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.name} -> {target}")
    assert not broken, broken


def test_docs_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    assert not {p for p in pages if f"({p})" not in index}, sorted(p for p in pages if f"({p})" not in index)


def test_every_fenced_yaml_block_in_docs_parses() -> None:
    bad = []
    for path in sorted(DOCS.glob("*.md")):
        for match in re.finditer(r"^```yaml\n(.*?)^```", path.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
            try:
                yaml.safe_load(match.group(1))
            except yaml.YAMLError as e:
                bad.append(f"{path.name}: {e}")
    assert not bad, bad
