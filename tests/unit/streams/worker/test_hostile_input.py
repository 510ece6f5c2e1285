"""Issue 11, first part: one bad record never stops the stream. An event the engine cannot
process, an event time out of range and a misrouted message are dead-lettered with the reason,
and every other subject's deletions go on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from ebbtide.runtime import keys, metrics
from ebbtide.runtime.authenticity import KEY_ID, SIGNATURE, TICK, ClockKey, MessageSigner
from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.schemas import CLOCK_TICK, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.rules import rules_policy
from ebbtide.streams.worker import processor as processor_module
from ebbtide.streams.worker import state_format, values
from ebbtide.streams.worker.app import wall_clock_check
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import partition_for
from ebbtide.streams.worker.staging import MAX_STATE_BYTES
from ebbtide.tools.client import to_record
from tests.unit.streams.worker.harness import CLIENT_RECORD, TOPICS, Harness, event, subject_out
from tests.unit.streams.worker.harness import tick as encoded_tick


def encoded(raw: dict[str, Any]) -> bytes:
    return codec_for(LIFECYCLE_EVENT).encode(to_record(raw))


def reason(out: list[Any]) -> str:
    (dead,) = out
    assert dead.topic == TOPICS.dlq
    return str(dict(dead.headers)["reason"].decode())


def test_an_event_dated_9999_is_dead_lettered_and_the_other_deletions_go_on() -> None:
    h = Harness()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    poison = event("p1", "AccountClosed", "9999-12-31T00:00:00Z", subject="cust-9")
    assert "event_time outside the accepted window" in reason(h.publish(poison))
    h.tick("2024-03-16T00:00:00Z")
    assert [c["record_key"] for c in h.commands()] == ["1"]


def test_an_event_the_engine_raises_on_is_dead_lettered_naming_the_error_not_a_value() -> None:
    """Inside the window the engine may still fail (here: a deadline past year 9999 in a policy
    keeping records for a century); it is that record's problem, not the pipeline's."""
    wide = (0, 253_402_300_799_999)  # the whole range Avro timestamps can hold
    table: dict[str, Any] = {}
    processor = LifecycleProcessor(rules_policy(), TOPICS, table, event_window=wide)
    before = metrics.PROCESSING_ERRORS.labels("events")._value.get()
    written = encoded(CLIENT_RECORD)
    assert processor.on_event(0, 0, b"cust-1", written)
    out = processor.on_event(0, 1, b"cust-1", encoded(event("p1", "AccountClosed", "9999-12-31T00:00:00Z")))
    text = reason(out)
    assert text.startswith("lifecycle_event: processing failed (ValueError in ")
    assert "9999" not in text and "cust-1" not in text
    assert metrics.PROCESSING_ERRORS.labels("events")._value.get() == before + 1
    processor.flush()
    assert processor.on_event(0, 2, b"cust-1", encoded(event("c1", "AccountClosed", "2021-03-15T00:00:00Z")))


@pytest.mark.parametrize(
    ("key", "subject", "words"),
    [
        (None, "cust-1", "message key is not the subject_id"),
        (b"cust-2", "cust-1", "message key is not the subject_id"),
        (b" ", " ", "empty subject_id"),
    ],
)
def test_an_event_not_keyed_by_its_subject_is_dead_lettered(
    key: bytes | None, subject: str, words: str
) -> None:
    record = {**to_record(CLIENT_RECORD), "subject_id": subject}  # as a producer bypassing the client
    h = Harness()
    assert words in reason(h.publish_bytes(key, codec_for(LIFECYCLE_EVENT).encode(record)))  # type: ignore[arg-type]


def test_an_event_on_another_partition_than_its_subjects_is_dead_lettered() -> None:
    table: dict[str, Any] = {}
    processor = LifecycleProcessor(rules_policy(), TOPICS, table, partitions=4)
    right = partition_for(b"cust-1", 4)
    wrong = (right + 1) % 4
    text = reason(processor.on_event(wrong, 0, b"cust-1", encoded(CLIENT_RECORD)))
    assert f"misrouted: on partition {wrong}, but its subject's partition is {right} of 4" in text
    assert processor.on_event(right, 0, b"cust-1", encoded(CLIENT_RECORD))[0].topic == TOPICS.decisions


def test_a_subject_the_engine_fails_on_at_a_tick_is_tried_again_at_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    real = processor_module.fire_due
    calls = {"n": 0}

    def failing_once(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the engine")
        return real(*args)

    monkeypatch.setattr(processor_module, "fire_due", failing_once)
    before = metrics.PROCESSING_ERRORS.labels("clock")._value.get()
    assert subject_out(h.tick("2024-03-16T00:00:00Z")) == []
    assert metrics.PROCESSING_ERRORS.labels("clock")._value.get() == before + 1
    h.tick("2024-03-17T00:00:00Z")
    assert [c["record_key"] for c in h.commands()] == ["1"]


def test_the_accepted_event_years_are_a_setting_checked_at_start() -> None:
    assert Settings.from_env({"EBBTIDE_EVENT_YEARS": "2000-2050"}).event_window == (
        946_684_800_000,
        2_524_608_000_000,
    )
    with pytest.raises(SettingsError, match="EBBTIDE_EVENT_YEARS"):
        Settings.from_env({"EBBTIDE_EVENT_YEARS": "2050-2000"})


def test_an_oversized_record_key_is_dead_lettered_before_it_swells_the_state() -> None:
    h = Harness()
    record = to_record(CLIENT_RECORD)  # then made huge past the client's checks, as a forger would
    name, payload = record["payload"]
    record["payload"] = (name, {**payload, "record_key": "k" * 600_000})
    text = reason(h.publish_bytes(b"cust-1", codec_for(LIFECYCLE_EVENT).encode(record)))
    assert text == "lifecycle_event: field payload.record_key is 600000 characters, over the 512 allowed"
    assert h.table.get("s:0:cust-1") is None


def wall_at(iso: str) -> Callable[[], float]:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    return lambda: moment


def test_in_wall_mode_a_tick_far_ahead_of_the_wall_clock_is_refused_and_nothing_is_deleted() -> None:
    check = wall_clock_check(300, wall_at("2024-03-16T00:00:00Z"))
    h = Harness()
    h.processor.tick_problem = check
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    forged = h.tick("2099-01-01T00:00:00Z")
    assert "ahead of the worker's wall clock" in reason(forged)
    assert h.commands() == []
    h.tick("2024-03-16T00:04:00Z")  # within the tolerance: a true tick
    assert [c["record_key"] for c in h.commands()] == ["1"]


def test_in_replay_mode_an_accelerated_clock_is_accepted() -> None:
    h = Harness()  # no tick check: the demo's, the tests' and replays' mode
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    h.tick("2099-01-01T00:00:00Z")
    assert [c["record_key"] for c in h.commands()] == ["1"]


def test_an_event_that_would_swell_a_subjects_state_past_one_message_is_dead_lettered() -> None:
    h = Harness()
    refused = None
    for n in range(1400):  # ordinary announcements, ids and keys of 500 characters
        out = h.publish(
            {
                **CLIENT_RECORD,
                "event_id": f"w{n:04d}" + "x" * 495,
                "payload": {**CLIENT_RECORD["payload"], "record_key": f"{n:04d}" + "k" * 496},
            }
        )
        if out and out[0].topic == TOPICS.dlq:
            refused = n
            break
    assert refused is not None and "the subject's state would grow to" in reason(out)
    assert len(h.processor.load(0, "cust-1").records) == refused  # type: ignore[union-attr]


def test_an_oversized_message_is_dead_lettered_without_its_value() -> None:
    h = Harness()
    value = b"\xc3\x01" + bytes(8) + b"x" * 1_000_000
    (dead,) = h.publish_bytes(b"cust-1", value)
    headers = dict(dead.headers)
    assert dead.value == b"" and headers["value_dropped"] == str(len(value)).encode()


def signed_tick(signer: MessageSigner, now: str, events_end: int, partition: int) -> bytes:
    tick = {
        "now": datetime.fromisoformat(now.replace("Z", "+00:00")),
        "events_end": events_end,
        "source": "t",
    }
    signed = signer.sign(TICK, {**tick, "partition": partition})
    return codec_for(CLOCK_TICK).encode({**tick, SIGNATURE: signed[SIGNATURE], KEY_ID: signed[KEY_ID]})


def test_the_worker_takes_only_ticks_the_clocks_key_signed_for_their_partition() -> None:
    clock = MessageSigner(keys.generate_key()[0])
    stranger = MessageSigner(keys.generate_key()[0])
    h = Harness()
    h.processor.clock_key = ClockKey(pem=clock.public_pem)
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))

    def tick(value: bytes, partition: int = 0) -> list[Any]:
        out = h.processor.on_tick(partition, 0, b"tick", value)
        h.processor.flush()
        return out

    assert "security: clock_tick: not signed" in reason(tick(encoded_tick("2024-03-16T00:00:00Z", h.offset)))
    assert "signed by another key" in reason(tick(signed_tick(stranger, "2024-03-16T00:00:00Z", h.offset, 0)))
    moved = signed_tick(clock, "2024-03-16T00:00:00Z", h.offset, 1)  # signed for partition 1
    assert "bad signature" in reason(tick(moved, 0))
    assert h.commands() == []
    assert [
        o for o in tick(signed_tick(clock, "2024-03-16T00:00:00Z", h.offset, 0)) if ".commands." in o.topic
    ]


def test_no_subject_state_passes_what_one_changelog_message_holds_and_it_can_still_be_closed() -> None:
    """Long ids alone (no long keys) used to slip past a cheap estimate; and a subject at the
    limit must still take the events that close and delete it."""
    h = Harness()
    refused = None
    for n in range(2500):
        out = h.publish(
            {
                **CLIENT_RECORD,
                "event_id": f"w{n:04d}" + "x" * 502,
                "payload": {**CLIENT_RECORD["payload"], "record_key": str(n)},
            }
        )
        if out and out[0].topic == TOPICS.dlq:
            refused = n
            break
    assert refused is not None
    # the limit is on the encoded size before compression (state_format.size_bound)
    assert state_format.size_bound(state_format.decode(h.table["s:0:cust-1"])) < MAX_STATE_BYTES
    assert h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))[0].topic == TOPICS.decisions
    h.tick("2024-03-16T00:00:00Z")
    assert len(h.commands()) == refused  # every announced record ordered deleted
    assert state_format.size_bound(state_format.decode(h.table["s:0:cust-1"])) < 1_000_000


def test_a_replayed_tick_adds_nothing_to_the_partitions_progress() -> None:
    h = Harness()
    h.publish(CLIENT_RECORD)
    waiting = encoded_tick("2024-03-16T00:00:00Z", 10)  # waits for events not processed yet
    for _ in range(50):
        h.processor.on_tick(0, 0, b"tick", waiting)
        h.processor.flush()
    assert len(values.decode("p:0", h.table["p:0"])["deferred"]) == 1


def test_a_row_no_one_owns_may_be_touched_for_any_subject() -> None:
    from ebbtide.sinks.postgres.executor import _belongs
    from ebbtide.sinks.postgres.table_map import parse_table_map

    (action,) = parse_table_map(
        {
            "store": "customer_db",
            "categories": {
                "client": [
                    {
                        "table": "payments",
                        "key_column": "payment_id",
                        "action": "delete",
                        "subject_column": "customer_id",
                        "subject_format": "cust-{:05d}",
                    }
                ]
            },
        }
    ).actions("client")
    assert _belongs(action, None, "cust-00001")  # a link blanked by an earlier anonymisation
    assert _belongs(action, 1, "cust-00001")
    assert not _belongs(action, 2, "cust-00001")
