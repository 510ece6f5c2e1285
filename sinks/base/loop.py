"""The sink process: consume a store's command topic, execute, publish receipts, then commit.

One loop for every kind of store: a :class:`~sinks.base.executor.BatchExecutor` answers a batch of
commands (the PostgreSQL executor in one database transaction with tracking rows; the HTTP,
log-store and backup executors their own way). The loop publishes the receipts and waits for the
broker, and only then commits the Kafka offsets. A crash anywhere replays the batch, and
idempotent executors make the replay a no-op that re-sends the same receipts. An executor that
raises one of its ``transient`` errors (database down, vendor circuit open) gets the same batch
again after a backoff: nothing is committed, nothing is dropped.

Authenticity: a command is executed only if the worker signed it (its public key,
``EBBTIDE_WORKER_PUBLIC_KEY``; a sink without it does not start). One unsigned, signed by another
key or changed after signing is dead-lettered with the reason and counted in
``ebbtide_security_events_total{source="commands"}``; it gets no receipt. Every receipt is signed
with the sink's key of its store (``EBBTIDE_SINK_KEY``), which the worker verifies.

Kafka I/O here is confluent-kafka (librdkafka): the sink moves one message in and one out per
row, and kafka-python's per-message cost capped it at a fraction of what the database does.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ebbtide.runtime import authenticity, metrics
from ebbtide.runtime.endpoints import READINESS
from ebbtide.runtime.kafka import librdkafka_config, secured
from ebbtide.runtime.settings import Settings, SettingsError, Topics
from ebbtide.schemas import DELETION_COMMAND, InvalidMessage, codec_for, dead_letter_body
from ebbtide.sinks.base.executor import BatchExecutor
from ebbtide.sinks.base.opening import KeyFinder, TokenError, opened, prefetch
from ebbtide.sinks.base.receipts import Executed, executed, signed

log = logging.getLogger(__name__)
# librdkafka's own log lines go through Python's logging (in the process's log format), not
# straight to stderr: delivered at the clients' poll() calls.
CLIENT_LOG = logging.getLogger("ebbtide.sinks.librdkafka")
BATCH = 500  # commands per poll (per database transaction for PostgreSQL)


def _skip(message: Message) -> bool:
    """Partition-end and other informational events carry no command. A fatal error ends the
    sink (the consumer is unusable after it): librdkafka reports one as an event whose code is
    _FATAL, e.g. a static member fenced after its coordinator died, and ``fatal()`` of that event
    is false."""
    error = message.error()
    if error is None:
        return False
    if error.fatal() or error.code() == KafkaError._FATAL:
        raise KafkaException(error)
    log.warning("consumer: %s", error)
    return True


def _next_batch(consumer: Consumer, size: int = BATCH) -> list[Message]:
    """Wait for one command, then take what has already been fetched, up to a batch: low latency
    when it is quiet, big batches under load (librdkafka's consume() would wait for a full batch)."""
    first = consumer.poll(0.5)
    if first is None:
        return []
    batch = [first, *consumer.consume(num_messages=size - 1, timeout=0)]
    return [m for m in batch if not _skip(m)]


def _position(message: Message) -> tuple[int, int]:
    """(partition, offset) of a consumed message, which always has both."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return partition, offset


def _first_offsets(batch: list[Message]) -> dict[int, int]:
    firsts: dict[int, int] = {}
    for message in batch:
        partition, offset = _position(message)
        firsts.setdefault(partition, offset)
    return firsts


def _last_offsets(batch: list[Message]) -> dict[int, int]:
    return dict(_position(m) for m in batch)


def sink_keys(settings: Settings, store: str) -> tuple[authenticity.Verifier, authenticity.MessageSigner]:
    """The worker's public key (to verify commands) and the store's receipt signing key (made on
    first start, its .pub beside it). SettingsError, naming the setting, if either is unusable."""
    try:
        worker = authenticity.Verifier.from_file(
            settings.command_public_key, "EBBTIDE_WORKER_PUBLIC_KEY", "deletion commands"
        )
    except ValueError as exc:
        raise SettingsError(f"sink {store}: {exc}") from None
    try:
        signer = authenticity.MessageSigner.from_file(
            settings.sink_key_for(store), f"receipt signing key of {store}"
        )
    except ValueError as exc:
        raise SettingsError(f"sink {store}: EBBTIDE_SINK_KEY: {exc}") from None
    return worker, signer


def consumer_config(settings: Settings, store: str) -> dict[str, Any]:
    """The confluent-kafka settings of the consumer of ``store``'s command topic."""
    return {
        **librdkafka_config(settings),
        "group.id": f"{settings.topic_prefix}-sink-{store}",
        # Static membership: a sink restarted after a crash (same id) takes its partitions back at
        # once instead of waiting out the session timeout. The id is per group, so one per store
        # and host by default (EBBTIDE_SINK_INSTANCE_ID to run two sinks of a store on one host). A
        # static member does not leave its group on close: the partitions of a sink stopped for
        # good move to another sink of its store after the session timeout.
        "group.instance.id": settings.sink_instance_id or f"{store}-{socket.gethostname()}",
        "session.timeout.ms": int(settings.session_timeout * 1000),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "logger": CLIENT_LOG,
    }


class CommandSink:
    """Consume ``<prefix>.commands.<store>``, let the executor answer, publish receipts, commit."""

    def __init__(
        self,
        settings: Settings,
        executor: BatchExecutor,
        stop: threading.Event | None = None,
        on_batch: Callable[[int], None] | None = None,
        batch_size: int = BATCH,
        keys: KeyFinder | None = None,
    ) -> None:
        self.settings = settings
        if keys is None:
            from ebbtide.sinks.keys.store import KeyStore

            keys = KeyStore(settings.require_keys_dsn())
        self.keys = keys
        self.executor = executor
        self.store = executor.store
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.batch_size = batch_size
        self.topics = Topics(settings.topic_prefix)
        self.topic = self.topics.commands(self.store)
        self._commands = codec_for(DELETION_COMMAND)
        self.worker_key, self.receipt_signer = sink_keys(settings, self.store)
        secured(settings)  # a secured broker that refuses us: one line at start, not in a sink thread
        executor.receipt_signer = self.receipt_signer
        # /readyz: the store answered when its executor was built (a PostgreSQL sink checks its
        # database first) until a batch fails on it; the broker once the group assigns partitions.
        self.store_check, self.broker_check = f"store {self.store}", f"broker {self.topic}"
        READINESS.ready(self.store_check)
        READINESS.waiting(self.broker_check, "not connected to the broker, or no partitions assigned yet")

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, self.store))
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)
        out = Producer(
            {
                **librdkafka_config(self.settings),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Receipts must land on their subject's partition: the same murmur2 hash as the
                # Java, kafka-python and aiokafka clients (librdkafka's default is CRC32).
                "partitioner": "murmur2_random",
                "logger": CLIENT_LOG,
            }
        )
        backoff = 0.5
        from ebbtide.sinks.keys.store import KeyStoreUnavailable

        retry: tuple[type[BaseException], ...] = (
            *self.executor.transient,
            KafkaException,
            KeyStoreUnavailable,
        )
        try:
            while not self.stop.is_set():
                batch = _next_batch(consumer, self.batch_size)
                if not batch:
                    continue
                try:
                    reached_store = self._process(out, consumer, batch)
                    backoff = 0.5
                    if reached_store:  # a batch of dead letters only says nothing of the store
                        READINESS.ready(self.store_check)
                except retry as exc:
                    # Nothing of the batch is committed to Kafka: take it again.
                    log.error(
                        "batch not completed (%s); retrying it",
                        type(exc).__name__,
                        extra={"topic": self.topic},
                    )
                    if isinstance(exc, self.executor.transient):
                        READINESS.waiting(self.store_check, f"store unavailable ({type(exc).__name__})")
                    for partition, offset in _first_offsets(batch).items():
                        consumer.seek(TopicPartition(self.topic, partition, offset))
                    self.stop.wait(backoff * (1 + random.random()))
                    backoff = min(backoff * 2, 30.0)
                    if isinstance(exc, self.executor.transient):
                        self.executor.recover()
        finally:
            READINESS.waiting(self.broker_check, "stopping")
            consumer.close()
            out.flush(30)
            self.executor.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave this sink its partitions (maybe none: more sinks than partitions)."""
        held = ",".join(str(tp.partition) for tp in partitions) or "none"
        READINESS.ready(self.broker_check, f"partitions assigned: {held}")

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        READINESS.waiting(self.broker_check, "rebalancing: partitions revoked")

    def _process(self, out: Producer, consumer: Consumer, batch: list[Message]) -> bool:
        """One batch: verify, execute, publish the receipts and dead letters, wait until the broker
        has them all, and only then commit the batch's offsets. Whether the executor ran (the batch
        had commands for this store)."""
        started = time.perf_counter()
        commands, sources, dead = self._verified(batch)
        answers = self._answers(commands)
        receipts: list[tuple[bytes, bytes]] = []
        outcomes: Counter[str] = Counter()
        rows: Counter[str] = Counter()
        for command, message, answer in zip(commands, sources, answers, strict=True):
            done = signed(answer, self.receipt_signer)
            receipts.append((command["subject_id"].encode(), done.encoded))
            outcomes[done.receipt["outcome"]] += 1
            if not done.repeated and done.receipt["rows"] and done.receipt["outcome"] != "EXPIRES":
                rows[command["category"]] += done.receipt["rows"]
            if done.dead_letter is not None:
                metrics.SINK_GAVE_UP.labels(self.store).inc()
                dead.append((message, done.dead_letter, "gave_up"))
        for outcome, n in outcomes.items():  # once per label a batch, not per command
            metrics.SINK_COMMANDS.labels(self.store, outcome).inc(n)
        for category, n in rows.items():
            metrics.ROWS_DELETED.labels(self.store, category).inc(n)
        self._publish(out, receipts, dead)
        consumer.commit(
            offsets=[TopicPartition(self.topic, p, offset + 1) for p, offset in _last_offsets(batch).items()],
            asynchronous=False,
        )
        metrics.SINK_BATCH_SECONDS.labels(self.store).observe(time.perf_counter() - started)
        if self.on_batch is not None:
            self.on_batch(len(receipts))
        return any(command["store"] == self.store for command in commands)

    def _verified(
        self, batch: list[Message]
    ) -> tuple[list[dict[str, Any]], list[Message], list[tuple[Message, str, str]]]:
        """The batch's commands that decode and carry the worker's signature (with their messages),
        and the rest with the reason to dead-letter them and its label (invalid, security): those
        are never executed, no receipt."""
        commands: list[dict[str, Any]] = []
        sources: list[Message] = []
        dead: list[tuple[Message, str, str]] = []
        for message in batch:
            try:
                command = self._commands.decode(message.value())
                self.worker_key.check(authenticity.COMMAND, command)
                commands.append(command)
                sources.append(message)
            except InvalidMessage as exc:
                dead.append((message, exc.reason, "invalid"))
            except authenticity.Refused as exc:
                metrics.SECURITY_EVENTS.labels("commands", exc.kind).inc()
                log.error(
                    "refused a command on %s: %s",
                    message.topic(),
                    exc.reason,
                    extra={"topic": message.topic(), "partition": message.partition()},
                )
                dead.append((message, f"security: {exc.reason}", "security"))
        return commands, sources, dead

    def _answers(self, commands: list[dict[str, Any]]) -> list[Executed]:
        """One answer per command, in order. The executor answers its store's commands; a command
        naming another store (it came on the wrong topic) is answered FAILED here and dead-lettered,
        so no executor ever acts on it."""
        sealed: dict[int, Executed] = {}  # index: the answer to a command whose key does not open
        own = []
        prefetch([c for c in commands if c["store"] == self.store], self.keys)  # one query a batch
        for index, command in enumerate(commands):
            if command["store"] != self.store:
                continue
            try:
                own.append(opened(command, self.keys))
            except TokenError as exc:
                sealed[index] = self._unopened(command, exc)
        executed_own = iter(self.executor.execute(own) if own else [])
        answers = [
            sealed.get(i) or (next(executed_own, None) if c["store"] == self.store else self._misrouted(c))
            for i, c in enumerate(commands)
        ]
        if None in answers or next(executed_own, None) is not None:
            raise RuntimeError(f"the executor of {self.store} did not answer each command once")
        return [a for a in answers if a is not None]

    def _unopened(self, command: dict[str, Any], exc: TokenError) -> Executed:
        """A command whose record key cannot be opened (its key shredded, or a forged token): FAILED
        and dead-lettered, never executed."""
        reason = f"record key cannot be opened: {exc}"
        log.warning("%s: command %s refused: %s", self.store, command["command_id"], reason)
        return executed(
            command, "FAILED", 0, reason, datetime.now(UTC), dead_letter=reason, signer=self.receipt_signer
        )

    def _misrouted(self, command: dict[str, Any]) -> Executed:
        reason = f"command for store {command['store']} sent to {self.store}"
        log.warning("%s: command %s refused: %s", self.store, command["command_id"], reason)
        return executed(
            command, "FAILED", 0, reason, datetime.now(UTC), dead_letter=reason, signer=self.receipt_signer
        )

    def _publish(
        self, out: Producer, receipts: list[tuple[bytes, bytes]], dead: list[tuple[Message, str, str]]
    ) -> None:
        """Produce the receipts and the dead letters and wait for the broker to take every one;
        KafkaException if it did not (then nothing of the batch is committed)."""
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for key, value in receipts:
            out.produce(self.topics.receipts, key=key, value=value, on_delivery=delivered)
            out.poll(0)
        for message, reason, label in dead:  # label: the kind of reason, of metrics.DLQ_REASONS
            metrics.DLQ_MESSAGES.labels(metrics.SINK_DLQ_SOURCE, label).inc()
            log.warning(
                "dead-lettered %s[%d]@%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                reason,
                extra={"topic": message.topic(), "partition": message.partition()},
            )
            key, value, dropped = dead_letter_body(message.key(), message.value())
            out.produce(
                self.topics.dlq,
                key=key,
                value=value,
                headers=[
                    ("reason", reason.encode()),
                    ("source_topic", (message.topic() or "").encode()),
                    ("source_partition", str(message.partition()).encode()),
                    ("source_offset", str(message.offset()).encode()),
                    *dropped,
                ],
                on_delivery=delivered,
            )
        if out.flush(60) or failures:  # never commit offsets for output the broker did not take
            raise KafkaException(f"receipts not acknowledged by the broker: {failures[:3] or 'timeout'}")
