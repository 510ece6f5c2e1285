"""The rules for domains, certificates, logs, marketing and hosted data, named after their seed clauses."""

from __future__ import annotations

from streams.policy.engine import apply_event, fire_due
from streams.policy.rules import rules_policy
from tests.unit.builders import (
    cert_issued,
    cert_revoked,
    consent_given,
    consent_withdrawn,
    deadline,
    domain_registered,
    domain_released,
    export_offered,
    fold,
    t,
    terminated,
    written,
)

POLICY = rules_policy()


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
