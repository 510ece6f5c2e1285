"""Decoded Avro records to the policy core's events, and the core's output back to Avro."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import InvalidMessage
from streams.policy.calendar import to_ms
from streams.policy.decisions import Decision, DeleteRecord, ErasureAnswer
from streams.policy.events import EVENT_TYPES, DeletionReported, Event, RecordWritten


def _ms(value: Any) -> int:
    return to_ms(value) if isinstance(value, datetime) else int(value)


def to_event(record: dict[str, Any]) -> Event:
    """A decoded ``lifecycle_event`` as a domain event; unknown types are invalid messages."""
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


def decision_record(decision: Decision) -> dict[str, Any]:
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
