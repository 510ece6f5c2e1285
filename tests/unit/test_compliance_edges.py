"""Compliance edges of the seeds, in the pure engine and the processor: Norwegian time, .nu,
transfers out, Trustpilot, correspondence on erasure, export as a duty, refs that clocks need,
requests that end without a deletion, logs on erasure, and certificates that cannot be lost."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.cli import main
from ebbtide.schemas import DECISION, DELETION_COMMAND, LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.coverage import ref_problems
from ebbtide.sinks.postgres import kind as postgres_kind
from ebbtide.sinks.postgres.table_map import TableMap, TableMapError, parse_table_map
from ebbtide.streams import certificates
from ebbtide.streams.engine import events as ev
from ebbtide.streams.engine.certificate import CertificateDue
from ebbtide.streams.engine.explain import explain
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy import calendar
from ebbtide.streams.policy.rules import (
    DEFAULT_POLICY,
    PolicyError,
    WaitsForever,
    default_policy,
    parse_policy,
)
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.translate import to_event
from ebbtide.tools.client import InvalidEvent, to_record
from tests.unit.streams.builders import (
    SUBJECT,
    closed,
    consent_withdrawn,
    domain_registered,
    domain_released,
    erasure,
    hold,
    refused,
    t,
    verified,
    withdrawn,
    written,
)
from tests.unit.streams.worker.harness import TOPICS, Harness, answer, event

POLICY = default_policy()  # the shipped rules with the shipped store map
OSLO = ZoneInfo("Europe/Oslo")


def fold(events: list[ev.Event]) -> SubjectState:
    state = new_subject(SUBJECT)
    for e in events:
        state = apply_event(state, e, POLICY).state
    return state


class TestSeed001BookkeepingCountsTheNorwegianFinancialYear:
    @settings(max_examples=300, deadline=None)
    @given(
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31)),
        st.integers(min_value=-14 * 60, max_value=14 * 60),
    )
    def test_no_bookkeeping_deadline_is_earlier_than_five_years_after_the_oslo_year_ends(
        self, moment: datetime, offset_minutes: int
    ) -> None:
        """However a service writes the invoice's time (any zone offset), the deadline is at least
        5 years after 31 December 24:00 Oslo time of the year the invoice was issued in, in Oslo."""
        issued = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
        when = issued.isoformat()
        events = [
            to_event(to_record(event("i1", "InvoiceIssued", when, subject=SUBJECT, invoice_id="inv-1"))),
            to_event(
                to_record(
                    event(
                        "w1",
                        "RecordWritten",
                        when,
                        subject=SUBJECT,
                        store="billing_db",
                        category="invoice",
                        record_key="1",
                        ref="inv-1",
                    )
                )
            ),
        ]
        deadline = fold(events).records["billing_db/invoice/1"].deadline
        assert deadline is not None
        local_year = issued.astimezone(OSLO).year
        legal_minimum = datetime(local_year + 1 + 5, 1, 1, tzinfo=OSLO)
        assert deadline >= calendar.to_ms(legal_minimum)
        assert deadline == calendar.to_ms(legal_minimum)  # and not a day more: deleted at the end

    def test_the_time_zone_is_part_of_the_policy_and_its_label(self) -> None:
        shipped = DEFAULT_POLICY.read_text()
        assert parse_policy(shipped).time_zone == "Europe/Oslo"
        utc = parse_policy(shipped.replace('time_zone = "Europe/Oslo"', 'time_zone = "UTC"'))
        assert utc.label != parse_policy(shipped).label
        with pytest.raises(PolicyError, match=r"time_zone.*unknown time zone 'Europe/Atlantis'"):
            parse_policy(shipped.replace('time_zone = "Europe/Oslo"', 'time_zone = "Europe/Atlantis"'))


class TestTheNorwegianCalendar:
    def test_a_day_across_the_spring_change_is_23_hours_and_a_period_never_ends_early(self) -> None:
        oslo = calendar.zone("Europe/Oslo")
        before = t("2024-03-30T12:00:00Z")  # 13:00 in Oslo, winter time
        assert calendar.add_days(before, 1, oslo) == t("2024-03-31T11:00:00Z")  # 13:00, summer time
        assert calendar.end_of_day(before, oslo) == t("2024-03-30T23:00:00Z")

    def test_a_time_the_autumn_change_repeats_is_taken_at_its_later_instant(self) -> None:
        oslo = calendar.zone("Europe/Oslo")
        # 2:30 on 27 October 2024 happens twice in Oslo: 00:30Z and 01:30Z. A year before it was
        # 2:30 once (summer time); a year later the period ends at the later of the two.
        assert calendar.add_years(t("2023-10-27T00:30:00Z"), 1, oslo) == t("2024-10-27T01:30:00Z")
        assert calendar.add_days(t("2024-10-27T00:30:00Z"), 0, oslo) == t("2024-10-27T00:30:00Z")


class TestSeed001HowWeShareDomainsGoToTheirRegistry:
    def test_nu_goes_to_realtime_register_like_every_tld_but_no_and_se(self) -> None:
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="kari.nu"),
                domain_released("kari.nu", "2023-01-01"),
            ]
        )
        assert sorted(state.records) == ["customer_db/domain_contact/d1", "registry_rtr/domain_contact/d1"]

    def test_a_domain_transferred_out_stays_with_the_registry_and_only_our_copy_goes(self) -> None:
        """Seed 001 'Data portability': the registration moves to the new registrar."""
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="kari.no"),
                domain_released("kari.no", "2023-01-01", how="TRANSFERRED_OUT"),
            ]
        )
        registry = state.records["registry_norid/domain_contact/d1"]
        assert (registry.status, registry.deadline) == ("transferred", None)
        due = fire_due(state, t("2023-03-01"), POLICY)
        assert [c.store for c in due.commands] == ["customer_db"]
        later = fire_due(due.state, t("2040-01-01"), POLICY)  # chases our unanswered copy, nothing else
        assert [c.store for c in later.commands] == ["customer_db"]
        report = explain(due.state, POLICY, t("2023-03-01"))
        status = {r["record"]: (r["status"], r["why"][0]) for r in report["records"]}
        assert status["registry_norid/domain_contact/d1"][0] == "transferred"
        assert "no deletion is sent to registry_norid" in status["registry_norid/domain_contact/d1"][1]

    def test_a_domain_that_comes_back_and_then_expires_is_deleted_at_its_registry_in_any_order(
        self,
    ) -> None:
        events = [
            written("domain_contact", "d1", "2020-01-01", ref="kari.no"),
            domain_released("kari.no", "2023-01-01", how="TRANSFERRED_OUT"),
            domain_registered("kari.no", "2023-06-01"),
            domain_released("kari.no", "2024-01-01"),
        ]
        for order in (events, [events[0], *events[2:], events[1]], list(reversed(events))):
            state = fold(order)
            assert state.records["registry_norid/domain_contact/d1"].status == "pending"
            due = fire_due(state, t("2024-03-01"), POLICY)
            assert sorted(c.store for c in due.commands) == ["customer_db", "registry_norid"]

    def test_the_transfer_is_decided_with_its_reason(self) -> None:
        state = fold([written("domain_contact", "d1", "2020-01-01", ref="kari.no")])
        moved = apply_event(state, domain_released("kari.no", "2023-01-01", how="TRANSFERRED_OUT"), POLICY)
        (decision,) = [d for d in moved.decisions if d.record == "registry_norid/domain_contact/d1"]
        assert decision.kind == "CLOCK_STOPPED" and "transferred out" in decision.reason

    def test_an_expired_domain_is_still_deleted_at_its_registry(self) -> None:
        state = fold(
            [
                written("domain_contact", "d1", "2020-01-01", ref="kari.no"),
                domain_released("kari.no", "2023-01-01"),
            ]
        )
        due = fire_due(state, t("2023-03-01"), POLICY)
        assert sorted(c.store for c in due.commands) == ["customer_db", "registry_norid"]


class TestSeed000TrustpilotHoldsReviewInvitations:
    def test_a_review_invitation_is_a_copy_at_trustpilot_only_and_goes_on_withdrawal(self) -> None:
        state = fold(
            [
                written("marketing", "ri-1", "2024-01-01", ref="review_invitation", store="review_vendor"),
                written("marketing", "nl-1", "2024-01-01", ref="newsletter"),
                consent_withdrawn("2024-02-01", purpose="review_invitation"),
            ]
        )
        assert sorted(state.records) == ["customer_db/marketing/nl-1", "review_vendor/marketing/ri-1"]
        due = fire_due(state, t("2024-02-01"), POLICY)
        assert [(c.store, c.record_key) for c in due.commands] == [("review_vendor", "ri-1")]
        (command,) = due.commands
        answered = apply_receipt(
            due.state,
            ev.DeletionReported(
                command.command_id,
                SUBJECT,
                "review_vendor",
                "marketing",
                "ri-1",
                "DELETED",
                None,
                1,
                t("2024-02-02"),
            ),
            POLICY,
        )
        (certificate,) = answered.certificates
        assert [c.store for c in certificate.copies] == ["review_vendor"]


class TestSeed000CorrespondenceOnlyToProtectLegalRights:
    def test_a_verified_erasure_deletes_correspondence_now_and_the_answer_says_so(self) -> None:
        state = fold([written("correspondence", "t1", "2020-01-01"), closed("2021-01-01")])
        outcome = apply_event(state, erasure("req-1", "2021-02-01"), POLICY)
        (answer,) = outcome.answers
        item = next(i for i in answer.items if i.category == "correspondence")
        assert (item.record, item.action) == ("customer_db/correspondence/t1", "DELETE")
        due = fire_due(outcome.state, t("2021-02-01"), POLICY)
        assert "customer_db/correspondence/t1" in {
            f"{c.store}/{c.category}/{c.record_key}" for c in due.commands
        }

    def test_a_legal_hold_naming_it_keeps_it_and_the_answer_says_why(self) -> None:
        state = fold(
            [
                written("correspondence", "t1", "2020-01-01"),
                closed("2021-01-01"),
                hold("claim-1", "2021-01-15", categories=("correspondence",)),
            ]
        )
        outcome = apply_event(state, erasure("req-1", "2021-02-01"), POLICY)
        (answer,) = outcome.answers
        item = next(i for i in answer.items if i.category == "correspondence")
        assert item.action == "KEEP" and "legal hold claim-1" in item.reason
        assert not [
            c
            for c in fire_due(outcome.state, t("2030-01-01"), POLICY).commands
            if c.category == "correspondence"
        ]


class TestSeed000LogsOfEveryoneAreNotDestroyedByOnePersonsErasure:
    def test_the_answer_keeps_the_log_record_until_its_period_ends_on_legitimate_interest(self) -> None:
        state = fold(
            [written("auto_collected", "access_log_20240105", "2024-01-05T12:00:00Z", store="log_store")]
        )
        outcome = apply_event(state, erasure("req-1", "2024-01-10"), POLICY)
        (answer,) = outcome.answers
        (item,) = answer.items
        assert item.action == "KEEP" and item.basis is not None and "legitimate interest" in item.basis
        assert item.until == "2024-04-04T22:00:00Z"  # 90 days after 5 January ends in Oslo
        assert fire_due(outcome.state, t("2024-04-04"), POLICY).commands == ()

    def test_without_a_log_record_of_theirs_the_answer_still_says_the_shared_logs_are_kept(self) -> None:
        state = fold([written("client", "1", "2019-01-10"), closed("2024-01-01")])
        (answer,) = apply_event(state, erasure("req-1", "2024-01-10T12:00:00Z"), POLICY).answers
        (logs,) = [i for i in answer.items if i.category == "auto_collected"]
        assert (logs.record, logs.action, logs.rule_id) == ("log_store/auto_collected/*", "KEEP", "logs")
        assert logs.basis is not None and "legitimate interest" in logs.basis
        assert logs.until == "2024-04-09T22:00:00Z"  # 90 days after 10 January ends in Oslo


class TestSeed003Section13ExportIsADutyNeverAGate:
    def test_a_policy_rule_that_waits_for_an_event_is_refused_as_waiting_forever(self) -> None:
        gated = DEFAULT_POLICY.read_text().replace(
            'id = "processor"\n', 'id = "processor"\nrequires = ["ExportOffered"]\n'
        )
        with pytest.raises(WaitsForever, match=r"rule processor: 'requires' .* could wait forever"):
            parse_policy(gated)

    def test_policy_check_reports_the_rule_that_could_wait_forever(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        gated = tmp_path / "gated.toml"
        gated.write_text(
            DEFAULT_POLICY.read_text().replace(
                'id = "processor"\n', 'id = "processor"\nrequires = ["ExportOffered"]\n'
            )
        )
        assert main(["policy", "check", str(gated)]) == 1
        assert "could wait forever" in capsys.readouterr().err

    def test_the_export_duty_is_reported_overdue_and_counted(self) -> None:
        h = Harness(POLICY)
        h.publish(
            event(
                "w1",
                "RecordWritten",
                "2022-01-01T00:00:00Z",
                store="hosting",
                category="hosted",
                record_key="site-1",
                ref="agr-1",
            )
        )
        h.publish(
            event(
                "h1",
                "HostingAgreementTerminated",
                "2023-01-01T00:00:00Z",
                agreement_id="agr-1",
                paid_until="2023-06-30T00:00:00Z",
            )
        )
        from ebbtide.runtime import metrics

        before = metrics.DUTIES_OVERDUE.labels("export")._value.get()
        out = h.tick("2023-07-01T00:00:00Z")
        assert any(o.topic == TOPICS.commands("hosting") for o in out)
        overdue = [d for d in h.decisions() if d["kind"] == "DUTY_OVERDUE"]
        assert [d["record"] for d in overdue] == ["duty/export/agr-1"]
        assert metrics.DUTIES_OVERDUE.labels("export")._value.get() == before + 1


MARKETING = event(
    "w1",
    "RecordWritten",
    "2024-01-01T00:00:00Z",
    store="customer_db",
    category="marketing",
    record_key="m1",
)


class TestAnnouncementsWithoutTheRefTheirRuleNeeds:
    def test_publish_refuses_it_naming_the_field(self) -> None:
        with pytest.raises(InvalidEvent, match=r"field payload\.ref: missing; rule marketing"):
            to_record(MARKETING, POLICY)
        to_record({**MARKETING, "payload": {**MARKETING["payload"], "ref": "newsletter"}}, POLICY)

    def test_a_store_announcing_a_ref_the_map_gives_to_other_stores_is_refused(self) -> None:
        problem = POLICY.announcement_problem("review_vendor", "marketing", "newsletter")
        assert problem is not None and "store 'review_vendor' does not hold marketing records" in problem
        assert "newsletter" not in problem  # the ref is not repeated
        assert POLICY.announcement_problem("registry_norid", "domain_contact", "kari.no") is None
        assert POLICY.announcement_problem("registry_norid", "domain_contact", "kari.se") is not None

    def test_the_worker_dead_letters_it_with_the_reason(self) -> None:
        h = Harness(POLICY)
        value = codec_for(LIFECYCLE_EVENT).encode(to_record(MARKETING))
        (dead,) = h.publish_bytes(b"cust-1", value)
        assert dead.topic == TOPICS.dlq
        assert b"field payload.ref: missing" in dict(dead.headers)["reason"]
        assert h.table.get("s:0:cust-1") is None  # nothing stamped with a clock that cannot start

    def test_policy_check_names_a_backfilled_table_without_a_ref_column(self) -> None:
        tables = parse_table_map(
            {
                "store": "customer_db",
                "categories": {
                    "marketing": [
                        {
                            "table": "newsletter_subscriptions",
                            "key_column": "subscription_id",
                            "action": "delete",
                            "subject_column": "customer_id",
                        }
                    ]
                },
            }
        )

        def table_map(store: str) -> TableMap:
            if store != "customer_db":
                raise TableMapError("not this test's")
            return tables

        assert POLICY.stores is not None
        postgres = [s for s in POLICY.stores.stores if s.kind == "postgres"]
        (problem,) = [p for s in postgres for p in postgres_kind.ref_problems(POLICY, s, table_map=table_map)]
        assert "customer_db: table" in problem and "without a ref_column" in problem
        assert ref_problems(POLICY) == []  # the shipped table maps name their refs


CUSTOMER = (written("client", "1", "2019-01-10"), written("correspondence", "t1", "2019-02-01"))


class TestGdprArticle12ErasureRequestsThatEndWithoutADeletion:
    @pytest.mark.parametrize(
        ("end", "words"),
        [
            (refused("req-1", "2024-02-15"), "refused: the person's identity was never verified"),
            (withdrawn("req-1", "2024-02-15"), "withdrawn by the person"),
        ],
    )
    def test_the_duty_closes_with_the_reason_and_nothing_is_erased(self, end: ev.Event, words: str) -> None:
        state = fold([*CUSTOMER, erasure("req-1", "2024-02-10", verified=False)])
        outcome = apply_event(state, end, POLICY)
        (done,) = [d for d in outcome.decisions if d.kind == "DUTY_DONE"]
        assert words in done.reason
        assert outcome.answers == ()
        assert fire_due(outcome.state, t("2024-06-01"), POLICY).decisions == ()  # never overdue
        later = apply_event(outcome.state, verified("req-1", "2024-03-01"), POLICY).state
        assert fire_due(later, t("2024-03-02"), POLICY).commands == ()  # a closed request stays closed
        duty = explain(later, POLICY, t("2024-03-02"))["duties"][0]
        assert (duty["status"], duty["closed_as"]) == ("closed", done.reason.split("was ", 1)[1])

    def test_the_events_round_trip_through_the_schema(self) -> None:
        for kind, payload in (
            ("ErasureRefused", {"request_id": "req-1", "reason": "MANIFESTLY_UNFOUNDED"}),
            ("ErasureWithdrawn", {"request_id": "req-1"}),
        ):
            record = to_record(event("x1", kind, "2024-02-15T00:00:00Z", **payload))
            decoded = to_event(codec_for(LIFECYCLE_EVENT).decode(codec_for(LIFECYCLE_EVENT).encode(record)))
            assert type(decoded).__name__ == kind and decoded.request_id == "req-1"  # type: ignore[attr-defined]


class FlakySigner(CertificateSigner):
    """Signs only once it is told the key is available again (a key store that is down)."""

    available = False

    def encode(self, due: CertificateDue) -> bytes:
        if not self.available:
            raise OSError("key store unavailable")
        return super().encode(due)


class TestSeed003Section13ACertifiedRoundHasExactlyOneCertificate:
    @staticmethod
    def closed_client(signer: CertificateSigner | None) -> tuple[Harness, list[dict[str, Any]]]:
        h = Harness(POLICY, signer)
        h.publish(
            event(
                "w1",
                "RecordWritten",
                "2019-01-01T00:00:00Z",
                store="customer_db",
                category="client",
                record_key="1",
            )
        )
        h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
        out = h.tick("2024-03-16T00:00:00Z")
        return h, [codec_for(DELETION_COMMAND).decode(o.value) for o in out if ".commands." in o.topic]

    def test_a_receipt_that_contradicts_itself_is_dead_lettered_and_the_copy_still_waits(self) -> None:
        h, commands = self.closed_client(None)
        (dead,) = h.processor.on_receipt(0, 0, b"cust-1", answer(commands[0], "ANONYMISED", 0))
        assert dead.topic == TOPICS.dlq and b"ANONYMISED with 0 rows" in dict(dead.headers)["reason"]
        assert h.processor.overdue("open") == {"chat_vendor": 1, "customer_db": 1, "support_desk": 1}

    def test_a_certificate_that_fails_to_sign_is_kept_and_published_once_signed(self, tmp_path: Path) -> None:
        key = tmp_path / "k.key"
        CertificateSigner.from_file(key, "Test ISP")
        signer = FlakySigner(key.read_bytes(), "Test ISP")
        h, commands = self.closed_client(signer)
        outs = [o for i, c in enumerate(commands) for o in h.processor.on_receipt(0, i, b"cust-1", answer(c))]
        h.processor.flush()
        assert [o for o in outs if o.topic == TOPICS.certificates] == []
        (held,) = [k for k in h.table if k.startswith("u:0:")]  # kept in the partition's state
        assert h.processor.unsigned() == 1

        restarted = Harness(POLICY, signer)  # a restart keeps it too
        restarted.table.update(h.table)
        restarted.offset = h.offset
        assert [o for o in restarted.tick("2024-03-17T00:00:00Z") if o.topic == TOPICS.certificates] == []
        signer.available = True
        (published,) = [o for o in restarted.tick("2024-03-18T00:00:00Z") if o.topic == TOPICS.certificates]
        document = certificates.loads(published.value)
        assert certificates.verify(document, (tmp_path / "k.pub").read_bytes()) == []
        assert held not in restarted.table and restarted.processor.unsigned() == 0
        assert [o for o in restarted.tick("2024-03-19T00:00:00Z") if o.topic == TOPICS.certificates] == []
        decisions = [codec_for(DECISION).decode(o.value)["kind"] for o in outs if o.topic == TOPICS.decisions]
        assert decisions.count("DELETION_CONFIRMED") == 3
