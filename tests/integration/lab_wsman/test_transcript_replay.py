"""Replay every recorded real-Windows exchange against the lab's WS-Management service.

Reports how many transcripts match structurally (printed and written to
tests/output/wsman_transcript_replay.json) and fails if that drops below MATCH_FLOOR.
Each remaining mismatch and its reason is listed in docs/lab-wsman.md.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

from tests.integration.lab_wsman import _replay
from tests.lab._config import HostConfig
from tests.lab._counters import Counters
from tests.lab._engine import Engine
from tests.lab._faults import Faults
from tests.lab._wsman import WSManService

# Matches reached with the lab engine (docs/lab-wsman.md lists the rest); raise it as the lab grows.
MATCH_FLOOR = 30
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "output" / "wsman_transcript_replay.json"


def _engine_factory():
    """The lab's real engine: it runs the recorded PowerShell and cmd."""
    return "lab", lambda cfg, user: Engine(cfg.root, cfg.name, user)


@pytest.mark.timeout(600)
@pytest.mark.skipif(not _replay.TRANSCRIPTS.is_dir(), reason="shared/windows-transcripts not present")
def test_recorded_windows_exchanges_replay_with_the_same_structure(tmp_path):
    engine_name, factory = _engine_factory()
    results = []
    for path in sorted(_replay.TRANSCRIPTS.glob("*.yml")):
        messages = yaml.safe_load(path.read_text())["messages"]
        root = tmp_path / path.stem
        root.mkdir()
        # The recorded hosts had the session configurations their clients asked for (e.g. JEA ones).
        # The recording's user, where its paths name one (C:\Users\<user>\...): the lab's profile is that user's.
        found = re.search(r"C:\\Users\\([A-Za-z0-9_.-]+)\\", path.read_text())
        user = found.group(1) if found else "vagrant"
        config = HostConfig(
            name="WIN-LAB1",
            users={user: "vagrant"},
            root=root,
            extra_configurations=tuple(sorted(_replay.configurations(messages))) or ("Lab.Restricted",),
        )
        service = WSManService(config, Counters(), Faults(), engine_factory=factory)
        try:
            results.append(_replay.replay(path, lambda body, user=user: service.handle(user, body)))
        finally:
            service.close()
    matched = [r for r in results if r.match]
    summary = {
        "engine": engine_name,
        "transcripts": len(results),
        "matched": len(matched),
        "floor": MATCH_FLOOR,
        "results": [{"name": r.name, "match": r.match, "mismatches": r.mismatches} for r in results],
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(summary, indent=2))
    print(f"\nWS-Management transcript replay ({engine_name} engine): {len(matched)}/{len(results)} match")
    for r in results:
        if not r.match:
            print(f"  MISMATCH {r.name}: {r.mismatches[0][:200]}")
    assert len(results) > 0
    assert len(matched) >= MATCH_FLOOR, f"only {len(matched)} transcripts match, floor is {MATCH_FLOOR}"
