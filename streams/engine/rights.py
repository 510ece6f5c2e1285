"""Rights and duties derived from a subject's facts: holds, restrictions, erasure, deadlines to answer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import tzinfo

from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import Duties


@dataclass(frozen=True)
class Rights:
    holds: dict[str, tuple[str, ...]]  # active hold id -> scope detail (empty: whole subject)
    restrictions: tuple[str, ...]  # active art. 18 restriction ids
    erasures: tuple[tuple[int, str, str], ...]  # (verified at, request id, event id), earliest first


@dataclass(frozen=True)
class Duty:
    """Something we owe by a deadline: an answer to an erasure request, a breach notification."""

    duty_id: str
    kind: str  # erasure_response, breach_authority, breach_customer
    due: int
    opened_by: str
    source: str
    done_at: int | None = None
    done_by: str | None = None
    closed_as: str | None = None  # how it ended without being carried out (refused, withdrawn)


REFUSALS = {
    "IDENTITY_NOT_VERIFIED": "refused: the person's identity was never verified (seed 004 'Sletting')",
    "MANIFESTLY_UNFOUNDED": "refused as manifestly unfounded (GDPR art. 12(5))",
    "EXCESSIVE": "refused as excessive (GDPR art. 12(5))",
    "OTHER": "refused",
}
WITHDRAWN = "withdrawn by the person before it was carried out"


def _closed_as(fact: Fact) -> str | None:
    """How an erasure request ended without a deletion, if ``fact`` ends one."""
    if fact.kind == "ErasureWithdrawn":
        return WITHDRAWN
    if fact.kind == "ErasureRefused":
        return REFUSALS.get(fact.detail[0] if fact.detail else "OTHER", REFUSALS["OTHER"])
    return None


def rights_of(facts: tuple[Fact, ...]) -> Rights:
    holds: dict[str, tuple[str, ...]] = {}
    restrictions: dict[str, None] = {}
    requested: set[str] = set()
    verified: dict[str, tuple[int, str]] = {}
    closed: set[str] = set()  # refused or withdrawn before verification: never carried out
    for fact in facts:
        if fact.kind == "LegalHoldPlaced":
            holds[fact.ref or ""] = fact.detail
        elif fact.kind == "LegalHoldReleased":
            holds.pop(fact.ref or "", None)
        elif fact.kind == "RestrictionRequested":
            restrictions[fact.ref or ""] = None
        elif fact.kind == "RestrictionLifted":
            restrictions.pop(fact.ref or "", None)
        elif fact.kind == "ErasureRequested":
            requested.add(fact.ref or "")
            if "verified" in fact.detail and fact.ref not in closed:
                verified.setdefault(fact.ref or "", (fact.time, fact.event_id))
        elif fact.kind == "ErasureVerified" and (fact.ref or "") not in closed:
            verified.setdefault(fact.ref or "", (fact.time, fact.event_id))
        elif _closed_as(fact) is not None and (fact.ref or "") not in verified:
            closed.add(fact.ref or "")
    done = tuple(sorted((t, rid, eid) for rid, (t, eid) in verified.items() if rid in requested))
    return Rights(holds, tuple(restrictions), done)


def erasure_for(rights: Rights, written_at: int) -> tuple[int, str, str] | None:
    """The first verified erasure request that covers a record written at ``written_at``."""
    return next((e for e in rights.erasures if e[0] >= written_at), None)


def hold_blockers(rights: Rights, record_id: str, category: str) -> tuple[str, ...]:
    out = []
    for hold_id, scope in sorted(rights.holds.items()):
        if not scope or f"category:{category}" in scope or f"record:{record_id}" in scope:
            out.append(f"hold:{hold_id}")
    return tuple(out)


def duties_of(facts: tuple[Fact, ...], duties: Duties, zone: tzinfo) -> dict[str, Duty]:
    """Every duty the facts open, and when it was done (months counted in ``zone``)."""
    out: dict[str, Duty] = {}
    for fact in facts:
        ref = fact.ref or ""
        if fact.kind == "ErasureRequested" and f"erasure/{ref}" not in out:
            out[f"erasure/{ref}"] = Duty(
                f"erasure/{ref}",
                "erasure_response",
                calendar.add_months(fact.time, duties.erasure_response_months, zone),
                fact.event_id,
                duties.erasure_response_source,
            )
        elif fact.kind == "HostingAgreementTerminated" and fact.until is not None:
            # Seed 003 section 13: the data is offered for export before the last paid period
            # ends, which is when the processor rule deletes it: the earliest end announced.
            known = out.get(f"export/{ref}")
            if known is None or (fact.until, fact.event_id) < (known.due, known.opened_by):
                out[f"export/{ref}"] = Duty(
                    f"export/{ref}", "export_offer", fact.until, fact.event_id, duties.export_offer_source
                )
        elif fact.kind == "BreachDetected":
            for kind, hours, source in (
                ("authority", duties.breach_authority_hours, duties.breach_authority_source),
                ("customer", duties.breach_customer_hours, duties.breach_customer_source),
            ):
                duty_id = f"breach/{ref}/{kind}"
                out.setdefault(
                    duty_id,
                    Duty(
                        duty_id, f"breach_{kind}", calendar.add_hours(fact.time, hours), fact.event_id, source
                    ),
                )
    for fact in facts:  # completions, once the duties are known
        ref = fact.ref or ""
        key: str | None = None
        closed_as = _closed_as(fact)
        if (
            (fact.kind == "ErasureRequested" and "verified" in fact.detail)
            or fact.kind == "ErasureVerified"
            or closed_as is not None
        ):
            key = f"erasure/{ref}"
        elif fact.kind == "ExportOffered":
            key = f"export/{ref}"
        elif fact.kind == "BreachNotified":
            key = f"breach/{ref}/{(fact.detail or ('',))[0].lower()}"
        duty = out.get(key) if key else None
        if duty is not None and duty.done_at is None:
            out[duty.duty_id] = replace(duty, done_at=fact.time, done_by=fact.event_id, closed_as=closed_as)
    return out
