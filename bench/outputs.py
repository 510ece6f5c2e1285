"""What a worker wrote for a benchmark's events: its output topics and its state changelog, read
back from the broker after the run.

Bytes are the sum of each record's key and value sizes as a consumer reads them (headers and
Kafka's per-record and per-batch framing not counted), over every record from the start of the
topic to its end offset. The changelog is compacted, but its records are all still in the active
segment this soon after they are written, so every value the worker wrote is counted.

Kinds: ``decisions``; ``commands`` (every ``<prefix>.commands.<store>``); ``other`` (dead
letters, answers, certificates, checkpoints: the prefix's other topics but the inputs);
``changelog`` (every ``<app id>-…-changelog``: the state table's writes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets
from ebbtide.runtime.settings import Settings, Topics

KINDS = ("decisions", "commands", "other", "changelog")
READ_TIMEOUT = 120.0  # seconds to read the outputs back (a broker that stopped answering) ...
READ_PER_EVENT = 0.002  # ... and this many more per event in (200k events: another 400 s)


@dataclass(frozen=True)
class Record:
    """One record a worker wrote; ``suffix`` is its topic's name after the run's prefix (outputs)
    or app id (changelog), so that it can be written again under another run's names."""

    kind: str
    suffix: str
    partition: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"")


@dataclass
class Written:
    """Records and key+value bytes a run wrote, by kind, for ``events`` events in."""

    events: int
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def add(self, record: Record) -> None:
        self.records[record.kind] += 1
        self.bytes[record.kind] += record.size

    def per_event(self) -> dict[str, float]:
        """Bytes written per event in, by kind and in total."""
        out = {kind: self.bytes[kind] / self.events for kind in KINDS}
        out["total"] = sum(self.bytes.values()) / self.events
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "bytes_per_event": {k: round(v, 1) for k, v in self.per_event().items()},
            "records_per_event": {k: round(self.records[k] / self.events, 3) for k in KINDS},
            "records": dict(self.records),
            "bytes": dict(self.bytes),
            "counted": "key + value bytes of every record, read back by a consumer",
        }

    def summary(self) -> str:
        """``1,070 B/event: decisions 0.77 x 490 B, ...`` for a figure's notes."""
        parts = []
        for kind in KINDS:
            count = self.records[kind]
            mean = self.bytes[kind] / count if count else 0.0
            parts.append(f"{kind} {count / self.events:.2f} x {mean:,.0f} B")
        return f"{self.per_event()['total']:,.0f} B written/event (key+value: {', '.join(parts)})"


@dataclass
class Recording:
    """A run's written records: sizes always, the records themselves if kept."""

    written: Written
    outputs: list[Record] = field(default_factory=list)  # in the order written (timestamps)
    changelog: list[Record] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)  # suffix -> partitions


def kind_of(suffix: str) -> str:
    """The kind of a topic given its name after the prefix (``.decisions``) or app id."""
    if suffix.endswith("-changelog"):
        return "changelog"
    if suffix == ".decisions":
        return "decisions"
    return "commands" if suffix.startswith(".commands.") else "other"


def written_topics(settings: Settings, names: list[str]) -> dict[str, str]:
    """Of ``names`` (the broker's topics), those this run's worker wrote: name -> suffix."""
    topics = Topics(settings.topic_prefix)
    inputs = {topics.events, topics.clock, topics.receipts}
    out: dict[str, str] = {}
    for name in names:
        if name.startswith(f"{settings.topic_prefix}.") and name not in inputs:
            out[name] = name[len(settings.topic_prefix) :]
        elif name.startswith(f"{settings.app_id}-") and name.endswith("-changelog"):
            out[name] = name[len(settings.app_id) :]
    return out


def record(settings: Settings, events: int, keep: bool) -> Recording:
    """Read back everything the run of ``settings`` wrote (after its worker stopped)."""
    client = kafka.admin(settings, client_id=None)
    try:
        topics = written_topics(settings, client.list_topics())
    finally:
        client.close()
    reader = kafka.offsets_reader(settings, timeout=READ_TIMEOUT)
    try:
        ends = {TopicPartition(t, p): end for t in topics for p, end in end_offsets(reader, t).items()}
    finally:
        reader.close()
    recording = Recording(Written(events))
    for tp in ends:
        suffix = topics[tp.topic]
        recording.partitions[suffix] = max(recording.partitions.get(suffix, 0), tp.partition + 1)
    todo = {tp: end for tp, end in ends.items() if end > 0}
    if todo:
        timeout = READ_TIMEOUT + READ_PER_EVENT * events
        try:
            asyncio.run(asyncio.wait_for(_read(settings, topics, todo, recording, keep), timeout))
        except TimeoutError:
            raise TimeoutError(f"reading back what the worker wrote took over {timeout:.0f}s") from None
    recording.outputs.sort(key=lambda r: r.timestamp)  # stable: each partition's order is kept
    recording.changelog.sort(key=lambda r: r.timestamp)
    return recording


async def _read(
    settings: Settings,
    topics: dict[str, str],
    ends: dict[TopicPartition, int],
    recording: Recording,
    keep: bool,
) -> None:
    """Read each partition of ``ends`` from its start to its end offset into ``recording``."""
    consumer = AIOKafkaConsumer(
        **kafka.connection(settings, client_id=None),
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024**2,
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while ends:
            for tp, messages in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).items():
                for m in messages:
                    suffix = topics[tp.topic]
                    one = Record(
                        kind_of(suffix), suffix, m.partition, m.timestamp, m.key, m.value, tuple(m.headers)
                    )
                    recording.written.add(one)
                    if keep:
                        (recording.changelog if one.kind == "changelog" else recording.outputs).append(one)
            for tp in [tp for tp, end in ends.items() if await consumer.position(tp) >= end]:
                del ends[tp]  # the topic no longer grows: its worker has stopped
    finally:
        await consumer.stop()
