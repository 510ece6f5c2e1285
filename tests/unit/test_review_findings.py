"""Regressions for what a review of the engine found (each failed before its fix)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.policy.calendar import to_ms
from streams.policy.engine import apply_event, apply_receipt, fire_due
from streams.policy.events import DeletionReported
from tests.unit.builders import (
    POLICY,
    breach,
    closed,
    consent_given,
    consent_withdrawn,
    erasure,
    export_offered,
    fold,
    hold,
    notified,
    released,
    t,
    terminated,
    written,
)


def test_ending_one_hosting_agreement_leaves_another_agreements_data_alone() -> None:
    state = fold(
        [
            written("hosted", "site-a", "2022-01-01", ref="agr-a", store="hosting"),
            written("hosted", "site-b", "2022-01-01", ref="agr-b", store="hosting"),
            terminated("agr-a", "2024-05-01", paid_until="2024-12-31"),
            export_offered("agr-a", "2024-05-02"),
        ]
    )
    assert [c.record_key for c in fire_due(state, t("2025-06-01"), POLICY).commands] == ["site-a"]


def test_export_offered_for_another_agreement_does_not_close_the_export_duty() -> None:
    state = fold(
        [
            written("hosted", "site-a", "2022-01-01", ref="agr-a", store="hosting"),
            terminated("agr-a", "2024-05-01", paid_until="2024-12-31"),
            export_offered("agr-b", "2024-05-02"),
        ]
    )
    assert state.duties["export/agr-a"].done_at is None


def test_consent_for_another_purpose_does_not_stop_the_newsletter_deletion() -> None:
    state = fold(
        [
            written("marketing", "m1", "2024-01-01", ref="newsletter"),
            consent_withdrawn("2024-02-02", purpose="newsletter"),
            consent_given("2024-02-03", purpose="trustpilot"),
        ]
    )
    assert state.records["customer_db/marketing/m1"].deadline == t("2024-02-02")


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


def test_a_duty_done_after_its_deadline_is_reported_overdue_once() -> None:
    state = fold(
        [breach("b-1", "2024-06-01T10:00:00Z"), notified("b-1", "2024-06-10T10:00:00Z", "AUTHORITY")]
    )
    late = fire_due(state, t("2024-06-20"), POLICY)
    authority = [d for d in late.decisions if d.record == "duty/breach/b-1/authority"]
    assert [d.kind for d in authority] == ["DUTY_OVERDUE"] and "done late" in authority[0].reason
    assert not [
        d for d in fire_due(late.state, t("2024-07-01"), POLICY).decisions if d.record == authority[0].record
    ]


def test_a_failed_deletion_is_ordered_again_at_the_next_tick_with_the_same_command() -> None:
    state = fold([written("client", "1", "2019-01-10"), closed("2020-02-01")])
    first = fire_due(state, t("2023-03-01"), POLICY)
    (command,) = first.commands
    failed = apply_receipt(
        first.state,
        DeletionReported(
            command.command_id, "cust-1", "customer_db", "client", "1", "FAILED", "database said no"
        ),
        POLICY,
    )
    assert [d.kind for d in failed.decisions] == ["DELETION_FAILED"]
    (again,) = fire_due(failed.state, t("2023-03-02"), POLICY).commands
    assert again.command_id == command.command_id


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


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_epoch_milliseconds_are_exact(moment: datetime) -> None:
    ms = to_ms(moment)
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms) <= moment
    assert moment - (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)) < timedelta(
        milliseconds=1
    )
