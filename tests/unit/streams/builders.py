"""Small builders so tests read like the domain: ``closed(at="2021-03-01")``."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime

from ebbtide.streams.engine import events as ev
from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.streams.policy.rules import rules_policy

_ids = itertools.count(1)
SUBJECT = "cust-1"
POLICY = rules_policy()


def fold(events: Iterable[ev.Event]) -> SubjectState:
    """The state of SUBJECT after ``events`` under the shipped retention rules (no store map:
    one copy per record, in the store that announced it)."""
    state = new_subject(SUBJECT)
    for event in events:
        state = apply_event(state, event, POLICY).state
    return state


def deadline(state: SubjectState, category: str, key: str, store: str = "customer_db") -> int | None:
    return state.records[f"{store}/{category}/{key}"].deadline


def t(day: str) -> int:
    """Epoch ms of an ISO date or time (UTC)."""
    moment = datetime.fromisoformat(day.replace("Z", "+00:00"))
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _id(given: str | None) -> str:
    return given or f"e{next(_ids)}"


def registered(at: str, event_id: str | None = None) -> ev.CustomerRegistered:
    return ev.CustomerRegistered(_id(event_id), SUBJECT, t(at))


def ordered(service: str, at: str, event_id: str | None = None) -> ev.ServiceOrdered:
    return ev.ServiceOrdered(_id(event_id), SUBJECT, t(at), service_id=service, kind="HOSTING")


def cancelled(service: str, at: str, event_id: str | None = None) -> ev.ServiceCancelled:
    return ev.ServiceCancelled(_id(event_id), SUBJECT, t(at), service_id=service)


def closed(at: str, event_id: str | None = None) -> ev.AccountClosed:
    return ev.AccountClosed(_id(event_id), SUBJECT, t(at))


def invoiced(invoice: str, at: str, event_id: str | None = None) -> ev.InvoiceIssued:
    return ev.InvoiceIssued(_id(event_id), SUBJECT, t(at), invoice_id=invoice)


def written(
    category: str,
    key: str,
    at: str,
    ref: str | None = None,
    event_id: str | None = None,
    store: str = "customer_db",
) -> ev.RecordWritten:
    return ev.RecordWritten(
        _id(event_id), SUBJECT, t(at), store=store, category=category, record_key=key, ref=ref
    )


def domain_registered(domain: str, at: str) -> ev.DomainRegistered:
    return ev.DomainRegistered(_id(None), SUBJECT, t(at), domain=domain)


def domain_released(domain: str, at: str, how: str = "EXPIRED") -> ev.DomainReleased:
    return ev.DomainReleased(_id(None), SUBJECT, t(at), domain=domain, how=how)


def cert_issued(cert: str, at: str, valid_until: str) -> ev.CertificateIssued:
    return ev.CertificateIssued(_id(None), SUBJECT, t(at), certificate_id=cert, valid_until=t(valid_until))


def cert_revoked(cert: str, at: str) -> ev.CertificateRevoked:
    return ev.CertificateRevoked(_id(None), SUBJECT, t(at), certificate_id=cert)


def terminated(agreement: str, at: str, paid_until: str) -> ev.HostingAgreementTerminated:
    return ev.HostingAgreementTerminated(
        _id(None), SUBJECT, t(at), agreement_id=agreement, paid_until=t(paid_until)
    )


def export_offered(agreement: str, at: str) -> ev.ExportOffered:
    return ev.ExportOffered(_id(None), SUBJECT, t(at), agreement_id=agreement)


def consent_withdrawn(at: str, purpose: str = "newsletter") -> ev.ConsentWithdrawn:
    return ev.ConsentWithdrawn(_id(None), SUBJECT, t(at), purpose=purpose)


def consent_given(at: str, purpose: str = "newsletter") -> ev.ConsentGiven:
    return ev.ConsentGiven(_id(None), SUBJECT, t(at), purpose=purpose)


def erasure(request: str, at: str, verified: bool = True, event_id: str | None = None) -> ev.ErasureRequested:
    return ev.ErasureRequested(_id(event_id), SUBJECT, t(at), request_id=request, verified=verified)


def refused(request: str, at: str, reason: str = "IDENTITY_NOT_VERIFIED") -> ev.ErasureRefused:
    return ev.ErasureRefused(_id(None), SUBJECT, t(at), request_id=request, reason=reason)


def withdrawn(request: str, at: str) -> ev.ErasureWithdrawn:
    return ev.ErasureWithdrawn(_id(None), SUBJECT, t(at), request_id=request)


def verified(request: str, at: str) -> ev.ErasureVerified:
    return ev.ErasureVerified(_id(None), SUBJECT, t(at), request_id=request)


def hold(
    hold_id: str, at: str, categories: tuple[str, ...] = (), records: tuple[str, ...] = ()
) -> ev.LegalHoldPlaced:
    return ev.LegalHoldPlaced(
        _id(None), SUBJECT, t(at), hold_id=hold_id, categories=categories, records=records
    )


def released(hold_id: str, at: str) -> ev.LegalHoldReleased:
    return ev.LegalHoldReleased(_id(None), SUBJECT, t(at), hold_id=hold_id)


def restricted(restriction: str, at: str) -> ev.RestrictionRequested:
    return ev.RestrictionRequested(_id(None), SUBJECT, t(at), restriction_id=restriction)


def unrestricted(restriction: str, at: str) -> ev.RestrictionLifted:
    return ev.RestrictionLifted(_id(None), SUBJECT, t(at), restriction_id=restriction)


def breach(breach_id: str, at: str) -> ev.BreachDetected:
    return ev.BreachDetected(_id(None), SUBJECT, t(at), breach_id=breach_id)


def notified(breach_id: str, at: str, recipient: str) -> ev.BreachNotified:
    return ev.BreachNotified(_id(None), SUBJECT, t(at), breach_id=breach_id, recipient=recipient)
