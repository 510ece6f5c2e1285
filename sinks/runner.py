"""The sink process: consume a store's command topic, execute, publish receipts, then commit.

Order of a batch: execute every command in one database transaction (with tracking rows),
commit it, publish the receipts and wait for the broker, and only then commit the Kafka
offsets. A crash anywhere replays the batch, and the tracking rows make the replay a no-op
that re-sends the same receipts.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ebbtide import metrics
from ebbtide.kafka_io import CLIENT_ID, producer
from ebbtide.settings import Settings, Topics
from schemas import DELETION_COMMAND, InvalidMessage, codec_for
from sinks.mapping import StoreMap
from sinks.postgres import PostgresExecutor

log = logging.getLogger(__name__)
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)


class PostgresSink:
    def __init__(
        self,
        settings: Settings,
        store_map: StoreMap,
        dsn: str,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store_map = store_map
        self.dsn = dsn
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.topics = Topics(settings.topic_prefix)
        self.topic = self.topics.commands(store_map.store)
        self.executor = PostgresExecutor(store_map)
        self._commands = codec_for(DELETION_COMMAND)

    def run(self) -> None:
        consumer = KafkaConsumer(
            self.topic,
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=CLIENT_ID,
            group_id=f"{self.settings.topic_prefix}-sink-{self.store_map.store}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )
        out = producer(self.settings)
        conn = self._connect()
        backoff = 0.5
        try:
            while not self.stop.is_set():
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    continue
                try:
                    self._process(conn, out, consumer, batch)
                    backoff = 0.5
                except TRANSIENT as exc:
                    log.error("database unavailable (%s); retrying the batch", type(exc).__name__)
                    for tp, messages in batch.items():
                        consumer.seek(tp, messages[0].offset)
                    self.stop.wait(backoff * (1 + random.random()))
                    backoff = min(backoff * 2, 30.0)
                    conn = self._reconnect(conn)
        finally:
            consumer.close()
            out.close()
            conn.close()

    def _process(
        self,
        conn: psycopg2.extensions.connection,
        out: KafkaProducer,
        consumer: KafkaConsumer,
        batch: dict[TopicPartition, list[Any]],
    ) -> None:
        started = time.perf_counter()
        receipts: list[tuple[bytes, bytes]] = []
        dead: list[tuple[Any, str]] = []
        commands: list[dict[str, Any]] = []
        for messages in batch.values():
            for message in messages:
                try:
                    commands.append(self._commands.decode(message.value))
                except InvalidMessage as exc:
                    dead.append((message, exc.reason))
        with conn, conn.cursor() as cur:
            executed = self.executor.execute_batch(cur, commands)
        for command, done in zip(commands, executed, strict=True):
            receipts.append((command["subject_id"].encode(), done.encoded))
            metrics.SINK_COMMANDS.labels(self.store_map.store, done.receipt["outcome"]).inc()
            if not done.repeated and done.receipt["rows"]:
                metrics.ROWS_DELETED.labels(self.store_map.store, command["category"]).inc(
                    done.receipt["rows"]
                )
        for key, value in receipts:
            out.send(self.topics.receipts, key=key, value=value)
        for message, reason in dead:
            metrics.DLQ_MESSAGES.labels("commands").inc()
            log.warning(
                "dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason
            )
            out.send(
                self.topics.dlq,
                key=message.key,
                value=message.value or b"",
                headers=[
                    ("reason", reason.encode()),
                    ("source_topic", message.topic.encode()),
                    ("source_partition", str(message.partition).encode()),
                    ("source_offset", str(message.offset).encode()),
                ],
            )
        out.flush()
        consumer.commit({tp: OffsetAndMetadata(msgs[-1].offset + 1, "", -1) for tp, msgs in batch.items()})
        metrics.SINK_BATCH_SECONDS.labels(self.store_map.store).observe(time.perf_counter() - started)
        if self.on_batch is not None:
            self.on_batch(len(receipts))

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.dsn, application_name=f"ebbtide-sink-{self.store_map.store}")
        PostgresExecutor.ensure_tracking(conn)
        return conn

    def _reconnect(self, conn: psycopg2.extensions.connection) -> psycopg2.extensions.connection:
        with contextlib.suppress(psycopg2.Error):
            conn.close()
        while not self.stop.is_set():
            try:
                return self._connect()
            except TRANSIENT:
                self.stop.wait(1.0)
        return conn
