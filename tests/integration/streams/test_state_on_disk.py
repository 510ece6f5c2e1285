"""The worker's state on local disk (EBBTIDE_STATE_STORE=rocksdb, the default), on the real broker:
a worker SIGKILLed after its batches restarts with every state intact and reads only the tail of
the changelog that another worker wrote meanwhile; a fresh state directory reads all of it; every
key is in the database of the partition it names, also the keys a batch writes after its events
(the batch step's deferred writes); and every start takes its partitions' counts from the digest
kept beside the states (``streams.worker.digest``), derived by the recovery paths from what they
wrote, never by reading every state."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rocksdict
from kafka import TopicPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets, offsets_reader
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import STATE_TABLE, changelog_topic
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker.staging import partition_of_key
from ebbtide.tools import processes
from tests.support import wait_until

SUBJECTS = 40  # per phase: each gets a pending deadline (a record, then its account closed)
OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a database's changelog offset
CONSUMED = "ebbtide_events_consumed_total"
PENDING = "ebbtide_pending_deadlines"
RESTORED = re.compile(r"state store: (\d+) changelog records restored")
STARTED = re.compile(r"partition \d+ started from (its digest|its states)")
TIMEOUT = 90.0


def _events(first: int, count: int) -> list[tuple[bytes, bytes]]:
    codec = codec_for(LIFECYCLE_EVENT)
    out = []
    for n in range(first, first + count):
        subject = f"disk-{n:04d}"
        common = {"subject_id": subject, "producer": "test"}
        written = {
            **common,
            "event_id": f"{subject}-w",
            "event_time": datetime(2024, 1, 10, tzinfo=UTC),
            "payload": (
                "io.ebbtide.events.RecordWritten",
                {"store": "customer_db", "category": "CLIENT", "record_key": str(n), "ref": None},
            ),
        }
        closed = {
            **common,
            "event_id": f"{subject}-c",
            "event_time": datetime(2024, 6, 1, tzinfo=UTC),
            "payload": ("io.ebbtide.events.AccountClosed", {}),
        }
        out += [(subject.encode(), codec.encode(written)), (subject.encode(), codec.encode(closed))]
    return out


def _publish(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    futures = [producer.send(Topics(settings.topic_prefix).events, value, key=key) for key, value in messages]
    assert kafka.await_delivery(producer, futures) is None
    kafka.close_producer(producer)


def _committed(settings: Settings) -> bool:
    """The worker's group has committed every event published."""
    topic = Topics(settings.topic_prefix).events
    reader = offsets_reader(settings)
    group = kafka.consumer(settings, client_id=None, group_id=settings.app_id, enable_auto_commit=False)
    try:
        ends = end_offsets(reader, topic)
        return all((group.committed(TopicPartition(topic, p)) or 0) >= end for p, end in ends.items())
    finally:
        group.close()
        reader.close()


def _metric(settings: Settings, name: str) -> float:
    return processes.total(processes.scrape(settings.worker_metrics_port), name)


def _run_until(
    settings: Settings, name: str, consumed: int, pending: float | None = None
) -> tuple[int, float]:
    """Start a worker; once it has consumed ``consumed`` events (and reports ``pending`` pending
    deadlines, if given) and its group has committed every event, SIGKILL it. The changelog
    records its recovery restored (from its log) and the pending deadlines it reported; every
    partition it started, it started from its digest (its log)."""
    child = processes.start(name, ["worker", "--loglevel", "info"], settings, settings.state_dir / "logs")
    try:
        wait_until(
            lambda: (
                _metric(settings, CONSUMED) >= consumed
                and (pending is None or _metric(settings, PENDING) == pending)
            ),
            TIMEOUT,
            f"{name}: {consumed} events consumed, {pending} pending deadlines",
        )
        wait_until(lambda: _committed(settings), TIMEOUT, f"{name}: every event committed")
        reported = _metric(settings, PENDING)
        log = child.log.read_text()
        found = RESTORED.findall(log)
        assert child.alive(), child.tail()
    finally:
        child.kill()
    assert found, f"{name} logged no recovery:\n{child.tail()}"
    starts = STARTED.findall(log)
    assert len(starts) >= settings.partitions and set(starts) == {"its digest"}, child.tail()
    return int(found[-1]), reported


