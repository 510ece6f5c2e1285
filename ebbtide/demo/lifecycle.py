"""How the demo's customers live: registration, invoices and payments, tickets, newsletter
consent, churn and return, the rights some exercise after leaving, and the log store's days.

Every draw comes from one ``random.Random(seed)`` in a fixed order: same seed, same scenario.
What a service puts in the other stores is :mod:`ebbtide.demo.services`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ebbtide.demo import services
from ebbtide.demo.scenario import (
    BILLING_STORE,
    LAST_EVENT,
    LOG_DAYS,
    PAYMENT_DAYS,
    PRODUCER,
    START,
    STORE,
    Scenario,
    after,
)

_SYLLABLES = ("ka", "ri", "no", "ol", "se", "ing", "vik", "hei", "dal", "mo", "ra", "lund", "bø", "tor")


def _name(rng: random.Random) -> str:
    def word() -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()

    return f"{word()} {word()}"


def _day(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = max(1, (end - start).days)
    return start + timedelta(days=rng.randrange(span), hours=rng.randrange(8, 18))


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Generator:
    """Builds a :class:`Scenario` one customer at a time (see :func:`ebbtide.demo.scenario.build`)."""

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

    def pay(self, customer: dict[str, Any], invoice: dict[str, Any]) -> None:
        """The invoice is paid PAYMENT_DAYS later (no randomness), if that is within the scenario."""
        paid = after(invoice["issued_at"], PAYMENT_DAYS)
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
        withdrawn = after(when, self.rng.randint(30, 2000)) if self.rng.random() < 0.25 else None
        if withdrawn is not None:
            self.event("ConsentWithdrawn", customer["subject_id"], withdrawn, purpose="newsletter")
            self.sc.withdrawn += 1

    def rights_after_closure(self, subject: str, closed_at: datetime) -> None:
        """Some former customers ask for erasure; a few are under a legal hold; one had a breach."""
        rng, sc = self.rng, self.sc
        roll = rng.random()
        if roll < 0.12:
            asked = after(closed_at, rng.randint(5, 120))
            if asked is not None:
                request = f"req-{self.next_id('req')}"
                verified = rng.random() < 0.55
                self.event("ErasureRequested", subject, asked, request_id=request, verified=verified)
                sc.erasures += 1
                if not verified:
                    sc.unverified += 1
                    self.unverified_request(subject, request, asked)
        elif roll < 0.20:
            placed = after(closed_at, rng.randint(100, 700))
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
            detected = after(closed_at, 10)
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
            refused = after(asked, rng.randint(10, 25))
            if refused is not None:
                self.event(
                    "ErasureRefused", subject, refused, request_id=request, reason="IDENTITY_NOT_VERIFIED"
                )
                sc.closed_requests.append({"request_id": request, "how": "refused", "at": refused})
        elif roll < 0.75:
            withdrawn = after(asked, rng.randint(2, 20))
            if withdrawn is not None:
                self.event("ErasureWithdrawn", subject, withdrawn, request_id=request)
                sc.closed_requests.append({"request_id": request, "how": "withdrawn", "at": withdrawn})

    def customer(self, number: int) -> None:
        """One customer's life: registered, orders, maybe a newsletter, yearly invoices, tickets;
        churn (then maybe rights exercised, or a return) or stay."""
        rng = self.rng
        customer = self.register(number)
        subject, registered = customer["subject_id"], customer["registered_at"]
        if rng.random() < 0.4:
            self.subscribe(customer, registered)
        active: list[int] = []
        last_order = registered
        for _ in range(rng.randint(1, 3)):
            ordered = registered + timedelta(minutes=rng.randint(1, 600))
            last_order = max(last_order, ordered)
            services.order(self, customer, active, ordered)
        # Life of the account: churn at some point, or stay.
        churn_at = _day(rng, registered + timedelta(days=180), LAST_EVENT) if rng.random() < 0.55 else None
        reactivate_at = None
        if churn_at is not None and rng.random() < 0.25:
            reactivate_at = churn_at + timedelta(days=rng.randint(60, 900))
            if reactivate_at > LAST_EVENT:
                reactivate_at = None
        end_of_life = churn_at or LAST_EVENT
        self.invoices(customer, end_of_life)
        self.tickets(customer, end_of_life)
        if churn_at is not None:
            services.cancel_all(self, customer, active, churn_at)
            closed_at = churn_at + timedelta(days=rng.randint(0, 30))
            self.event("AccountClosed", subject, closed_at)
            self.sc.closed += 1
            if reactivate_at is None:
                self.rights_after_closure(subject, closed_at)
        if reactivate_at is not None:
            self.reactivate(customer, active, reactivate_at)
            last_order = reactivate_at
        services.unsubscribe_reviews(self, customer, last_order)

    def register(self, number: int) -> dict[str, Any]:
        """A new customer's row and its events."""
        rng = self.rng
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
        self.sc.customers.append(customer)
        self.event("CustomerRegistered", subject, registered)
        self.event(
            "RecordWritten", subject, registered, store=STORE, category="client", record_key=str(number)
        )
        return customer

    def invoices(self, customer: dict[str, Any], end_of_life: datetime) -> None:
        """Yearly invoices while the account is active, each paid PAYMENT_DAYS later."""
        number, subject = customer["customer_id"], customer["subject_id"]
        issued = customer["registered_at"]
        while issued < end_of_life:
            iid = self.next_id("inv")
            invoice = {
                "invoice_id": iid,
                "customer_id": number,
                "billing_name": customer["name"],
                "billing_address": customer["address"],
                "amount_nok": self.rng.randint(99, 4999),
                "issued_at": issued,
            }
            self.sc.invoices.append(invoice)
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

    def tickets(self, customer: dict[str, Any], end_of_life: datetime) -> None:
        """A support ticket now and then (correspondence)."""
        rng = self.rng
        number, subject = customer["customer_id"], customer["subject_id"]
        for _ in range(rng.randint(0, 3)):
            tid = self.next_id("tkt")
            created = _day(rng, customer["registered_at"], end_of_life)
            self.sc.tickets.append(
                {
                    "ticket_id": tid,
                    "customer_id": number,
                    "subject": "Question about my services",
                    "body": f"Hello, this is {customer['name']}.",
                    "created_at": created,
                }
            )
            self.event(
                "RecordWritten", subject, created, store=STORE, category="correspondence", record_key=str(tid)
            )

    def reactivate(self, customer: dict[str, Any], active: list[int], when: datetime) -> None:
        """A former customer orders again (which stops the account clock); some leave again."""
        services.order(self, customer, active, when)  # a new order stops the account clock
        self.sc.reactivated += 1
        if self.rng.random() < 0.4:
            again = when + timedelta(days=self.rng.randint(30, 400))
            if again < LAST_EVENT:
                services.cancel_all(self, customer, active, again)
                self.event("AccountClosed", customer["subject_id"], again + timedelta(days=1))

    def logs(self) -> None:
        """The web servers' access log: one partition a day (log store); the log shipper
        announces each day's partition as one record of a system subject of its own per day
        (``logs:access_log:YYYYMMDD``)."""
        from ebbtide.sinks.logstore.partitions import announcement

        day = LOG_DAYS[0]
        while day < LOG_DAYS[1]:
            self.sc.log_days.append(day.date())
            event = announcement(day.date(), producer=PRODUCER)
            # The shipper stamps the start of the Oslo day with its offset (22:00 or 23:00 UTC the
            # day before); written in UTC with a Z, like every other event of the scenario.
            event["event_time"] = _utc_text(datetime.fromisoformat(event["event_time"]))
            self.sc.events.append(event)
            day += timedelta(days=7)
