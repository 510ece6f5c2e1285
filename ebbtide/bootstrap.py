"""The composition root: the one place that reads the settings and wires the parts together.

The CLI, the demo, the tools and the tests ask for a part here instead of building it: the
policy (the retention rules with the settings' store map), the worker's Faust app, a sink of a
given kind, the clock. Nothing below this module (``streams``, ``sinks``, ``ebbtide.runtime``)
reads the store map or chooses an implementation itself.

Heavy imports (Faust, Kafka clients, database drivers) happen inside the functions that need
them, so a command that needs none of them starts fast.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.streams.policy.rules import Policy, load_policy, rules_policy
from ebbtide.streams.policy.stores import DEFAULT_STORES, StoreMap, StoreMapError, load_store_map

if TYPE_CHECKING:
    import faust

    from ebbtide.sinks.base.kind import SinkGroup

log = logging.getLogger(__name__)


class CannotStart(Exception):
    """Why a process must not start with these settings or arguments: one line for the operator
    (the CLI prints it and exits 2)."""


def store_map(settings: Settings) -> StoreMap:
    """The store map of ``settings`` (EBBTIDE_STORE_MAP; default: the one shipped with the policy):
    which stores hold which categories. Each store has a command topic and a sink."""
    path = settings.store_map or DEFAULT_STORES
    stores = load_store_map(path)
    from ebbtide.sinks import registry  # the store map names kinds; the sinks' registry knows which exist

    unknown = sorted({s.kind for s in stores.stores} - set(registry.names()))
    if unknown:
        raise StoreMapError(
            f"{path}: no sink of kind {', '.join(unknown)} (known: {', '.join(registry.names())})"
        )
    return stores


def policy(settings: Settings, rules: Path | None = None) -> Policy:
    """The policy a worker with ``settings`` runs: the retention rules of the file ``rules``
    (default: the shipped rules) with the settings' store map."""
    loaded = load_policy(rules) if rules is not None else rules_policy()
    return loaded.with_stores(store_map(settings))


# -- the worker ---------------------------------------------------------------------------------


def partition_mismatch(settings: Settings) -> str | None:
    """Why the worker must not start with these settings' partition count, if it must not: the
    worker checks that every subject's message is on its key's partition, counted with
    EBBTIDE_PARTITIONS, so its input topics must have exactly that many partitions."""
    from kafka.errors import KafkaError

    from ebbtide.runtime import kafka

    topics = Topics(settings.topic_prefix)
    try:
        consumer = kafka.consumer(settings, client_id=None, request_timeout_ms=30_000)
    except KafkaError as exc:
        return f"the broker at {settings.kafka_bootstrap} did not answer ({type(exc).__name__})"
    try:
        for topic in (topics.events, topics.clock, topics.receipts):
            found = consumer.partitions_for_topic(topic)
            if found and len(found) != settings.partitions:
                return (
                    f"topic {topic} has {len(found)} partitions but EBBTIDE_PARTITIONS is "
                    f"{settings.partitions}: set EBBTIDE_PARTITIONS to the topics' count (events, "
                    "clock and receipts must have the same)"
                )
    finally:
        consumer.close()
    return None


def worker(settings: Settings, rules: Path | None = None) -> faust.App:
    """The lifecycle worker's Faust app, ready to run (:func:`run_worker`), with its /metrics
    served: the policy of ``rules`` (default: the shipped rules) with the settings' store map, and
    the legal hold signers' keys, read once (a replay gets the same answers). :class:`CannotStart`
    if the input topics do not have EBBTIDE_PARTITIONS partitions or the hold keys cannot be read."""
    from ebbtide.runtime import endpoints
    from ebbtide.runtime.authenticity import HoldKeys
    from ebbtide.streams.worker.app import create_app

    running = policy(settings, rules)
    mismatch = partition_mismatch(settings)
    if mismatch:
        raise CannotStart(mismatch)
    try:
        hold_keys = HoldKeys.for_worker(settings)
    except ValueError as exc:
        raise CannotStart(str(exc)) from None
    host = settings.http_host
    try:  # Faust's web binds later, with a traceback if it cannot: checked here first
        endpoints.check_free(
            settings.worker_web_host,
            settings.worker_web_port,
            "EBBTIDE_WORKER_WEB_PORT",
            "EBBTIDE_WORKER_WEB_HOST",
        )
        endpoints.check_free(host, settings.worker_metrics_port, "EBBTIDE_WORKER_METRICS_PORT")
    except endpoints.CannotServe as exc:
        raise CannotStart(str(exc)) from None
    worker_series(running)
    app = create_app(settings, running, hold_keys)  # its readiness check waits for partitions
    try:
        port = endpoints.serve(host, settings.worker_metrics_port, "EBBTIDE_WORKER_METRICS_PORT")
    except endpoints.CannotServe as exc:
        raise CannotStart(str(exc)) from None
    log.warning(
        "lifecycle worker %s (own member id set: %s): policy %s, /metrics /healthz /readyz on %s:%d, "
        "web on %s:%d",
        settings.app_id,
        settings.worker_instance_id is not None,
        running.label,
        host,
        port,
        host,
        settings.worker_web_port,
    )
    return app