def _changelog(settings: Settings) -> tuple[dict[int, int], dict[int, dict[bytes, bytes]]]:
    """The changelog's end offsets and, per partition, the latest value of each key (read to the
    end with a bare consumer; a key whose latest record is a tombstone is left out)."""
    topic = changelog_topic(settings.app_id)
    reader = kafka.consumer(settings, client_id=None, enable_auto_commit=False)
    ends = end_offsets(reader, topic)
    tps = [TopicPartition(topic, p) for p in ends]
    reader.assign(tps)
    reader.seek_to_beginning(*tps)
    latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in ends}
    deadline = time.monotonic() + TIMEOUT
    while any(reader.position(tp) < ends[tp.partition] for tp in tps):
        assert time.monotonic() < deadline, "changelog not read to its end"
        for records in reader.poll(timeout_ms=500).values():
            for record in records:
                latest[record.partition][record.key] = record.value
    reader.close()
    return ends, {p: {k: v for k, v in kv.items() if v is not None} for p, kv in latest.items()}


def _on_disk(settings: Settings) -> dict[int, tuple[int | None, dict[bytes, bytes]]]:
    """Each partition database of the worker's state dir: its changelog offset and its keys."""
    found: dict[int, tuple[int | None, dict[bytes, bytes]]] = {}
    for path in (settings.state_dir / "faust").rglob(f"{STATE_TABLE}-*.db"):
        partition = int(path.name.removesuffix(".db").rsplit("-", 1)[1])
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        try:
            items: dict[bytes, Any] = dict(db.items())
        finally:
            db.close()
        offset = items.pop(OFFSET_KEY, None)
        found[partition] = (None if offset is None else int(offset), items)
    return found


def _assert_disk_is_changelog(settings: Settings) -> None:
    """Every partition's database holds exactly its changelog's latest values, each key in the
    database of the partition it names, and the offset of its changelog's last record."""
    ends, latest = _changelog(settings)
    disk = _on_disk(settings)
    assert set(disk) == set(ends)
    for partition, (offset, items) in disk.items():
        assert offset == ends[partition] - 1, (partition, offset, ends)
        assert {partition_of_key(k.decode().strip('"')) for k in items} == {partition}
        assert items == latest[partition], partition


def test_a_killed_worker_restarts_from_disk_and_reads_only_the_changelog_tail(
    settings: Settings, tmp_path: Path
) -> None:
    host_a = replace(settings, state_dir=tmp_path / "a")
    host_b = replace(settings, state_dir=tmp_path / "b", worker_metrics_port=processes.free_port())

    _publish(settings, _events(0, SUBJECTS))
    restored, pending = _run_until(host_a, "worker-a", 2 * SUBJECTS)
    assert restored == 0  # an empty changelog: nothing to read
    assert pending >= SUBJECTS
    _assert_disk_is_changelog(host_a)
    ends_a, _ = _changelog(settings)

    # Another host (an empty state dir) takes over: it reads the whole changelog, then works on.
    _publish(settings, _events(SUBJECTS, SUBJECTS))
    restored, pending = _run_until(host_b, "worker-b", 2 * SUBJECTS)
    assert restored == sum(ends_a.values())
    assert pending >= 2 * SUBJECTS
    _assert_disk_is_changelog(host_b)
    ends_b, _ = _changelog(settings)

    # The first host again: its own disk plus what B wrote meanwhile, and no more; it reports
    # every pending deadline B did.
    restored, _ = _run_until(host_a, "worker-a-again", 0, pending)
    assert restored == sum(ends_b.values()) - sum(ends_a.values()) > 0
    _assert_disk_is_changelog(host_a)
