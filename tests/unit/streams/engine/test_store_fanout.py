"""Seed 003 Vedlegg 2 and §13: a record is deleted in every store that holds it, each store
answers, unanswered commands are chased, and a certificate is due when all have answered."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebbtide.runtime import keys
from ebbtide.streams.engine import events as ev
from ebbtide.streams.engine.certificate import CertificateDue
from ebbtide.streams.engine.firing import CHASE_BACKOFF_CAP, ESCALATION_STEPS, fire_due
from ebbtide.streams.engine.model import Outcome, SubjectState, new_subject
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy.rules import default_policy, rules_policy
from ebbtide.streams.policy.stores import StoreMapError, parse_store_map
from ebbtide.streams.worker.certify import CertificateSigner
from tests.unit.streams.builders import (
    SUBJECT,
    closed,
    domain_released,
    export_offered,
    t,
    terminated,
    written,
)

POLICY = default_policy()  # the shipped rules with the shipped store map
SIGNER = CertificateSigner(keys.generate_key()[0], "Test ISP")


def fold(events: Iterable[ev.Event]) -> SubjectState:
    state = new_subject(SUBJECT)
    for event in events:
        state = apply_event(state, event, POLICY).state
    return state


def receipt(
    ordered: Outcome, store: str, outcome: str = "DELETED", rows: int = 1, at: str = "2030-01-01"
) -> ev.DeletionReported:
    """The store's answer to the one command ``ordered`` sent it."""
    (command,) = [c for c in ordered.commands if c.store == store]
    return ev.DeletionReported(
        command.command_id, SUBJECT, store, command.category, command.record_key, outcome, None, rows, t(at)
    )


CLOSED_CLIENT = [written("client", "1", "2019-01-10"), closed("2021-03-15")]
# A hosting agreement paid until the end of June 2023, its export offered: due 1 July 2023.
HOSTING_ENDED = [
    written("hosted", "site-1", "2020-01-01", ref="agr-1", store="hosting"),
    terminated("agr-1", "2023-01-01", paid_until="2023-06-30"),
    export_offered("agr-1", "2023-01-02"),
]


