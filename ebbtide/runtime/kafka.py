"""The Kafka client factory: every client of Ebbtide gets its connection settings here.

kafka-python clients (the CLI, the client, the clock, the tools, the tests) are built by
:func:`producer`, :func:`consumer` and :func:`admin`, or from :func:`client_config` (the asyncio
publisher's aiokafka producer by :func:`async_producer`); the sinks'
confluent-kafka clients start from :func:`librdkafka_config` and the worker's Faust app from
:func:`faust_config`. Where the brokers are, who the client says it is, and its security (SASL and
TLS, :mod:`ebbtide.runtime.kafka_security`) are decided in this module only. A process's first
client of a secured broker checks the connection once (:func:`secured`): a refused password or an
untrusted certificate is a SettingsError naming the setting, not a timeout.

Also the producer's delivery bookkeeping (:func:`await_delivery`, :func:`close_producer`) and the
pipeline's topics (:func:`pipeline_topics`, :func:`create_topics`, :func:`end_offsets`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError, for_code

from ebbtide.runtime import kafka_security
from ebbtide.runtime.kafka_security import KafkaSecurity
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import MIN_INSYNC, TopicSpec

CLIENT_ID = "ebbtide"
# Seconds a producing command (publish, clock, dlq replay, the client classes) waits for the broker
# to acknowledge a message before it reports it as not delivered: never a hang.
DELIVERY_TIMEOUT = 30.0
LINGER_MS = 5
# Seconds allowed beyond the delivery timeout for the producer's own bookkeeping (its sender
# expires a batch on its next loop after the deadline).
_GRACE = 5.0


def _ms(timeout: float) -> int:
    return max(1000, round(timeout * 1000))


_checked: set[tuple[str, KafkaSecurity]] = set()


def secured(settings: Settings) -> KafkaSecurity:
    """The Kafka security of ``settings`` (EBBTIDE_KAFKA_SECURITY_PROTOCOL ...). Unless PLAINTEXT,
    the first call of a process for these brokers connects once to check it
    (:func:`kafka_security.check`): SettingsError naming the setting if the broker refuses the
    user or its certificate is not trusted."""
    chosen = kafka_security.security(settings)
    key = (settings.kafka_bootstrap, chosen)
    if chosen.protocol != "PLAINTEXT" and key not in _checked:
        kafka_security.check(settings.kafka_bootstrap, chosen)
        _checked.add(key)
    return chosen


def client_config(
    bootstrap: str, client_id: str | None = CLIENT_ID, security: KafkaSecurity | None = None
) -> dict[str, Any]:
    """The keywords that say where a kafka-python or aiokafka client connects and as whom:
    ``bootstrap_servers``, ``client_id`` (None: the library's own default id) and its security
    (SASL and TLS; both libraries take the same keywords, TLS as an ``ssl_context``)."""
    config: dict[str, Any] = {"bootstrap_servers": bootstrap}
    if client_id is not None:
        config["client_id"] = client_id
    if security is not None:
        config.update(security.python_config())
    return config


def connection(settings: Settings, client_id: str | None = CLIENT_ID) -> dict[str, Any]:
    """:func:`client_config` for the brokers and the security of ``settings``
    (EBBTIDE_KAFKA_BOOTSTRAP, EBBTIDE_KAFKA_SECURITY_PROTOCOL ...)."""
    return client_config(settings.kafka_bootstrap, client_id, secured(settings))


def consumer(
    settings: Settings, *topics: str, client_id: str | None = CLIENT_ID, **options: Any
) -> KafkaConsumer:
    """A kafka-python consumer of ``settings``' brokers; ``options`` are KafkaConsumer's own
    (``enable_auto_commit``, ``group_id``, timeouts ...)."""
    return KafkaConsumer(*topics, **connection(settings, client_id), **options)


def admin(settings: Settings, client_id: str | None = CLIENT_ID, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client of ``settings``' brokers."""
    return KafkaAdminClient(**connection(settings, client_id), **options)


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """The connection part of a confluent-kafka (librdkafka) client's configuration, its security
    included; the caller adds its own (group, acks, ...)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": CLIENT_ID,
        **secured(settings).librdkafka_config(),
    }


def faust_config(settings: Settings) -> dict[str, Any]:
    """The broker part of the worker's Faust app settings: where the brokers are and how soon a
    dead worker's partitions move on (EBBTIDE_SESSION_TIMEOUT; heartbeats a third of it, at most
    every 3 s) and its security (``broker_credentials``, unless PLAINTEXT)."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout / 3),
        **secured(settings).faust_config(),
    }


