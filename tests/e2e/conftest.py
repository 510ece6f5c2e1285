"""The running pipeline (worker and sink processes) for the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ebbtide.runtime.settings import Settings
from tests.e2e.demo_log import demo_log  # noqa: F401  (one demo run per session, here so it is one)
from tests.e2e.test_pipeline import Pipeline


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """Worker and postgres sinks as processes on this test's topics; stopped afterwards.
    The sinks check their tables when they start: list a fixture that loads the database
    before this one in a test's arguments (pytest sets them up in that order)."""
    running = Pipeline(settings, tmp_path / "logs")
    yield running
    running.stop()
