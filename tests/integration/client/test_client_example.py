"""The example of docs/events.md ("Publishing from Python") runs as pasted, against the real Kafka
and key store: both publishers' typed events are on the events topic, keyed by subject, decoded
back into their classes, the personal value sealed with the subject's key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ebbtide.client import RecordWritten, ServiceOrdered, from_record
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.tokens import is_token
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.keys.store import KeyStore

ROOT = Path(__file__).resolve().parents[3]
MARKER = "<!-- the client example: tests/integration/client/test_client_example.py runs this block -->"


def documented_example() -> str:
    text = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER) + len(MARKER) :]
    match = re.match(r"\s*```python\n(.*?)\n```", after, re.DOTALL)
    assert match is not None, "no python block after the marker in docs/events.md"
    return match.group(1)


def read_events(settings: Settings, count: int, deadline: float = 30.0) -> list[tuple[bytes, bytes]]:
    """The first ``count`` messages of the events topic (key, value); fewer if the deadline passes."""
    consumer = kafka.consumer(
        settings, Topics(settings.topic_prefix).events, auto_offset_reset="earliest", enable_auto_commit=False
    )
    found: list[tuple[bytes, bytes]] = []
    try:
        end = time.monotonic() + deadline
        while len(found) < count and time.monotonic() < end:
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend((message.key, message.value) for message in batch)
    finally:
        consumer.close()
    return found


def test_the_documented_example_publishes_typed_events_with_both_publishers(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBBTIDE_")}
    env.update(
        EBBTIDE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        EBBTIDE_TOPIC_PREFIX=settings.topic_prefix,
        EBBTIDE_PG_DSN=str(settings.pg_dsn),  # the key store
        EBBTIDE_STATE_DIR=str(settings.state_dir),
    )
    run = subprocess.run(
        [sys.executable, "-c", documented_example()], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]

    messages = read_events(settings, 2)
    assert [key for key, _ in messages] == [b"cust-42", b"cust-42"]
    codec = codec_for(LIFECYCLE_EVENT)
    ordered, written = (from_record(codec.decode(value)) for _, value in messages)
    assert isinstance(ordered, ServiceOrdered) and isinstance(written, RecordWritten)
    assert (ordered.event_id, ordered.producer, ordered.service_id, ordered.kind) == (
        "evt-1",
        "billing",
        "svc-7",
        "HOSTING",
    )
    assert (written.event_id, written.store, written.category) == ("evt-2", "customer_db", "CLIENT")
    assert ordered.event_time == written.event_time and ordered.event_time.tzinfo is not None
    # the record key left the service sealed with the subject's key from the key store
    assert is_token(written.record_key) and written.record_key != "42"
    keys = KeyStore(str(settings.pg_dsn))
    try:
        assert keys.current("cust-42").open(written.record_key) == "42"
    finally:
        keys.close()
