"""Decoded Avro records to the policy core's events, and the core's output back to Avro."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from ebbtide.schemas import InvalidMessage
from ebbtide.streams.engine.answers import ErasureAnswer
from ebbtide.streams.engine.decisions import Decision, DeleteRecord
from ebbtide.streams.engine.events import EVENT_TYPES, DeletionReported, Event, RecordWritten
from ebbtide.streams.policy.calendar import to_ms


def _ms(value: Any) -> int:
    return to_ms(value) if isinstance(value, datetime) else int(value)


# Ids, keys and refs are identifiers, not documents: a longer one is a producer's error, and would
# swell the subject's state (kept in one changelog value) past what the broker accepts.
MAX_TEXT = 512  # characters of any string field
MAX_ITEMS = 1_000  # entries of a list field (a legal hold's categories or records)


def check_sizes(record: dict[str, Any]) -> None:
    """Raise :class:`InvalidMessage` naming the first field of a ``lifecycle_event`` that is too
    long (its size, never its value)."""
    _, payload = record["payload"]
    fields = [(name, record[name]) for name in ("event_id", "subject_id", "producer")]
    fields += [(f"payload.{name}", value) for name, value in payload.items()]
    for name, value in fields:
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise InvalidMessage(
                f"lifecycle_event: field {name} is {len(value)} characters, over the {MAX_TEXT} allowed"
            )
        if isinstance(value, list):
            if len(value) > MAX_ITEMS:
                raise InvalidMessage(
                    f"lifecycle_event: field {name} has {len(value)} entries, over the {MAX_ITEMS} allowed"
                )
            if any(isinstance(v, str) and len(v) > MAX_TEXT for v in value):
                raise InvalidMessage(
                    f"lifecycle_event: an entry of field {name} is over {MAX_TEXT} characters"
                )


def to_event(record: dict[str, Any]) -> Event:
    """A decoded ``lifecycle_event`` as a domain event; unknown types and oversized fields are
    invalid messages."""
    check_sizes(record)
    branch, payload = record["payload"]
    name = branch.rsplit(".", 1)[-1]
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise InvalidMessage(f"lifecycle_event: unknown event type {name}")
    common = {
        "event_id": record["event_id"],
        "subject_id": record["subject_id"],
        "time": _ms(record["event_time"]),
    }
    if cls is RecordWritten:
        if payload["category"] == "UNKNOWN":
            raise InvalidMessage("lifecycle_event: RecordWritten with a category this reader does not know")
        return RecordWritten(
            **common,
            store=payload["store"],
            category=payload["category"].lower(),
            record_key=payload["record_key"],
            ref=payload.get("ref"),
        )
    fields = {
        k: (_ms(v) if isinstance(v, datetime) else tuple(v) if isinstance(v, list) else v)
        for k, v in payload.items()
    }
    return cls(**common, **fields)  # type: ignore[arg-type]


def tick_time(record: dict[str, Any]) -> int:
    """The clock time of a decoded ``clock_tick``, in epoch ms."""
    return _ms(record["now"])


def to_report(record: dict[str, Any]) -> DeletionReported:
    signature = record.get("signature")
    return DeletionReported(
        command_id=record["command_id"],
        subject_id=record["subject_id"],
        store=record["store"],
        category=record["category"],
        record_key=record["record_key"],
        outcome=record["outcome"],
        reason=record.get("reason"),
        rows=int(record.get("rows", 0)),
        executed_at=_ms(record["executed_at"]) if record.get("executed_at") is not None else 0,
        signer_key_id=record.get("signer_key_id"),
        signature=base64.b64encode(bytes(signature)).decode("ascii") if signature else None,
    )


def command_record(command: DeleteRecord) -> dict[str, Any]:
    return {
        "command_id": command.command_id,
        "subject_id": command.subject_id,
        "store": command.store,
        "category": command.category,
        "record_key": command.record_key,
        "rule_id": command.rule_id,
        "policy_version": command.policy_version,
        "deadline": command.deadline,
        "issued_at": command.issued_at,
    }


def decision_record(decision: Decision, source: str | None = None) -> dict[str, Any]:
    """``source``: the message the worker made it on (``<events|clock|receipts>/<p>/<offset>``)."""
    return {
        "decision_id": decision.decision_id,
        "subject_id": decision.subject_id,
        "record": decision.record,
        "category": decision.category,
        "kind": decision.kind,
        "rule_id": decision.rule_id,
        "clause": decision.clause,
        "basis": decision.basis,
        "deadline": decision.deadline,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
        "caused_by": list(decision.caused_by),
        "input": source,
        "seq": None,
        "prev_hash": None,
    }


def answer_record(answer: ErasureAnswer) -> dict[str, Any]:
    return {
        "request_id": answer.request_id,
        "subject_id": answer.subject_id,
        "answered_at": answer.answered_at,
        "due_by": answer.due_by,
        "policy_version": answer.policy_version,
        "items": [
            {
                "record": i.record,
                "category": i.category,
                "action": i.action,
                "rule_id": i.rule_id,
                "basis": i.basis,
                "reason": i.reason,
                "until": i.until,
            }
            for i in answer.items
        ],
    }
