"""The engine's state model: a subject's facts, its records' copies and duties, and an outcome.

A subject's state is a pure value: the engine folds events, ticks and receipts into a new one
(``stamping``, ``firing``, ``receipts``) and never changes one in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ebbtide.streams.engine.decisions import Decision, DeleteRecord
from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.engine.rights import Duty

if TYPE_CHECKING:  # built from a state: they import this module
    from ebbtide.streams.engine.answers import ErasureAnswer
    from ebbtide.streams.engine.certificate import CertificateDue

# transferred: a registry's copy of a domain transferred out to another registrar. The domain
# stays registered there, so no deletion is ever sent for it (seed 001 "Data portability").
Status = Literal["pending", "ordered", "deleted", "transferred"]
# Judged again when a fact changes: a transferred domain may come back (registered with us again).
JUDGED: tuple[Status, ...] = ("pending", "transferred")
Answer = tuple[str, int, int, str | None, str | None, str | None]


def record_id(store: str, category: str, record_key: str) -> str:
    """A record's identity: keys are unique per store and category (one table each)."""
    return f"{store}/{category}/{record_key}"


@dataclass(frozen=True)
class RecordState:
    """One copy of a record, in one store: its judgement, its order and its store's answer."""

    store: str
    category: str
    record_key: str
    ref: str | None
    written_by: str
    written_at: int
    status: Status = "pending"
    rule_id: str | None = None
    deadline: int | None = None
    caused_by: tuple[str, ...] = ()
    command_id: str | None = None
    blockers: tuple[str, ...] = ()  # why deletion is suspended: hold:<id>, restriction:<id>
    restricted_by: str | None = None  # erasure request that limited processing to the rule's purpose
    failures: int = 0  # failed deletion attempts so far
    ordered_at: int | None = None  # pipeline time the current command was first sent
    chase_at: int | None = None  # ordered, no receipt yet: send again at this time (firing.ESCALATION_STEPS)
    reissues: int = 0  # times the current command was sent again for want of a receipt
    # (outcome, rows, executed_at, reason, the store's key id, its receipt signature in base64);
    # the signature is kept until the copy is certified (the certificate embeds it), then dropped.
    answer: Answer | None = None
    certified: bool = False  # listed in a deletion certificate already
    # Set once the copy is pruned (see ``receipts.prune``): the ``issued_at`` of the deletion certificate
    # that lists it, or 0 for a copy certified before copies were pruned.
    certificate: int | None = None
    # Announced again after an earlier copy under this key was deleted: the announcements of the
    # earlier copies, so a late or replayed one of them is not taken for this one (see ``covers``).
    earlier: tuple[str, ...] = ()

    @property
    def record_id(self) -> str:
        return record_id(self.store, self.category, self.record_key)

    @property
    def pruned(self) -> bool:
        """Deleted, certified and reduced to what the engine still needs (see ``receipts.prune``)."""
        return self.certificate is not None

    def covers(self, event_id: str) -> bool:
        """Whether the announcement ``event_id`` is one this copy already took in: the one that
        announced this copy once it is deleted (its id may be gone from ``seen``, see ``prune``),
        or one of an earlier copy under its key (``earlier``). Any other announcement of a
        deleted copy is news: the store holds the record again (a restored backup, a late
        sync), so it is a new record, deleted in its turn."""
        if self.status == "deleted" and event_id == self.written_by:
            return True
        return event_id in self.earlier

    def overdue(self, now: int | None = None) -> bool:
        """Ordered and not answered within its store's service level: chased at least once or,
        given ``now``, its chase time has passed."""
        if self.status != "ordered":
            return False
        return self.reissues > 0 or (now is not None and self.chase_at is not None and self.chase_at <= now)

    @property
    def waiting(self) -> bool:
        """Waiting for its deadline: pending, with a deadline, nothing suspending it."""
        return self.status == "pending" and self.deadline is not None and not self.blockers


@dataclass(frozen=True)
class SubjectState:
    """Everything the engine knows of one data subject: the facts in event-time order, the
    copies of its records, its duties, and the announcement ids already seen."""

    subject_id: str
    seen: frozenset[str] = frozenset()
    facts: tuple[Fact, ...] = ()
    records: dict[str, RecordState] = field(default_factory=dict)
    duties: dict[str, Duty] = field(default_factory=dict)
    overdue: frozenset[str] = frozenset()  # duties already reported overdue
    policy: str = ""  # label of the policy its records were last judged under

    def next_deadline(self) -> int | None:
        """The earliest time a tick has something to do for this subject, if any."""
        times = [r.deadline for r in self.records.values() if r.waiting and r.deadline is not None]
        times += [
            r.chase_at for r in self.records.values() if r.status == "ordered" and r.chase_at is not None
        ]
        times += [d.due for d in self.duties.values() if d.done_at is None and d.duty_id not in self.overdue]
        return min(times, default=None)

    def pending_deadlines(self) -> int:
        return sum(1 for r in self.records.values() if r.waiting)

    def overdue_copies(self, now: int | None = None) -> list[RecordState]:
        """Copies ordered and not answered within their store's service level (chased at least
        once), or, given ``now``, whose chase time has passed."""
        return [r for r in self.records.values() if r.overdue(now)]


@dataclass(frozen=True)
class Outcome:
    """A step's result: the new state and what it decided, commands, answers and certificates."""

    state: SubjectState
    decisions: tuple[Decision, ...] = ()
    commands: tuple[DeleteRecord, ...] = ()
    answers: tuple[ErasureAnswer, ...] = ()
    certificates: tuple[CertificateDue, ...] = ()


def new_subject(subject_id: str) -> SubjectState:
    """The state of a subject nothing is known of yet."""
    return SubjectState(subject_id=subject_id)
