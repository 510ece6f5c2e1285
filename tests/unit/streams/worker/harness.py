"""A lifecycle processor over an in-memory table, fed encoded messages as the agent would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ebbtide.runtime.authenticity import RECEIPT
from ebbtide.runtime.settings import Topics
from ebbtide.schemas import (
    CLOCK_TICK,
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    LIFECYCLE_EVENT,
    codec_for,
)
from ebbtide.streams.policy.rules import Policy, default_policy, rules_policy
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out
from ebbtide.tools.client import to_record
from tests.support import unit_sink_signer, unit_trusted_keys

TOPICS = Topics("t")


def event(
    event_id: str, event_type: str, when: str, subject: str = "cust-1", **payload: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": event_type,
        "subject_id": subject,
        "event_time": when,
        "producer": "test",
        "payload": payload,
    }


def tick(now: str, events_end: int) -> bytes:
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    return codec_for(CLOCK_TICK).encode({"now": moment, "events_end": events_end, "source": "test"})


class Harness:
    def __init__(self, policy: Policy | None = None, signer: CertificateSigner | None = None) -> None:
        self.table: dict[str, Any] = {}
        self.processor = LifecycleProcessor(
            policy or rules_policy(), TOPICS, self.table, signer=signer, trusted=unit_trusted_keys()
        )
        self.offset = 0
        self.sent: list[Out] = []

    def publish(self, raw: dict[str, Any]) -> list[Out]:
        value = codec_for(LIFECYCLE_EVENT).encode(to_record(raw))
        return self.publish_bytes(raw["subject_id"].encode(), value)

    def publish_bytes(self, key: bytes, value: bytes) -> list[Out]:
        out = self.processor.on_event(0, self.offset, key, value)
        self.processor.flush()
        self.offset += 1
        self.sent += out
        return out

    def tick(self, now: str, events_end: int | None = None) -> list[Out]:
        out = self.processor.on_tick(
            0, 0, b"tick", tick(now, self.offset if events_end is None else events_end)
        )
        self.processor.flush()
        self.sent += out
        return out

    def commands(self) -> list[dict[str, Any]]:
        return [
            codec_for(DELETION_COMMAND).decode(o.value)
            for o in self.sent
            if o.topic == TOPICS.commands("customer_db")
        ]

    def decisions(self) -> list[dict[str, Any]]:
        """The subjects' decisions sent (the clock's CLOCK_APPLIED entries left out)."""
        return [
            codec_for(DECISION).decode(o.value) for o in subject_out(self.sent) if o.topic == TOPICS.decisions
        ]


def subject_out(out: list[Out]) -> list[Out]:
    """What a step sent for subjects: without the CLOCK_APPLIED entries (keyed by no subject)."""
    return [o for o in out if not (o.topic == TOPICS.decisions and o.key == b"")]


CLIENT_RECORD = event(
    "w1", "RecordWritten", "2019-01-01T00:00:00Z", store="customer_db", category="client", record_key="1"
)


def answer(command: dict[str, Any], outcome: str = "DELETED", rows: int = 1) -> bytes:
    """The receipt of ``command``'s store, signed with its (unit test) sink key."""
    receipt = {
        **{k: command[k] for k in ("command_id", "subject_id", "store", "category", "record_key")},
        "outcome": outcome,
        "rows": rows,
        "reason": None,
        "executed_at": datetime(2024, 3, 16, tzinfo=UTC),
    }
    return codec_for(DELETION_RECEIPT).encode(unit_sink_signer(command["store"]).sign(RECEIPT, receipt))


def fanned_out(signer: CertificateSigner | None = None) -> tuple[Harness, list[dict[str, Any]]]:
    """A closed client account under the shipped store map, ticked past its deadline."""
    h = Harness(default_policy(), signer)
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))
    out = h.tick("2024-03-16T00:00:00Z")
    commands = [codec_for(DELETION_COMMAND).decode(o.value) for o in out if ".commands." in o.topic]
    return h, commands
