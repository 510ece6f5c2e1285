"""Every Prometheus metric of Ebbtide, declared once.

Labels are bounded: event type, category, store, outcome, kind, partition. Never a subject,
record key or anything personal.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

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
    "ebbtide_dlq_messages_total", "Messages sent to the dead-letter topic, by source.", ["source"]
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

# Series an alert takes the increase() of exist from the start, at 0: otherwise the first
# increment creates the series at 1 and increase() sees no change (the first overdue duty of a
# worker's life would raise no alert).
for _duty in ("erasure", "export", "breach"):
    DUTIES_OVERDUE.labels(_duty)
for _result in ("issued", "deferred", "unsigned"):
    CERTIFICATES.labels(_result)
for _kind in ("unsigned", "bad_signature", "other_key", "no_trusted_key", "not_issued"):
    SECURITY_EVENTS.labels("receipts", _kind)
    if _kind in ("unsigned", "bad_signature", "other_key"):
        SECURITY_EVENTS.labels("commands", _kind)
SECURITY_EVENTS.labels("commands", "wrong_subject")
for _kind in ("tick_time", "events_end"):
    SECURITY_EVENTS.labels("clock", _kind)
for _kind in ("unsigned", "bad_signature", "other_key", "no_trusted_key"):
    SECURITY_EVENTS.labels("events", _kind)  # legal hold events


def clock_ticked(now: datetime) -> None:
    """A tick for ``now`` was published (the broker acknowledged every partition)."""
    CLOCK_TICKS_PUBLISHED.inc()
    CLOCK_LAST_TICK.set(now.timestamp())
