"""``ebbtide audit replay`` on the demo's log: zero differences, in this process and in another
with another hash seed; and a log with one event changed shows the difference at its offset."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools import replay
from ebbtide.tools.processes import settings_env
from ebbtide.tools.replay.reading import read_log
from tests.e2e.demo_log import DemoLog
from tests.support import drop_topics

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_log_replays_with_no_difference(demo_log: DemoLog) -> None:
    result = replay.replay(demo_log.settings, replay.Options())
    assert result.differences == []
    recorded = read_log(demo_log.settings, lambda n: list(range(n)), 30)
    kinds = [
        codec_for(DECISION).decode(m.value)["kind"]
        for ms in recorded.topics["decisions"].values()
        for m in ms
    ]
    assert result.decisions == len(kinds) - result.duplicates > 1000
    assert "CLOCK_APPLIED" in kinds and "DELETION_CONFIRMED" in kinds  # ticks, receipts and events
    assert result.fed["events"] and result.fed["clock"] and result.fed["receipts"]


def test_one_subject_and_a_recent_period_replay_alone(demo_log: DemoLog) -> None:
    log = read_log(demo_log.settings, lambda n: list(range(n)), 30)
    decoded = [
        (p, codec_for(DECISION).decode(m.value)) for p, ms in log.topics["decisions"].items() for m in ms
    ]
    subject = next(d["subject_id"] for _, d in decoded if d["kind"] == "DELETION_CONFIRMED")
    (partition,) = {p for p, d in decoded if d["subject_id"] == subject}
    mine = [d for p, d in decoded if d["subject_id"] == subject or (p == partition and d["subject_id"] == "")]
    one = replay.replay(demo_log.settings, replay.Options(subject=subject))
    assert (one.partitions, one.decisions, one.differences) == ([partition], len(mine), [])
    assert one.skipped > 0  # other subjects' messages were not fed
    since = replay.replay(demo_log.settings, replay.Options(since=to_ms(datetime(2030, 1, 1, tzinfo=UTC))))
    assert since.differences == [] and 0 < since.decisions < len(decoded)


def test_another_hash_seed_replays_it_the_same(demo_log: DemoLog) -> None:
    env = {**settings_env(demo_log.settings), "PYTHONHASHSEED": "4242", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "ebbtide", "audit", "replay", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["differences"] == [] and found["decisions"] > 1000


@pytest.fixture
def changed_copy(demo_log: DemoLog) -> Iterator[tuple[Settings, int, int]]:
    """The demo's topics copied to a fresh prefix, with the category of one RecordWritten
    changed; (its settings, the changed event's partition and offset)."""
    source = demo_log.settings
    copy = replace(source, topic_prefix=f"{source.topic_prefix}-changed")
    log = read_log(source, lambda n: list(range(n)), 30)
    mine, theirs = Topics(copy.topic_prefix), Topics(source.topic_prefix)
    create_topics(copy, [mine.events, mine.clock, mine.receipts, mine.decisions])
    codec = codec_for(LIFECYCLE_EVENT)
    changed: tuple[int, int] | None = None
    out: KafkaProducer = kafka.producer(copy)
    try:
        for short in ("events", "clock", "receipts", "decisions"):
            for partition, messages in log.topics[short].items():
                for m in messages:
                    value = m.value
                    if short == "events" and changed is None and value is not None:
                        record = codec.decode(value)
                        payload = record["payload"][1]
                        if record["payload"][0].endswith("RecordWritten") and payload["category"] == "CLIENT":
                            payload["category"] = "MARKETING"
                            value, changed = codec.encode(record), (partition, m.offset)
                    out.send(getattr(mine, short), key=m.key, value=value, partition=partition)
        out.flush(30)
    finally:
        out.close()
    assert changed is not None and theirs.events != mine.events
    try:
        yield copy, *changed
    finally:
        drop_topics(copy, changelogs=False)


def test_one_changed_event_shows_up_at_its_offset(changed_copy: tuple[Settings, int, int]) -> None:
    settings, partition, offset = changed_copy
    result = replay.replay(settings, replay.Options())
    assert result.differences
    first = result.differences[0]
    assert first.partition == partition and first.kind in ("changed", "missing")
    assert first.recorded is not None and first.recorded["input"] == f"events/{partition}/{offset}"
    done = subprocess.run(
        [sys.executable, "-m", "ebbtide", "audit", "replay"],
        env={**settings_env(settings), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"decisions partition {partition} offset {first.offset}" in done.stdout
    found = len(result.differences)
    assert f"{result.decisions} decisions, {found} difference{'' if found == 1 else 's'}" in done.stdout
