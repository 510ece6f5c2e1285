"""A deterministic, synthetic ISP customer base and its lifecycle events.

Same seed, same customers, rows and events. Names and addresses are made up from syllables;
nothing here is real personal data.
"""

from __future__ import annotations

import random
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
_SYLLABLES = ("ka", "ri", "no", "ol", "se", "ing", "vik", "hei", "dal", "mo", "ra", "lund", "bø", "tor")
_KINDS = ("DOMAIN", "SSL", "HOSTING", "EMAIL")


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


def _name(rng: random.Random) -> str:
    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    return f"{word()} {word()}"


def _day(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = max(1, (end - start).days)
    return start + timedelta(days=rng.randrange(span), hours=rng.randrange(8, 18))


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.sc = Scenario()
        self.ids = {
            "svc": 0,
            "ord": 0,
            "inv": 0,
            "pay": 0,
            "tkt": 0,
            "evt": 0,
            "sub": 0,
            "req": 0,
            "hold": 0,
        }

    def next_id(self, kind: str) -> int:
        self.ids[kind] += 1
        return self.ids[kind]

    def event(self, event_type: str, subject: str, when: datetime, **payload: Any) -> None:
        self.sc.events.append(
            {
                "event_id": f"demo-{self.seed}-{self.next_id('evt'):07d}",
                "type": event_type,
                "subject_id": subject,
                "event_time": when.isoformat().replace("+00:00", "Z"),
                "producer": PRODUCER,
                "payload": payload,
            }
        )

    def order(self, customer: dict[str, Any], active: list[int], when: datetime) -> None:
        sid = self.next_id("svc")
        kind = self.rng.choice(_KINDS)
        self.sc.services.append(
            {
                "service_id": sid,
                "customer_id": customer["customer_id"],
                "kind": kind,
                "ordered_at": when,
                "cancelled_at": None,
            }
        )
        # The order stays as a bookkeeping trail; its IP (documentation range 192.0.2.0/24, no
        # randomness: the scenario's other draws stay the same) and contact email are personal.
        oid = self.next_id("ord")
        self.sc.orders.append(
            {
                "order_id": oid,
                "customer_id": customer["customer_id"],
                "kind": kind,
                "ordered_at": when,
                "ordered_from_ip": f"192.0.2.{oid % 254 + 1}",
                "contact_email": customer["email"],
            }
        )
        self.event("ServiceOrdered", customer["subject_id"], when, service_id=f"svc-{sid}", kind=kind)
        active.append(sid)
        self.service_data(customer, sid, kind, when)
        self.review_invitation(customer, oid, when)

    def review_invitation(self, customer: dict[str, Any], oid: int, when: datetime) -> None:
        """Trustpilot gets name and e-mail of every completed order (seed 001 "How we share"),
        with the customer's consent to review invitations; it announces the record it holds
        (marketing, ref = the consent's purpose, which the marketing rule follows)."""
        subject = customer["subject_id"]
        key = f"order-{oid}"
        self.sc.reviews.append({"key": key, "subject_id": subject, "sent_at": when, "unsubscribed_at": None})
        self.event("ConsentGiven", subject, when, purpose=REVIEW_PURPOSE)
        self.event(
            "RecordWritten",
            subject,
            when,
            store=REVIEW_STORE,
            category="marketing",
            record_key=key,
            ref=REVIEW_PURPOSE,
        )

    def unsubscribe_reviews(self, customer: dict[str, Any], last_order: datetime) -> None:
        """Some customers unregister from Trustpilot's invitations (seed 000 'Trustpilot A/S'),
        after their last order (a later order would give the consent again): every invitation
        Trustpilot holds of theirs is deleted at once."""
        if self.rng.random() >= 0.3:
            return
        withdrawn = _after(last_order, self.rng.randint(15, 1500))
        if withdrawn is None:
            return
        subject = customer["subject_id"]
        self.event("ConsentWithdrawn", subject, withdrawn, purpose=REVIEW_PURPOSE)
        for review in self.sc.reviews:
            if review["subject_id"] == subject:
                review["unsubscribed_at"] = withdrawn

    def service_data(self, customer: dict[str, Any], sid: int, kind: str, when: datetime) -> None:
        """What a service puts in the other stores: a domain's registrant contact (customer DB and
        the registry of its TLD), a certificate's contact (customer DB and the SSL vendor), a
        hosting agreement's data (the platform and its backups). Derived from the service id."""
        subject = customer["subject_id"]
        if kind == "DOMAIN":
            domain = f"domain-{sid}.{TLDS[sid % len(TLDS)]}"
            self.sc.domains.append(
                {
                    "contact_id": sid,
                    "customer_id": customer["customer_id"],
                    "domain": domain,
                    "name": customer["name"],
                    "email": customer["email"],
                    "national_id": None,
                    "created_at": when,
                }
            )
            self.event("DomainRegistered", subject, when, domain=domain)
            self.event(
                "RecordWritten",
                subject,
                when,
                store=STORE,
                category="domain_contact",
                record_key=str(sid),
                ref=domain,
            )
        elif kind == "SSL":
            certificate = f"cert-{sid}"
            self.sc.certificates.append(
                {
                    "contact_id": sid,
                    "customer_id": customer["customer_id"],
                    "certificate_id": certificate,
                    "name": customer["name"],
                    "email": customer["email"],
                    "created_at": when,
                }
            )
            valid_until = (when + timedelta(days=365)).isoformat().replace("+00:00", "Z")
            self.event(
                "CertificateIssued", subject, when, certificate_id=certificate, valid_until=valid_until
            )
            self.event(
                "RecordWritten",
                subject,
                when,
                store=STORE,
                category="ssl_contact",
                record_key=str(sid),
                ref=certificate,
            )
        elif kind == "HOSTING":
            site = {"site": f"site-{sid}", "agreement": f"agr-{sid}", "created_at": when, "ended_at": None}
            self.sc.sites.append(site)
            self.event(
                "RecordWritten",
                subject,
                when,
                store=HOSTING_STORE,
                category="hosted",
                record_key=site["site"],
                ref=site["agreement"],
            )

    def announce(self, subject: str, when: datetime, category: str, key: str, ref: str) -> None:
        store = STORE_OF[category]
        self.event("RecordWritten", subject, when, store=store, category=category, record_key=key, ref=ref)

    def end_service(self, subject: str, sid: int, when: datetime) -> None:
        """A cancelled service ends what it put elsewhere: the domain is released (expired, or
        transferred out to another registrar), the certificate revoked, the hosting agreement
        terminated (paid to the end of the month; export offered, though not always)."""
        kind = self.sc.services[sid - 1]["kind"]
        if kind == "DOMAIN":
            domain = f"domain-{sid}.{TLDS[sid % len(TLDS)]}"
            how = "TRANSFERRED_OUT" if self.rng.random() < 0.3 else "EXPIRED"
            self.event("DomainReleased", subject, when, domain=domain, how=how)
            if how == "TRANSFERRED_OUT":
                self.sc.transfers.append({"domain": domain, "contact_id": sid, "released_at": when})
        elif kind == "SSL":
            self.event("CertificateRevoked", subject, when, certificate_id=f"cert-{sid}")
        elif kind == "HOSTING":
            site = next(h for h in self.sc.sites if h["site"] == f"site-{sid}")
            site["ended_at"] = when
            paid_until = (when + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            self.event(
                "HostingAgreementTerminated",
                subject,
                when,
                agreement_id=site["agreement"],
                paid_until=paid_until.isoformat().replace("+00:00", "Z"),
            )
            if self.rng.random() < 0.25:  # never offered: the customer bears the loss (seed 003 section 13)
                self.sc.unexported.append(
                    {"agreement": site["agreement"], "site": site["site"], "paid_until": paid_until}
                )
            else:
                self.event(
                    "ExportOffered", subject, when + timedelta(hours=1), agreement_id=site["agreement"]
                )

    def pay(self, customer: dict[str, Any], invoice: dict[str, Any]) -> None:
        """The invoice is paid PAYMENT_DAYS later (no randomness), if that is within the scenario."""
        paid = _after(invoice["issued_at"], PAYMENT_DAYS)
        if paid is None:
            return
        pid = self.next_id("pay")
        self.sc.payments.append(
            {
                "payment_id": pid,
                "invoice_id": invoice["invoice_id"],
                "customer_id": customer["customer_id"],
                "payer_name": customer["name"],
                "amount_nok": invoice["amount_nok"],
                "paid_at": paid,
            }
        )
        subject = customer["subject_id"]
        self.event("PaymentRecorded", subject, paid, payment_id=f"pay-{pid}")
        self.event(
            "RecordWritten",
            subject,
            paid,
            store=BILLING_STORE,
            category="payment",
            record_key=str(pid),
            ref=f"pay-{pid}",
        )

    def cancel_all(self, customer: dict[str, Any], active: list[int], when: datetime) -> None:
        for sid in active:
            self.sc.services[sid - 1]["cancelled_at"] = when
            self.event("ServiceCancelled", customer["subject_id"], when, service_id=f"svc-{sid}")
            self.end_service(customer["subject_id"], sid, when)
        active.clear()

    def subscribe(self, customer: dict[str, Any], when: datetime) -> None:
        """Newsletter consent (seed 000 'Trustpilot'): a marketing record; sometimes withdrawn later."""
        nid = self.next_id("sub")
        self.sc.subscriptions.append(
            {
                "subscription_id": nid,
                "customer_id": customer["customer_id"],
                "email": customer["email"],
                "purpose": "newsletter",
                "subscribed_at": when,
            }
        )
        self.event("ConsentGiven", customer["subject_id"], when, purpose="newsletter")
        self.event(
            "RecordWritten",
            customer["subject_id"],
            when,
            store=STORE,
            category="marketing",
            record_key=str(nid),
            ref="newsletter",
        )
        withdrawn = _after(when, self.rng.randint(30, 2000)) if self.rng.random() < 0.25 else None
        if withdrawn is not None:
            self.event("ConsentWithdrawn", customer["subject_id"], withdrawn, purpose="newsletter")
            self.sc.withdrawn += 1

    def rights_after_closure(self, subject: str, closed_at: datetime) -> None:
        """Some former customers ask for erasure; a few are under a legal hold; one had a breach."""
        rng, sc = self.rng, self.sc
        roll = rng.random()
        if roll < 0.12:
            asked = _after(closed_at, rng.randint(5, 120))
            if asked is not None:
                request = f"req-{self.next_id('req')}"
                verified = rng.random() < 0.55
                self.event("ErasureRequested", subject, asked, request_id=request, verified=verified)
                sc.erasures += 1
                if not verified:
                    sc.unverified += 1
                    self.unverified_request(subject, request, asked)
        elif roll < 0.20:
            placed = _after(closed_at, rng.randint(100, 700))
            if placed is not None:
                hold = f"hold-{self.next_id('hold')}"
                self.event("LegalHoldPlaced", subject, placed, hold_id=hold, categories=[], records=[])
                sc.holds += 1
                # Court cases outlast the scripted event period: releases may come up to 2030.
                lifted = placed + timedelta(days=rng.randint(400, 1800)) if rng.random() < 0.6 else None
                if lifted is not None and lifted.year <= 2030:
                    self.event("LegalHoldReleased", subject, lifted, hold_id=hold)
                    sc.holds_released += 1
        elif roll < 0.21:
            detected = _after(closed_at, 10)
            if detected is not None:
                self.event("BreachDetected", subject, detected, breach_id=f"breach-{subject}")
                self.event(
                    "BreachNotified",
                    subject,
                    detected + timedelta(hours=30),
                    breach_id=f"breach-{subject}",
                    recipient="AUTHORITY",
                )
                sc.breaches += 1

    def unverified_request(self, subject: str, request: str, asked: datetime) -> None:
        """An erasure request whose identity is not verified: refused (identity never verified,
        seed 004), withdrawn by the person, or held; the first two close the duty to answer
        within its month (GDPR art. 12(3)), so neither goes overdue."""
        rng, sc = self.rng, self.sc
        roll = rng.random()
        if roll < 0.4:
            refused = _after(asked, rng.randint(10, 25))
            if refused is not None:
                self.event(
                    "ErasureRefused", subject, refused, request_id=request, reason="IDENTITY_NOT_VERIFIED"
                )
                sc.closed_requests.append({"request_id": request, "how": "refused", "at": refused})
        elif roll < 0.75:
            withdrawn = _after(asked, rng.randint(2, 20))
            if withdrawn is not None:
                self.event("ErasureWithdrawn", subject, withdrawn, request_id=request)
                sc.closed_requests.append({"request_id": request, "how": "withdrawn", "at": withdrawn})
        # Otherwise held: the identity is never verified, and the answer goes overdue.

    def customer(self, number: int) -> None:
        rng, sc = self.rng, self.sc
        subject = f"cust-{number:05d}"
        registered = _day(rng, START, datetime(2023, 12, 31, tzinfo=UTC))
        name = _name(rng)
        customer = {
            "customer_id": number,
            "subject_id": subject,
            "name": name,
            "email": f"{name.split()[0].lower()}.{number}@example.invalid",
            "phone": f"+47 9{rng.randrange(1000000, 9999999)}",
            "address": f"{_name(rng).split()[1]}veien {rng.randint(1, 120)}, {rng.randint(1000, 9990)} Oslo",
            "registered_at": registered,
        }
        sc.customers.append(customer)
        self.event("CustomerRegistered", subject, registered)
        self.event(
            "RecordWritten", subject, registered, store=STORE, category="client", record_key=str(number)
        )
        if rng.random() < 0.4:
            self.subscribe(customer, registered)
        active: list[int] = []
        last_order = registered
        for _ in range(rng.randint(1, 3)):
            ordered = registered + timedelta(minutes=rng.randint(1, 600))
            last_order = max(last_order, ordered)
            self.order(customer, active, ordered)
        # Life of the account: churn at some point, or stay.
        churn_at = _day(rng, registered + timedelta(days=180), LAST_EVENT) if rng.random() < 0.55 else None
        reactivate_at = None
        if churn_at is not None and rng.random() < 0.25:
            reactivate_at = churn_at + timedelta(days=rng.randint(60, 900))
            if reactivate_at > LAST_EVENT:
                reactivate_at = None
        end_of_life = churn_at or LAST_EVENT
        # Yearly invoices while active; a support ticket now and then.
        issued = registered
        while issued < end_of_life:
            iid = self.next_id("inv")
            invoice = {
                "invoice_id": iid,
                "customer_id": number,
                "billing_name": name,
                "billing_address": customer["address"],
                "amount_nok": rng.randint(99, 4999),
                "issued_at": issued,
            }
            sc.invoices.append(invoice)
            self.event("InvoiceIssued", subject, issued, invoice_id=f"inv-{iid}")
            self.event(
                "RecordWritten",
                subject,
                issued,
                store=BILLING_STORE,
                category="invoice",
                record_key=str(iid),
                ref=f"inv-{iid}",
            )
            self.pay(customer, invoice)
            issued += timedelta(days=365)
        for _ in range(rng.randint(0, 3)):
            tid = self.next_id("tkt")
            created = _day(rng, registered, end_of_life)
            sc.tickets.append(
                {
                    "ticket_id": tid,
                    "customer_id": number,
                    "subject": "Question about my services",
                    "body": f"Hello, this is {name}.",
                    "created_at": created,
                }
            )
            self.event(
                "RecordWritten", subject, created, store=STORE, category="correspondence", record_key=str(tid)
            )
        if churn_at is not None:
            self.cancel_all(customer, active, churn_at)
            closed_at = churn_at + timedelta(days=rng.randint(0, 30))
            self.event("AccountClosed", subject, closed_at)
            sc.closed += 1
            if reactivate_at is None:
                self.rights_after_closure(subject, closed_at)
        if reactivate_at is not None:
            self.order(customer, active, reactivate_at)  # a new order stops the account clock
            last_order = reactivate_at
            sc.reactivated += 1
            if rng.random() < 0.4:
                again = reactivate_at + timedelta(days=rng.randint(30, 400))
                if again < LAST_EVENT:
                    self.cancel_all(customer, active, again)
                    self.event("AccountClosed", subject, again + timedelta(days=1))
        self.unsubscribe_reviews(customer, last_order)

    def logs(self) -> None:
        """The web servers' access log: one partition a day (log store); the log shipper
        announces each day's partition as one record of a system subject of its own per day
        (``logs:access_log:YYYYMMDD``)."""
        from sinks.logstore.partitions import announcement

        day = LOG_DAYS[0]
        while day < LOG_DAYS[1]:
            self.sc.log_days.append(day.date())
            event = announcement(day.date(), producer=PRODUCER)
            # The shipper stamps the start of the Oslo day with its offset (22:00 or 23:00 UTC the
            # day before); written in UTC with a Z, like every other event of the scenario.
            event["event_time"] = _utc_text(datetime.fromisoformat(event["event_time"]))
            self.sc.events.append(event)
            day += timedelta(days=7)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _after(moment: datetime, days: int) -> datetime | None:
    later = moment + timedelta(days=days)
    return later if later <= LAST_EVENT else None


def build(customers: int = 300, seed: int = 7) -> Scenario:
    """Generate ``customers`` customers with services, orders, invoices, payments, tickets and
    their events."""
    generator = _Generator(seed)
    for number in range(1, customers + 1):
        generator.customer(number)
    if customers:
        generator.logs()
    # In time order (the instants, whatever offset a time was written with), then by id.
    generator.sc.events.sort(key=lambda e: (datetime.fromisoformat(e["event_time"]), e["event_id"]))
    return generator.sc
