"""What the demo's services put in the other stores, and what ending them does: a domain's
registrant contact (customer DB and its TLD's registry), a certificate's contact (customer DB and
the SSL vendor), a hosting agreement's data (the platform and its backups), and the review
invitation Trustpilot holds for every order.

Functions of the :class:`~ebbtide.demo.lifecycle.Generator`, whose random draws they share.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ebbtide.demo.scenario import HOSTING_STORE, REVIEW_PURPOSE, REVIEW_STORE, STORE, TLDS, after

if TYPE_CHECKING:
    from ebbtide.demo.lifecycle import Generator

_KINDS = ("DOMAIN", "SSL", "HOSTING", "EMAIL")


def order(gen: Generator, customer: dict[str, Any], active: list[int], when: datetime) -> None:
    sid = gen.next_id("svc")
    kind = gen.rng.choice(_KINDS)
    gen.sc.services.append(
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
    oid = gen.next_id("ord")
    gen.sc.orders.append(
        {
            "order_id": oid,
            "customer_id": customer["customer_id"],
            "kind": kind,
            "ordered_at": when,
            "ordered_from_ip": f"192.0.2.{oid % 254 + 1}",
            "contact_email": customer["email"],
        }
    )
    gen.event("ServiceOrdered", customer["subject_id"], when, service_id=f"svc-{sid}", kind=kind)
    active.append(sid)
    service_data(gen, customer, sid, kind, when)
    review_invitation(gen, customer, oid, when)


def review_invitation(gen: Generator, customer: dict[str, Any], oid: int, when: datetime) -> None:
    """Trustpilot gets name and e-mail of every completed order (seed 001 "How we share"),
    with the customer's consent to review invitations; it announces the record it holds
    (marketing, ref = the consent's purpose, which the marketing rule follows)."""
    subject = customer["subject_id"]
    key = f"order-{oid}"
    gen.sc.reviews.append({"key": key, "subject_id": subject, "sent_at": when, "unsubscribed_at": None})
    gen.event("ConsentGiven", subject, when, purpose=REVIEW_PURPOSE)
    gen.event(
        "RecordWritten",
        subject,
        when,
        store=REVIEW_STORE,
        category="marketing",
        record_key=key,
        ref=REVIEW_PURPOSE,
    )


def unsubscribe_reviews(gen: Generator, customer: dict[str, Any], last_order: datetime) -> None:
    """Some customers unregister from Trustpilot's invitations (seed 000 'Trustpilot A/S'),
    after their last order (a later order would give the consent again): every invitation
    Trustpilot holds of theirs is deleted at once."""
    if gen.rng.random() >= 0.3:
        return
    withdrawn = after(last_order, gen.rng.randint(15, 1500))
    if withdrawn is None:
        return
    subject = customer["subject_id"]
    gen.event("ConsentWithdrawn", subject, withdrawn, purpose=REVIEW_PURPOSE)
    for review in gen.sc.reviews:
        if review["subject_id"] == subject:
            review["unsubscribed_at"] = withdrawn


def service_data(gen: Generator, customer: dict[str, Any], sid: int, kind: str, when: datetime) -> None:
    """What a service puts in the other stores: a domain's registrant contact (customer DB and
    the registry of its TLD), a certificate's contact (customer DB and the SSL vendor), a
    hosting agreement's data (the platform and its backups). Derived from the service id."""
    if kind == "DOMAIN":
        _domain_contact(gen, customer, sid, when)
    elif kind == "SSL":
        _ssl_contact(gen, customer, sid, when)
    elif kind == "HOSTING":
        _hosted_data(gen, customer, sid, when)


def _domain_contact(gen: Generator, customer: dict[str, Any], sid: int, when: datetime) -> None:
    subject = customer["subject_id"]
    domain = f"domain-{sid}.{TLDS[sid % len(TLDS)]}"
    gen.sc.domains.append(
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
    gen.event("DomainRegistered", subject, when, domain=domain)
    gen.event(
        "RecordWritten",
        subject,
        when,
        store=STORE,
        category="domain_contact",
        record_key=str(sid),
        ref=domain,
    )


def _ssl_contact(gen: Generator, customer: dict[str, Any], sid: int, when: datetime) -> None:
    subject = customer["subject_id"]
    certificate = f"cert-{sid}"
    gen.sc.certificates.append(
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
    gen.event("CertificateIssued", subject, when, certificate_id=certificate, valid_until=valid_until)
    gen.event(
        "RecordWritten",
        subject,
        when,
        store=STORE,
        category="ssl_contact",
        record_key=str(sid),
        ref=certificate,
    )


def _hosted_data(gen: Generator, customer: dict[str, Any], sid: int, when: datetime) -> None:
    subject = customer["subject_id"]
    site = {"site": f"site-{sid}", "agreement": f"agr-{sid}", "created_at": when, "ended_at": None}
    gen.sc.sites.append(site)
    gen.event(
        "RecordWritten",
        subject,
        when,
        store=HOSTING_STORE,
        category="hosted",
        record_key=site["site"],
        ref=site["agreement"],
    )


def end_service(gen: Generator, subject: str, sid: int, when: datetime) -> None:
    """A cancelled service ends what it put elsewhere: the domain is released (expired, or
    transferred out to another registrar), the certificate revoked, the hosting agreement
    terminated (paid to the end of the month; export offered, though not always)."""
    kind = gen.sc.services[sid - 1]["kind"]
    if kind == "DOMAIN":
        domain = f"domain-{sid}.{TLDS[sid % len(TLDS)]}"
        how = "TRANSFERRED_OUT" if gen.rng.random() < 0.3 else "EXPIRED"
        gen.event("DomainReleased", subject, when, domain=domain, how=how)
        if how == "TRANSFERRED_OUT":
            gen.sc.transfers.append({"domain": domain, "contact_id": sid, "released_at": when})
    elif kind == "SSL":
        gen.event("CertificateRevoked", subject, when, certificate_id=f"cert-{sid}")
    elif kind == "HOSTING":
        site = next(h for h in gen.sc.sites if h["site"] == f"site-{sid}")
        site["ended_at"] = when
        paid_until = (when + timedelta(days=32)).replace(day=1, hour=0, minute=0)
        gen.event(
            "HostingAgreementTerminated",
            subject,
            when,
            agreement_id=site["agreement"],
            paid_until=paid_until.isoformat().replace("+00:00", "Z"),
        )
        if gen.rng.random() < 0.25:  # never offered: the customer bears the loss (seed 003 section 13)
            gen.sc.unexported.append(
                {"agreement": site["agreement"], "site": site["site"], "paid_until": paid_until}
            )
        else:
            gen.event("ExportOffered", subject, when + timedelta(hours=1), agreement_id=site["agreement"])


def cancel_all(gen: Generator, customer: dict[str, Any], active: list[int], when: datetime) -> None:
    for sid in active:
        gen.sc.services[sid - 1]["cancelled_at"] = when
        gen.event("ServiceCancelled", customer["subject_id"], when, service_id=f"svc-{sid}")
        end_service(gen, customer["subject_id"], sid, when)
    active.clear()
