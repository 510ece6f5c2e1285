"""The lifecycle processor with in-memory tables: ticks, receipts and the dead-letter path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ebbtide.runtime.authenticity import RECEIPT
from ebbtide.schemas import DECISION, DELETION_COMMAND, DELETION_RECEIPT, LIFECYCLE_EVENT, codec_for
from ebbtide.streams import certificates
from ebbtide.streams.policy.rules import default_policy, rules_policy
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.tools.client import to_record
from tests.support import unit_sink_signer
from tests.unit.streams.worker.harness import (
    CLIENT_RECORD,
    TOPICS,
    Harness,
    answer,
    event,
    fanned_out,
    subject_out,
    tick,
)


@pytest.fixture
def closed_account() -> Harness:
    h = Harness()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    return h


def test_a_tick_past_the_deadline_sends_one_deletion_command(closed_account: Harness) -> None:
    assert subject_out(closed_account.tick("2024-03-14T00:00:00Z")) == []
    closed_account.tick("2024-03-16T00:00:00Z")
    (command,) = closed_account.commands()
    assert (command["category"], command["record_key"], command["rule_id"]) == ("client", "1", "account")
    closed_account.tick("2024-03-16T00:30:00Z")  # within the store's service level: not sent again
    assert len(closed_account.commands()) == 1


def test_a_command_sent_again_for_want_of_a_receipt_is_counted_as_resent(closed_account: Harness) -> None:
    from ebbtide.runtime import metrics

    def resent() -> float:
        return metrics.COMMANDS_RESENT.labels("customer_db")._value.get()  # type: ignore[no-any-return]

    before = resent()
    closed_account.tick("2024-03-16T00:00:00Z")  # ordered: sent, not re-sent
    assert resent() == before
    # customer_db's service level is 1 hour: chased after 1, 2, 4, then every 8 hours
    for now in ("01:00", "03:00", "07:00", "15:00", "23:00", "23:30"):
        closed_account.tick(f"2024-03-16T{now}:00Z")
    assert len(closed_account.commands()) == 6 and resent() == before + 5
    overdue = [d for d in closed_account.decisions() if d["kind"] == "DELETION_OVERDUE"]
    assert len(overdue) == 4  # one per escalation step (1, 2, 4 and 8 service levels), not per re-send
    assert closed_account.processor.overdue() == {"customer_db": 1}  # still overdue for the gauge


def test_a_tick_waits_for_the_events_published_before_it() -> None:
    h = Harness()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2020-01-01T00:00:00Z"))
    # The tick was sent after 3 events, but the third (a new order) has not arrived yet.
    assert h.tick("2030-01-01T00:00:00Z", events_end=3) == []  # not even the clock moved
    h.publish(event("o1", "ServiceOrdered", "2021-06-01T00:00:00Z", service_id="s", kind="HOSTING"))
    assert h.commands() == []  # the reactivation came first, as it was published
    assert [d["kind"] for d in h.decisions()][-1] == "CLOCK_STOPPED"


def test_a_receipt_confirms_the_deletion(closed_account: Harness) -> None:
    closed_account.tick("2025-01-01T00:00:00Z")
    (command,) = closed_account.commands()
    receipt = {
        **{k: command[k] for k in ("command_id", "subject_id", "store", "category", "record_key")},
        "outcome": "DELETED",
        "rows": 1,
        "reason": None,
        "executed_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    value = codec_for(DELETION_RECEIPT).encode(unit_sink_signer("customer_db").sign(RECEIPT, receipt))
    out = closed_account.processor.on_receipt(0, 0, b"cust-1", value)
    (decision,) = [codec_for(DECISION).decode(o.value) for o in out]
    assert decision["kind"] == "DELETION_CONFIRMED"
    assert closed_account.processor.on_receipt(0, 1, b"cust-1", value) == []  # duplicate receipt


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not avro at all", "not Avro single-object encoded"),
        (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown writer schema fingerprint"),
        (b"", "too short"),
    ],
)
def test_malformed_events_go_to_the_dead_letter_topic_with_the_reason(value: bytes, reason: str) -> None:
    h = Harness()
    (out,) = h.publish_bytes(b"cust-1", value)
    headers = dict(out.headers)
    assert out.topic == TOPICS.dlq and out.value == value
    assert reason in headers["reason"].decode()
    assert headers["source_offset"] == b"0"


def test_an_event_keyed_by_another_subject_is_dead_lettered() -> None:
    h = Harness()
    value = codec_for(LIFECYCLE_EVENT).encode(to_record(event("x", "AccountClosed", "2020-01-01T00:00:00Z")))
    (out,) = h.publish_bytes(b"cust-2", value)
    assert out.topic == TOPICS.dlq
    assert b"subject_id" in dict(out.headers)["reason"]


def test_the_pipeline_goes_on_after_a_dead_letter(closed_account: Harness) -> None:
    closed_account.publish_bytes(b"cust-1", b"garbage")
    closed_account.tick("2025-01-01T00:00:00Z")
    assert len(closed_account.commands()) == 1


def test_a_duplicated_event_changes_nothing(closed_account: Harness) -> None:
    assert closed_account.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z")) == []


def test_state_is_written_only_on_flush(closed_account: Harness) -> None:
    before = dict(closed_account.table)
    closed_account.processor.on_tick(0, 0, b"tick", tick("2025-01-01T00:00:00Z", closed_account.offset))
    assert closed_account.table == before  # nothing durable until the output is acknowledged
    closed_account.processor.flush()
    assert closed_account.table != before


def test_a_restarted_processor_rebuilds_its_due_index_from_the_recovered_state(
    closed_account: Harness,
) -> None:
    restarted = LifecycleProcessor(rules_policy(), TOPICS, closed_account.table)
    out = restarted.on_tick(0, 0, b"tick", tick("2025-01-01T00:00:00Z", closed_account.offset))
    assert [o.topic for o in out].count(TOPICS.commands("customer_db")) == 1


def test_a_tick_replayed_after_a_crash_before_flush_orders_the_same_command(closed_account: Harness) -> None:
    first = closed_account.processor.on_tick(
        0, 0, b"tick", tick("2025-01-01T00:00:00Z", closed_account.offset)
    )
    # crash: the staged writes are lost, the tick is consumed again by a new process
    restarted = LifecycleProcessor(rules_policy(), TOPICS, closed_account.table)
    again = restarted.on_tick(0, 0, b"tick", tick("2025-01-01T00:00:00Z", closed_account.offset))
    commands = TOPICS.commands("customer_db")
    assert [o.value for o in first if o.topic == commands] == [o.value for o in again if o.topic == commands]


def test_every_output_is_keyed_by_its_subject(closed_account: Harness) -> None:
    closed_account.tick("2025-01-01T00:00:00Z")
    assert closed_account.sent
    assert {o.key for o in subject_out(closed_account.sent)} == {b"cust-1"}
    clock = [o for o in closed_account.sent if o not in subject_out(closed_account.sent)]
    assert clock and {(o.topic, o.partition) for o in clock} == {(TOPICS.decisions, 0)}  # its own partition


def test_a_record_of_a_store_the_store_map_does_not_know_is_dead_lettered() -> None:
    h = Harness(default_policy())
    (out,) = h.publish(
        event(
            "w9",
            "RecordWritten",
            "2019-01-01T00:00:00Z",
            store="custmer_db",
            category="client",
            record_key="1",
        )
    )
    assert out.topic == TOPICS.dlq
    assert b"store 'custmer_db', which the store map " in dict(out.headers)["reason"]


def test_a_partition_gained_again_rebuilds_its_due_index_from_the_table(closed_account: Harness) -> None:
    processor = closed_account.processor
    processor.on_tick(0, 0, b"tick", tick("2020-01-01T00:00:00Z", closed_account.offset))
    processor.flush()
    # Meanwhile another worker owned partition 0 and stamped a new subject into the table.
    other = LifecycleProcessor(rules_policy(), TOPICS, closed_account.table)
    raw = event(
        "w7",
        "RecordWritten",
        "2019-01-01T00:00:00Z",
        subject="cust-7",
        store="customer_db",
        category="client",
        record_key="7",
    )
    other.on_event(0, 99, b"cust-7", codec_for(LIFECYCLE_EVENT).encode(to_record(raw)))
    other.on_event(
        0,
        100,
        b"cust-7",
        codec_for(LIFECYCLE_EVENT).encode(
            to_record(event("c7", "AccountClosed", "2020-03-01T00:00:00Z", subject="cust-7"))
        ),
    )
    other.flush()
    processor.forget({0})
    out = processor.on_tick(0, 0, b"tick", tick("2025-01-01T00:00:00Z", 101))
    keys = {o.key for o in out if o.topic == TOPICS.commands("customer_db")}
    assert keys == {b"cust-1", b"cust-7"}


def test_a_new_policy_judges_stamped_subjects_again_when_the_worker_restarts(closed_account: Harness) -> None:
    from ebbtide.streams.policy.rules import DEFAULT_POLICY, parse_policy

    longer = parse_policy(
        DEFAULT_POLICY.read_text().replace("keep = { years = 3 }", "keep = { years = 5 }", 1)
    )
    restarted = LifecycleProcessor(longer, TOPICS, closed_account.table)
    out = restarted.on_tick(0, 0, b"tick", tick("2024-03-16T00:00:00Z", closed_account.offset))
    decisions = [codec_for(DECISION).decode(o.value) for o in subject_out(out) if o.topic == TOPICS.decisions]
    assert [(d["kind"], d["policy_version"]) for d in decisions] == [("DEADLINE_MOVED", longer.label)]
    assert not [
        o for o in out if o.topic == TOPICS.commands("customer_db")
    ]  # the old deadline no longer fires
    restarted.flush()
    later = restarted.on_tick(0, 0, b"tick", tick("2026-03-16T00:00:00Z", closed_account.offset))
    (command,) = [
        codec_for(DELETION_COMMAND).decode(o.value)
        for o in later
        if o.topic == TOPICS.commands("customer_db")
    ]
    assert command["policy_version"] == longer.label


def test_each_store_gets_its_command_on_its_own_topic() -> None:
    h, commands = fanned_out()
    topics = sorted(o.topic for o in h.sent if ".commands." in o.topic)
    assert topics == [TOPICS.commands(s) for s in ("chat_vendor", "customer_db", "support_desk")]
    assert sorted(c["store"] for c in commands) == ["chat_vendor", "customer_db", "support_desk"]
    assert h.processor.overdue("open") == {"chat_vendor": 1, "customer_db": 1, "support_desk": 1}
    h.processor.on_receipt(0, 0, b"cust-1", answer(commands[0]))
    assert sum(h.processor.overdue("open").values()) == 2


def test_the_certificate_is_signed_and_published_when_the_last_store_answers(tmp_path: Path) -> None:
    signer = CertificateSigner.from_file(tmp_path / "k.key", "Test ISP")
    h, commands = fanned_out(signer)
    outs = [h.processor.on_receipt(0, i, b"cust-1", answer(c)) for i, c in enumerate(commands)]
    assert [o.topic for o in outs[0] + outs[1]] == [TOPICS.decisions, TOPICS.decisions]
    (certificate,) = [o for o in outs[2] if o.topic == TOPICS.certificates]
    document = certificates.loads(certificate.value)
    assert certificates.verify(document, (tmp_path / "k.pub").read_bytes()) == []
    assert {e["store"] for e in document["certificate"]["entries"]} == {c["store"] for c in commands}
    assert document["certificate"]["issuer"] == "Test ISP"


def test_overdue_copies_are_counted_per_store_and_recover_with_the_receipt() -> None:
    h, commands = fanned_out()
    for i, command in enumerate(commands):
        if command["store"] != "support_desk":
            h.processor.on_receipt(0, i, b"cust-1", answer(command))
    h.tick("2024-03-20T00:00:00Z")  # past the support desk's service level of 3 days
    assert h.processor.overdue() == {"support_desk": 1}
    first, again = [
        codec_for(DELETION_COMMAND).decode(o.value)
        for o in h.sent
        if o.topic == TOPICS.commands("support_desk")
    ]
    assert again["command_id"] == first["command_id"] and again["issued_at"] > first["issued_at"]

    restarted = Harness(default_policy())  # a new worker on the same table counts it again
    restarted.table.update(h.table)
    restarted.offset = h.offset
    restarted.tick("2024-03-20T01:00:00Z")
    assert restarted.processor.overdue() == {"support_desk": 1}

    restarted.processor.on_receipt(0, 9, b"cust-1", answer(first))
    restarted.processor.flush()
    assert restarted.processor.overdue() == {"support_desk": 0}


def test_a_lost_partition_leaves_the_gauges_of_the_worker_that_lost_it(closed_account: Harness) -> None:
    from prometheus_client import REGISTRY

    def awaiting() -> float | None:
        return REGISTRY.get_sample_value("ebbtide_deletions_awaiting_receipt", {"store": "customer_db"})

    closed_account.tick("2024-03-16T00:00:00Z")
    assert closed_account.commands() and awaiting() == 1
    assert REGISTRY.get_sample_value("ebbtide_clock_time_seconds", {"partition": "0"}) is not None
    closed_account.processor.forget({0})  # a rebalance gave partition 0 to another worker
    assert awaiting() == 0
    assert REGISTRY.get_sample_value("ebbtide_clock_time_seconds", {"partition": "0"}) is None
    assert REGISTRY.get_sample_value("ebbtide_pending_deadlines", {"partition": "0"}) is None


def test_a_worker_that_takes_a_partition_over_reports_its_clock_and_open_copies_at_once(
    closed_account: Harness,
) -> None:
    from prometheus_client import REGISTRY

    closed_account.tick("2024-03-16T00:00:00Z")  # ordered: one copy awaits its receipt
    closed_account.processor.forget({0})  # the partition goes to a worker started afresh
    assert REGISTRY.get_sample_value("ebbtide_clock_time_seconds", {"partition": "0"}) is None
    restarted = LifecycleProcessor(rules_policy(), TOPICS, closed_account.table)
    restarted.resume({0})  # its state recovered: before any message arrives
    clock = REGISTRY.get_sample_value("ebbtide_clock_time_seconds", {"partition": "0"})
    assert clock == datetime(2024, 3, 16, tzinfo=UTC).timestamp()
    awaiting = REGISTRY.get_sample_value("ebbtide_deletions_awaiting_receipt", {"store": "customer_db"})
    assert awaiting == 1
