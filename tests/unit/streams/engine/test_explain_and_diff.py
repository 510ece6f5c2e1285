"""explain: status and reasons per record; diff: rule changes and deadline moves."""

from __future__ import annotations

from ebbtide.streams.engine.diff import deadline_moves, rule_changes
from ebbtide.streams.engine.explain import explain, render
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import SubjectState, new_subject
from ebbtide.streams.engine.stamping import apply_event
from ebbtide.streams.policy.rules import DEFAULT_POLICY, parse_policy, rules_policy
from tests.unit.streams.builders import SUBJECT, closed, erasure, hold, invoiced, t, written

POLICY = rules_policy()


def subject() -> SubjectState:
    state = new_subject(SUBJECT)
    for event in [
        written("client", "1", "2019-01-10"),
        invoiced("inv-7", "2022-03-10"),
        written("invoice", "7", "2022-03-10", ref="inv-7"),
        written("correspondence", "3", "2020-01-01"),
        written("auto_collected", "log-1", "2024-01-05"),
        closed("2024-02-01"),
        hold("court-1", "2024-02-05", categories=("correspondence",)),
        erasure("req-1", "2024-02-10", event_id="erase-1"),
    ]:
        state = apply_event(state, event, POLICY).state
    return state


def test_explain_gives_each_record_its_status_rule_clause_and_reasons() -> None:
    state = fire_due(subject(), t("2024-02-11"), POLICY).state
    report = explain(state, POLICY, t("2024-02-11"))
    by_record = {r["record"]: r for r in report["records"]}
    # A day of logs holds everyone's lines: an erasure restricts it to its security purpose.
    assert by_record["customer_db/auto_collected/log-1"]["status"] == "restricted"
    assert by_record["customer_db/correspondence/3"]["status"] == "held"
    invoice = by_record["customer_db/invoice/7"]
    assert (invoice["status"], invoice["rule"], invoice["deadline"]) == (
        "restricted",
        "bookkeeping",
        "2027-12-31T23:00:00Z",  # 1 January 2028 00:00 in Oslo
    )
    assert "seed 001" in invoice["clause"] and any("erasure request req-1" in w for w in invoice["why"])
    assert [d["status"] for d in report["duties"]] == ["done"]
    text = render(report)
    assert "customer_db/correspondence/3  [held]" in text and "legal hold court-1" in text


def test_diff_names_changed_rules_and_counts_deadline_moves() -> None:
    longer = parse_policy(DEFAULT_POLICY.read_text().replace("keep = { years = 5 }", "keep = { years = 7 }"))
    assert rule_changes(POLICY, longer) == [
        "rule bookkeeping: keep {'years': 5, 'months': 0, 'days': 0} -> {'years': 7, 'months': 0, 'days': 0}"
    ]
    moves = deadline_moves([subject()], longer)
    assert moves["later"] == 1  # the invoice
    assert moves["unchanged"] == 3
    assert rule_changes(POLICY, POLICY) == []


def test_diff_names_a_changed_time_zone_and_the_deadlines_it_moves() -> None:
    utc = parse_policy(DEFAULT_POLICY.read_text().replace('time_zone = "Europe/Oslo"', 'time_zone = "UTC"'))
    assert rule_changes(POLICY, utc) == ["time zone 'Europe/Oslo' -> 'UTC'"]
    assert deadline_moves([subject()], utc)["later"] >= 1  # the invoice's year ends an hour later in UTC
