"""Fixtures of the task-semantics suite (T2, T3, T5): the end-to-end lab runner, reused as is."""

from __future__ import annotations

from tests.integration.e2e.conftest import e2e  # noqa: F401  (the fixture)
