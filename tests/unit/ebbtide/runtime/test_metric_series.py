"""Every labelled metric series exists from a process's start, at 0, so that an alert's increase()
sees the first occurrence (issue 13). Checked in a fresh interpreter: this one's metrics have been
counted by other tests."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from ebbtide.runtime import metrics
from ebbtide.schemas import InvalidMessage
from ebbtide.streams.policy import vocabulary
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.streams.policy.stores import load_store_map
from ebbtide.streams.worker.routing import engine_step, reason_label

ROOT = Path(__file__).resolve().parents[4]
PER_STORE = ("ebbtide_deletions_overdue", "ebbtide_deletions_awaiting_receipt", "ebbtide_sink_gave_up")

# What the worker and a sink process of each shipped store create when they start (bootstrap's
# own functions, as `ebbtide worker` and `ebbtide sink` call them), exported as Prometheus does.
STARTED = """
import json, threading
from types import SimpleNamespace
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from ebbtide import bootstrap
from ebbtide.runtime import metrics
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.base.kind import SinkGroup

settings = Settings()
bootstrap.worker_series(bootstrap.policy(settings))
stores = bootstrap.store_map(settings).stores
group = SinkGroup([SimpleNamespace(store=s.id) for s in stores], threading.Event())
bootstrap.sink_series(settings, group, vendor=True)
metrics.ingest_started()  # `ebbtide ingest serve`, on a registry of its own
from ebbtide.cdc.changes import Mapping  # `ebbtide cdc run` of the shipped PostgreSQL store maps
from ebbtide.runtime import metrics
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
cdc = Mapping([load_table_map(map_path(m)) for m in ("customer_db", "billing_db")])
metrics.cdc_started((s.store, s.action.category) for ss in cdc.by_table.values() for s in ss)
out = {}
for registry in (REGISTRY, metrics.INGEST_REGISTRY):
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out.setdefault(family.name, []).append([sample.name, sample.labels, sample.value])
print(json.dumps(out))
"""


@cache
def started() -> dict[str, list[tuple[str, dict[str, str], float]]]:
    done = subprocess.run(
        [sys.executable, "-c", STARTED], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return {name: [(n, labels, v) for n, labels, v in rows] for name, rows in json.loads(done.stdout).items()}


def labelled_families() -> dict[str, tuple[str, ...]]:
    """Every labelled metric of the default registry: its family name -> its label names."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            found[value._name.removesuffix("_total")] = tuple(value._labelnames)
    return found


def label_sets(series: list[tuple[str, dict[str, str], float]], *names: str) -> set[tuple[str, ...]]:
    return {tuple(labels[n] for n in names) for _, labels, _ in series}


def test_every_labelled_family_has_its_series_at_zero_from_the_start() -> None:
    exported = started()
    families = labelled_families()
    assert len(families) >= 15  # the test sees the module's metrics
    # By partition: a worker reports the partitions it holds, from their assignment on.
    by_partition = {name for name, labels in families.items() if labels == ("partition",)}
    assert by_partition == {
        "ebbtide_pending_deadlines",
        "ebbtide_clock_time_seconds",
        "ebbtide_ticks_deferred",
    }
    for name in families.keys() - by_partition:
        series = exported.get(name, [])
        assert series, f"{name} has no series at the start"
        nonzero = [(n, labels, v) for n, labels, v in series if v != 0]
        assert not nonzero, f"{name} does not start at 0: {nonzero}"
    for name in by_partition:
        assert not exported.get(name), f"{name} has series before any partition is assigned"


def test_the_series_cover_the_store_map_and_each_vocabulary() -> None:
    exported = started()
    stores = load_store_map().stores
    ids = {s.id for s in stores}
    assert len(ids) >= 4
    every_answer = {(s, o) for s in ids for o in vocabulary.OUTCOMES}
    assert label_sets(exported["ebbtide_receipts"], "store", "outcome") == every_answer
    assert label_sets(exported["ebbtide_sink_commands"], "store", "outcome") == every_answer
    held = {(s.id, h.category) for s in stores for h in s.holds}
    assert label_sets(exported["ebbtide_commands_sent"], "store", "category") == held
    assert label_sets(exported["ebbtide_rows_deleted"], "store", "category") == held
    for per_store in PER_STORE:
        assert label_sets(exported[per_store], "store") == {(s,) for s in ids}, per_store
    categories = {(c,) for rule in rules_policy().rules for c in rule.categories}
    for per_category in ("ebbtide_records_stamped", "ebbtide_records_waiting", "ebbtide_records_held"):
        assert label_sets(exported[per_category], "category") == categories, per_category
    assert label_sets(exported["ebbtide_duties_open"], "duty") == {("erasure",), ("export",), ("breach",)}
    assert label_sets(exported["ebbtide_duties_overdue"], "duty") == {("erasure",), ("export",), ("breach",)}
    assert label_sets(exported["ebbtide_dlq_messages"], "source", "reason") == {
        (source, reason)
        for source in ("events", "receipts", "clock", "commands")
        for reason in ("invalid", "security", "processing_failed", "gave_up")
    } | {("cdc", "invalid")}
    assert ("customer_db", "client", "deleted_outside") in label_sets(
        exported["ebbtide_cdc_changes"], "store", "category", "kind"
    )
    assert ("LegalHoldPlaced",) in label_sets(exported["ebbtide_events_consumed"], "type")
    kinds = label_sets(exported["ebbtide_decisions"], "kind")
    assert {("DUTY_OVERDUE",), ("DELETION_ORDERED",), ("DELETION_CONFIRMED",), ("HELD",)} <= kinds
    assert ("clock", "deferred_full") in label_sets(exported["ebbtide_security_events"], "source", "kind")


def test_a_dead_letter_is_labelled_by_the_kind_of_its_reason() -> None:
    def boom(*_: Any) -> Any:
        raise ZeroDivisionError

    try:
        engine_step(boom, "lifecycle_event")
    except InvalidMessage as exc:
        failed = exc.reason
    assert reason_label(failed) == "processing_failed"
    assert reason_label("security: deletion_receipt: not signed") == "security"
    assert reason_label("lifecycle_event: not Avro single-object encoded (bad marker bytes)") == "invalid"
    assert set(metrics.DLQ_REASONS) == {"invalid", "security", "processing_failed", "gave_up"}


def test_the_schema_registry_wait_is_exported_at_zero_from_the_start() -> None:
    assert started()["ebbtide_schema_registry_waiting_seconds"] == [
        ("ebbtide_schema_registry_waiting_seconds", {}, 0.0)
    ]
