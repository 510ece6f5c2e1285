"""Poison pills and forgeries: what anyone who can write to the broker might send.

Each is produced with a plain producer (no Ebbtide client checks) and comes back as a
:class:`~chaos.ledger.Sent` naming where it landed, so the ledger can find it in the
dead-letter topic. Nothing here holds a key the pipeline trusts: forgeries are unsigned or
signed with a key made on the spot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from chaos.ledger import Copy, Sent
from ebbtide.runtime import keys
from ebbtide.runtime.authenticity import COMMAND, RECEIPT, TICK, MessageSigner
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import CLOCK_TICK, DELETION_COMMAND, DELETION_RECEIPT, LIFECYCLE_EVENT, codec_for

NAMESPACE = "io.ebbtide.events"
FORGED = "chaos-forger"


def _partition(key: str, partitions: int) -> int:
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % partitions)


@dataclass
class Sender:
    """Produces raw messages and reports where each landed."""

    settings: Settings
    producer: KafkaProducer

    def send(
        self,
        kind: str,
        what: str,
        topic: str,
        value: bytes,
        key: bytes | None,
        partition: int | None = None,
        target: Copy | None = None,
    ) -> Sent:
        meta = self.producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
        return Sent(kind, what, topic, meta.partition, meta.offset, target)


def _event(subject: str, when: datetime, kind: str, number: int, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": f"chaos-{kind.lower()}-{number}",
        "subject_id": subject,
        "event_time": when,
        "producer": FORGED,
        "payload": (f"{NAMESPACE}.{kind}", payload),
    }


def poison_pills(sender: Sender, subject: str, when: datetime) -> list[Sent]:
    """One of each kind of bad event the worker must dead-letter and go on: undecodable bytes,
    a placeholder date, no key, the wrong partition, an oversized field, an empty subject."""
    settings = sender.settings
    topic = Topics(settings.topic_prefix).events
    codec = codec_for(LIFECYCLE_EVENT)
    home = _partition(subject, settings.partitions)
    elsewhere = (home + 1) % settings.partitions
    closed = _event(subject, when, "AccountClosed", 1)
    sent = [
        sender.send("poison", "undecodable bytes", topic, b"\x00not an avro message", subject.encode()),
        sender.send(
            "poison",
            "AccountClosed dated 9999-12-31",
            topic,
            codec.encode({**_event(subject, datetime(9999, 12, 31, tzinfo=UTC), "AccountClosed", 2)}),
            subject.encode(),
        ),
        sender.send("poison", "event without a key", topic, codec.encode(closed), None, partition=home),
        sender.send(
            "poison", "event on the wrong partition", topic, codec.encode(closed), subject.encode(), elsewhere
        ),
        sender.send(
            "poison",
            "RecordWritten with a 600-character record key",
            topic,
            codec.encode(
                _event(
                    subject,
                    when,
                    "RecordWritten",
                    3,
                    store="customer_db",
                    category="CORRESPONDENCE",
                    record_key="k" * 600,
                    ref=None,
                )
            ),
            subject.encode(),
        ),
        sender.send(
            "poison",
            "event with an empty subject",
            topic,
            codec.encode(_event("", when, "AccountClosed", 4)),
            b"",
            partition=_partition("", settings.partitions),
        ),
    ]
    return sent


def _stranger() -> MessageSigner:
    """A signer whose key no one trusts."""
    return MessageSigner(keys.generate_key()[0])


def forged_commands(sender: Sender, targets: list[tuple[Copy, str]], issued: datetime) -> list[Sent]:
    """Deletion commands for copies that are not due (``(copy, subject)``): the first unsigned,
    the rest signed with a stranger's key. A sink must refuse each before touching its store."""
    codec = codec_for(DELETION_COMMAND)
    stranger = _stranger()
    out = []
    for number, ((store, category, key), subject) in enumerate(targets):
        command = {
            "command_id": f"chaos-forged-command-{number}",
            "subject_id": subject,
            "store": store,
            "category": category,
            "record_key": key,
            "rule_id": "account",
            "policy_version": "forged",
            "deadline": datetime(2019, 1, 1, tzinfo=UTC),
            "issued_at": issued,
        }
        if number == 0:
            value, what = {**command, "signature": None, "signer_key_id": None}, "unsigned command"
        else:
            value, what = stranger.sign(COMMAND, command), "command signed with an unknown key"
        out.append(
            sender.send(
                "forgery",
                what,
                Topics(sender.settings.topic_prefix).commands(store),
                codec.encode(value),
                subject.encode(),
                target=(store, category, key),
            )
        )
    return out


def forged_receipts(sender: Sender, commands: list[dict[str, Any]], executed: datetime) -> list[Sent]:
    """``DELETED`` receipts for real commands a store has not carried out (its vendor is down):
    unsigned, and signed with a stranger's key. Accepted, they would have the worker certify a
    deletion that never happened and stop sending the command."""
    codec = codec_for(DELETION_RECEIPT)
    stranger = _stranger()
    out = []
    for number, command in enumerate(commands):
        receipt = {
            "command_id": command["command_id"],
            "subject_id": command["subject_id"],
            "store": command["store"],
            "category": command["category"],
            "record_key": command["record_key"],
            "outcome": "DELETED",
            "rows": 1,
            "reason": None,
            "executed_at": executed,
        }
        if number % 2 == 0:
            value, what = {**receipt, "signature": None, "signer_key_id": None}, "unsigned DELETED receipt"
        else:
            value, what = stranger.sign(RECEIPT, receipt), "DELETED receipt signed with an unknown key"
        out.append(
            sender.send(
                "forgery",
                what,
                Topics(sender.settings.topic_prefix).receipts,
                codec.encode(value),
                command["subject_id"].encode(),
                target=(command["store"], command["category"], command["record_key"]),
            )
        )
    return out


def forged_ticks(sender: Sender, events_end: Callable[[int], int]) -> list[Sent]:
    """A tick from 2099 on partition 0, unsigned and signed with a stranger's key: accepted, it
    would delete years early, irreversibly."""
    codec = codec_for(CLOCK_TICK)
    topic = Topics(sender.settings.topic_prefix).clock
    tick = {"now": datetime(2099, 1, 1, tzinfo=UTC), "events_end": events_end(0), "source": FORGED}
    stranger = _stranger().sign(TICK, {**tick, "partition": 0})
    signed = {**tick, "signature": stranger["signature"], "signer_key_id": stranger["signer_key_id"]}
    return [
        sender.send(
            "forgery",
            "unsigned tick from 2099",
            topic,
            codec.encode({**tick, "signature": None, "signer_key_id": None}),
            b"tick",
            partition=0,
        ),
        sender.send(
            "forgery", "tick from 2099 signed with an unknown key", topic, codec.encode(signed), b"tick", 0
        ),
    ]


def forged_hold(sender: Sender, subject: str, when: datetime) -> Sent:
    """An unsigned LegalHoldPlaced over a whole subject: accepted, it would stop the subject's
    deletions for good."""
    codec = codec_for(LIFECYCLE_EVENT)
    hold = _event(subject, when, "LegalHoldPlaced", 5, hold_id="chaos-forged-hold", categories=[], records=[])
    return sender.send(
        "forgery",
        "unsigned LegalHoldPlaced",
        Topics(sender.settings.topic_prefix).events,
        codec.encode(hold),
        subject.encode(),
    )