def producer(settings: Settings, timeout: float = DELIVERY_TIMEOUT) -> KafkaProducer:
    """A durable, bounded producer: every write acknowledged by the in-sync replicas (acks=all) and
    retried on transient errors, but for ``timeout`` seconds at most. Its constructor (bootstrap),
    ``send`` (topic metadata) and each message's delivery (``delivery_timeout_ms``) all give up
    with ``KafkaTimeoutError`` after that long instead of waiting for a broker that is gone. Wait
    for the sends with :func:`await_delivery` and close it with :func:`close_producer`."""
    ms = _ms(timeout)
    return KafkaProducer(
        **connection(settings),
        acks="all",
        linger_ms=LINGER_MS,
        max_in_flight_requests_per_connection=1,
        delivery_timeout_ms=ms,  # send() to acknowledgement, retries included
        request_timeout_ms=ms - LINGER_MS,  # kafka-python wants delivery >= linger + request
        max_block_ms=ms,  # send() waiting for the topic's metadata
        bootstrap_timeout_ms=ms,  # the constructor waiting for a broker
    )


def async_producer(settings: Settings, timeout: float = DELIVERY_TIMEOUT) -> Any:
    """An aiokafka producer (``AIOKafkaProducer``, made in the running event loop; ``await
    .start()`` it) as durable as :func:`producer`: acks=all, retried for ``timeout`` seconds at most
    (``request_timeout_ms``: metadata, the queue and each request; the caller bounds a delivery
    with the same timeout). Connects as the kafka-python clients do (:func:`connection`; for a
    secured broker, the process's first client checks it once, blocking, :func:`secured`)."""
    from aiokafka import AIOKafkaProducer  # the asyncio client only: kafka-python users never load it

    return AIOKafkaProducer(
        **connection(settings),
        acks="all",
        linger_ms=LINGER_MS,
        request_timeout_ms=_ms(timeout),
    )


@dataclass(frozen=True)
class Undelivered:
    """Sends the broker did not acknowledge: how many of how many, the first (index into the
    futures) and the first error."""

    failed: int
    total: int
    first: int
    error: BaseException

    @property
    def reason(self) -> str:
        """The first error's class name, e.g. ``KafkaTimeoutError`` (its text may be long)."""
        return type(self.error).__name__


def not_acknowledged(reason: str, timeout: float) -> str:
    """``not acknowledged by the broker within 30 s (KafkaTimeoutError)``, or, for an error
    other than a timeout (a message the broker refused), ``... by the broker (REASON)``."""
    within = f" within {timeout:g} s" if reason == "KafkaTimeoutError" else ""
    return f"not acknowledged by the broker{within} ({reason})"


def await_delivery(
    out: KafkaProducer, futures: Sequence[Any], timeout: float = DELIVERY_TIMEOUT
) -> Undelivered | None:
    """Wait until the broker has acknowledged each of ``futures`` (kafka-python send futures),
    ``timeout`` seconds (plus a little grace) in all at most; what was not acknowledged, if any.
    kafka-python's ``flush`` alone only logs failed batches, and without a timeout can wait
    forever."""
    deadline = time.monotonic() + timeout + _GRACE
    with contextlib.suppress(KafkaError):  # timed out, or a batch failed: the futures say which
        out.flush(timeout=timeout + _GRACE)
    failures: list[tuple[int, BaseException]] = []
    for index, future in enumerate(futures):
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            failures.append((index, exc))
    if not failures:
        return None
    return Undelivered(len(failures), len(futures), failures[0][0], failures[0][1])


