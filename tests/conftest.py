"""Markers follow the folder: tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime.settings import Settings

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).relative_to(HERE).parts[0]
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True)
def remember_sealing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each data key a publisher of this process gets from the key store is remembered
    (tests.support.SEALED_WITH), so a test reads what it published as it wrote it."""
    from ebbtide.sinks.keys.store import KeyStore
    from tests.support import SEALED_WITH

    current = KeyStore.current

    def remembered(self: KeyStore, subject_id: str) -> Any:
        key = current(self, subject_id)
        SEALED_WITH[(subject_id, key.key_id)] = key
        return key

    monkeypatch.setattr(KeyStore, "current", remembered)


@pytest.fixture(scope="session")
def stack() -> tuple[str, str]:
    """(Kafka bootstrap, admin test DSN) of the running local stack."""
    from tests.support import servers

    return servers()


@pytest.fixture
def database(stack: tuple[str, str]) -> Iterator[str]:
    """DSN of a fresh PostgreSQL database for this test."""
    from tests.support import scratch_database

    with scratch_database(stack[1]) as dsn:
        yield dsn


@pytest.fixture
def settings(stack: tuple[str, str], database: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings with unique topics, app id and metrics ports for this test; its topics are
    deleted afterwards."""
    from tests.support import drop_topics, make_topics, unique_settings

    made = unique_settings(stack[0], tmp_path, database)
    make_topics(made)
    yield made
    drop_topics(made)
