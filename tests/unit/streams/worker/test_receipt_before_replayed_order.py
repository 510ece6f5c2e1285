"""A worker killed after sending a deletion command, before its state said the copy was ordered:
the worker that takes the partition over may read the store's receipt before it replays the tick
that orders the copy again (with the same command id). That receipt is genuine: it is not refused
as a security event, changes nothing, and the copy is confirmed once the order is replayed and
the store answers it again (the two-worker e2e test found this)."""

from __future__ import annotations

from typing import Any

from ebbtide.schemas import DELETION_COMMAND, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.policy.rules import default_policy
from ebbtide.tools.client import sign_hold, to_record
from tests.support import security_events, unit_hold_keys, unit_hold_signer
from tests.unit.streams.worker.harness import CLIENT_RECORD, TOPICS, Harness, answer, event, fanned_out

DUE = "2024-03-16T00:00:00Z"


def test_an_answer_to_the_order_a_replayed_tick_sends_again_is_no_security_event() -> None:
    _, commands = fanned_out()  # the worker that crashed: its command reached the store
    command = commands[0]
    taker = Harness(default_policy())  # the one that took over: its state lost the order
    taker.publish(CLIENT_RECORD)
    taker.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    before = security_events("receipts", "not_issued")

    early = taker.processor.on_receipt(0, 0, b"cust-1", answer(command))
    taker.processor.flush()
    assert early == []  # not dead-lettered, nothing decided
    assert security_events("receipts", "not_issued") == before

    replayed = taker.tick(DUE)
    again = [codec_for(DELETION_COMMAND).decode(o.value) for o in replayed if ".commands." in o.topic]
    assert command["command_id"] in {c["command_id"] for c in again}
    confirmed = taker.processor.on_receipt(0, 1, b"cust-1", answer(command))
    assert TOPICS.decisions in {o.topic for o in confirmed}


def test_an_answer_to_another_id_for_a_copy_not_ordered_is_still_refused() -> None:
    _, commands = fanned_out()
    command = commands[0]
    taker = Harness(default_policy())
    taker.publish(CLIENT_RECORD)
    taker.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    before = security_events("receipts", "not_issued")
    (out,) = taker.processor.on_receipt(0, 0, b"cust-1", answer({**command, "command_id": "f" * 32}))
    assert out.topic == TOPICS.dlq
    assert security_events("receipts", "not_issued") == before + 1


def publish_signed(h: Harness, raw: dict[str, Any]) -> None:
    record = sign_hold(to_record(raw), unit_hold_signer())
    h.publish_bytes(raw["subject_id"].encode(), codec_for(LIFECYCLE_EVENT).encode(record))


def test_an_answer_to_that_id_for_a_copy_a_legal_hold_keeps_is_refused() -> None:
    """No tick can order a held copy, so no crashed worker can have sent that command: a receipt
    for it (e.g. made with a stolen store key, ahead of time) is a security event."""
    _, commands = fanned_out()
    command = commands[0]
    taker = Harness(default_policy())
    taker.processor.hold_keys = unit_hold_keys()
    taker.publish(CLIENT_RECORD)
    taker.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    publish_signed(taker, event("h1", "LegalHoldPlaced", "2021-04-01T00:00:00Z", hold_id="court-7"))
    before = security_events("receipts", "not_issued")
    (out,) = taker.processor.on_receipt(0, 0, b"cust-1", answer(command))
    assert out.topic == TOPICS.dlq
    assert security_events("receipts", "not_issued") == before + 1
