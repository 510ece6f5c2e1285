"""Lifecycle events as the policy core sees them: small frozen facts, past tense."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """Something that happened to one data subject at ``time`` (UTC epoch ms)."""

    event_id: str
    subject_id: str
    time: int


@dataclass(frozen=True)
class CustomerRegistered(Event):
    pass


@dataclass(frozen=True)
class ServiceOrdered(Event):
    service_id: str
    kind: str


@dataclass(frozen=True)
class ServiceCancelled(Event):
    service_id: str


@dataclass(frozen=True)
class AccountClosed(Event):
    pass


@dataclass(frozen=True)
class InvoiceIssued(Event):
    invoice_id: str


@dataclass(frozen=True)
class PaymentRecorded(Event):
    payment_id: str


@dataclass(frozen=True)
class RecordWritten(Event):
    """A store announces it holds record ``record_key`` of ``category`` for this subject."""

    store: str
    category: str
    record_key: str
    ref: str | None = None


@dataclass(frozen=True)
class ClockTicked:
    """The pipeline's clock reached ``now``."""

    now: int


@dataclass(frozen=True)
class DeletionReported:
    """A store's receipt for a deletion command."""

    command_id: str
    subject_id: str
    store: str
    category: str
    record_key: str
    outcome: str  # DELETED, NOT_FOUND or FAILED
    reason: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        CustomerRegistered,
        ServiceOrdered,
        ServiceCancelled,
        AccountClosed,
        InvoiceIssued,
        PaymentRecorded,
        RecordWritten,
    )
}
