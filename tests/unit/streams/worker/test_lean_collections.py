"""The worker's agent sets the collector's thresholds and freezes what startup built."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ebbtide.streams.worker.app import GC_THRESHOLDS, lean_collections

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_are_frozen_and_collections_are_rarer() -> None:
    gc.unfreeze()
    built_at_startup = [object() for _ in range(10)]
    lean_collections()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # rarer than Python's default
    assert gc.get_freeze_count() > len(built_at_startup)
