"""The Faust application: one lifecycle agent over events, clock ticks and receipts."""

from __future__ import annotations

from typing import Any

import faust

from ebbtide.settings import Settings, Topics
from streams.policy.rules import Policy
from streams.processor import LifecycleProcessor


def create_app(settings: Settings, policy: Policy) -> faust.App:
    """Build the app; nothing connects until a worker starts it."""
    topics = Topics(settings.topic_prefix)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_cleanup_interval=3600.0,
    )
    source = app.topic(
        topics.events, topics.clock, topics.receipts,
        key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
    )

    def table(name: str) -> Any:
        # Keys are str, values plain JSON-able dicts and lists (Faust's default json codec).
        return app.Table(name, partitions=settings.partitions)

    processor = LifecycleProcessor(
        policy, topics, subjects=table("subjects"), due=table("due"), progress=table("progress")
    )

    @app.agent(source, name="lifecycle")
    async def lifecycle(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            for out in processor.on_message(
                message.topic, message.partition, message.offset, message.key, message.value
            ):
                await app.producer.send(
                    out.topic, out.key, out.value, None, None, list(out.headers) or None
                )

    return app
