"""A tick orders what is due and reports what is late; a store's failure is ordered again."""

from __future__ import annotations

from ebbtide.streams.engine.events import DeletionReported
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.receipts import apply_receipt
from tests.unit.streams.builders import POLICY, breach, closed, fold, notified, t, written


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
