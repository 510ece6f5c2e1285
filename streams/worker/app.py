"""The Faust wiring: one lifecycle agent over events, clock ticks and receipts, its state
table, the partition signals and the worker's one web page.

Only wiring: each batch goes to the batch step (``batch``), each message in it to the processor
(``processor``); a rebalance makes the processor forget what it held for the partitions that
moved, and resume reporting them once their state is recovered."""

from __future__ import annotations

import gc
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import faust

from ebbtide.runtime.authenticity import ClockKey, HoldKeys, TrustedKeys
from ebbtide.runtime.endpoints import READINESS, WILDCARDS
from ebbtide.runtime.kafka import client_config, faust_config, secured
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.topic_spec import STATE_TABLE, changelog_config
from ebbtide.runtime.web_token import authorised, read_or_make_token, token_file
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.worker.batch import BatchStep
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out
from ebbtide.streams.worker.schema_wait import SchemaWait, process, registry_schemas
from ebbtide.streams.worker.store import PartitionedTable, store_url

BATCH = 500  # events per batch: one broker acknowledgement and one state write per key
BATCH_WAIT = 0.05  # seconds to wait for a batch to fill
READY_CHECK = "partitions"  # the worker's /readyz check
# Cyclic garbage collection every so many new objects (Python's default: 700). The state is made
# of short-lived acyclic values that reference counting frees; at the default, collections cost
# the worker about a tenth of its time per event.
GC_THRESHOLDS = (50_000, 20, 10)
RECOVERY_BATCH = 10_000  # changelog records read by recovery per write to the state store

log = logging.getLogger(__name__)


def lean_collections() -> None:
    """Once started: what the worker built to start (policy, schemas, Faust's app) is never
    scanned by the collector again, and collections run at :data:`GC_THRESHOLDS`."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def certificate_signer(settings: Settings) -> CertificateSigner:
    """The worker's signer; its key is made on first start if missing (and logged)."""
    return CertificateSigner.from_file(settings.signing_key, settings.certificate_issuer)


def wall_clock_check(tolerance: float, wall: Callable[[], float] = time.time) -> Callable[[int], str | None]:
    """Why a tick is refused in wall mode: its time is more than ``tolerance`` seconds ahead of
    this worker's wall clock (a forged tick from 2099 would order deletions years early). Ticks
    behind the wall clock are harmless: the pipeline clock never goes back."""

    def problem(now: int) -> str | None:
        ahead = now / 1000 - wall()
        if ahead > tolerance:
            return (
                f"tick is {ahead:.0f} s ahead of the worker's wall clock (more than {tolerance:.0f} s); "
                "refused in wall mode (EBBTIDE_CLOCK_MODE=replay for accelerated or scripted clocks)"
            )
        return None

    return problem


