"""Rights and duties: erasure, restriction, legal holds, breach notification (seeds 000, 001, 003, 004)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.streams.engine.events import Event
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import Outcome, SubjectState
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy.rules import rules_policy
from tests.unit.streams.builders import (
    SUBJECT,
    breach,
    cancelled,
    closed,
    erasure,
    export_offered,
    fold,
    hold,
    invoiced,
    notified,
    ordered,
    released,
    restricted,
    t,
    terminated,
    unrestricted,
    verified,
    written,
)

POLICY = rules_policy()


def apply_all(state: SubjectState, events: Iterable[Event]) -> list[Outcome]:
    outcomes = []
    for event in events:
        outcome = apply_event(state, event, POLICY)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


CUSTOMER = [
    written("client", "1", "2019-01-10"),
    ordered("svc-1", "2019-01-10"),
    invoiced("inv-7", "2022-03-10"),
    written("invoice", "7", "2022-03-10", ref="inv-7"),
    written("marketing", "m1", "2019-01-10"),
    written("auto_collected", "log-1", "2024-01-05"),
    cancelled("svc-1", "2024-01-31"),
    closed("2024-02-01"),
]


class TestSeed004ErasureDeletesWhatNoRuleObligesUsToKeep:
    def test_erasure_deletes_now_and_keeps_bookkeeping_restricted(self) -> None:
        state = fold([*CUSTOMER, erasure("req-1", "2024-02-10")])
        due = fire_due(state, t("2024-02-10"), POLICY)
        assert sorted(c.category for c in due.commands) == ["marketing"]  # a log day: restricted
        invoice = state.records["customer_db/invoice/7"]
        assert invoice.restricted_by == "req-1" and invoice.deadline == t("2027-12-31T23:00:00Z")
        assert state.records["customer_db/client/1"].restricted_by == "req-1"

    def test_the_answer_says_what_is_deleted_what_is_kept_why_and_until_when(self) -> None:
        (outcome,) = apply_all(fold(CUSTOMER), [erasure("req-1", "2024-02-10")])
        (answer,) = outcome.answers
        items = {i.record: i for i in answer.items}
        assert items["customer_db/marketing/m1"].action == "DELETE"
        kept = items["customer_db/invoice/7"]
        assert (kept.action, kept.rule_id, kept.until) == ("KEEP", "bookkeeping", "2027-12-31T23:00:00Z")
        assert kept.basis is not None and "17(3)(b)" in kept.basis
        assert answer.due_by == t("2024-03-10")
        kinds = [d.kind for d in outcome.decisions]
        assert "ERASURE_ANSWERED" in kinds and "DUTY_DONE" in kinds

    def test_an_unverified_request_is_held_not_executed(self) -> None:
        (outcome,) = apply_all(fold(CUSTOMER), [erasure("req-1", "2024-02-10", verified=False)])
        assert outcome.answers == ()
        assert "ERASURE_HELD" in [d.kind for d in outcome.decisions]
        assert [c.category for c in fire_due(outcome.state, t("2024-02-11"), POLICY).commands] == []

    def test_verification_later_executes_the_request(self) -> None:
        state = fold(
            [*CUSTOMER, erasure("req-1", "2024-02-10", verified=False), verified("req-1", "2024-02-20")]
        )
        due = fire_due(state, t("2024-02-20"), POLICY)
        assert sorted(c.category for c in due.commands) == ["marketing"]  # a log day: restricted

    def test_an_unanswered_request_becomes_overdue_after_one_month(self) -> None:
        state = fold([*CUSTOMER, erasure("req-1", "2024-01-31", verified=False)])
        assert fire_due(state, t("2024-02-29"), POLICY).decisions == ()
        late = fire_due(state, t("2024-03-01"), POLICY)  # 31 Jan + 1 month rolls to 1 March
        assert [d.kind for d in late.decisions] == ["DUTY_OVERDUE"]
        assert fire_due(late.state, t("2024-04-01"), POLICY).decisions == ()  # reported once

    def test_records_written_after_the_request_are_not_erased(self) -> None:
        state = fold(
            [*CUSTOMER, erasure("req-1", "2024-02-10"), written("auto_collected", "log-2", "2024-03-01")]
        )
        # its own 90 days after its day ends (Oslo time): not shortened by the earlier request
        assert state.records["customer_db/auto_collected/log-2"].deadline == t("2024-05-30T22:00:00Z")


class TestSeed001LegalHoldSuspendsDeletion:
    def test_a_deadline_passing_during_a_hold_fires_on_release(self) -> None:
        state = fold([*CUSTOMER, hold("court-1", "2026-06-01")])
        assert fire_due(state, t("2027-06-01"), POLICY).commands == ()
        after = fold([*CUSTOMER, hold("court-1", "2026-06-01"), released("court-1", "2027-09-01")])
        categories = sorted(c.category for c in fire_due(after, t("2027-09-01"), POLICY).commands)
        assert categories == ["auto_collected", "client"]  # both passed their deadline during the hold

    def test_a_hold_can_name_a_category(self) -> None:
        state = fold([*CUSTOMER, hold("tax-1", "2023-01-01", categories=("invoice",))])
        assert state.records["customer_db/invoice/7"].blockers == ("hold:tax-1",)
        assert state.records["customer_db/client/1"].blockers == ()

    def test_a_hold_can_name_records(self) -> None:
        state = fold([*CUSTOMER, hold("police-1", "2023-01-01", records=("customer_db/client/1",))])
        assert state.records["customer_db/client/1"].blockers == ("hold:police-1",)
        assert state.records["customer_db/marketing/m1"].blockers == ()

    def test_an_event_that_took_the_id_of_a_hold_to_come_does_not_stop_it(self) -> None:
        # Anyone who can write events may send one with a guessed id; the signed hold that comes
        # later under that id is a fact of its own and is applied all the same.
        court = hold("court-1", "2026-06-01")
        squatter = replace(closed("2026-05-01"), event_id=court.event_id)
        state = fold([*CUSTOMER, squatter, court])
        assert state.records["customer_db/client/1"].blockers == ("hold:court-1",)
        assert fire_due(state, t("2030-01-01"), POLICY).commands == ()
        assert fold([*CUSTOMER, squatter, court, court]) == state  # the hold again: nothing new

    def test_a_hold_overrides_erasure(self) -> None:
        state = fold([*CUSTOMER, hold("court-1", "2024-02-05"), erasure("req-1", "2024-02-10")])
        assert fire_due(state, t("2024-03-01"), POLICY).commands == ()


class TestSeed004RestrictionLimitsProcessingToStorage:
    def test_nothing_is_deleted_while_restricted_and_due_deletions_fire_when_lifted(self) -> None:
        state = fold([*CUSTOMER, restricted("r-1", "2027-01-01")])
        assert fire_due(state, t("2027-03-01"), POLICY).commands == ()
        lifted = apply_event(state, unrestricted("r-1", "2027-04-01"), POLICY)
        assert "UNRESTRICTED" in [d.kind for d in lifted.decisions]
        categories = sorted(c.category for c in fire_due(lifted.state, t("2027-04-01"), POLICY).commands)
        assert categories == ["auto_collected", "client"]


class TestSeed000BreachNotification:
    def test_the_authority_must_be_notified_within_72_hours(self) -> None:
        state = fold([*CUSTOMER, breach("b-1", "2024-06-01T10:00:00Z")])
        assert state.duties["breach/b-1/authority"].due == t("2024-06-04T10:00:00Z")
        late = fire_due(state, t("2024-06-04T10:00:00Z"), POLICY)
        overdue = sorted(d.record for d in late.decisions if d.kind == "DUTY_OVERDUE")
        assert overdue == ["duty/breach/b-1/authority", "duty/breach/b-1/customer"]

    def test_a_notified_breach_is_not_overdue(self) -> None:
        state = fold(
            [
                *CUSTOMER,
                breach("b-1", "2024-06-01T10:00:00Z"),
                notified("b-1", "2024-06-02T09:00:00Z", "AUTHORITY"),
                notified("b-1", "2024-06-02T09:30:00Z", "CUSTOMER"),
            ]
        )
        assert [
            d for d in fire_due(state, t("2024-07-01"), POLICY).decisions if d.kind == "DUTY_OVERDUE"
        ] == []


holds_and_times = st.lists(st.tuples(st.integers(0, 3000), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(holds_and_times, st.integers(0, 6000))
def test_a_legal_hold_never_lets_a_deletion_through(toggles: list[tuple[int, bool]], day: int) -> None:
    """Whatever the placements and releases, nothing under an active hold is ordered deleted."""
    from ebbtide.streams.engine.events import LegalHoldPlaced, LegalHoldReleased
    from ebbtide.streams.policy.calendar import MS_PER_DAY

    base = t("2018-01-01")
    events: list[Event] = list(CUSTOMER)
    for n, (offset, place) in enumerate(toggles):
        when = base + offset * MS_PER_DAY
        events.append(
            LegalHoldPlaced(f"h{n}", SUBJECT, when, hold_id="h")
            if place
            else LegalHoldReleased(f"h{n}", SUBJECT, when, hold_id="h")
        )
    state = fold(events)
    ordered_now = fire_due(state, base + day * MS_PER_DAY, POLICY).commands
    last = max(((base + o * MS_PER_DAY, f"h{n}"), p) for n, (o, p) in enumerate(toggles))
    if last[1]:  # the hold is in force
        assert ordered_now == ()


def test_export_offered_for_another_agreement_does_not_close_the_export_duty() -> None:
    state = fold(
        [
            written("hosted", "site-a", "2022-01-01", ref="agr-a", store="hosting"),
            terminated("agr-a", "2024-05-01", paid_until="2024-12-31"),
            export_offered("agr-b", "2024-05-02"),
        ]
    )
    assert state.duties["export/agr-a"].done_at is None


def test_a_second_verified_erasure_covers_records_written_after_the_first() -> None:
    state = fold(
        [
            written("correspondence", "t-1", "2024-01-05"),
            erasure("req-1", "2024-02-10"),
            written("correspondence", "t-2", "2024-03-01"),
            erasure("req-2", "2024-04-01"),
        ]
    )
    assert state.records["customer_db/correspondence/t-2"].deadline == t("2024-04-01")


def test_placing_and_releasing_a_hold_twice_gives_distinct_decision_ids() -> None:
    state = fold([written("client", "1", "2019-01-10")])
    ids = []
    for event in (
        hold("h", "2020-01-01"),
        released("h", "2020-02-01"),
        hold("h", "2020-03-01"),
        released("h", "2020-04-01"),
    ):
        outcome = apply_event(state, event, POLICY)
        ids += [d.decision_id for d in outcome.decisions]
        state = outcome.state
    assert len(ids) == 4 and len(set(ids)) == 4


def test_the_erasure_answer_keeps_a_record_under_a_legal_hold() -> None:
    state = fold([written("auto_collected", "log-1", "2024-01-05"), hold("court-1", "2024-02-01")])
    (answer,) = apply_event(state, erasure("req-1", "2024-02-10"), POLICY).answers
    (item,) = answer.items
    assert item.action == "KEEP" and "legal hold court-1" in item.reason
