"""``ebbtide cdc run``: Debezium's change events in, lifecycle events and ledger checks out.

A plain consumer-group loop (kafka-python, like the sinks' loop), not a Faust agent: the
translator keeps no state of its own in Kafka (its ledger is a table of the captured database,
whose transactions it must read anyway), and each batch is one database transaction, one flush
of the publisher and then one offset commit: at least once, and the event ids make a batch read
again announce nothing twice (:func:`ebbtide.cdc.changes.announcements`).

A message that is not a change event of a captured table, or whose row no valid event can
announce, goes to the dead-letter topic with the reason (naming the table and the field, never a
value) and its coordinates (topic, partition, offset), without its key or value: a change event
holds a row's record key, subject and ref in clear. The loop goes on. Such a letter is not
replayable (``ebbtide dlq replay`` refuses the CDC topic); the change is read again from the CDC
topic, within its retention, by its coordinates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg2
from kafka import KafkaConsumer, KafkaProducer
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from ebbtide.cdc import ledger
from ebbtide.cdc.changes import (
    ANNOUNCING,
    BadChange,
    Change,
    Mapping,
    announcements,
    parse,
    record_key,
    row_time,
)
from ebbtide.runtime import metrics
from ebbtide.runtime.kafka import await_delivery, close_producer, consumer, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.client import EventPublisher, InvalidEvent
from ebbtide.tools.topics import spec as topic_spec

log = logging.getLogger(__name__)
POLL_MS = 500
BATCH = 500


def cdc_topic(settings: Settings) -> str:
    """The one topic the connector writes every captured table's changes to (declared with a
    short retention: :func:`ebbtide.tools.topics.spec.cdc_topic`)."""
    return topic_spec.cdc_topic(settings).name


class Translator:
    """Handles batches of change events: announce inserts, check deletes, dead-letter the rest."""

    def __init__(
        self,
        settings: Settings,
        mapping: Mapping,
        conn: Connection,
        publisher: EventPublisher,
        dlq: KafkaProducer,
    ) -> None:
        self.mapping = mapping
        self.conn = conn
        self.publisher = publisher
        self.dlq = dlq
        self.dlq_topic = Topics(settings.topic_prefix).dlq
        self._dead: list[Any] = []
        with conn, conn.cursor() as cur:
            self.ledger = ledger.ensure_ledger(cur)
        metrics.cdc_started((s.store, s.action.category) for ss in mapping.by_table.values() for s in ss)

    def handle(self, messages: Sequence[Any]) -> None:
        """One batch: every change in order in one database transaction; the events flushed to
        the broker and the dead letters acknowledged before it commits. Raises on a broker or
        database failure (nothing of the batch is committed: it is read again)."""
        with self.conn, self.conn.cursor() as cur:
            for message in messages:
                try:
                    change = parse(message.value, self.mapping)
                    if change is not None:
                        self._change(cur, change)
                except BadChange as exc:
                    self._dead_letter(message, str(exc))
            self.publisher.flush()
            failed = await_delivery(self.dlq, self._dead, 30.0)
            self._dead = []
            if failed is not None:
                raise RuntimeError(f"dead letters not acknowledged by the broker ({failed.reason})")

    def _change(self, cur: Cursor, change: Change) -> None:
        if change.op in ANNOUNCING:
            self._announce(cur, change)
        else:
            self._deleted(cur, change)

    def _announce(self, cur: Cursor, change: Change) -> None:
        events = announcements(change, self.mapping)  # BadChange before anything is sent
        key = events[0]["payload"]["record_key"]
        for source, event in zip(self.mapping.by_table[change.table], events, strict=True):
            category = source.action.category
            back = None
            if change.op == "c":
                back = ledger.restored(cur, self.ledger, source.store, category, key)
            if back is not None and back.written is not None:  # as old as the row Ebbtide deleted
                event = {**event, "event_time": back.written.isoformat()}
            try:
                self.publisher.publish(event)
            except InvalidEvent as exc:
                raise BadChange(f"cdc: table {change.table} (category {category}): {exc}") from None
            if change.op == "c":
                ledger.forget(cur, self.ledger, source.store, category, key)
            written = datetime.fromisoformat(event["event_time"])
            ledger.announced(cur, self.ledger, source.store, category, key, written)
            if back is not None:
                metrics.CDC_CHANGES.labels(source.store, category, "restored").inc()
                log.warning(
                    "a row of %s (store %s, category %s) that Ebbtide deleted was inserted again "
                    "(a restored backup?): announced again, the pipeline deletes it again",
                    change.table,
                    source.store,
                    category,
                )
            metrics.CDC_CHANGES.labels(source.store, category, ANNOUNCING[change.op]).inc()

    def _deleted(self, cur: Cursor, change: Change) -> None:
        key = record_key(change, self.mapping)
        for source in self.mapping.by_table[change.table]:
            category = source.action.category
            deleting = self.mapping.deleting.get((change.table, source.store), [])
            ours = change.tx_id is not None and ledger.deleted_by_ebbtide(
                cur, change.tx_id, source.store, deleting
            )
            written = ledger.take_written(cur, self.ledger, source.store, category, key)
            written = written or row_time(change, source.action)
            ledger.record_deletion(
                cur, self.ledger, source.store, category, key, ours, change.lsn, change.committed, written
            )
            metrics.CDC_CHANGES.labels(
                source.store, category, "deleted_by_ebbtide" if ours else "deleted_outside"
            ).inc()
            if not ours:
                log.warning(
                    "a row of %s (store %s, category %s) was deleted outside Ebbtide "
                    "(no deletion command of Ebbtide in its transaction); its key's hash is in %s",
                    change.table,
                    source.store,
                    category,
                    ledger.TABLE,
                )

    def _dead_letter(self, message: Any, reason: str) -> None:
        metrics.DLQ_MESSAGES.labels(metrics.CDC_DLQ_SOURCE, "invalid").inc()
        log.warning("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)
        headers = [
            ("reason", reason.encode()),
            ("source_topic", message.topic.encode()),
            ("source_partition", str(message.partition).encode()),
            ("source_offset", str(message.offset).encode()),
        ]
        # No key, no value: both hold the row's values in clear (see the module doc).
        self._dead.append(self.dlq.send(self.dlq_topic, key=b"", value=b"", headers=headers))


def run(settings: Settings, mapping: Mapping, dsn: str, stop: threading.Event) -> None:
    """The translator until ``stop`` is set: consume, handle, commit; it owns the clients: the
    publisher, the dead-letter producer, the consumer and the database connection."""
    conn = psycopg2.connect(dsn, application_name="ebbtide-cdc")
    publisher = EventPublisher(settings)
    dlq = producer(settings)
    reader: KafkaConsumer = consumer(
        settings,
        cdc_topic(settings),
        group_id=f"{settings.app_id}-cdc",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        translator = Translator(settings, mapping, conn, publisher, dlq)
        log.info("translating %s for %d table(s)", cdc_topic(settings), len(mapping.tables))
        while not stop.is_set():
            batches = reader.poll(timeout_ms=POLL_MS, max_records=BATCH)
            messages = [m for batch in batches.values() for m in batch]
            if not messages:
                continue
            translator.handle(messages)
            reader.commit()
    finally:
        reader.close()
        close_producer(dlq)
        publisher.abort()
        conn.close()
