"""Issue 16: a service that serialises with confluent-kafka's own AvroSerializer (the Confluent
wire format: a zero byte and the schema's id in the registry) is read by the real worker from the
stack's schema registry and stamped, not dead-lettered; so is an event EventPublisher frames the
same way (EBBTIDE_WIRE_FORMAT=confluent); an id the registry does not have is dead-lettered with
the reason, and the worker goes on."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ebbtide.cli import build_parser
from ebbtide.runtime.kafka import librdkafka_config
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import DECISION, LIFECYCLE_EVENT, codec_for
from ebbtide.schemas.registry import client
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher, to_record
from tests.e2e.test_pipeline import OWN_DATABASES, WORKER_READY, written
from tests.integration.schemas.test_registry import registry_url
from tests.support import TopicReader, make_topics


def test_an_event_serialised_by_confluent_s_avro_serializer_is_stamped_by_the_worker(
    settings: Settings, tmp_path: Path
) -> None:
    settings = replace(settings, store_map=OWN_DATABASES, schema_registry_url=registry_url())
    topics = make_topics(settings, ["customer_db", "billing_db"])
    args = build_parser().parse_args(["schemas", "register", "--store", "customer_db"])
    assert args.func(args, settings) == 0  # what a deploy runs first: our schemas, under BACKWARD
    worker = processes.start("worker", ["worker"], settings, tmp_path / "logs")
    decisions = TopicReader(settings, topics.decisions, codec_for(DECISION))
    dlq = TopicReader(settings, topics.dlq)
    try:
        # A service in the Confluent ecosystem: its serializer looks the schema up under the
        # topic's subject (auto-registration off, as where schemas are registered by a deploy).
        serializer = AvroSerializer(
            client(registry_url()),
            codec_for(LIFECYCLE_EVENT).current.path.read_text(),
            conf={"auto.register.schemas": False},
        )
        record = to_record(written("cf1", "cust-77", "2024-01-10T10:00:00Z", "client", "77"))
        value = serializer(record, SerializationContext(topics.events, MessageField.VALUE))
        assert value is not None and value[:1] == b"\x00"  # the Confluent wire format
        unknown = b"\x00" + struct.pack(">I", 2**31 - 2) + value[5:]
        # murmur2, as Java's clients and Ebbtide's own partition by key (librdkafka's default,
        # CRC32, would put the event on another partition than its subject's: dead-lettered)
        producer = Producer({**librdkafka_config(settings), "acks": "all", "partitioner": "murmur2_random"})
        producer.produce(topics.events, key=b"cust-77", value=value)
        producer.produce(topics.events, key=b"cust-78", value=unknown)
        assert producer.flush(30) == 0

        confluent = replace(settings, wire_format="confluent")
        with EventPublisher(confluent) as publisher:  # Ebbtide's own producer, framed the same way
            publisher.publish(written("cf2", "cust-79", "2024-01-10T10:00:00Z", "client", "79"))

        stamped = decisions.wait_for(
            lambda seen: (
                {"cust-77", "cust-79"}
                <= {r.value["subject_id"] for r in seen if r.value["kind"] == "STAMPED"}
            ),
            WORKER_READY,
            "both Confluent-framed events stamped",
        )
        assert {r.value["record"] for r in stamped if r.value["kind"] == "STAMPED"} >= {
            "customer_db/client/77",
            "customer_db/client/79",
        }
        dead = dlq.wait_for(
            lambda seen: len(seen) >= 1, 30, "the event of an unknown schema id dead-lettered"
        )
        assert [r.headers["reason"].decode() for r in dead] == [
            "lifecycle_event: unknown schema id 2147483646 (the registry has none)"
        ]
        assert [r.key for r in dead] == [b"cust-78"]
        assert worker.alive(), worker.tail()
    finally:
        decisions.close()
        dlq.close()
        worker.stop()
