"""Replay feeds the worker's inputs in the order its decisions record, so ticks fall where they
fell, whatever order the messages were published in (no Kafka: the log is built in memory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ebbtide.schemas import DECISION, DELETION_COMMAND, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.tools.client import to_record
from ebbtide.tools.replay.reading import Log, Message
from ebbtide.tools.replay.replaying import Options, Processors, recorded_decisions, replay_log
from ebbtide.tools.replay.schedule import Feed, Named, Restart, schedule
from tests.support import unit_hold_keys, unit_trusted_keys
from tests.unit.streams.worker.harness import CLIENT_RECORD, TOPICS, answer, event, tick

pytestmark = pytest.mark.unit
SOURCE_TOPIC = {"events": TOPICS.events, "clock": TOPICS.clock, "receipts": TOPICS.receipts}


@dataclass
class Worker:
    """The worker's processor fed messages in arrival order; what it was fed and decided, as a
    log."""

    processor: LifecycleProcessor = field(
        default_factory=lambda: LifecycleProcessor(
            rules_policy(), TOPICS, {}, trusted=unit_trusted_keys(), hold_keys=unit_hold_keys()
        )
    )
    log: Log = field(default_factory=lambda: Log(1, {s: {0: []} for s in (*SOURCE_TOPIC, "decisions")}))
    commands: list[dict[str, Any]] = field(default_factory=list)

    def arrive(self, source: str, key: bytes, value: bytes) -> int:
        """Feed one message (its offset is the next of its topic); the offset."""
        messages = self.log.topics[source][0]
        offset = len(messages)
        messages.append(Message(offset, key, value))
        out = self.processor.on_message(SOURCE_TOPIC[source], 0, offset, key, value)
        self.processor.flush()
        decisions = self.log.topics["decisions"][0]
        for o in out:
            if o.topic == TOPICS.decisions:
                decisions.append(Message(len(decisions), o.key, o.value))
            elif o.topic == TOPICS.commands("customer_db"):
                self.commands.append(codec_for(DELETION_COMMAND).decode(o.value))
        return offset

    def event(self, raw: dict[str, Any]) -> int:
        return self.arrive(
            "events", raw["subject_id"].encode(), codec_for(LIFECYCLE_EVENT).encode(to_record(raw))
        )

    def tick(self, now: str, events_end: int) -> int:
        return self.arrive("clock", b"tick", tick(now, events_end))

    def kinds(self) -> list[tuple[str, str | None]]:
        decoded = [codec_for(DECISION).decode(m.value) for m in self.log.topics["decisions"][0]]
        return [(d["kind"], d["input"]) for d in decoded]


def replayed(worker: Worker) -> Any:
    keys = (unit_trusted_keys(), None, unit_hold_keys())
    policy = rules_policy()
    processors = Processors({policy.label: policy}, TOPICS, 1, keys)
    return replay_log(worker.log, recorded_decisions(worker.log), processors, Options())


CLOSED = event("c1", "AccountClosed", "2021-03-15T00:00:00Z")
ORDERED = event("o1", "ServiceOrdered", "2021-06-01T00:00:00Z", service_id="s", kind="HOSTING")


def test_a_tick_arriving_after_later_events_is_replayed_where_it_was_applied() -> None:
    published = Worker()  # the tick read before the order published after it: the clock stops
    published.event(CLIENT_RECORD)
    published.event(CLOSED)
    published.tick("2024-03-16T00:00:00Z", events_end=2)
    published.event(ORDERED)
    late = Worker()  # the same tick read after the order: a reactivated account, nothing ordered
    late.event(CLIENT_RECORD)
    late.event(CLOSED)
    late.event(ORDERED)
    late.tick("2024-03-16T00:00:00Z", events_end=2)
    assert len(published.commands) == 1 and late.commands == []  # the order of arrival matters
    assert ("CLOCK_APPLIED", "clock/0/0") in late.kinds() and (
        "CLOCK_APPLIED",
        "clock/0/0",
    ) in published.kinds()
    for worker in (published, late):
        result = replayed(worker)
        assert (result.decisions, result.differences) == (len(worker.kinds()), [])


def test_a_tick_waiting_for_an_event_is_applied_again_by_that_event() -> None:
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.tick("2020-01-01T00:00:00Z", events_end=1)
    worker.tick("2024-03-16T00:00:00Z", events_end=2)  # published after the closing: waits for it
    worker.tick("2024-03-17T00:00:00Z", events_end=2)
    worker.event(CLOSED)  # applies both waiting ticks; what they decide names this event
    assert worker.kinds()[-5:] == [
        ("DEADLINE_MOVED", "events/0/1"),
        ("CLOCK_APPLIED", "clock/0/1"),
        ("DELETION_ORDERED", "events/0/1"),
        ("CLOCK_APPLIED", "clock/0/2"),
        ("DELETION_OVERDUE", "events/0/1"),
    ]
    result = replayed(worker)
    assert result.differences == [] and result.fed == {"events": 2, "clock": 3}


def test_one_subject_replays_alone_when_another_subjects_event_applied_its_tick() -> None:
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.tick("2020-01-01T00:00:00Z", events_end=2)
    worker.tick("2024-03-16T00:00:00Z", events_end=3)  # waits for another subject's event
    worker.event(event("x1", "CustomerRegistered", "2024-03-15T00:00:00Z", subject="cust-2"))
    assert ("DELETION_ORDERED", "events/0/2") in worker.kinds()  # cust-1's, made on cust-2's event
    keys = (unit_trusted_keys(), None, unit_hold_keys())
    policy = rules_policy()
    processors = Processors({policy.label: policy}, TOPICS, 1, keys)
    result = replay_log(worker.log, recorded_decisions(worker.log), processors, Options(subject="cust-1"))
    assert result.differences == [] and result.decisions >= 4


def test_a_receipt_between_events_is_replayed_between_them() -> None:
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.tick("2024-03-16T00:00:00Z", events_end=2)
    (command,) = worker.commands
    worker.event(
        event(
            "w2",
            "RecordWritten",
            "2024-03-17T00:00:00Z",
            store="customer_db",
            category="client",
            record_key="2",
        )
    )
    worker.arrive("receipts", b"cust-1", answer(command))
    worker.event(event("c2", "AccountClosed", "2024-03-18T00:00:00Z"))
    worker.tick("2030-01-01T00:00:00Z", events_end=4)
    assert ("DELETION_CONFIRMED", "receipts/0/0") in worker.kinds()
    result = replayed(worker)
    assert result.differences == [] and result.fed == {"events": 4, "clock": 2, "receipts": 1}


def test_a_receipt_the_worker_refused_then_is_refused_again_in_replay() -> None:
    ahead = Worker()  # the command as the sink got it from a worker that crashed after sending it
    ahead.event(CLIENT_RECORD)
    ahead.event(CLOSED)
    ahead.tick("2024-03-16T00:00:00Z", events_end=2)
    (command,) = ahead.commands
    worker = Worker()  # the restarted worker, its state from before the command was issued
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.arrive("receipts", b"cust-1", answer(command))  # not issued here yet: refused, no decision
    worker.tick("2024-03-16T00:00:00Z", events_end=2)  # issued again (the same command)
    worker.arrive("receipts", b"cust-1", answer(command))  # the sink answers again: settled
    assert ("DELETION_CONFIRMED", "receipts/0/1") in worker.kinds()
    assert not any(source == "receipts/0/0" for _, source in worker.kinds())
    result = replayed(worker)  # fed first, receipt 0 would settle the copy in replay's later state
    assert result.differences == [] and result.dead_letters == 1


def test_a_changed_decision_is_found_with_its_offset_and_fields() -> None:
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.tick("2024-03-16T00:00:00Z", events_end=2)
    decisions = worker.log.topics["decisions"][0]
    codec = codec_for(DECISION)
    first = codec.decode(decisions[0].value)
    decisions[0] = Message(0, decisions[0].key, codec.encode({**first, "reason": "forged"}))
    (difference,) = replayed(worker).differences
    assert (difference.kind, difference.offset, difference.fields) == ("changed", 0, ("reason",))


def test_the_processor_records_inputs_and_clock_moves_the_same_every_time() -> None:
    def run() -> Worker:
        worker = Worker()
        worker.event(CLIENT_RECORD)
        worker.tick("2020-01-01T00:00:00Z", events_end=1)
        worker.event(CLOSED)
        worker.tick("2020-01-01T00:00:00Z", events_end=2)  # stale: the clock does not move
        worker.tick("2024-03-16T00:00:00Z", events_end=2)
        return worker

    first, second = run(), run()
    assert first.log.topics["decisions"] == second.log.topics["decisions"]  # byte for byte
    assert first.kinds() == [
        ("STAMPED", "events/0/0"),
        ("CLOCK_APPLIED", "clock/0/0"),
        ("DEADLINE_MOVED", "events/0/1"),
        ("CLOCK_APPLIED", "clock/0/2"),
        ("DELETION_ORDERED", "clock/0/2"),
    ]
    entry = codec_for(DECISION).decode(first.log.topics["decisions"][0][3].value)
    assert (entry["subject_id"], entry["record"], entry["category"]) == ("", "clock/0", "clock")
    assert "after the first 2 events of partition 0" in entry["reason"]


def test_the_schedule_feeds_unnamed_messages_in_order_and_ticks_after_the_events_they_count() -> None:
    label = "v1+x"
    named = [
        Named("events/0/1", "STAMPED", "", label),
        Named(
            "clock/0/1", "CLOCK_APPLIED", "... after the first 4 events of partition 0 were processed", label
        ),
        Named("receipts/0/0", "DELETION_CONFIRMED", "", label),
        Named("events/0/5", "STAMPED", "", label),
    ]
    steps, left = schedule(0, named, {"events": range(7), "clock": range(3), "receipts": range(1)})
    assert steps == [
        Restart(label, resume=False),
        Feed("events", 0),  # no decision: fed before the next event named
        Feed("events", 1),
        Feed("events", 2),
        Feed("events", 3),  # counted by the tick
        Feed("clock", 0),  # a stale or refused tick, before the next named
        Feed("clock", 1),
        Feed("receipts", 0),
        Feed("events", 4),
        Feed("events", 5),
    ]
    assert left == 2  # events 6 and tick 2: after the last named message, not fed


def test_decisions_re_sent_after_a_crash_are_compared_once() -> None:
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.tick("2024-03-16T00:00:00Z", events_end=2)
    decisions = worker.log.topics["decisions"][0]
    made = len(decisions)
    again = [Message(made + i, m.key, m.value) for i, m in enumerate(decisions[1:])]  # the last batch
    decisions += again
    result = replayed(worker)
    assert (result.duplicates, result.decisions, result.differences) == (made - 1, made, [])


def test_a_batch_sent_again_from_an_earlier_chain_head_supersedes_what_was_sent_from_there() -> None:
    from ebbtide.tools.replay.comparing import Entry, dedupe

    codec = codec_for(DECISION)
    worker = Worker()
    worker.event(CLIENT_RECORD)
    worker.event(CLOSED)
    worker.tick("2024-03-16T00:00:00Z", events_end=2)
    made = [codec.decode(m.value) for m in worker.log.topics["decisions"][0]]

    def sent(record: dict[str, Any], seq: int) -> Entry:
        return Entry.of(codec.encode({**record, "seq": seq, "prev_hash": "0" * 64}))

    first = [sent(r, seq) for seq, r in enumerate(made, start=1)]
    other = sent({**made[2], "reason": "the batch's inputs came in another order"}, 3)
    again = [other, *(sent(r, seq) for seq, r in enumerate(made[3:], start=4))]  # from head 2
    kept, dropped = dedupe(first + again)
    assert dropped == len(made) - 2
    assert [e.record["reason"] for e in kept] == [r["reason"] for r in made[:2]] + [
        "the batch's inputs came in another order",
        *(r["reason"] for r in made[3:]),
    ]
    assert all(e.record["seq"] is None for e in kept)  # compared without the chain's fields
