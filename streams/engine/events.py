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
class DomainRegistered(Event):
    domain: str


@dataclass(frozen=True)
class DomainReleased(Event):
    """Expired, deleted or transferred out."""

    domain: str
    how: str = "EXPIRED"


@dataclass(frozen=True)
class CertificateIssued(Event):
    certificate_id: str
    valid_until: int


@dataclass(frozen=True)
class CertificateRevoked(Event):
    certificate_id: str


@dataclass(frozen=True)
class HostingAgreementTerminated(Event):
    agreement_id: str
    paid_until: int


@dataclass(frozen=True)
class ExportOffered(Event):
    agreement_id: str


@dataclass(frozen=True)
class ConsentGiven(Event):
    purpose: str


@dataclass(frozen=True)
class ConsentWithdrawn(Event):
    purpose: str


@dataclass(frozen=True)
class RecordWritten(Event):
    """A store announces it holds record ``record_key`` of ``category`` for this subject."""

    store: str
    category: str
    record_key: str
    ref: str | None = None


@dataclass(frozen=True)
class ErasureRequested(Event):
    """GDPR art. 17. Unverified requests are held until identity is verified (seed 004)."""

    request_id: str
    verified: bool


@dataclass(frozen=True)
class ErasureVerified(Event):
    request_id: str


@dataclass(frozen=True)
class ErasureRefused(Event):
    """The request ends without a deletion: refused, e.g. the person's identity was never
    verified (seed 004). Closes the duty to answer, with the reason."""

    request_id: str
    reason: str = "IDENTITY_NOT_VERIFIED"  # IDENTITY_NOT_VERIFIED, MANIFESTLY_UNFOUNDED, EXCESSIVE, OTHER


@dataclass(frozen=True)
class ErasureWithdrawn(Event):
    """The person took the request back before it was carried out. Closes the duty to answer."""

    request_id: str


@dataclass(frozen=True)
class RestrictionRequested(Event):
    """GDPR art. 18: processing limited to storage; nothing is deleted while it lasts."""

    restriction_id: str


@dataclass(frozen=True)
class RestrictionLifted(Event):
    restriction_id: str


@dataclass(frozen=True)
class LegalHoldPlaced(Event):
    """A court order or authority demand (seed 001 'How we share'): suspends deletion.

    Empty ``categories`` and ``records`` mean the whole subject."""

    hold_id: str
    categories: tuple[str, ...] = ()
    records: tuple[str, ...] = ()  # record ids: store/category/key


@dataclass(frozen=True)
class LegalHoldReleased(Event):
    hold_id: str


@dataclass(frozen=True)
class BreachDetected(Event):
    breach_id: str


@dataclass(frozen=True)
class BreachNotified(Event):
    breach_id: str
    recipient: str  # AUTHORITY or CUSTOMER


@dataclass(frozen=True)
class DeletionReported:
    """A store's receipt for a deletion command."""

    command_id: str
    subject_id: str
    store: str
    category: str
    record_key: str
    outcome: str  # DELETED, NOT_FOUND, ANONYMISED, EXPIRES or FAILED
    reason: str | None = None
    rows: int = 0
    executed_at: int = 0  # ms; for EXPIRES, when the last copy holding the record expires
    # The store's signature over the fields above (ebbtide/authenticity.py), verified by the
    # worker before the engine sees the receipt; kept so the certificate can embed it.
    signer_key_id: str | None = None
    signature: str | None = None  # base64 of the 64-byte Ed25519 signature


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        CustomerRegistered,
        ServiceOrdered,
        ServiceCancelled,
        AccountClosed,
        InvoiceIssued,
        PaymentRecorded,
        DomainRegistered,
        DomainReleased,
        CertificateIssued,
        CertificateRevoked,
        HostingAgreementTerminated,
        ExportOffered,
        ConsentGiven,
        ConsentWithdrawn,
        RecordWritten,
        ErasureRequested,
        ErasureVerified,
        ErasureRefused,
        ErasureWithdrawn,
        RestrictionRequested,
        RestrictionLifted,
        LegalHoldPlaced,
        LegalHoldReleased,
        BreachDetected,
        BreachNotified,
    )
}
