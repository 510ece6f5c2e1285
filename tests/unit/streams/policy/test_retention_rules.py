"""The rules of policy v1 (accounts, bookkeeping, correspondence, domains, certificates, logs,
marketing and hosted data), one class per seed clause."""

from __future__ import annotations

from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.stamping import apply_event
from tests.unit.streams.builders import (
    POLICY,
    cancelled,
    cert_issued,
    cert_revoked,
    closed,
    consent_given,
    consent_withdrawn,
    deadline,
    domain_registered,
    domain_released,
    export_offered,
    fold,
    invoiced,
    ordered,
    t,
    terminated,
    written,
)


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


class TestSeed001DomainDataKeptWhileTheDomainIsRegistered:
    def test_deleted_at_release_after_the_grace_period(self) -> None:
        state = fold(
            [
                domain_registered("example.no", "2020-01-01"),
                written("domain_contact", "d1", "2020-01-01", ref="example.no"),
                domain_released("example.no", "2023-05-10"),
            ]
        )
        assert deadline(state, "domain_contact", "d1") == t("2023-06-09")  # + 30 days grace

    def test_no_deadline_while_registered(self) -> None:
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="example.no"),
                domain_registered("example.no", "2020-01-01"),
            ]
        )
        assert deadline(state, "domain_contact", "d1") is None

    def test_registering_again_stops_the_clock(self) -> None:
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="example.no"),
                domain_released("example.no", "2023-05-10"),
                domain_registered("example.no", "2023-05-20"),
            ]
        )
        assert deadline(state, "domain_contact", "d1") is None

    def test_releasing_another_domain_does_not_touch_this_one(self) -> None:
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="example.no"),
                domain_released("other.no", "2023-05-10"),
            ]
        )
        assert deadline(state, "domain_contact", "d1") is None


class TestSeed001SslDataKeptWhileTheCertificateIsValid:
    def test_deleted_at_expiry(self) -> None:
        state = fold(
            [
                written("ssl_contact", "c1", "2024-01-01", ref="cert-1"),
                cert_issued("cert-1", "2024-01-01", valid_until="2025-01-01"),
            ]
        )
        assert deadline(state, "ssl_contact", "c1") == t("2025-01-01")

    def test_revocation_before_expiry_deletes_earlier(self) -> None:
        state = fold(
            [
                written("ssl_contact", "c1", "2024-01-01", ref="cert-1"),
                cert_issued("cert-1", "2024-01-01", valid_until="2025-01-01"),
                cert_revoked("cert-1", "2024-03-15"),
            ]
        )
        assert deadline(state, "ssl_contact", "c1") == t("2024-03-15")

    def test_revocation_after_expiry_changes_nothing(self) -> None:
        state = fold(
            [
                written("ssl_contact", "c1", "2024-01-01", ref="cert-1"),
                cert_issued("cert-1", "2024-01-01", valid_until="2025-01-01"),
                cert_revoked("cert-1", "2025-06-01"),
            ]
        )
        assert deadline(state, "ssl_contact", "c1") == t("2025-01-01")


class TestSeed000LogsDeletedContinuouslyWhenNoLongerNeeded:
    def test_kept_ninety_days_after_the_day_of_collection_ends_in_oslo(self) -> None:
        state = fold([written("auto_collected", "log-1", "2024-01-01T10:00:00Z")])
        # 1 January ends at 24:00 in Oslo; 90 days later is 1 April 00:00 Oslo (summer) time.
        assert deadline(state, "auto_collected", "log-1") == t("2024-03-31T22:00:00Z")

    def test_the_same_day_gives_every_line_the_same_deadline(self) -> None:
        morning = fold([written("auto_collected", "log-1", "2024-06-01T00:10:00+02:00")])
        night = fold([written("auto_collected", "log-1", "2024-06-01T23:50:00+02:00")])
        assert deadline(morning, "auto_collected", "log-1") == deadline(night, "auto_collected", "log-1")


class TestSeed000TrustpilotYouCanUnsubscribeAtAnyTime:
    def test_marketing_data_is_deleted_when_consent_is_withdrawn(self) -> None:
        state = fold(
            [
                written("marketing", "m1", "2024-01-01", ref="newsletter"),
                consent_withdrawn("2024-02-02T08:00:00Z"),
            ]
        )
        assert deadline(state, "marketing", "m1") == t("2024-02-02T08:00:00Z")

    def test_consent_given_again_stops_the_clock(self) -> None:
        state = fold(
            [
                written("marketing", "m1", "2024-01-01", ref="newsletter"),
                consent_withdrawn("2024-02-02"),
                consent_given("2024-02-03"),
            ]
        )
        assert deadline(state, "marketing", "m1") is None


class TestSeed003Section13DeleteEverythingIncludingBackupsAfterTheLastPeriod:
    def test_hosted_data_and_its_backups_are_deleted_after_the_paid_period(self) -> None:
        state = fold(
            [
                written("hosted", "site-1", "2022-01-01", ref="agr-1", store="hosting"),
                written("hosted", "site-1", "2022-01-02", ref="agr-1", store="backups"),
                terminated("agr-1", "2024-05-01", paid_until="2024-12-31"),
                export_offered("agr-1", "2024-05-02"),
            ]
        )
        due = fire_due(state, t("2024-12-31"), POLICY)
        assert sorted(c.store for c in due.commands) == ["backups", "hosting"]
        assert fire_due(state, t("2024-12-30"), POLICY).commands == ()

    def test_data_not_exported_is_deleted_anyway_and_the_late_offer_is_reported(self) -> None:
        """Seed 003 section 13, last paragraph: data not exported before the service's expiry
        is the customer's loss; offering the export is a duty, late is reported, never a gate."""
        state = fold(
            [
                written("hosted", "site-1", "2022-01-01", ref="agr-1", store="hosting"),
                terminated("agr-1", "2024-05-01", paid_until="2024-12-31"),
            ]
        )
        assert state.records["hosting/hosted/site-1"].blockers == ()
        assert state.duties["export/agr-1"].due == t("2024-12-31")
        due = fire_due(state, t("2024-12-31"), POLICY)
        assert [c.store for c in due.commands] == ["hosting"]
        assert [d.kind for d in due.decisions if d.category == "duty"] == ["DUTY_OVERDUE"]
        offered = apply_event(due.state, export_offered("agr-1", "2025-02-01"), POLICY)
        assert [d.kind for d in offered.decisions] == ["DUTY_DONE"]

    def test_an_export_offered_in_time_closes_the_duty(self) -> None:
        state = fold(
            [
                written("hosted", "site-1", "2022-01-01", ref="agr-1", store="hosting"),
                terminated("agr-1", "2024-05-01", paid_until="2024-12-31"),
                export_offered("agr-1", "2024-05-02"),
            ]
        )
        assert state.duties["export/agr-1"].done_at == t("2024-05-02")
        due = fire_due(state, t("2025-01-01"), POLICY)
        assert [d.kind for d in due.decisions] == ["DELETION_ORDERED"]


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


def test_consent_for_another_purpose_does_not_stop_the_newsletter_deletion() -> None:
    state = fold(
        [
            written("marketing", "m1", "2024-01-01", ref="newsletter"),
            consent_withdrawn("2024-02-02", purpose="newsletter"),
            consent_given("2024-02-03", purpose="trustpilot"),
        ]
    )
    assert state.records["customer_db/marketing/m1"].deadline == t("2024-02-02")
