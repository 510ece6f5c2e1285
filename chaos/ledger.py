"""The chaos run's ledger: what was due, what is really gone, and what went wrong.

It owes nothing to the worker's state (its table, changelog, decisions or metrics):

- **what was due** is computed here from the events the run published and the ticks it sent,
  replayed in the order they were sent through the pure policy engine (the copies ordered
  deleted at any tick up to the last);
- **what is gone** is read from the stores themselves: each PostgreSQL store's tables (rows
  still there, or personal columns not yet blanked, per its store map) and each vendor's
  records, before the run and after it;
- **what was done twice** is read from the receipts topic (two receipts that each deleted rows
  of the same copy), and **what was claimed** from the certificates topic;
- **when it was ordered** is read from the command topics of every store (the first genuine
  command of each copy, against the tick that made it due);
- **what was refused** is read from the dead-letter topic, by the source coordinates of every
  poison pill and forgery the run sent (a forgery must be refused as a security event), and any
  other dead letter is a genuine message refused.

The oracle is the same pure engine the worker runs: a rule the engine gets wrong would be wrong
on both sides. What the ledger checks is everything around it: that faults, restarts and hostile
input make the pipeline do exactly what the engine decides, once, in every store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.worker.translate import to_event

Copy = tuple[str, str, str]  # (store, category, record key)


@dataclass
class Oracle:
    """Replays the published events and ticks through the pure engine, in the order they were
    sent: a copy is due once a tick has ordered its deletion."""

    policy: Policy
    states: dict[str, SubjectState] = field(default_factory=dict)
    ordered: dict[Copy, int] = field(default_factory=dict)  # copy -> the tick that first ordered it
    events: int = 0
    ticks: int = 0

    def event(self, record: Mapping[str, Any]) -> None:
        event = to_event(dict(record))
        state = self.states.get(event.subject_id) or new_subject(event.subject_id)
        self.states[event.subject_id] = apply_event(state, event, self.policy).state
        self.events += 1

    def tick(self, now_ms: int) -> None:
        self.ticks += 1
        for subject, state in self.states.items():
            outcome = fire_due(state, now_ms, self.policy)
            self.states[subject] = outcome.state
            for command in outcome.commands:
                self.ordered.setdefault((command.store, command.category, command.record_key), now_ms)

    def copies(self) -> set[Copy]:
        """Every copy the events announced."""
        return {(r.store, r.category, r.record_key) for s in self.states.values() for r in s.records.values()}


def database_holdings(dsn: str, store: str, store_map: Any) -> set[Copy]:
    """The copies whose personal data a PostgreSQL store still holds, per its table map
    (``sinks.postgres.table_map.TableMap``): a row matching the key in a table the category deletes
    from, or a matching row whose anonymised columns are not blank yet."""
    held: set[Copy] = set()
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            for category, actions in store_map.categories.items():
                for action in actions:
                    # Identifiers come from the store map, which the sink validated the same way.
                    where = ""
                    params: list[Any] = []
                    if not action.deletes:
                        blanks = []
                        for column in action.columns:
                            value = action.value_of(column)
                            if value is None:
                                blanks.append(f"{column} IS NULL")
                            else:
                                blanks.append(f"{column} IS NOT DISTINCT FROM %s")
                                params.append(value)
                        where = f" AND NOT ({' AND '.join(blanks)})" if blanks else " AND false"
                    cur.execute(
                        f"SELECT DISTINCT {action.key_column}::text FROM {action.table} "
                        f"WHERE {action.key_column} IS NOT NULL{where}",
                        params,
                    )
                    held.update((store, category, row[0]) for row in cur.fetchall())
    finally:
        conn.close()
    return held


@dataclass
class Sent:
    """A message the run sent to be refused: where it landed and what it was."""

    kind: str  # "poison" or "forgery"
    what: str  # e.g. "event dated 9999-12-31", "command signed with an unknown key"
    topic: str
    partition: int
    offset: int
    target: Copy | None = None  # the copy a forgery tried to have deleted or kept


Letter = tuple[str | None, int | None, int | None]  # a dead letter's source topic, partition, offset


@dataclass
class Verdict:
    lost: list[Copy]
    premature: list[Copy]
    duplicated: list[Copy]
    false_proofs: list[Copy]
    poison_missing: list[str]
    forgeries_accepted: list[str]
    genuine_dead_lettered: list[str]
    counts: dict[str, int]

    @property
    def failures(self) -> dict[str, int]:
        return {
            "lost_deletions": len(self.lost),
            "premature_deletions": len(self.premature),
            "duplicated_deletions": len(self.duplicated),
            "certificates_for_copies_still_held": len(self.false_proofs),
            "poison_pills_missing_from_dlq": len(self.poison_missing),
            "forgeries_accepted": len(self.forgeries_accepted),
            "genuine_messages_dead_lettered": len(self.genuine_dead_lettered),
        }

    @property
    def passed(self) -> bool:
        return not any(self.failures.values())

    def as_json(self) -> dict[str, Any]:
        def show(copies: list[Copy]) -> list[str]:
            return ["/".join(c) for c in copies[:50]]  # keys are synthetic ids, never personal values

        return {
            "passed": self.passed,
            "failures": self.failures,
            "counts": self.counts,
            "examples": {
                "lost": show(self.lost),
                "premature": show(self.premature),
                "duplicated": show(self.duplicated),
                "certificates_for_copies_still_held": show(self.false_proofs),
                "poison_pills_missing_from_dlq": self.poison_missing[:50],
                "forgeries_accepted": self.forgeries_accepted[:50],
                "genuine_messages_dead_lettered": self.genuine_dead_lettered[:50],
            },
        }


def judge(
    oracle: Oracle,
    checked_stores: Iterable[str],
    before: set[Copy],
    after: set[Copy],
    receipts: Iterable[Mapping[str, Any]],
    first_orders: Mapping[Copy, int],
    certified: Iterable[Copy],
    dead_letters: Mapping[Letter, str],
    sent: Iterable[Sent],
) -> Verdict:
    """The ledger's verdict on a run.

    ``before``/``after``: the copies whose personal data the checked stores held before the run
    and after it. ``receipts``: the genuine receipts (forged ones excluded by their offsets).
    ``first_orders``: for every copy of every store a genuine command named, the earliest
    ``issued_at`` (ms) of those commands. ``certified``: copies a certificate says are gone.
    ``dead_letters``: the reason of every dead letter, by its source coordinates."""
    stores = set(checked_stores)
    announced = {c for c in oracle.copies() if c[0] in stores}
    due = {c for c in oracle.ordered if c[0] in stores}
    lost = sorted(c for c in due if c in after)
    # Deleted and never due; or ordered (in any store) before the tick that made it due.
    gone_undue = {c for c in announced - due if c in before and c not in after}
    early = {c for c, at in first_orders.items() if at < oracle.ordered.get(c, 2**63)}
    premature = sorted(gone_undue | early)
    deleted: dict[Copy, set[str]] = {}
    for receipt in receipts:  # a repeated command is answered with its stored receipt: one command
        if receipt["outcome"] == "DELETED" and int(receipt.get("rows") or 0) > 0:
            copy = (receipt["store"], receipt["category"], receipt["record_key"])
            deleted.setdefault(copy, set()).add(receipt["command_id"])
    duplicated = sorted(c for c, commands in deleted.items() if len(commands) > 1)
    false_proofs = sorted({c for c in certified if c[0] in stores and c in after})
    missing, accepted, genuine = _refusals(dead_letters, sent, due, before, after)
    counts = {
        "events_replayed": oracle.events,
        "ticks_replayed": oracle.ticks,
        "copies_announced_in_checked_stores": len(announced),
        "copies_due": len(due),
        "copies_held_before": len(before & announced),
        "copies_held_after": len(after & announced),
        "copies_gone": len((before - after) & announced),
        "copies_ordered_in_all_stores": len(first_orders),
        "deletions_receipted": sum(len(c) for c in deleted.values()),
        "certified_copies": len(set(certified)),
        "dead_letters": len(dead_letters),
    }
    return Verdict(lost, premature, duplicated, false_proofs, missing, accepted, genuine, counts)


def _refusals(
    dead_letters: Mapping[Letter, str],
    sent: Iterable[Sent],
    due: set[Copy],
    before: set[Copy],
    after: set[Copy],
) -> tuple[list[str], list[str], list[str]]:
    """Poison pills missing from the dead letters, forgeries accepted, and genuine messages
    refused (every other dead letter)."""
    missing: list[str] = []
    accepted: list[str] = []
    expected: set[Letter] = set()
    for message in sent:
        where: Letter = (message.topic, message.partition, message.offset)
        expected.add(where)
        reason = dead_letters.get(where)
        label = f"{message.what} ({message.topic}[{message.partition}]@{message.offset})"
        if message.kind == "poison" and reason is None:
            missing.append(label)
        if message.kind == "forgery":
            if reason is None:
                accepted.append(f"{label}: not dead-lettered")
            elif not reason.startswith("security"):
                accepted.append(f"{label}: dead-lettered for another reason ({reason[:80]})")
            elif message.target is not None and _took_effect(message, due, before, after):
                accepted.append(f"{label}: dead-lettered, yet it took effect")
    genuine = sorted(
        f"{topic}[{partition}]@{offset}: {reason[:100]}"
        for (topic, partition, offset), reason in dead_letters.items()
        if (topic, partition, offset) not in expected
    )
    return missing, accepted, genuine


def _took_effect(message: Sent, due: set[Copy], before: set[Copy], after: set[Copy]) -> bool:
    """A forged command's target deleted before it was due, or a forged receipt's or hold's
    target (a due copy) left undeleted."""
    target = message.target
    assert target is not None
    if target in due:
        return target in after
    return target in before and target not in after
