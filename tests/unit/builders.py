"""Small builders so tests read like the domain: ``closed(at="2021-03-01")``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from streams.policy import events as ev
from streams.policy.calendar import to_ms

_ids = itertools.count(1)
SUBJECT = "cust-1"


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
