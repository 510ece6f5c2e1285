"""Every Prometheus metric of Ebbtide, declared once.

Labels are bounded: event type, category, store, outcome, kind, partition. Never a subject,
record key or anything personal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram, PlatformCollector, ProcessCollector


class _KnownLabels:
    """``labels(*values)`` of a series that exists already is one dict lookup: prometheus_client
    checks, converts and locks on every call, a cost the worker paid several times per event.
    Its children are kept under their label values as strings (``_metrics``), so string values
    find them as they are; anything else (a new series, other types, keywords, a wrong count)
    takes prometheus_client's own path, and ``remove``/``clear`` act on that same dict."""

    _labelnames: tuple[str, ...]
    _metrics: Any

    def labels(self, *values: Any, **named: Any) -> Any:
        if self._labelnames and not named:
            child = self._metrics.get(values)
            if child is not None:
                return child
        return super().labels(*values, **named)  # type: ignore[misc]


class Counter(_KnownLabels, prometheus_client.Counter):
    """A prometheus_client ``Counter`` whose known series are found at once."""


class Gauge(_KnownLabels, prometheus_client.Gauge):
    """A prometheus_client ``Gauge`` whose known series are found at once."""


EVENTS_CONSUMED = Counter(
    "ebbtide_events_consumed_total", "Lifecycle events consumed, by event type.", ["type"]
)
RECORDS_STAMPED = Counter(
    "ebbtide_records_stamped_total", "Records first stamped by the policy engine.", ["category"]
)
DECISIONS = Counter("ebbtide_decisions_total", "Policy decisions published, by kind.", ["kind"])
PENDING_DEADLINES = Gauge(
    "ebbtide_pending_deadlines", "Records waiting for a deadline, by partition.", ["partition"]
)
CLOCK_TIME = Gauge(
    "ebbtide_clock_time_seconds",
    "Pipeline clock of the last tick applied, by partition (unix seconds).",
    ["partition"],
)
TICKS_DEFERRED = Gauge(
    "ebbtide_ticks_deferred",
    "Ticks waiting for the events published before them, by partition.",
    ["partition"],
)
COMMANDS_SENT = Counter(
    "ebbtide_commands_sent_total",
    "Deletion commands sent, by store and category.",
    ["store", "category"],
)
COMMANDS_RESENT = Counter(
    "ebbtide_commands_resent_total",
    "Deletion commands sent again (same command id) because their store had not answered within "
    "its service level, by store; included in ebbtide_commands_sent_total.",
    ["store"],
)
RECEIPTS = Counter(
    "ebbtide_receipts_total",
    "Deletion receipts consumed by the lifecycle agent.",
    ["store", "outcome"],
)
DLQ_MESSAGES = Counter(
    "ebbtide_dlq_messages_total",
    "Messages sent to the dead-letter topic, by source (events, receipts, clock: the worker; "
    "commands: a sink; cdc: `ebbtide cdc run`) and reason (see DLQ_REASONS).",
    ["source", "reason"],
)
SINK_COMMANDS = Counter(
    "ebbtide_sink_commands_total",
    "Deletion commands executed by a sink, by store and outcome.",
    ["store", "outcome"],
)
ROWS_DELETED = Counter(
    "ebbtide_rows_deleted_total",
    "Rows deleted by a sink, by store and category.",
    ["store", "category"],
)
CERTIFICATES = Counter(
    "ebbtide_certificates_total",
    "Deletion certificates the worker found due: issued (signed and published), unsigned (no "
    "signer configured) or deferred (signing failed; kept and tried again at the next tick, see "
    "the worker's log).",
    ["result"],
)
PROCESSING_ERRORS = Counter(
    "ebbtide_processing_errors_total",
    "Records the engine raised on, by source: events and receipts (dead-lettered with the reason) "
    "and clock (a subject not judged at a tick; tried again at the next one).",
    ["source"],
)
DUTIES_OVERDUE = Counter(
    "ebbtide_duties_overdue_total",
    "Duties reported overdue (DUTY_OVERDUE), by duty: erasure (answer an erasure request), export "
    "(offer a hosting customer's data for export before the paid period ends) or breach (notify).",
    ["duty"],
)
SCHEMA_REGISTRY_WAITING = Gauge(
    "ebbtide_schema_registry_waiting_seconds",
    "Seconds the worker's current batch has waited on the schema registry (down, timing out, "
    "refusing the worker); 0 when not waiting.",
)
CERTIFICATES_UNSIGNED = Gauge(
    "ebbtide_certificates_unsigned",
    "Deletion certificates due but not signed yet (signing failed; tried again at every tick).",
)
OVERDUE = Gauge(
    "ebbtide_deletions_overdue",
    "Deletion commands without a receipt past their store's service level, by store.",
    ["store"],
)
AWAITING_RECEIPT = Gauge(
    "ebbtide_deletions_awaiting_receipt",
    "Deletion commands sent and not answered by their store yet, by store.",
    ["store"],
)
RECORDS_WAITING = Gauge(
    "ebbtide_records_waiting",
    "Records waiting for their deadline (nothing suspending it), by category; each worker counts "
    "the partitions it holds.",
    ["category"],
)
RECORDS_HELD = Gauge(
    "ebbtide_records_held",
    "Records a legal hold keeps from deletion, by category; each worker counts the partitions it holds.",
    ["category"],
)
DUTIES_OPEN = Gauge(
    "ebbtide_duties_open",
    "Duties not done yet (overdue ones included), by duty: erasure, export or breach; each worker "
    "counts the partitions it holds.",
    ["duty"],
)
SINK_GAVE_UP = Counter(
    "ebbtide_sink_gave_up_total",
    "Commands a sink stopped retrying (dead-lettered with the reason and answered FAILED), by store.",
    ["store"],
)
SINK_BATCH_SECONDS = Histogram(
    "ebbtide_sink_batch_seconds", "Time to execute and commit one batch of commands.", ["store"]
)
VENDOR_REQUEST_SECONDS = Histogram(
    "ebbtide_vendor_request_seconds",
    "Time of one HTTP call of the vendor sink to its vendor, answered or not, by store.",
    ["store"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
VENDOR_ATTEMPTS = Counter(
    "ebbtide_vendor_attempts_total",
    "HTTP calls of the vendor sink, by store and result: deleted, not_found, permanent (refused, "
    "not retried), retryable (status worth retrying), timeout, connection_error.",
    ["store", "result"],
)
SINK_CIRCUIT_OPEN = Gauge(
    "ebbtide_sink_circuit_open",
    "1 while the circuit breaker of a vendor sink is open or half-open (calls suspended), 0 when closed.",
    ["store"],
)

# The clock process (`ebbtide clock wall`, job ebbtide-clock) serves a registry of its own: its
# tick metrics and the process ones (process_start_time_seconds for EbbtideProcessRestarting),
# not the worker's metrics, which it would only export as zeros.
CLOCK_REGISTRY = CollectorRegistry()
ProcessCollector(registry=CLOCK_REGISTRY)
PlatformCollector(registry=CLOCK_REGISTRY)
CLOCK_TICKS_PUBLISHED = Counter(
    "ebbtide_clock_ticks_published_total",
    "Clock ticks published by this clock process (every partition acknowledged by the broker).",
    registry=CLOCK_REGISTRY,
)
CLOCK_LAST_TICK = Gauge(
    "ebbtide_clock_last_tick_seconds",
    "Pipeline time of the last tick this clock process published (unix seconds); 0 before the first.",
    registry=CLOCK_REGISTRY,
)
# The ingestion service (`ebbtide ingest serve`) serves a registry of its own, as the clock does:
# its request metrics and the process ones, not the worker's.
INGEST_REGISTRY = CollectorRegistry()
ProcessCollector(registry=INGEST_REGISTRY)
PlatformCollector(registry=INGEST_REGISTRY)
INGEST_REQUESTS = Counter(
    "ebbtide_ingest_requests_total",
    "HTTP requests answered by `ebbtide ingest serve`, by route (its template, or other), status "
    "code and reason class (see INGEST_REASONS).",
    ["route", "status", "reason"],
    registry=INGEST_REGISTRY,
)
INGEST_EVENTS = Counter(
    "ebbtide_ingest_events_total",
    "Events of the requests `ebbtide ingest serve` acknowledged: published (acknowledged by Kafka) "
    "or repeated (an event id it had published, answered with the first acknowledgement).",
    ["outcome"],
    registry=INGEST_REGISTRY,
)
INGEST_SECONDS = Histogram(
    "ebbtide_ingest_request_seconds",
    "Time to answer one ingestion request (Kafka's acknowledgements included).",
    ["route"],
    registry=INGEST_REGISTRY,
)
SECURITY_EVENTS = Counter(
    "ebbtide_security_events_total",
    "Messages refused as not authentic or not possible (dead-lettered with the reason, never acted "
    "on), by source and kind. commands (at a sink) and receipts (at the worker): unsigned, "
    "bad_signature, other_key (signed by a key not trusted for it); commands also wrong_subject "
    "(answered FAILED: its record key matches rows of another subject, per the store map's subject "
    "column); receipts "
    "also no_trusted_key (no public key for its store) and not_issued (answers a command the worker "
    "never issued for that copy). clock: tick_time (far from wall time), events_end (an impossible tick). "
    "events (a LegalHoldPlaced or LegalHoldReleased not signed by a trusted hold signer's key): "
    "unsigned, bad_signature, other_key, no_trusted_key (the worker trusts no hold key).",
    ["source", "kind"],
)

CDC_CHANGES = Counter(
    "ebbtide_cdc_changes_total",
    "Row changes of captured tables `ebbtide cdc run` handled, by store, category and kind: insert "
    "and snapshot (announced), restored (an insert of a row Ebbtide had deleted: deleted again), "
    "deleted_by_ebbtide, deleted_outside (a row deleted by something else than Ebbtide).",
    ["store", "category", "kind"],
)
CDC_KINDS = ("insert", "snapshot", "restored", "deleted_by_ebbtide", "deleted_outside")

# The bounded vocabularies of the labels below that no configuration names (the store map names
# the stores and categories, the policy's vocabulary the event types, decision kinds and outcomes).
DLQ_REASONS = {
    "invalid": "the message does not fit: its schema, its key or partition, the policy, the time window",
    "security": "refused as not authentic or not possible (also counted in ebbtide_security_events_total)",
    "processing_failed": "the policy engine raised on it (the reason names the exception and where)",
    "gave_up": "a sink gave up on a command: the store refused it or every retry failed",
}
WORKER_DLQ_SOURCES = ("events", "receipts", "clock")
SINK_DLQ_SOURCE = "commands"
CDC_DLQ_SOURCE = "cdc"
DUTIES = ("erasure", "export", "breach")
CERTIFICATE_RESULTS = ("issued", "deferred", "unsigned")
VENDOR_RESULTS = ("deleted", "not_found", "permanent", "retryable", "timeout", "connection_error")
# The status codes `POST /v1/events` answers, each with its reason class (INGEST_REASONS).
INGEST_STATUSES = {
    200: "ok",
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    503: "unavailable",
}
INGEST_ROUTE = "/v1/events"
INGEST_OUTCOMES = ("published", "repeated")
INGEST_REASONS = {
    "ok": "acknowledged (or answered, for the probes and the document)",
    "unauthenticated": "no valid bearer token or client certificate",
    "forbidden": "a legal hold event from a producer not in EBBTIDE_INGEST_HOLD_PRODUCERS (nothing sent)",
    "invalid": "not JSON, or an event the schema or the policy refuses (nothing of the request sent)",
    "conflict": "an event id already published with other content (nothing of the request sent)",
    "too_large": "over the body size or batch size limit",
    "unavailable": "Kafka or the key store did not take every event, or not ready",
    "not_found": "no such route or method",
}
SECURITY_KINDS = {
    "receipts": ("unsigned", "bad_signature", "other_key", "no_trusted_key", "not_issued"),
    "commands": ("unsigned", "bad_signature", "other_key", "wrong_subject"),
    "clock": ("unsigned", "bad_signature", "other_key", "tick_time", "events_end", "deferred_full"),
    "events": ("unsigned", "bad_signature", "other_key", "no_trusted_key"),  # legal hold events
}


# Every series an alert or a dashboard takes the increase() or rate() of exists from the start,
# at 0: otherwise the first increment creates the series at 1, increase() sees no change, and the
# first overdue duty or dead letter of a process's life raises no alert. A process calls its
# initialiser when it starts, with what it knows (the store map, the policy's vocabulary).


def worker_started(
    stores: Mapping[str, Iterable[str]],
    categories: Iterable[str],
    event_types: Iterable[str],
    decision_kinds: Iterable[str],
    outcomes: Iterable[str],
) -> None:
    """Create the lifecycle worker's labelled series at 0: ``stores`` maps each store of the
    store map to the categories it holds; ``categories`` are every category the policy stamps,
    ``event_types``, ``decision_kinds`` and receipt ``outcomes`` the vocabulary. (The series by
    partition appear when a partition is assigned and go when it is revoked.)"""
    for event_type in event_types:
        EVENTS_CONSUMED.labels(event_type)
    for category in categories:
        RECORDS_STAMPED.labels(category)
        RECORDS_WAITING.labels(category)
        RECORDS_HELD.labels(category)
    for kind in decision_kinds:
        DECISIONS.labels(kind)
    outcomes = tuple(outcomes)
    for store, held in stores.items():
        for category in held:
            COMMANDS_SENT.labels(store, category)
        COMMANDS_RESENT.labels(store)
        OVERDUE.labels(store)
        AWAITING_RECEIPT.labels(store)
        for outcome in outcomes:
            RECEIPTS.labels(store, outcome)
    for source in WORKER_DLQ_SOURCES:
        PROCESSING_ERRORS.labels(source)
        for reason in DLQ_REASONS:
            DLQ_MESSAGES.labels(source, reason)
    for duty in DUTIES:
        DUTIES_OVERDUE.labels(duty)
        DUTIES_OPEN.labels(duty)
    for result in CERTIFICATE_RESULTS:
        CERTIFICATES.labels(result)
    _security_events(("receipts", "clock", "events"))


def sink_started(stores: Mapping[str, Iterable[str]], outcomes: Iterable[str], vendor: bool = False) -> None:
    """Create a sink process's labelled series at 0: ``stores`` maps each store it serves to the
    categories the store map says it holds; ``outcomes`` the receipt outcomes; ``vendor``: an
    HTTP vendor sink (its request, attempt and circuit series too)."""
    outcomes = tuple(outcomes)
    for store, held in stores.items():
        for outcome in outcomes:
            SINK_COMMANDS.labels(store, outcome)
        for category in held:
            ROWS_DELETED.labels(store, category)
        SINK_GAVE_UP.labels(store)
        SINK_BATCH_SECONDS.labels(store)
        if vendor:
            VENDOR_REQUEST_SECONDS.labels(store)
            SINK_CIRCUIT_OPEN.labels(store)
            for result in VENDOR_RESULTS:
                VENDOR_ATTEMPTS.labels(store, result)
    for reason in DLQ_REASONS:
        DLQ_MESSAGES.labels(SINK_DLQ_SOURCE, reason)
    _security_events(("commands",))


def cdc_started(sources: Iterable[tuple[str, str]]) -> None:
    """Create `ebbtide cdc run`'s labelled series at 0: ``sources`` are the (store, category) of
    its captured tables."""
    for store, category in sources:
        for kind in CDC_KINDS:
            CDC_CHANGES.labels(store, category, kind)
    DLQ_MESSAGES.labels(CDC_DLQ_SOURCE, "invalid")  # its only reason: not a change of a captured table


def _security_events(sources: Iterable[str]) -> None:
    for source in sources:
        for kind in SECURITY_KINDS[source]:
            SECURITY_EVENTS.labels(source, kind)


def ingest_started() -> None:
    """Create the ingestion service's labelled series at 0: every answer of ``POST /v1/events``."""
    for status, reason in INGEST_STATUSES.items():
        INGEST_REQUESTS.labels(INGEST_ROUTE, str(status), reason)
    for outcome in INGEST_OUTCOMES:
        INGEST_EVENTS.labels(outcome)
    INGEST_SECONDS.labels(INGEST_ROUTE)


def clock_ticked(now: datetime) -> None:
    """A tick for ``now`` was published (the broker acknowledged every partition)."""
    CLOCK_TICKS_PUBLISHED.inc()
    CLOCK_LAST_TICK.set(now.timestamp())