def create_app(settings: Settings, policy: Policy, hold_keys: HoldKeys | None = None) -> faust.App:
    """Build the app; nothing connects until a worker starts it. ``hold_keys``: the legal hold
    signers' keys (default: read from ``settings``; a ValueError if they cannot be)."""
    topics = Topics(settings.topic_prefix)
    app = _faust_app(settings)
    source = app.topic(
        topics.events,
        topics.clock,
        topics.receipts,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    # Keys are str (Faust's json codec), values bytes, encoded by the worker (streams.worker.values).
    table = PartitionedTable(
        app,
        name=STATE_TABLE,
        value_type=bytes,  # Faust's "raw" value serializer: the bytes as they are
        partitions=settings.partitions,
        store=store_url(settings.state_store),  # EBBTIDE_STATE_STORE: on disk, one database per partition
        beacon=app.tables.beacon,
        extra_topic_configs=changelog_config(settings),  # compacted, min.insync.replicas (docs/topics.md)
        recovery_buffer_size=RECOVERY_BATCH,
    )
    table.changelog_client = client_config(settings.kafka_bootstrap, None, secured(settings))
    app.tables.add(table)
    schemas_ready = SchemaWait(registry_schemas(settings), topics.events)  # before each batch
    processor = LifecycleProcessor(
        policy,
        topics,
        table,
        settings.partitions,
        signer=certificate_signer(settings),
        event_window=settings.event_window,
        tick_problem=wall_clock_check(settings.clock_tolerance) if settings.clock_mode == "wall" else None,
        trusted=TrustedKeys(settings.trusted_keys_dir),  # sink-<store>.pub of each store
        clock_key=ClockKey(settings.trusted_keys_dir),  # clock.pub
        hold_keys=hold_keys if hold_keys is not None else HoldKeys.for_worker(settings),  # EBBTIDE_HOLD_KEYS
        checkpoints=(settings.checkpoint_every, settings.checkpoint_seconds),
        registry=schemas_ready.registry,  # Confluent-framed events' writer schemas, if set
    )
    log.info("legal hold signers trusted (key ids): %s", ", ".join(processor.hold_keys.key_ids) or "none")

    async def send(out: Out) -> Any:
        return await app.producer.send(
            out.topic, out.key, out.value, out.partition, None, list(out.headers) or None
        )

    step = BatchStep(processor, send, written=table.written)

    @app.agent(source, name="lifecycle")
    async def lifecycle(stream: faust.StreamT[Any]) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is on the class, not the protocol
        lean_collections()
        async for events in stream.take_events(BATCH, within=BATCH_WAIT):
            await process(schemas_ready, step, [event.message for event in events])  # exits on failure

    _forget_on_rebalance(app, processor, {topics.events, topics.clock, topics.receipts})
    _subject_page(app, processor, read_or_make_token(token_file(settings)))
    return app


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        **faust_config(settings),  # the brokers, the session timeout and heartbeats
        store=store_url(settings.state_store),
        datadir=str(settings.state_dir / "faust"),  # the rocksdb store's databases: <datadir>/v1/tables
        web_enabled=True,
        # Only our token-checked page: Faust's own table, router, stats and graph pages would serve
        # the state without it.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        web_bind=settings.worker_web_host,  # EBBTIDE_WORKER_WEB_HOST (bootstrap checks the port)
        web_host=web_host(settings.worker_web_host),
        web_port=settings.worker_web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.topic_replication_factor,  # its changelog and leader topic
        producer_acks=-1,
        producer_linger=0.005,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        # A rebalance waits for the batch in flight (Faust's default, relied on): the batch's
        # writes and the index counting them are persisted or dropped together (partitions.py).
        stream_wait_empty=True,
        consumer_group_instance_id=settings.worker_member_id,  # the host or pod name by default
    )


def _forget_on_rebalance(app: faust.App, processor: LifecycleProcessor, sources: set[str]) -> None:
    """A partition of ``sources`` revoked or assigned: the processor drops what it held for it;
    once the rebalance is complete (the tables recovered), it reports the partitions it holds.
    The worker's /readyz (check ``partitions``) holds from then until the next rebalance."""
    READINESS.waiting(READY_CHECK, "no partitions assigned yet")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types signals loosely
    async def on_revoked(app: faust.App, revoked: set[Any], **kwargs: Any) -> None:
        READINESS.waiting(READY_CHECK, "rebalancing: partitions revoked")
        processor.forget({tp.partition for tp in revoked if tp.topic in sources})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        READINESS.waiting(READY_CHECK, "partitions assigned, recovering the state table")
        processor.forget({tp.partition for tp in assigned if tp.topic in sources})

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_recovered(app: faust.App, **kwargs: Any) -> None:
        held = {tp.partition for tp in app.consumer.assignment() if tp.topic in sources}
        processor.resume(held)
        READINESS.ready(
            READY_CHECK, "assigned and recovered: " + (",".join(map(str, sorted(held))) or "none")
        )


def web_host(bind: str) -> str:
    """The host name the worker's web gives for itself: the bind address, or for a wildcard bind
    (every interface) this host's name."""
    return socket.gethostname() if bind in WILDCARDS else bind


def _subject_page(app: faust.App, processor: LifecycleProcessor, web_token: str) -> None:
    @app.page("/subjects/{subject_id}/")
    async def subject(web: Any, request: Any, subject_id: str) -> Any:
        """One subject's state and its partition's clock: what `ebbtide explain` renders. Only
        for a caller with the worker's web token (ebbtide.runtime.web_token): 401 otherwise."""
        if not authorised(request.headers.get("Authorization"), web_token):
            return web.json(
                {"error": "unauthorised: send the worker's web token as 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="ebbtide-worker"'},
            )
        found = processor.lookup(subject_id)
        if found is None:
            return web.json({"state": None, "now": None})
        raw, now = found
        return web.json({"state": raw, "now": now})
