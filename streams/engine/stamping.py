"""Stamping: folding a lifecycle event into a subject's state, and judging again what it changes.

``apply_event`` adds a record announcement (one copy per store that holds its category) or a
fact, then ``restamp`` derives again the deadline and blockers of every record the change can
touch (``judging.judge``) and every duty, and decides on what changed. Everything is derived
from the facts in event-time order, so late, duplicated and out-of-order events end in the same
state as the same events in order.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import replace

from ebbtide.streams.engine.answers import answers_given
from ebbtide.streams.engine.clocks import account_clock
from ebbtide.streams.engine.decisions import Decision, duty_changes, record_changes
from ebbtide.streams.engine.events import Event, RecordWritten
from ebbtide.streams.engine.facts import Fact, fact_of
from ebbtide.streams.engine.judging import judge
from ebbtide.streams.engine.model import JUDGED, Outcome, RecordState, SubjectState, record_id
from ebbtide.streams.engine.rights import duties_of, rights_of
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.vocabulary import DUTY_EVENTS, RIGHTS_EVENTS


def apply_event(state: SubjectState, event: Event, policy: Policy) -> Outcome:
    """Fold one lifecycle event in; the same event again changes nothing.

    An announcement is known by its id, kept in ``seen`` (or by the copies it announced, once
    they are pruned: ``RecordState.covers``). A fact is known by itself: the same fact again
    changes nothing, while another event that reuses its id (a forger who took the id of a hold
    still to come, say) does not stop it. An event that is no fact and no announcement changes
    nothing, so applying it again changes nothing either."""
    seen, facts, records = state.seen, state.facts, state.records
    fact: Fact | None = None
    if isinstance(event, RecordWritten):
        if event.event_id in seen:
            return Outcome(state)
        stores = policy.copies_of(event.store, event.category, event.ref)
        copies = [record_id(store, event.category, event.record_key) for store in stores]
        if all(rid in records and records[rid].covers(event.event_id) for rid in copies):
            return Outcome(state)  # taken in already; its id went from ``seen`` with the pruning
        records = _written(records, event, stores)
        seen = seen | {event.event_id}
        only: frozenset[str] | None = frozenset(copies)
    else:
        fact = fact_of(event)
        if fact is None or fact in facts:
            return Outcome(state)
        facts_list = list(facts)
        insort(facts_list, fact)
        facts = tuple(facts_list)
        only = _affected(records, fact, policy)
    duties = fact is not None and fact.kind in DUTY_EVENTS
    return restamp(
        replace(state, seen=seen, facts=facts, records=records), state, policy, only, duties, event.event_id
    )


def restamp(
    state: SubjectState,
    before: SubjectState,
    policy: Policy,
    only: frozenset[str] | None = None,
    duties_changed: bool = True,
    trigger: str = "",
) -> Outcome:
    """Derive the deadline and blockers of every pending record (or only those in ``only``) and,
    if ``duties_changed``, every duty, from the facts; decide on what changed since ``before``."""
    records = dict(state.records)
    decisions: list[Decision] = []
    if only is not None and not only and not duties_changed:
        return Outcome(state)
    account = account_clock(state.facts)
    rights = rights_of(state.facts)
    for rid in sorted(records if only is None else only):
        record = records.get(rid)
        if record is None or record.status not in JUDGED:
            continue
        old = before.records.get(rid)
        if old is not None and old.written_by != record.written_by:
            old = None
        new, reasons = judge(record, state.facts, account, rights, policy)
        records[rid] = new
        decisions += record_changes(state.subject_id, old, new, reasons, policy, trigger)
    if not duties_changed:
        return Outcome(replace(state, records=records, policy=policy.label), tuple(decisions))
    duties = duties_of(state.facts, policy.duties, policy.zone)
    decisions += duty_changes(state.subject_id, before.duties, duties, policy, trigger)
    state = replace(state, records=records, duties=duties, policy=policy.label)
    answers, answered = answers_given(state, before.duties, rights, policy, trigger)
    decisions += answered
    return Outcome(state, tuple(decisions), (), answers)


def _affected(records: dict[str, RecordState], fact: Fact, policy: Policy) -> frozenset[str] | None:
    """The records whose judgement a new fact can change (None: all of them)."""
    if fact.kind in RIGHTS_EVENTS:
        return None
    out = set()
    for rid, record in records.items():
        rule = policy.rule_for(record.category)
        if rule is None or record.status not in JUDGED:
            continue
        moves_clock = fact.kind in rule.starts or fact.kind in rule.stops
        in_scope = rule.clock == "account" or rule.scope == "subject" or record.ref == fact.ref
        if moves_clock and in_scope:
            out.add(rid)
    return frozenset(out)


def _written(
    records: dict[str, RecordState], event: RecordWritten, stores: tuple[str, ...]
) -> dict[str, RecordState]:
    """One copy of the record in each of ``stores``: those that hold its category (per the
    store map, ``Policy.copies_of``)."""
    out = records
    for store in stores:
        key = record_id(store, event.category, event.record_key)
        current = out.get(key)
        if current is not None and current.covers(event.event_id):
            continue  # this very announcement, taken in already
        if current is not None and current.status != "deleted":
            # Already known: its life starts at the earliest announcement, whatever the arrival order.
            if current.status not in JUDGED or (current.written_at, current.written_by) <= (
                event.time,
                event.event_id,
            ):
                continue
            replacement = replace(current, ref=event.ref, written_by=event.event_id, written_at=event.time)
        else:
            # New, or written again after its copy was deleted (a later announcement than that
            # copy's order: covered ones were skipped above): a new record, from this announcement.
            earlier = (*current.earlier, current.written_by) if current else ()
            replacement = RecordState(
                store,
                event.category,
                event.record_key,
                event.ref,
                event.event_id,
                event.time,
                earlier=earlier,
            )
        if out is records:
            out = dict(records)
        out[key] = replacement
    return out
