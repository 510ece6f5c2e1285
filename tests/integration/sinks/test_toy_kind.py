"""A new kind of sink is its package plus one registry line: the toy kind (``toy/``, records in
memory) registered here runs the same contract as the shipped kinds, and the CLI, the coverage
check and the demo's list of sink processes see it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ebbtide.cli import build_parser
from ebbtide.sinks import registry
from ebbtide.sinks.coverage import coverage_problems
from ebbtide.streams.policy.stores import Holding, Store, StoreMap
from tests.integration.sinks.contract import Running, SinkContract
from tests.integration.sinks.toy import kind as toy


@pytest.fixture(autouse=True)
def toy_kind() -> Iterator[None]:
    registry.register(toy.KIND)  # the one line a new kind needs
    try:
        yield
    finally:
        registry.unregister(toy.KIND.name)


class TestToyContract(SinkContract):
    kind = "toy"
    store = toy.STORE
    category = toy.CATEGORY

    def seed(self, key: str) -> None:
        toy.RECORDS.setdefault(self.category, set()).add(key)

    def done(self, key: str) -> bool:
        return key not in toy.RECORDS.get(self.category, set())

    def break_once(self, running: Running) -> None:
        running.executor.unavailable = 1


def _store(store_id: str, category: str) -> Store:
    return Store(store_id, "toy", "toy", 3_600_000, "test", (Holding(category, ("name",)),))


def test_the_registry_line_reaches_the_cli_the_coverage_check_and_the_demo() -> None:
    assert registry.names()[-1] == "toy" and registry.get("toy") is toy.KIND
    assert build_parser().parse_args(["sink", "toy"]).kind == "toy"
    stores = StoreMap("t", (_store(toy.STORE, toy.CATEGORY), _store("toy_two", "marketing")), "hash")
    assert coverage_problems(stores) == [
        "toy_two: the toy sink answers store toy_store, category client only"
    ]
    assert registry.sink_processes(stores.stores) == {"toy sink": ["toy"]}


def test_a_kind_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy.KIND)
    with pytest.raises(KeyError, match="no sink kind 'nowhere'"):
        registry.get("nowhere")
