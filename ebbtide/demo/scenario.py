"""A deterministic, synthetic ISP customer base and its lifecycle events.

Same seed, same customers, rows and events. Names and addresses are made up from syllables;
nothing here is real personal data. The scenario is what :func:`build` returns; how it is drawn is
:mod:`ebbtide.demo.lifecycle` (the customers) and :mod:`ebbtide.demo.services` (their services).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

STORE = "customer_db"
BILLING_STORE = "billing_db"  # invoices and payments: schema billing, next to the customer tables
STORES = (STORE, BILLING_STORE)
# Which store announces each category's records (the demo's categories are in one store each).
STORE_OF = {
    "client": STORE,
    "correspondence": STORE,
    "marketing": STORE,
    "domain_contact": STORE,
    "ssl_contact": STORE,
    "invoice": BILLING_STORE,
    "payment": BILLING_STORE,
}
HOSTING_STORE = "hosting"  # the hosting platform announces the customer's hosted data
# Trustpilot: it receives name and e-mail on every completed order (seed 001 "How we share") and
# announces the review invitation it holds; unsubscribing withdraws the consent of this purpose.
REVIEW_STORE = "review_vendor"
REVIEW_PURPOSE = "review_invitation"
# Top-level domains of the demo's domains, by service id: one registry each per the store map.
TLDS = ("no", "se", "com", "nu", "no")
BACKUP_DAYS = 90  # monthly backups of the hosting platform, kept this long
LOG_DAYS = (datetime(2025, 9, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))  # daily log partitions
PAYMENT_DAYS = 14  # every invoice is paid this many days after it is issued
PRODUCER = "ebbtide-demo"
START = datetime(2018, 1, 1, tzinfo=UTC)
LAST_EVENT = datetime(2025, 12, 31, tzinfo=UTC)


@dataclass
class Scenario:
    customers: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    domains: list[dict[str, Any]] = field(default_factory=list)  # domain contacts (customer_db)
    certificates: list[dict[str, Any]] = field(default_factory=list)  # SSL contacts (customer_db)
    sites: list[dict[str, Any]] = field(default_factory=list)  # hosted data on the platform
    log_days: list[date] = field(default_factory=list)  # days of the log store's partitions
    events: list[dict[str, Any]] = field(default_factory=list)  # JSON form, sorted by time
    closed: int = 0
    reactivated: int = 0
    withdrawn: int = 0
    erasures: int = 0
    unverified: int = 0
    holds: int = 0
    holds_released: int = 0
    breaches: int = 0
    # Review invitations at Trustpilot, one per order: key, subject, order time, unsubscribed_at
    # (the customer withdrew consent for review invitations; None: never).
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # Domains transferred out to another registrar: domain, contact_id, released_at. Our copy
    # goes after the grace; the registry's stays (the domain is still registered there).
    transfers: list[dict[str, Any]] = field(default_factory=list)
    # Hosting agreements terminated without an export offer: agreement, site, paid_until. The data
    # goes at paid_until all the same (seed 003 section 13); the export duty is reported overdue.
    unexported: list[dict[str, Any]] = field(default_factory=list)
    # Unverified erasure requests that end without a deletion: request id, how ("refused":
    # identity never verified; "withdrawn": the person took it back), when.
    closed_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def erasures_refused(self) -> int:
        return sum(1 for r in self.closed_requests if r["how"] == "refused")

    @property
    def erasures_withdrawn(self) -> int:
        return sum(1 for r in self.closed_requests if r["how"] == "withdrawn")

    @property
    def review_unsubscribes(self) -> int:
        """Customers who unsubscribed from review invitations."""
        return len({r["subject_id"] for r in self.reviews if r["unsubscribed_at"] is not None})

    @property
    def rows(self) -> int:
        return (
            len(self.customers)
            + len(self.services)
            + len(self.orders)
            + len(self.invoices)
            + len(self.payments)
            + len(self.tickets)
            + len(self.subscriptions)
            + len(self.domains)
            + len(self.certificates)
        )

    def vendor_copies(self) -> list[tuple[str, str, str]]:
        """(category, record key, ref) of every record the vendors hold a copy of, as the
        backend services sent them (the store map says which vendor holds which)."""
        out = [("client", str(c["customer_id"]), "") for c in self.customers]
        out += [("correspondence", str(t["ticket_id"]), "") for t in self.tickets]
        out += [("domain_contact", str(d["contact_id"]), d["domain"]) for d in self.domains]
        out += [("ssl_contact", str(c["contact_id"]), c["certificate_id"]) for c in self.certificates]
        out += [("hosted", h["site"], h["agreement"]) for h in self.sites]
        out += [("marketing", r["key"], REVIEW_PURPOSE) for r in self.reviews]
        return out

    def backups(self) -> list[tuple[str, datetime, datetime, list[tuple[str, str]]]]:
        """Monthly backups of the hosting platform: (id, taken at, expires at, hosted records
        in it), each holding the sites live on the 1st of its month."""
        if not self.sites:
            return []
        out = []
        month = datetime(START.year, START.month, 1, tzinfo=UTC)
        while month <= LAST_EVENT:
            live = [
                ("hosted", h["site"])
                for h in self.sites
                if h["created_at"] <= month and (h["ended_at"] is None or h["ended_at"] > month)
            ]
            if live:
                out.append((f"monthly-{month:%Y-%m}", month, month + timedelta(days=BACKUP_DAYS), live))
            month = (month + timedelta(days=32)).replace(day=1)
        return out


def after(moment: datetime, days: int) -> datetime | None:
    """``days`` after ``moment``, if that is within the scenario's events (else None)."""
    later = moment + timedelta(days=days)
    return later if later <= LAST_EVENT else None


def build(customers: int = 300, seed: int = 7) -> Scenario:
    """Generate ``customers`` customers with services, orders, invoices, payments, tickets and
    their events."""
    from ebbtide.demo.lifecycle import Generator  # which imports this module's constants

    generator = Generator(seed)
    for number in range(1, customers + 1):
        generator.customer(number)
    if customers:
        generator.logs()
    # In time order (the instants, whatever offset a time was written with), then by id.
    generator.sc.events.sort(key=lambda e: (datetime.fromisoformat(e["event_time"]), e["event_id"]))
    return generator.sc
