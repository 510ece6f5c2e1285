"""The chaos ledger finds what went wrong, from events, ticks and what the stores hold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chaos.ledger import Copy, Oracle, Sent, judge
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.tools.client import to_record

pytestmark = pytest.mark.unit

POLICY = rules_policy()
STORES = ["customer_db"]
EVENTS = "p.events"


def _event(number: int, kind: str, subject: str, when: str, **payload: Any) -> dict[str, Any]:
    return to_record(
        {
            "event_id": f"e{number}",
            "type": kind,
            "subject_id": subject,
            "event_time": when,
            "producer": "test",
            "payload": payload,
        }
    )


def _ticket(key: str) -> Copy:
    return ("customer_db", "correspondence", key)


def oracle_of_two_customers(until: str) -> Oracle:
    """cust-1 closes its account in 2019 (its ticket due three years later); cust-2 stays."""
    oracle = Oracle(POLICY)
    for number, (kind, subject, when, payload) in enumerate(
        [
            ("CustomerRegistered", "cust-1", "2018-01-05T00:00:00Z", {}),
            ("CustomerRegistered", "cust-2", "2018-01-06T00:00:00Z", {}),
            (
                "RecordWritten",
                "cust-1",
                "2018-02-01T00:00:00Z",
                {"store": "customer_db", "category": "correspondence", "record_key": "t1", "ref": None},
            ),
            (
                "RecordWritten",
                "cust-2",
                "2018-02-01T00:00:00Z",
                {"store": "customer_db", "category": "correspondence", "record_key": "t2", "ref": None},
            ),
            ("AccountClosed", "cust-1", "2019-03-01T00:00:00Z", {}),
        ]
    ):
        oracle.event(_event(number, kind, subject, when, **payload))
    for year in range(2019, int(until[:4]) + 1):
        oracle.tick(to_ms(datetime(year, 12, 31, tzinfo=UTC)))
    return oracle


T1, T2 = _ticket("t1"), _ticket("t2")  # the tickets of cust-1 and cust-2


def verdict(oracle: Oracle, after: set[Copy], **more: Any) -> Any:
    args: dict[str, Any] = {
        "receipts": [],
        "first_orders": {},
        "certified": [],
        "dead_letters": {},
        "sent": [],
        **more,
    }
    return judge(oracle, STORES, {T1, T2}, after, **args)


def test_the_oracle_orders_a_copy_once_its_deadline_has_passed_at_a_tick() -> None:
    assert T1 not in oracle_of_two_customers("2021").ordered
    later = oracle_of_two_customers("2023")
    assert T1 in later.ordered and T2 not in later.ordered


def test_a_clean_run_passes() -> None:
    result = verdict(oracle_of_two_customers("2023"), after={T2})
    assert result.passed
    assert result.counts["copies_due"] == 1 and result.counts["copies_gone"] == 1


def test_a_due_copy_still_held_is_lost() -> None:
    result = verdict(oracle_of_two_customers("2023"), after={T1, T2})
    assert result.lost == [T1] and not result.passed


def test_a_copy_gone_before_it_was_due_is_premature() -> None:
    result = verdict(oracle_of_two_customers("2021"), after=set())
    assert result.premature == [T1, T2] and result.failures["premature_deletions"] == 2


def test_two_commands_that_each_deleted_rows_of_one_copy_are_a_duplicated_deletion() -> None:
    deleted = {"store": "customer_db", "category": "correspondence", "record_key": "t1", "rows": 1}
    twice = [{**deleted, "outcome": "DELETED", "command_id": c} for c in ("c1", "c2")]
    assert verdict(oracle_of_two_customers("2023"), after={T2}, receipts=twice).duplicated == [T1]
    # A repeated command is answered with its stored receipt again: one deletion.
    repeated = [{**deleted, "outcome": "DELETED", "command_id": "c1"}] * 2
    assert verdict(oracle_of_two_customers("2023"), after={T2}, receipts=repeated).passed
    once_then_gone = [twice[0], {**deleted, "outcome": "NOT_FOUND", "rows": 0, "command_id": "c2"}]
    assert verdict(oracle_of_two_customers("2023"), after={T2}, receipts=once_then_gone).passed


def test_a_copy_ordered_before_the_tick_that_made_it_due_is_premature_even_if_due_by_the_end() -> None:
    oracle = oracle_of_two_customers("2023")
    due_at = oracle.ordered[T1]
    early = verdict(oracle, after={T2}, first_orders={T1: due_at - 1})
    assert early.premature == [T1] and not early.passed
    assert verdict(oracle, after={T2}, first_orders={T1: due_at}).passed
    never_due = verdict(oracle, after={T2}, first_orders={T1: due_at, T2: due_at})
    assert never_due.premature == [T2]  # ordered although never due (its store kept it: still early)


def test_a_certificate_for_a_copy_still_held_is_a_false_proof() -> None:
    result = verdict(oracle_of_two_customers("2023"), after={T1, T2}, certified=[T1])
    assert result.false_proofs == [T1]


def test_a_poison_pill_not_in_the_dead_letters_is_reported() -> None:
    pill = Sent("poison", "event dated 9999-12-31", EVENTS, 0, 7)
    missing = verdict(oracle_of_two_customers("2023"), after={T2}, sent=[pill])
    assert missing.poison_missing and not missing.passed
    letters = {(EVENTS, 0, 7): "lifecycle_event: event_time outside the accepted window"}
    found = verdict(oracle_of_two_customers("2023"), after={T2}, sent=[pill], dead_letters=letters)
    assert found.passed


def test_a_forged_command_that_deleted_its_target_is_accepted_even_if_dead_lettered() -> None:
    command = Sent("forgery", "unsigned command", "p.commands.customer_db", 1, 3, target=T2)
    letters = {("p.commands.customer_db", 1, 3): "security: unsigned"}
    took_effect = verdict(oracle_of_two_customers("2023"), after=set(), sent=[command], dead_letters=letters)
    assert took_effect.failures["forgeries_accepted"] == 1
    refused = verdict(oracle_of_two_customers("2023"), after={T2}, sent=[command], dead_letters=letters)
    assert refused.passed


def test_a_forged_receipt_whose_copy_was_never_deleted_is_accepted() -> None:
    receipt = Sent("forgery", "unsigned DELETED receipt", "p.receipts", 0, 9, target=T1)
    letters = {("p.receipts", 0, 9): "security: unsigned"}
    result = verdict(oracle_of_two_customers("2023"), after={T1, T2}, sent=[receipt], dead_letters=letters)
    assert result.failures["forgeries_accepted"] == 1 and result.lost == [T1]


def test_a_forgery_not_dead_lettered_is_accepted() -> None:
    tick = Sent("forgery", "unsigned tick from 2099", "p.clock", 0, 4)
    assert verdict(oracle_of_two_customers("2023"), after={T2}, sent=[tick]).forgeries_accepted


def test_a_forgery_dead_lettered_for_another_reason_than_security_is_accepted() -> None:
    tick = Sent("forgery", "tick from 2099 signed with an unknown key", "p.clock", 0, 4)
    letters = {("p.clock", 0, 4): "clock_tick: events_end is negative"}
    assert verdict(
        oracle_of_two_customers("2023"), after={T2}, sent=[tick], dead_letters=letters
    ).forgeries_accepted
    letters = {("p.clock", 0, 4): "security: other_key"}
    assert verdict(oracle_of_two_customers("2023"), after={T2}, sent=[tick], dead_letters=letters).passed


def test_a_genuine_message_in_the_dead_letters_is_reported() -> None:
    letters = {("p.receipts", 1, 12): "security: not_issued"}
    result = verdict(oracle_of_two_customers("2023"), after={T2}, dead_letters=letters)
    assert result.genuine_dead_lettered and result.failures["genuine_messages_dead_lettered"] == 1
