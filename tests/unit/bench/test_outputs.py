"""What a worker wrote, by kind: which topics count, and bytes per event."""

from __future__ import annotations

import pytest

from bench.outputs import Record, Written, kind_of, written_topics
from ebbtide.runtime.settings import Settings

pytestmark = pytest.mark.unit


def test_the_runs_outputs_and_changelogs_are_read_and_its_inputs_and_others_are_not() -> None:
    settings = Settings(topic_prefix="bench.x", app_id="bench-x")
    names = [
        "bench.x.events",
        "bench.x.clock",
        "bench.x.receipts",
        "bench.x.decisions",
        "bench.x.commands.customer_db",
        "bench.x.dlq",
        "bench-x-state-changelog",
        "bench-x-__assignor-__leader",
        "bench.y.decisions",
    ]
    assert written_topics(settings, names) == {
        "bench.x.decisions": ".decisions",
        "bench.x.commands.customer_db": ".commands.customer_db",
        "bench.x.dlq": ".dlq",
        "bench-x-state-changelog": "-state-changelog",
    }
    kinds = [kind_of(s) for s in (".decisions", ".commands.customer_db", ".dlq", "-state-changelog")]
    assert kinds == ["decisions", "commands", "other", "changelog"]


def test_bytes_per_event_count_keys_and_values_by_kind() -> None:
    written = Written(events=4)
    written.add(Record("decisions", ".decisions", 0, 1, b"k1", b"v" * 98))
    written.add(Record("decisions", ".decisions", 1, 2, b"k2", b"v" * 198))
    written.add(Record("changelog", "-state-changelog", 0, 3, b"s:0:k", None))  # a tombstone: its key
    per_event = written.per_event()
    assert per_event["decisions"] == 75.0 and per_event["changelog"] == 1.25 and per_event["commands"] == 0.0
    assert per_event["total"] == pytest.approx(76.25)
    summary = written.summary()
    assert summary.startswith("76 B written/event") and "decisions 0.50 x 150 B" in summary
    per_record = {"decisions": 0.5, "commands": 0.0, "other": 0.0, "changelog": 0.25}
    assert written.as_json()["records_per_event"] == per_record
