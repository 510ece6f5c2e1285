"""The running pipeline (worker and sink processes) for the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ebbtide.settings import Settings
from tests.e2e.test_pipeline import Pipeline


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """Worker and postgres sink as processes on this test's topics; stopped afterwards."""
    running = Pipeline(settings, tmp_path / "logs")
    yield running
    running.stop()
