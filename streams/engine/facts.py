"""Facts: the clock- and rights-relevant part of events, ordered by event time then id."""

from __future__ import annotations

from dataclasses import dataclass

from ebbtide.streams.engine import events as ev


@dataclass(frozen=True, order=True)
class Fact:
    time: int
    event_id: str
    kind: str
    ref: str | None = None
    until: int | None = None  # an end date the event carries (validity end, last paid day)
    # kind-specific: hold scope, breach recipient, "verified", how a domain was released, why refused
    detail: tuple[str, ...] = ()


def fact_of(event: ev.Event) -> Fact | None:
    """The fact an event contributes, or None for events that move no clock and no right."""
    kind = type(event).__name__
    t, eid = event.time, event.event_id
    match event:
        case ev.ServiceOrdered(service_id=ref) | ev.ServiceCancelled(service_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.AccountClosed():
            return Fact(t, eid, kind)
        case ev.InvoiceIssued(invoice_id=ref) | ev.PaymentRecorded(payment_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.DomainRegistered(domain=ref):
            return Fact(t, eid, kind, ref)
        case ev.DomainReleased(domain=ref, how=how):
            return Fact(t, eid, kind, ref, detail=(how,))
        case ev.CertificateIssued(certificate_id=ref, valid_until=until):
            return Fact(t, eid, kind, ref, until)
        case ev.CertificateRevoked(certificate_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.HostingAgreementTerminated(agreement_id=ref, paid_until=until):
            return Fact(t, eid, kind, ref, until)
        case ev.ExportOffered(agreement_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.ConsentGiven(purpose=ref) | ev.ConsentWithdrawn(purpose=ref):
            return Fact(t, eid, kind, ref)
        case ev.ErasureRequested(request_id=ref, verified=verified):
            return Fact(t, eid, kind, ref, detail=("verified",) if verified else ())
        case ev.ErasureVerified(request_id=ref) | ev.ErasureWithdrawn(request_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.ErasureRefused(request_id=ref, reason=reason):
            return Fact(t, eid, kind, ref, detail=(reason,))
        case ev.RestrictionRequested(restriction_id=ref) | ev.RestrictionLifted(restriction_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.LegalHoldPlaced(hold_id=ref, categories=cats, records=recs):
            return Fact(
                t,
                eid,
                kind,
                ref,
                detail=tuple(f"category:{c}" for c in cats) + tuple(f"record:{r}" for r in recs),
            )
        case ev.LegalHoldReleased(hold_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.BreachDetected(breach_id=ref):
            return Fact(t, eid, kind, ref)
        case ev.BreachNotified(breach_id=ref, recipient=recipient):
            return Fact(t, eid, kind, ref, detail=(recipient,))
    return None
