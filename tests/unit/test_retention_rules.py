"""One test per rule of policy v1, named after its seed clause."""

from __future__ import annotations

from streams.policy.engine import apply_event, fire_due
from streams.policy.rules import rules_policy
from tests.unit.builders import cancelled, closed, deadline, fold, invoiced, ordered, t, written

POLICY = rules_policy()


class TestSeed001ClientAccountKeptThreeYearsAfterCancellation:
    def test_deadline_is_three_years_after_account_and_services_are_cancelled(self) -> None:
        state = fold(
            [
                written("client", "1", "2019-01-10"),
                ordered("svc-1", "2019-01-10"),
                cancelled("svc-1", "2021-03-01"),
                closed("2021-03-15"),
            ]
        )
        assert deadline(state, "client", "1") == t("2024-03-15")

    def test_clock_starts_at_the_later_of_closure_and_last_cancellation(self) -> None:
        state = fold(
            [
                written("client", "1", "2019-01-10"),
                ordered("svc-1", "2019-01-10"),
                ordered("svc-2", "2019-02-10"),
                closed("2021-03-15"),
                cancelled("svc-1", "2021-03-01"),
                cancelled("svc-2", "2021-06-30"),
            ]
        )
        assert deadline(state, "client", "1") == t("2024-06-30")

    def test_no_deadline_while_a_service_is_active(self) -> None:
        state = fold(
            [
                written("client", "1", "2019-01-10"),
                ordered("svc-1", "2019-01-10"),
                ordered("svc-2", "2019-01-10"),
                cancelled("svc-1", "2021-03-01"),
                closed("2021-03-15"),
            ]
        )
        assert deadline(state, "client", "1") is None

    def test_a_new_order_before_the_deadline_stops_the_clock(self) -> None:
        events = [
            written("client", "1", "2019-01-10"),
            ordered("svc-1", "2019-01-10"),
            cancelled("svc-1", "2021-03-01"),
            closed("2021-03-01"),
        ]
        running = fold(events)
        assert deadline(running, "client", "1") == t("2024-03-01")
        outcome = apply_event(running, ordered("svc-2", "2023-01-05"), POLICY)
        assert deadline(outcome.state, "client", "1") is None
        assert [d.kind for d in outcome.decisions] == ["CLOCK_STOPPED"]
        assert fire_due(outcome.state, t("2030-01-01"), POLICY).commands == ()

    def test_a_reactivated_account_stays_open_after_its_new_service_is_cancelled(self) -> None:
        state = fold(
            [
                written("client", "1", "2019-01-10"),
                ordered("svc-1", "2019-01-10"),
                cancelled("svc-1", "2021-03-01"),
                closed("2021-03-01"),
                ordered("svc-2", "2022-01-05"),
                cancelled("svc-2", "2022-06-01"),
            ]
        )
        assert deadline(state, "client", "1") is None  # still a client: no closure since the order

    def test_closing_again_restarts_the_clock_from_the_second_closure(self) -> None:
        state = fold(
            [
                written("client", "1", "2019-01-10"),
                ordered("svc-1", "2019-01-10"),
                cancelled("svc-1", "2021-03-01"),
                closed("2021-03-01"),
                ordered("svc-2", "2023-01-05"),
                cancelled("svc-2", "2024-02-01"),
                closed("2024-02-02"),
            ]
        )
        assert deadline(state, "client", "1") == t("2027-02-02")

    def test_29_february_rolls_forward_never_earlier(self) -> None:
        state = fold([written("client", "1", "2019-01-10"), closed("2024-02-29T10:00:00Z")])
        assert deadline(state, "client", "1") == t("2027-03-01T10:00:00Z")

    def test_deletion_is_ordered_at_the_deadline_and_not_before(self) -> None:
        state = fold([written("client", "1", "2019-01-10"), closed("2021-03-15")])
        assert fire_due(state, t("2024-03-14T23:59:59Z"), POLICY).commands == ()
        due = fire_due(state, t("2024-03-15"), POLICY)
        assert [(c.category, c.record_key, c.rule_id) for c in due.commands] == [("client", "1", "account")]
        assert due.state.records["customer_db/client/1"].status == "ordered"
        # ordered once: sent again only if the store has not answered within its service level
        assert fire_due(due.state, t("2024-03-15T00:59:59Z"), POLICY).commands == ()


class TestSeed001InvoicesKeptFiveYearsFromEndOfFinancialYear:
    def test_deadline_is_five_years_after_the_financial_year_ends(self) -> None:
        state = fold([invoiced("inv-7", "2020-03-10"), written("invoice", "7", "2020-03-10", ref="inv-7")])
        assert deadline(state, "invoice", "7") == t("2025-12-31T23:00:00Z")  # 1 Jan 2026 00:00 in Oslo

    def test_an_invoice_issued_on_new_years_eve_in_oslo_belongs_to_that_year(self) -> None:
        state = fold(
            [
                written("invoice", "8", "2020-12-31T22:30:00Z", ref="inv-8"),
                invoiced("inv-8", "2020-12-31T23:30:00+01:00"),
            ]
        )
        assert deadline(state, "invoice", "8") == t("2025-12-31T23:00:00Z")

    def test_an_invoice_issued_after_midnight_in_oslo_belongs_to_the_new_year(self) -> None:
        """2021-01-01T00:30+01:00 is still 2020 in UTC, but financial year 2021 in Norway."""
        state = fold(
            [
                written("invoice", "8", "2021-01-01T00:30:00+01:00", ref="inv-8"),
                invoiced("inv-8", "2021-01-01T00:30:00+01:00"),
            ]
        )
        assert deadline(state, "invoice", "8") == t("2026-12-31T23:00:00Z")  # end of 2026, Oslo time

    def test_no_deadline_until_the_invoice_event_is_seen(self) -> None:
        state = fold([written("invoice", "9", "2020-03-10", ref="inv-9")])
        assert deadline(state, "invoice", "9") is None

    def test_closing_the_account_does_not_shorten_bookkeeping(self) -> None:
        state = fold(
            [
                invoiced("inv-7", "2022-05-01"),
                written("invoice", "7", "2022-05-01", ref="inv-7"),
                closed("2022-06-01"),
            ]
        )
        assert deadline(state, "invoice", "7") == t("2027-12-31T23:00:00Z")


class TestSeed000CorrespondenceKeptToProtectLegalRights:
    def test_correspondence_follows_the_account_clock(self) -> None:
        state = fold([written("correspondence", "3", "2020-01-01"), closed("2021-03-15")])
        assert deadline(state, "correspondence", "3") == t("2024-03-15")


def test_every_decision_names_its_rule_clause_basis_and_policy_version() -> None:
    outcome = apply_event(
        fold([written("client", "1", "2019-01-10")]), closed("2021-03-15", event_id="close-1"), POLICY
    )
    (decision,) = outcome.decisions
    assert decision.rule_id == "account"
    assert decision.clause is not None and "seed 001" in decision.clause
    assert decision.basis is not None and "17(3)(e)" in decision.basis
    assert decision.policy_version == POLICY.label
    assert "close-1" in decision.caused_by
