"""The ecosystem's own checks on the collection: ansible-lint, antsibull-changelog and ansible-test sanity."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest
import yaml

from tests.integration._ansible import ROOT

from .conftest import clean_env, run, tool


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_examples_pass_ansible_lint_production_profile(tmp_path: pathlib.Path) -> None:
    # a copy: ansible-lint writes a .ansible/ cache into the project it checks
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / ".ansible-lint", tmp_path / ".ansible-lint")
    assert yaml.safe_load((ROOT / ".ansible-lint").read_text(encoding="utf-8"))["profile"] == "production"
    proc = run([tool("ansible-lint"), "--offline", "--nocolor"], cwd=tmp_path, env=clean_env(), timeout=280)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
    examples = list((ROOT / "examples").glob("*.yml"))
    processed = re.search(r"in (\d+) files processed", proc.stdout + proc.stderr)
    assert processed and int(processed.group(1)) >= len(examples), proc.stderr[-2000:]  # every example was read


def _collection_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """What antsibull-changelog needs: the collection at ansible_collections/pinned/winrm."""
    dest = tmp_path / "ansible_collections" / "pinned" / "winrm"
    dest.mkdir(parents=True)
    for name in ("galaxy.yml", "CHANGELOG.md", "changelogs", "plugins", "meta"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def test_changelog_fragments_and_release_notes_pass_antsibull_changelog_lint() -> None:
    proc = run([tool("antsibull-changelog"), "lint"], cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    for fragment in (ROOT / "changelogs" / "fragments").glob("*"):
        assert fragment.suffix in (".yml", ".yaml"), f"{fragment.name}: ignored by antsibull-changelog"


def test_changelog_md_is_generated_from_changelog_yaml(tmp_path: pathlib.Path) -> None:
    copy = _collection_copy(tmp_path)
    (copy / "CHANGELOG.md").unlink()
    proc = run([tool("antsibull-changelog"), "generate"], cwd=copy, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (copy / "CHANGELOG.md").read_text(encoding="utf-8") == (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), \
        "CHANGELOG.md is stale: run `antsibull-changelog generate` (see changelogs/config.yaml)"


def test_every_fragment_is_released_and_env_proxies_are_a_breaking_change() -> None:
    changelog = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text(encoding="utf-8"))
    version = str(yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["version"])
    release = changelog["releases"][version]
    fragments = sorted(p.name for p in (ROOT / "changelogs" / "fragments").glob("*.yml"))
    released = {f for r in changelog["releases"].values() for f in r.get("fragments", [])}
    assert set(fragments) <= released, f"fragments not in any release yet: {sorted(set(fragments) - released)}"
    breaking = " ".join(release["changes"]["breaking_changes"])
    assert "ansible_psrp_proxy_from_env" in breaking
    assert any(p["name"] == "psrp" for p in release["plugins"]["connection"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ansible_test_sanity_passes() -> None:
    # first run builds ansible-test's per-test virtual environments (minutes); later runs reuse them
    proc = run(["bash", str(ROOT / "tests" / "sanity" / "run.sh")], cwd=ROOT, timeout=1150)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith("ERROR:")]
    assert proc.returncode == 0, "\n".join(errors) or out[-4000:]


def test_sanity_ignore_files_hold_at_most_one_entry_each_with_a_reason_and_a_real_file() -> None:
    for name in ("ignore-2.20.txt", "ignore-2.21.txt"):
        lines = (ROOT / "tests" / "sanity" / name).read_text(encoding="utf-8").splitlines()
        # ansible.windows lives with one; fix the code (guard an import, rename a variable) rather than add a line
        assert len(lines) <= 1, f"{name}: {len(lines)} entries"
        for number, line in enumerate(lines, 1):
            entry, _, reason = line.partition(" # ")
            assert len(reason.split()) >= 5, f"{name}:{number}: no reason given: {line!r}"
            path = entry.split()[0]
            assert (ROOT / path).exists(), f"{name}:{number}: {path} does not exist"