def close_producer(out: KafkaProducer, timeout: float = 1.0) -> None:
    """Close ``out`` within about ``timeout`` seconds, never raising: messages it still holds are
    given up (call :func:`await_delivery` first to know which). kafka-python's own ``close()``
    flushes without a time limit, and its ``close(timeout)`` raises when that flush times out and
    leaves the producer half open (to raise again from ``__del__`` at exit)."""
    try:
        out.close(timeout=timeout)
        return
    except KafkaError:
        pass
    sender: Any = getattr(out, "_sender", None)
    if sender is not None:  # fail the batches still held, so the close below returns at once
        sender.force_close()
        sender.join(max(timeout, _GRACE))
    try:
        out.close(timeout=0)
    except KafkaError:  # still holding batches: never let it raise again from __del__ at exit
        out._closed = True


def pipeline_topics(topics: Topics, stores: Iterable[str]) -> list[str]:
    """The names of every topic the lifecycle agent and the given stores' sinks use (their
    partitions, replicas and retention: :func:`ebbtide.tools.topics.project_topics`)."""
    names = [
        topics.events,
        topics.clock,
        topics.receipts,
        topics.decisions,
        topics.answers,
        topics.certificates,
        topics.checkpoints,
        topics.dlq,
    ]
    return names + [topics.commands(store) for store in stores]


def create_topics(settings: Settings, wanted: Iterable[str | TopicSpec]) -> list[str]:
    """Create the missing topics of ``wanted``; return the names of those created. A
    :class:`TopicSpec` is created as it says (partitions, replicas, configuration); a bare name
    with EBBTIDE_PARTITIONS partitions, EBBTIDE_TOPIC_REPLICATION_FACTOR replicas and
    EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS, the rest the broker's defaults (scratch topics). Existing
    topics are left as they are (``ebbtide topics apply`` changes them).

    Events, clock and receipts must share one partition count: the lifecycle agent keeps each
    subject's state on the partition its events use.
    """
    specs = [_as_spec(settings, item) for item in wanted]
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        created, refused = create_missing(client, [spec for spec in specs if spec.name not in existing])
        if refused:
            name, error = refused[0]
            raise error(f"the broker refused to create {name}")
        return created
    finally:
        client.close()


def create_missing(
    client: KafkaAdminClient, missing: Sequence[TopicSpec]
) -> tuple[list[str], list[tuple[str, type[KafkaError]]]]:
    """Create ``missing`` as declared, in one request: the names created (once each has a
    leader), and those the broker refused with its error. One that exists meanwhile (made by a
    worker, another command) is neither: it is left as it is."""
    if not missing:
        return [], []
    # Waiting for the metadata here would wait for a refused topic too, until a timeout that hides
    # the broker's reason: only the created ones are waited for, below.
    answer = client.create_topics({spec.name: new_topic(spec) for spec in missing}, raise_errors=False)
    created: list[str] = []
    refused: list[tuple[str, type[KafkaError]]] = []
    for topic in answer["topics"]:
        error = for_code(topic["error_code"])
        if error is NoError:
            created.append(topic["name"])
        elif error is not TopicAlreadyExistsError:
            refused.append((topic["name"], error))
    if created:
        client.wait_for_topics(created)
    return created, refused


def _as_spec(settings: Settings, item: str | TopicSpec) -> TopicSpec:
    if isinstance(item, TopicSpec):
        return item
    return TopicSpec(
        item,
        settings.partitions,
        settings.topic_replication_factor,
        {MIN_INSYNC: str(settings.topic_min_insync_replicas)},
    )


def new_topic(spec: TopicSpec) -> dict[str, Any]:
    """kafka-python's description of a new topic (``KafkaAdminClient.create_topics``)."""
    return {
        "num_partitions": spec.partitions,
        "replication_factor": spec.replication_factor,
        "configs": dict(spec.config),
    }


def offsets_reader(settings: Settings, timeout: float | None = None) -> KafkaConsumer:
    """A group-less consumer used only to read end offsets; with a ``timeout``, its bootstrap and
    requests give up (``KafkaTimeoutError``) after that many seconds."""
    if timeout is None:
        return consumer(settings)
    return consumer(settings, request_timeout_ms=_ms(timeout), bootstrap_timeout_ms=_ms(timeout))


def end_offsets(consumer: KafkaConsumer, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic} does not exist (run: ebbtide topics create)")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
