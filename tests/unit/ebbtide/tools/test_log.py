"""`ebbtide log`: messages decoded with the project's codecs, filtered by subject, kind and time,
rendered as one line or one JSON object each; a message that does not decode is one line (fake
records; no broker)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from ebbtide.cli import build_parser
from ebbtide.runtime.settings import Settings
from ebbtide.schemas import DECISION, DELETION_RECEIPT, codec_for
from ebbtide.tools import log
from ebbtide.tools.log.entries import decode, kind_of, time_of

PREFIX = "t"
SIGNATURE = bytes(range(64))


def record(
    topic: str, value: bytes | None, *, key: bytes | None = b"cust-1", offset: int = 7, **extra: Any
) -> Any:
    """A kafka-python ConsumerRecord as the log reads it."""
    return SimpleNamespace(
        topic=f"{PREFIX}.{topic}",
        partition=extra.get("partition", 1),
        offset=offset,
        timestamp=extra.get("timestamp", 1_700_000_000_000),
        key=key,
        value=value,
        headers=extra.get("headers", []),
    )


def decision(subject: str = "cust-1", kind: str = "STAMPED", **fields: Any) -> bytes:
    return codec_for(DECISION).encode(
        {
            "decision_id": "d1",
            "subject_id": subject,
            "record": "billing_db/invoice/84",
            "category": "invoice",
            "kind": kind,
            "rule_id": "bookkeeping",
            "clause": "seed 001",
            "basis": "GDPR art. 6(1)(c)",
            "deadline": datetime(2027, 12, 31, 23, tzinfo=UTC),
            "reason": "bookkeeping records are kept 5 years",
            "policy_version": "v1+abc",
            "caused_by": ["e1"],
            "input": fields.get("input"),
            "seq": fields.get("seq"),
            "prev_hash": fields.get("prev_hash"),
        }
    )


def receipt(outcome: str = "DELETED", executed: datetime = datetime(2025, 3, 1, tzinfo=UTC)) -> bytes:
    return codec_for(DELETION_RECEIPT).encode(
        {
            "command_id": "c1",
            "subject_id": "cust-1",
            "store": "billing_db",
            "category": "invoice",
            "record_key": "84",
            "outcome": outcome,
            "rows": 1,
            "reason": None,
            "executed_at": executed,
            "signature": SIGNATURE,
            "signer_key_id": "k1",
        }
    )


DECISIONS = log.log_topic("decisions")
RECEIPTS = log.log_topic("receipts")
DLQ = log.log_topic("dlq")


def test_a_decision_is_one_line_with_its_kind_record_and_chain_fields_when_present() -> None:
    plain = log.line(DECISIONS, decode(DECISIONS, record("decisions", decision())), PREFIX)
    assert plain.startswith("2023-11-14T22:13:20Z  decisions[1]@7  cust-1  STAMPED  billing_db/invoice/84")
    assert "deadline 2027-12-31T23:00:00Z" in plain and "seq" not in plain
    chained = decision(input="events/1/40", seq=3, prev_hash="ab" * 32)
    line = log.line(DECISIONS, decode(DECISIONS, record("decisions", chained)), PREFIX)
    assert line.endswith(f"input events/1/40  seq 3  prev_hash {'ab' * 32}")


def test_json_carries_the_place_the_key_and_the_decoded_value_with_bytes_as_base64() -> None:
    entry = decode(RECEIPTS, record("receipts", receipt(), offset=3))
    out = json.loads(json.dumps(log.as_json(RECEIPTS, entry)))
    assert {k: out[k] for k in ("topic", "partition", "offset", "key", "time", "time_field")} == {
        "topic": "t.receipts",
        "partition": 1,
        "offset": 3,
        "key": "cust-1",
        "time": "2025-03-01T00:00:00Z",
        "time_field": "executed_at",
    }
    assert out["timestamp"] == "2023-11-14T22:13:20Z"
    assert base64.b64decode(out["value"]["signature"]) == SIGNATURE
    assert out["value"]["outcome"] == "DELETED" and "error" not in out


def test_a_message_that_does_not_decode_is_one_line_that_says_why() -> None:
    entry = decode(DECISIONS, record("decisions", b"\xc3\x01garbage-garbage"))
    line = log.line(DECISIONS, entry, PREFIX)
    assert "\n" not in line and "UNDECODABLE" in line and "unknown writer schema fingerprint" in line
    out = log.as_json(DECISIONS, entry)
    assert out["value"] is None and out["error"] == entry.error and out["time_field"] == "broker"
    # it has no kind, so --kind never hides it; it is judged by its key and broker timestamp
    assert log.Selection(kind="DELETION_ORDERED").admits(DECISIONS, entry)
    assert not log.Selection(subject="cust-2").admits(DECISIONS, entry)


def test_kind_subject_and_time_select_on_the_decoded_message() -> None:
    ordered = decode(DECISIONS, record("decisions", decision(kind="DELETION_ORDERED")))
    stamped = decode(DECISIONS, record("decisions", decision(subject="cust-2")))
    assert log.Selection(kind="DELETION_ORDERED").admits(DECISIONS, ordered)
    assert not log.Selection(kind="DELETION_ORDERED").admits(DECISIONS, stamped)
    assert not log.Selection(subject="cust-1").admits(DECISIONS, stamped)
    # a decision has no time of its own: the broker's timestamp (2023-11-14T22:13:20Z)
    assert log.Selection(since=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)).admits(DECISIONS, ordered)
    assert not log.Selection(until=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)).admits(DECISIONS, ordered)
    # a receipt's time is when the store executed it, not when the broker got it
    late = decode(RECEIPTS, record("receipts", receipt(executed=datetime(2031, 1, 1, tzinfo=UTC))))
    assert time_of(RECEIPTS, late) == datetime(2031, 1, 1, tzinfo=UTC)
    assert log.Selection(since=datetime(2030, 1, 1, tzinfo=UTC)).admits(RECEIPTS, late)
    assert not log.Selection(until=datetime(2030, 1, 1, tzinfo=UTC)).admits(RECEIPTS, late)


def test_an_unknown_kind_names_the_valid_ones() -> None:
    with pytest.raises(log.UnknownKind, match=r"'NOPE' is not a receipt outcome \(valid: DELETED, NOT_FOUND"):
        RECEIPTS.check_kind("NOPE")
    with pytest.raises(log.UnknownKind, match="KEY_SHREDDED"):  # the v2 kinds are known
        DECISIONS.check_kind("nope")
    with pytest.raises(log.UnknownKind, match="has no --kind"):
        log.log_topic("answers").check_kind("ANSWER")
    DECISIONS.check_kind("CLOCK_APPLIED")


def test_a_dead_letter_shows_its_headers_and_reason_never_its_contents() -> None:
    headers = [
        ("reason", b"security: receipt signature does not verify"),
        ("source_topic", b"t.receipts"),
        ("source_partition", b"2"),
        ("source_offset", b"9"),
    ]
    secret = b"alice@example.invalid"
    entry = decode(DLQ, record("dlq", secret, key=b"cust-1", headers=headers))
    assert kind_of(DLQ, entry) == "security"
    line = log.line(DLQ, entry, PREFIX)
    assert "security  from t.receipts[2]@9: security: receipt signature" in line
    out = json.dumps(log.as_json(DLQ, entry))
    assert "alice" not in line and "alice" not in out and base64.b64encode(secret).decode() not in out
    assert log.Selection(subject="cust-1", kind="security").admits(DLQ, entry)
    assert not log.Selection(kind="invalid").admits(DLQ, entry)


def test_control_characters_in_a_message_are_escaped_in_its_line() -> None:
    entry = decode(DECISIONS, record("decisions", decision(subject="cust-\x1b[2J")))
    line = log.line(DECISIONS, entry, PREFIX)
    assert "\x1b" not in line and "cust-\\x1b[2J" in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["answers", "--kind", "X"], "log answers has no --kind"),
        (["decisions", "--store", "billing_db"], "--store applies to log commands only"),
        (["commands", "--store", "nope"], "no store nope in the store map (stores: customer_db,"),
        (["commands", "--kind", "nope"], "'nope' is not a data category (valid: auto_collected, client,"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2_before_any_broker_is_asked(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["log", *argv])
    assert args.func(args, Settings(kafka_bootstrap="127.0.0.1:1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
