"""Small kafka-python helpers shared by the CLI, the client, the clock and the sinks."""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from ebbtide.settings import Settings, Topics

CLIENT_ID = "ebbtide"


def producer(settings: Settings) -> KafkaProducer:
    """A durable producer: every write acknowledged by the broker, retried on transient errors."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=CLIENT_ID,
        acks="all",
        linger_ms=5,
        retries=10,
        max_in_flight_requests_per_connection=1,
    )


def pipeline_topics(topics: Topics, stores: Iterable[str]) -> list[str]:
    """Every topic the lifecycle agent and the given stores' sinks use."""
    names = [
        topics.events,
        topics.clock,
        topics.receipts,
        topics.decisions,
        topics.answers,
        topics.certificates,
        topics.dlq,
    ]
    return names + [topics.commands(store) for store in stores]


def create_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """Create missing topics with the configured partition count; return those created.

    Events, clock and receipts must share one partition count: the lifecycle agent keeps each
    subject's state on the partition its events use.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id=CLIENT_ID)
    try:
        existing = set(admin.list_topics())
        wanted = [n for n in names if n not in existing]
        created: list[str] = []
        for name in wanted:
            try:
                admin.create_topics([NewTopic(name, settings.partitions, 1)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def offsets_reader(settings: Settings) -> KafkaConsumer:
    """A group-less consumer used only to read end offsets."""
    return KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, client_id=CLIENT_ID)


def end_offsets(consumer: KafkaConsumer, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic} does not exist (run: ebbtide topics create)")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
