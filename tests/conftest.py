"""Markers follow the folder: tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e.

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) the tests that share a costly
fixture of a wider scope than one test run on one worker: each is marked ``xdist_group`` with that
fixture's name (its module's path for a module's fixture). Without it each worker would make its
own, e.g. run the demo of ``demo_log`` twice. Every other test goes to whichever worker is free:
each makes its own topics, app id, database and ports (``settings``), so none disturbs another.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime.settings import Settings

HERE = Path(__file__).parent


# Shared fixtures as cheap to make again on each worker as to share (the stack's settings).
CHEAP_TO_REPEAT = frozenset({"stack"})


def shared_group(item: pytest.Item) -> str | None:
    """The xdist group of the tests sharing ``item``'s costliest shared fixture: the name of a
    session fixture of this suite it uses (directly or through another fixture), else its
    module's path if it uses a module fixture; None if it shares none."""
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is None:
        return None
    session: set[str] = set()
    module = False
    for name, definitions in fixtures.name2fixturedefs.items():
        fixture = definitions[-1]
        if name in CHEAP_TO_REPEAT or not fixture.func.__module__.startswith("tests."):
            continue
        if fixture.scope == "session":
            session.add(name)
        elif fixture.scope in ("package", "module", "class"):
            module = True
    if session:
        return "+".join(sorted(session))
    return item.nodeid.split("::")[0] if module else None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).relative_to(HERE).parts[0]
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))
        group = shared_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


class GroupedNodeIds:
    """pytest-xdist 3.8 (``--dist loadgroup``, on a worker) appends ``@group`` to a test's legacy
    ``_nodeid``, which pytest 9.2 no longer reads (its id is ``_id``): without this plugin the
    groups are silently ignored (pytest-xdist issue 1386). It carries the grouped id over, after
    xdist's own hook; nothing to do where xdist already set it, or without xdist."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            legacy = item.__dict__.get("_nodeid")
            if isinstance(legacy, str) and legacy != item.nodeid:
                item._id = type(item._id).parse(legacy)  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(GroupedNodeIds(), "ebbtide-grouped-node-ids")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...: each its own ports
    if worker.startswith("gw") and worker[2:].isdigit():
        from ebbtide.tools import processes

        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        low, high = processes._PORTS
        span = (high - low) // max(count, 1)
        index = int(worker[2:])
        processes._PORTS = (low + index * span, low + (index + 1) * span)


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