def run_worker(app: faust.App, loglevel: str, log_format: str = "text") -> None:
    """Run the worker's app until it is stopped (Faust's worker: signals, logging at ``loglevel``
    in ``log_format``, Faust's records and ours alike)."""
    from faust.worker import Worker

    from ebbtide.runtime.logging import faust_logging_config

    config = faust_logging_config(loglevel, log_format)
    runner = Worker(app, loglevel=loglevel, quiet=True, logging_config=config)
    runner.spinner = None  # the terminal spinner costs CPU on every log record, even unseen
    runner.execute_from_commandline()


# -- the sinks ----------------------------------------------------------------------------------


def sink(settings: Settings, kind: str, args: argparse.Namespace, stop: threading.Event) -> SinkGroup:
    """The process of ``ebbtide sink <kind>``, ready to run until ``stop`` is set, with its /metrics
    served: built by that kind of the sink registry (:mod:`sinks.registry`) from the settings and
    the command's arguments. :class:`CannotStart` if its configuration or database cannot be used
    (a sink checks them before it runs)."""
    from ebbtide.runtime import endpoints
    from ebbtide.sinks import registry
    from ebbtide.sinks.base.errors import SinkConfigError, SinkSetupError

    chosen = registry.get(kind)
    try:
        process = chosen.build(settings, args, stop)
    except (SinkConfigError, SinkSetupError) as exc:
        raise CannotStart(str(exc)) from None
    sink_series(settings, process, vendor=chosen.name == "http")
    try:
        port = endpoints.serve(settings.http_host, chosen.port(settings, args), chosen.port_setting)
    except endpoints.CannotServe as exc:
        raise CannotStart(str(exc)) from None
    log.warning(
        "%s sink for %s: /metrics /healthz /readyz on %s:%d",
        chosen.name,
        process.label,
        settings.http_host,
        port,
    )
    return process


# -- the metric series each process has from its start -------------------------------------------


def worker_series(running: Policy) -> None:
    """The worker's labelled metric series at 0, for every store of the store map, category,
    event type, decision kind and receipt outcome (so that an alert's increase() sees the first
    of each)."""
    from typing import get_args

    from ebbtide.runtime import metrics
    from ebbtide.streams.engine.decisions import DecisionKind
    from ebbtide.streams.policy import vocabulary

    stores = running.stores.stores if running.stores is not None else ()
    metrics.worker_started(
        stores={s.id: sorted({h.category for h in s.holds}) for s in stores},
        categories=sorted({c for rule in running.rules for c in rule.categories}),
        event_types=vocabulary.EVENTS,
        decision_kinds=get_args(DecisionKind),
        outcomes=vocabulary.OUTCOMES,
    )


def sink_series(settings: Settings, process: SinkGroup, vendor: bool) -> None:
    """A sink process's labelled metric series at 0, for each store it serves (``vendor``: an
    HTTP vendor sink, with its request and circuit series)."""
    from ebbtide.runtime import metrics
    from ebbtide.streams.policy import vocabulary

    mapped = store_map(settings)
    held = {}
    for sink in process.sinks:
        store = mapped.store(sink.store)
        held[sink.store] = sorted({h.category for h in store.holds}) if store is not None else []
    metrics.sink_started(held, vocabulary.OUTCOMES, vendor=vendor)