class TestVedlegg2EveryStoreThatHoldsTheRecordIsOrdered:
    def test_a_client_record_is_deleted_in_the_customer_db_the_support_desk_and_the_chat_vendor(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        assert sorted(c.store for c in due.commands) == ["chat_vendor", "customer_db", "support_desk"]
        assert len({c.command_id for c in due.commands}) == 3  # one command per copy
        assert {(c.category, c.record_key, c.deadline) for c in due.commands} == {
            ("client", "1", t("2024-03-15"))
        }

    @pytest.mark.parametrize(
        ("domain", "registry"),
        [
            ("example.no", "registry_norid"),
            ("sub.example.no", "registry_norid"),
            ("example.se", "registry_nicse"),
            ("example.nu", "registry_rtr"),  # seed 001 'How we share': only .no and .se go direct
            ("example.com", "registry_rtr"),
            ("example.io", "registry_rtr"),
        ],
    )
    def test_a_domain_contact_goes_to_the_registry_of_its_top_level_domain(
        self, domain: str, registry: str
    ) -> None:
        state = fold(
            [written("domain_contact", "d1", "2020-01-01", ref=domain), domain_released(domain, "2023-01-01")]
        )
        due = fire_due(state, t("2024-01-01"), POLICY)
        assert sorted(c.store for c in due.commands) == sorted(["customer_db", registry])

    def test_hosted_data_is_deleted_on_the_platform_and_in_its_backups(self) -> None:
        state = fold(HOSTING_ENDED)
        due = fire_due(state, t("2023-07-01"), POLICY)
        assert sorted(c.store for c in due.commands) == ["hosting", "hosting_backups"]

    def test_a_store_announcing_a_copy_already_known_adds_nothing(self) -> None:
        state = fold([*CLOSED_CLIENT, written("client", "1", "2019-02-01", store="support_desk")])
        assert sorted(state.records) == [
            "chat_vendor/client/1",
            "customer_db/client/1",
            "support_desk/client/1",
        ]

    def test_without_a_store_map_a_record_lives_only_where_it_was_announced(self) -> None:
        state = new_subject(SUBJECT)
        for event in CLOSED_CLIENT:
            state = apply_event(state, event, rules_policy()).state
        assert list(state.records) == ["customer_db/client/1"]


class TestSeed003Section13TheDeletionIsConfirmedWhenEveryStoreHasAnswered:
    def test_no_certificate_until_the_last_store_answers(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        state = due.state
        for store in ("customer_db", "support_desk"):
            answered = apply_receipt(state, receipt(due, store), POLICY)
            assert answered.certificates == ()
            state = answered.state
        last = apply_receipt(state, receipt(due, "chat_vendor", "NOT_FOUND", rows=0), POLICY)
        (certificate,) = last.certificates
        assert [(c.store, c.outcome) for c in certificate.copies] == [
            ("chat_vendor", "NOT_FOUND"),
            ("customer_db", "DELETED"),
            ("support_desk", "DELETED"),
        ]
        assert all(c.ordered_at == t("2024-03-15") for c in certificate.copies)
        assert certificate.policy_version == POLICY.label

    def test_the_certificate_is_the_same_whatever_order_the_receipts_arrive_in(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        executed = {"customer_db": "2024-03-15", "support_desk": "2024-03-17", "chat_vendor": "2024-03-16"}
        found: list[tuple[CertificateDue, ...]] = []
        for order in (list(executed), list(executed)[::-1]):
            state, certificates = due.state, tuple[CertificateDue, ...]()
            for store in order:
                outcome = apply_receipt(state, receipt(due, store, at=executed[store]), POLICY)
                state, certificates = outcome.state, certificates + outcome.certificates
            found.append(certificates)
        assert len(found[0]) == 1 and found[0] == found[1]
        assert found[0][0].issued_at == t("2024-03-17")  # the last execution, not the arrival order

    def test_a_receipt_for_an_anonymised_row_and_for_backups_that_expire_count_as_answers(self) -> None:
        state = fold(HOSTING_ENDED)
        due = fire_due(state, t("2023-07-01"), POLICY)
        first = apply_receipt(due.state, receipt(due, "hosting", "DELETED", 3, "2023-07-01"), POLICY)
        expires = receipt(due, "hosting_backups", "EXPIRES", 2, "2023-07-31")
        last = apply_receipt(first.state, expires, POLICY)
        (certificate,) = last.certificates
        backups = next(c for c in certificate.copies if c.store == "hosting_backups")
        assert (backups.outcome, backups.rows, backups.executed_at) == ("EXPIRES", 2, t("2023-07-31"))
        assert "gone when the last expires at 2023-07-31" in last.decisions[0].reason
        # the backup's future expiry is not the time the certificate is issued
        assert certificate.issued_at == t("2023-07-01")

    def test_a_later_deletion_round_gets_its_own_certificate_listing_only_its_copies(self) -> None:
        state = fold(
            [
                *CLOSED_CLIENT,
                written("domain_contact", "d1", "2020-01-01", ref="example.no"),
                domain_released("example.no", "2025-01-01"),
            ]
        )
        rounds: list[CertificateDue] = []
        for now in ("2024-03-15", "2025-02-01"):
            due = fire_due(state, t(now), POLICY)
            state = due.state
            for command in due.commands:
                outcome = apply_receipt(state, receipt(due, command.store, at=now), POLICY)
                state = outcome.state
                rounds += outcome.certificates
        assert [sorted(c.store for c in r.copies) for r in rounds] == [
            ["chat_vendor", "customer_db", "support_desk"],
            ["customer_db", "registry_norid"],
        ]
        again = apply_receipt(state, receipt(due, "registry_norid"), POLICY)
        assert again.certificates == ()  # a repeated receipt certifies nothing twice

    def test_a_copy_whose_deletion_failed_holds_the_certificate_back_until_it_is_deleted(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        state = apply_receipt(
            due.state, replace(receipt(due, "chat_vendor"), outcome="FAILED", rows=0), POLICY
        ).state
        for store in ("customer_db", "support_desk"):
            answered = apply_receipt(state, receipt(due, store), POLICY)
            assert answered.certificates == ()
            state = answered.state
        again = fire_due(state, t("2024-03-15T00:10:00Z"), POLICY)  # ordered again, same command
        last = apply_receipt(again.state, receipt(again, "chat_vendor"), POLICY)
        (certificate,) = last.certificates
        assert len(certificate.copies) == 3


class TestReconcilerChasesStoresThatDoNotAnswer:
    def test_an_unanswered_command_is_sent_again_after_the_service_level_and_reported_overdue(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        support = next(c for c in due.commands if c.store == "support_desk")
        # customer_db answers; the support desk (service level 3 days) does not
        state = apply_receipt(due.state, receipt(due, "customer_db"), POLICY).state
        state = apply_receipt(state, receipt(due, "chat_vendor"), POLICY).state
        assert fire_due(state, t("2024-03-17T23:59:59Z"), POLICY).commands == ()
        chased = fire_due(state, t("2024-03-18"), POLICY)
        (again,) = chased.commands
        assert (again.command_id, again.store, again.issued_at) == (
            support.command_id,
            "support_desk",
            t("2024-03-18"),
        )
        (overdue,) = chased.decisions
        assert overdue.kind == "DELETION_OVERDUE" and "service level of 3 d" in overdue.reason
        assert [r.store for r in chased.state.overdue_copies()] == ["support_desk"]
        # chased again after twice the service level, then 4 times, then every 8 times
        assert chased.state.next_deadline() == t("2024-03-24")
        later = fire_due(chased.state, t("2024-03-24"), POLICY)
        assert later.state.next_deadline() == t("2024-04-05")
        for now in ("2024-04-05", "2024-04-29", "2024-05-23"):
            assert len(fire_due(later.state, t(now), POLICY).commands) == 1
            later = fire_due(later.state, t(now), POLICY)
        assert later.state.next_deadline() == t("2024-06-16")  # capped: 8 x 3 days

    def test_overdue_is_reported_once_per_escalation_step_and_the_command_is_still_sent_after(
        self,
    ) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        state = apply_receipt(due.state, receipt(due, "customer_db"), POLICY).state
        state = apply_receipt(state, receipt(due, "chat_vendor"), POLICY).state
        sent, overdue = [], []
        # the support desk (3 days) chased after 3, 6, 12 and 24 days, then every 24 days
        for now in ("2024-03-18", "2024-03-24", "2024-04-05", "2024-04-29", "2024-05-23", "2024-06-16"):
            chased = fire_due(state, t(now), POLICY)
            state = chased.state
            sent += [c.issued_at for c in chased.commands]
            overdue += [d for d in chased.decisions if d.kind == "DELETION_OVERDUE"]
        assert len(sent) == 6  # every step and every capped re-send
        assert [d.reason.split("(re-issue ")[1][0] for d in overdue] == ["1", "2", "3", "4"]  # one per step
        assert overdue[-1].reason.endswith(
            "from now on it is sent again every 24 d until support_desk answers, with no further overdue "
            "decision"
        )
        (copy,) = state.overdue_copies()  # still overdue, for the gauge and `ebbtide overdue`
        assert (copy.store, copy.reissues, state.next_deadline()) == ("support_desk", 6, t("2024-07-10"))
        late = apply_receipt(state, receipt(due, "support_desk"), POLICY)
        assert "after 6 re-issues: it was overdue" in late.decisions[0].reason
        assert len(late.certificates) == 1

    def test_an_overdue_deletion_recovers_when_the_store_answers(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        state = fire_due(due.state, t("2024-03-20"), POLICY).state  # all three chased
        assert len(state.overdue_copies()) == 3
        for store in ("customer_db", "support_desk"):
            state = apply_receipt(state, receipt(due, store), POLICY).state
        late = apply_receipt(state, receipt(due, "chat_vendor"), POLICY)
        assert late.state.overdue_copies() == []
        assert "after 1 re-issue: it was overdue" in late.decisions[0].reason
        assert len(late.certificates) == 1

    def test_a_failed_deletion_is_ordered_again_not_chased(self) -> None:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        failed = replace(receipt(due, "support_desk"), outcome="FAILED", rows=0)
        state = apply_receipt(due.state, failed, POLICY).state
        record = state.records["support_desk/client/1"]
        assert (record.status, record.failures, record.chase_at) == ("pending", 1, None)
        assert [c.store for c in fire_due(state, t("2024-03-15T00:00:01Z"), POLICY).commands] == [
            "support_desk"
        ]


def one_store(store_id: str, kind: str, level: str, holds: str) -> str:
    """A store map of one store; ``holds`` is the body of its one [[stores.holds]] table."""
    if "fields" not in holds:
        holds += '\nfields = ["name"]'
    return (
        f'version = "1"\n[[stores]]\nid = "{store_id}"\nname = "x"\nkind = "{kind}"\n'
        f'service_level = {level}\nsource = "test"\n[[stores.holds]]\n{holds}\n'
    )


class TestTheStoreMapIsPartOfThePolicy:
    def test_changing_the_store_map_changes_the_policy_label(self) -> None:
        other = parse_store_map(one_store("customer_db", "postgres", "{ hours = 2 }", 'category = "client"'))
        assert rules_policy().with_stores(other).label != POLICY.label != rules_policy().label

    @pytest.mark.parametrize(
        ("holds", "problem"),
        [
            ('category = "clients"\nfields = ["name"]', "unknown category 'clients'"),
            ('category = "client"\nfields = []', "'fields' must list"),
            (
                'category = "client"\nfields = ["name"]\ntlds = ["no"]',
                "'tlds' applies only to domain_contact",
            ),
            ('category = "domain_contact"\nfields = ["name"]\ntlds = [".no"]', "without the dot"),
        ],
    )
    def test_a_store_map_that_cannot_be_used_is_refused_with_the_store_and_field(
        self, holds: str, problem: str
    ) -> None:
        text = one_store("desk", "http", "{ days = 1 }", holds)
        with pytest.raises(StoreMapError, match="desk") as caught:
            parse_store_map(text, "m.toml")
        assert problem in str(caught.value)

    def test_a_service_level_must_be_hours_or_days(self) -> None:
        text = one_store("desk", "http", "{ minutes = 5 }", 'category = "client"')
        with pytest.raises(StoreMapError, match="service_level"):
            parse_store_map(text)

    def test_every_shipped_store_names_its_source_and_every_category_is_held_somewhere(self) -> None:
        stores = POLICY.stores
        assert stores is not None
        assert all(s.source for s in stores.stores)
        from ebbtide.streams.policy.rules import CATEGORIES

        assert {h.category for s in stores.stores for h in s.holds} == set(CATEGORIES)


@settings(max_examples=50, deadline=None)
@given(st.permutations(range(5)), st.lists(st.sampled_from(["DELETED", "NOT_FOUND"]), min_size=5, max_size=5))
def test_receipts_in_any_order_give_the_same_certificate_byte_for_byte(
    order: list[int], outcomes: list[str]
) -> None:
    state = fold(
        [
            *CLOSED_CLIENT,
            written("domain_contact", "d1", "2020-01-01", ref="example.se"),
            domain_released("example.se", "2021-03-01"),
        ]
    )
    due = fire_due(state, t("2024-03-15"), POLICY)
    assert len(due.commands) == 5
    receipts = [
        ev.DeletionReported(
            c.command_id,
            SUBJECT,
            c.store,
            c.category,
            c.record_key,
            o,
            None,
            int(o == "DELETED"),
            t("2024-03-16"),
        )
        for c, o in zip(due.commands, outcomes, strict=True)
    ]
    found = []
    for sequence in (receipts, [receipts[i] for i in order]):
        state, certificates = due.state, tuple[CertificateDue, ...]()
        for receipt_ in sequence:
            outcome = apply_receipt(state, receipt_, POLICY)
            state, certificates = outcome.state, certificates + outcome.certificates
        found.append(certificates)
    assert len(found[0]) == 1 and found[0] == found[1]
    assert SIGNER.encode(found[0][0]) == SIGNER.encode(found[1][0])  # Ed25519 is deterministic


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=40 * 24), min_size=1, max_size=60),  # hours between ticks
    st.one_of(st.none(), st.integers(min_value=0, max_value=59)),  # the tick after which the store answers
)
def test_any_ticks_report_a_copy_overdue_at_most_once_per_escalation_step_and_keep_chasing_it(
    gaps: list[int], answered_after: int | None
) -> None:
    """However the clock ticks (coarse as an accelerated clock, or fine), an unanswered copy gets
    at most ESCALATION_STEPS overdue decisions, is sent again whenever its chase time has passed and
    never sooner than its spacing (at most 8 service levels once capped), and the same ticks give
    the same decisions byte for byte."""
    hour = 3_600_000

    def run() -> tuple[list[object], dict[str, list[int]], dict[str, int]]:
        due = fire_due(fold(CLOSED_CLIENT), t("2024-03-15"), POLICY)
        state, decided = due.state, list[object](due.decisions)
        sends = {c.store: [c.issued_at] for c in due.commands}
        overdue: dict[str, int] = {}
        now = t("2024-03-15")
        for n, gap in enumerate(gaps):
            now += gap * hour
            before = {rid: r.chase_at for rid, r in state.records.items()}
            outcome = fire_due(state, now, POLICY)
            chased = {f"{c.store}/{c.category}/{c.record_key}" for c in outcome.commands}
            for rid, chase_at in before.items():  # sent again exactly when its chase time has passed
                assert (rid in chased) == (chase_at is not None and chase_at <= now)
            for rid in chased:  # and its next chase is 2, 4, then 8 service levels (the cap) later
                copy = outcome.state.records[rid]
                spacing = POLICY.service_level(copy.store) * min(2**copy.reissues, CHASE_BACKOFF_CAP)
                assert copy.chase_at == now + spacing
            for c in outcome.commands:
                sends[c.store].append(c.issued_at)
            for d in outcome.decisions:
                assert d.kind == "DELETION_OVERDUE"
                overdue[d.record] = overdue.get(d.record, 0) + 1
            state, decided = outcome.state, decided + list(outcome.decisions)
            if answered_after == n:  # every store answers now: nothing is chased after
                for store in ("customer_db", "support_desk", "chat_vendor"):
                    answered = apply_receipt(state, receipt(due, store), POLICY)
                    state, decided = answered.state, decided + list(answered.decisions)
                assert state.next_deadline() is None and state.overdue_copies() == []
        return decided, sends, overdue

    decided, sends, overdue = run()
    assert all(n <= ESCALATION_STEPS for n in overdue.values())
    for store, times in sends.items():
        spacing = POLICY.service_level(store)
        for i, (sent, after) in enumerate(pairwise(times)):
            # never sooner than its backoff: 1, 2, 4, then 8 service levels
            assert after - sent >= spacing * min(2**i, CHASE_BACKOFF_CAP)
        resent = len(times) - 1
        assert overdue.get(f"{store}/client/1", 0) == min(resent, ESCALATION_STEPS)
    again, _, _ = run()
    assert repr(again).encode() == repr(decided).encode()
