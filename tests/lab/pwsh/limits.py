"""The engine's bounds: how much a script may ask of the lab host before it gets a clear error instead.

Read them as `limits.NAME` where they are checked, so a test can lower one with
`monkeypatch.setattr(limits, "NAME", ...)`.
"""

from __future__ import annotations

MAX_SCRIPT_CHARS = 4_000_000        # source text the parser accepts
MAX_NESTING = 200                   # nested blocks and expressions the parser follows
MAX_LOOP_ITERATIONS = 5_000_000     # iterations of one loop (and elements of one range)
MAX_CALL_DEPTH = 100                # nested script, function and scriptblock calls
MAX_STRING_CHARS = 64 * 1024 * 1024  # one string, byte array, JSON document or stdin line
MAX_SLEEP_SECONDS = 600.0           # one Start-Sleep or [Threading.Thread]::Sleep
