"""The pipeline's vocabulary: every lifecycle event kind with the roles it plays, and every
outcome a store may answer to a deletion command.

The single source of both. The rules read which events may start or stop a clock, the engine
which facts feed rights and duties, the sinks and the certificate checks which outcomes exist.
A new event type is named here with its roles, added to the Avro union of the newest
``lifecycle_event`` schema, given a class in ``streams/engine/events.py`` and, if it carries a
fact, a case in ``streams/engine/facts.py``; ``tests/unit/streams/policy/test_vocabulary.py``
fails until the four agree (and until the receipt schema's ``Outcome`` enum agrees with
:data:`OUTCOMES`).
"""

from __future__ import annotations

from typing import Literal

# The roles an event kind plays:
# - clock:  a rule may name it in ``starts`` or ``stops`` (it moves a retention clock);
# - until:  it carries an end date a rule may count from (``anchor = "until"``);
# - rights: it places or lifts a hold, a restriction or an erasure, so every record is judged again;
# - duty:   it opens or closes something we owe by a deadline (an answer, a notification, an offer);
# - record: a store announces a record it holds (not a fact: one copy per store that holds it).
# A kind with no role (CustomerRegistered) is accepted and changes nothing.
Role = Literal["clock", "until", "rights", "duty", "record"]

EVENTS: dict[str, frozenset[Role]] = {
    "CustomerRegistered": frozenset(),
    "ServiceOrdered": frozenset({"clock"}),
    "ServiceCancelled": frozenset({"clock"}),
    "AccountClosed": frozenset({"clock"}),
    "InvoiceIssued": frozenset({"clock"}),
    "PaymentRecorded": frozenset({"clock"}),
    "DomainRegistered": frozenset({"clock"}),
    "DomainReleased": frozenset({"clock"}),
    "CertificateIssued": frozenset({"clock", "until"}),
    "CertificateRevoked": frozenset({"clock"}),
    "HostingAgreementTerminated": frozenset({"clock", "until", "duty"}),
    "ExportOffered": frozenset({"clock", "duty"}),
    "ConsentGiven": frozenset({"clock"}),
    "ConsentWithdrawn": frozenset({"clock"}),
    "RecordWritten": frozenset({"record"}),
    "ErasureRequested": frozenset({"rights", "duty"}),
    "ErasureVerified": frozenset({"rights", "duty"}),
    "ErasureRefused": frozenset({"rights", "duty"}),
    "ErasureWithdrawn": frozenset({"rights", "duty"}),
    "RestrictionRequested": frozenset({"rights"}),
    "RestrictionLifted": frozenset({"rights"}),
    "LegalHoldPlaced": frozenset({"rights"}),
    "LegalHoldReleased": frozenset({"rights"}),
    "BreachDetected": frozenset({"duty"}),
    "BreachNotified": frozenset({"duty"}),
}


def kinds_with(role: Role) -> tuple[str, ...]:
    """The event kinds that play ``role``, in the order of :data:`EVENTS`."""
    return tuple(kind for kind, roles in EVENTS.items() if role in roles)


# Events a rule may name in ``starts`` and ``stops``.
CLOCK_EVENTS = kinds_with("clock")
# Events that carry an end date (`until`) usable as an anchor.
UNTIL_EVENTS = kinds_with("until")
# The account clock (``clock = "account"``): started by these, stopped by these.
ACCOUNT_STARTS = ("AccountClosed", "ServiceCancelled")
ACCOUNT_STOPS = ("ServiceOrdered",)
# A new fact of these kinds can change any record's judgement (a hold, a restriction, an erasure).
RIGHTS_EVENTS = frozenset(kinds_with("rights"))
# A new fact of these kinds can open or close a duty.
DUTY_EVENTS = frozenset(kinds_with("duty"))
# The kinds the engine keeps as facts: every kind that moves a clock, a right or a duty.
FACT_EVENTS = frozenset(kinds_with("clock") + kinds_with("rights") + kinds_with("duty"))


# What a store may answer to a deletion command (a receipt's outcome), and which answers count as
# done: FAILED means the copy is ordered again.
ANSWERED = ("DELETED", "NOT_FOUND", "ANONYMISED", "EXPIRES")
FAILED = "FAILED"
OUTCOMES = (*ANSWERED, FAILED)
# Outcomes that touched something: at least one row (EXPIRES: at least one backup holding it).
# DELETED may count 0 rows: a log store drops an empty day's partition, which held no lines.
TOUCHING = ("ANONYMISED", "EXPIRES")
# The status ``explain`` gives a copy so answered.
ANSWERED_STATUS = {
    "DELETED": "deleted",
    "NOT_FOUND": "deleted",
    "ANONYMISED": "anonymised",
    "EXPIRES": "expiring",
}


def answer_problem(outcome: str, rows: int) -> str | None:
    """Why a store's answer contradicts itself (and so cannot be certified), if it does."""
    if outcome not in OUTCOMES:
        return f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}"
    if rows < 0:
        return "rows: must be a whole number, 0 or more"
    if outcome in TOUCHING and rows == 0:
        return f"outcome {outcome} with 0 rows"
    if outcome == "NOT_FOUND" and rows != 0:
        return f"outcome NOT_FOUND with {rows} rows"
    return None
