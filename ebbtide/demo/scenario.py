"""A deterministic, synthetic ISP customer base and its lifecycle events.

Same seed, same customers, rows and events. Names and addresses are made up from syllables;
nothing here is real personal data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

STORE = "customer_db"
BILLING_STORE = "billing_db"  # invoices and payments: schema billing, next to the customer tables
STORES = (STORE, BILLING_STORE)
# Which store announces each category's records (the demo's categories are in one store each).
STORE_OF = {
    "client": STORE,
    "correspondence": STORE,
    "marketing": STORE,
    "invoice": BILLING_STORE,
    "payment": BILLING_STORE,
}
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
    events: list[dict[str, Any]] = field(default_factory=list)  # JSON form, sorted by time
    closed: int = 0
    reactivated: int = 0
    withdrawn: int = 0
    erasures: int = 0
    unverified: int = 0
    holds: int = 0
    holds_released: int = 0
    breaches: int = 0

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
        )


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
        if roll < 0.08:
            asked = _after(closed_at, rng.randint(5, 120))
            if asked is not None:
                request = f"req-{self.next_id('req')}"
                verified = rng.random() < 0.8
                self.event("ErasureRequested", subject, asked, request_id=request, verified=verified)
                sc.erasures += 1
                sc.unverified += 0 if verified else 1
        elif roll < 0.16:
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
        elif roll < 0.17:
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
        for _ in range(rng.randint(1, 3)):
            self.order(customer, active, registered + timedelta(minutes=rng.randint(1, 600)))
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
            sc.reactivated += 1
            if rng.random() < 0.4:
                again = reactivate_at + timedelta(days=rng.randint(30, 400))
                if again < LAST_EVENT:
                    self.cancel_all(customer, active, again)
                    self.event("AccountClosed", subject, again + timedelta(days=1))


def _after(moment: datetime, days: int) -> datetime | None:
    later = moment + timedelta(days=days)
    return later if later <= LAST_EVENT else None


def build(customers: int = 300, seed: int = 7) -> Scenario:
    """Generate ``customers`` customers with services, orders, invoices, payments, tickets and
    their events."""
    generator = _Generator(seed)
    for number in range(1, customers + 1):
        generator.customer(number)
    generator.sc.events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return generator.sc
