"""One ingestion service process for the tests of this folder, on their own topics and database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ebbtide.runtime.settings import Settings
from tests.ingest_service import IngestService
from tests.support import drop_topics, make_topics, scratch_database, unique_settings


@pytest.fixture(scope="package")
def ingest_settings(stack: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings with their own topics and a fresh key store database, for the package."""
    with scratch_database(stack[1]) as dsn:
        made = unique_settings(stack[0], tmp_path_factory.mktemp("ingest"), dsn)
        make_topics(made)
        yield made
        drop_topics(made, changelogs=False)


@pytest.fixture(scope="package")
def ingest(ingest_settings: Settings) -> Iterator[IngestService]:
    """The real `ebbtide ingest serve`, ready (Kafka answers), with a batch limit of 20 events
    and a body limit of 200 kB."""
    service = IngestService.start(
        ingest_settings,
        ingest_settings.state_dir / "logs",
        ingest_max_events=20,
        ingest_max_body_bytes=200_000,
    ).wait_ready()
    yield service
    service.stop()
