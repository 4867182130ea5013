"""Fixtures of the reliability suite: the end-to-end lab runner.

Report rows are declared with ``@report.row(...)`` and handed to the test by the ``check`` fixture; both, and
the writing of the report, live in report_plugin.py (loaded for every run by tests/conftest.py).
"""

from __future__ import annotations

from tests.integration.e2e.conftest import e2e  # noqa: F401  (the fixture, reused as is)
