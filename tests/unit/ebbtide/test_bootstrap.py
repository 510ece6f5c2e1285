"""The composition root: the store map and the policy from the settings, a sink by kind from the
registry, and the worker's refusals to start, without a broker."""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

import pytest

from ebbtide import bootstrap
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.sinks.base.errors import SinkConfigError
from ebbtide.sinks.base.kind import SinkGroup, SinkKind, one_process, one_store
from ebbtide.streams.policy.rules import DEFAULT_POLICY, load_policy, rules_policy
from ebbtide.streams.policy.stores import DEFAULT_STORES, StoreMapError, load_store_map


def test_the_store_map_is_the_shipped_one_unless_a_file_is_set(tmp_path: Path) -> None:
    shipped = bootstrap.store_map(Settings())
    assert shipped == load_store_map(DEFAULT_STORES) and "registry_norid" in shipped.ids
    copy = tmp_path / "stores.toml"
    shutil.copy(DEFAULT_STORES, copy)
    named = Settings.from_env({"EBBTIDE_STORE_MAP": str(copy)})
    assert "registry_norid" in bootstrap.store_map(named).ids


def test_the_policy_is_the_rules_with_the_settings_store_map() -> None:
    settings = Settings()
    expected = rules_policy().with_stores(load_store_map(DEFAULT_STORES))
    assert bootstrap.policy(settings).label == expected.label
    from_file = bootstrap.policy(settings, DEFAULT_POLICY)
    assert from_file.label == load_policy(DEFAULT_POLICY).with_stores(load_store_map(DEFAULT_STORES)).label
    assert from_file.stores == bootstrap.store_map(settings)


def _kind(name: str, problem: str | None, made: list[SinkGroup]) -> SinkKind:
    def build(settings: Settings, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
        if problem is not None:
            raise SinkConfigError(problem)
        made.append(SinkGroup([], stop, label="store nothing"))
        return made[-1]

    return SinkKind(
        name=name,
        doc="a kind for this test",
        build=build,
        covers=one_store(name, "nothing", "client"),
        processes=one_process(f"{name} sink", name),
        code="tests/unit/ebbtide/test_bootstrap.py",
    )


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ports: list[int] = []

    def serve(host: str, port: int, setting: str, *more: object) -> int:
        ports.append(port)
        return port

    monkeypatch.setattr("ebbtide.runtime.endpoints.serve", serve)
    return ports


def test_a_sink_is_built_by_its_kind_and_serves_its_metrics(served: list[int]) -> None:
    made: list[SinkGroup] = []
    registry.register(_kind("unit_bootstrap_ok", None, made))
    try:
        stop, settings = threading.Event(), Settings(sink_metrics_port=9999)
        process = bootstrap.sink(settings, "unit_bootstrap_ok", argparse.Namespace(), stop)
    finally:
        registry.unregister("unit_bootstrap_ok")
    assert made == [process] and process.stop is stop
    assert served == [9999]  # the kind's metrics port: EBBTIDE_SINK_METRICS_PORT by default


def test_a_sink_that_cannot_use_its_config_does_not_start(served: list[int]) -> None:
    registry.register(_kind("unit_bootstrap_bad", "vendors.toml: store x: no url", []))
    try:
        with pytest.raises(bootstrap.CannotStart, match=r"^vendors.toml: store x: no url$"):
            bootstrap.sink(Settings(), "unit_bootstrap_bad", argparse.Namespace(), threading.Event())
    finally:
        registry.unregister("unit_bootstrap_bad")
    assert served == []  # nothing served for a process that never runs
    with pytest.raises(registry.UnknownSinkKind):
        bootstrap.sink(Settings(), "no_such_kind", argparse.Namespace(), threading.Event())


def test_the_worker_does_not_start_on_topics_with_another_partition_count(
    served: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "partition_mismatch", lambda settings: "topic t has 6 partitions")
    with pytest.raises(bootstrap.CannotStart, match="topic t has 6 partitions"):
        bootstrap.worker(Settings())
    assert served == []


def test_the_worker_does_not_start_without_its_hold_keys(
    served: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bootstrap, "partition_mismatch", lambda settings: None)
    settings = Settings(state_dir=tmp_path, hold_keys=str(tmp_path / "missing.pub"))
    with pytest.raises(bootstrap.CannotStart, match="EBBTIDE_HOLD_KEYS: no public key at"):
        bootstrap.worker(settings)
    assert served == []


def test_a_store_map_naming_a_kind_with_no_sink_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "stores.toml"
    odd.write_text(DEFAULT_STORES.read_text().replace('kind = "logstore"', 'kind = "logstor"', 1))
    with pytest.raises(StoreMapError, match=r"no sink of kind logstor \(known: "):
        bootstrap.store_map(Settings(store_map=odd))
    assert load_store_map(odd)  # the pure layer takes any name: the registry is the shell's
