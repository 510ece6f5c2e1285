"""The audit export's pure parts: decoding messages to JSON-safe values, JSONL lines, CSV rows,
the period syntax, and the HTML report (escaped, self-contained, links that resolve, totals)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from ebbtide.runtime.keys import generate_key, key_id
from ebbtide.schemas import (
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    ERASURE_ANSWER,
    LIFECYCLE_EVENT,
    Codec,
)
from ebbtide.streams.certificates import DeletionEntry, build, dumps, sign
from ebbtide.tools.export import lines
from ebbtide.tools.export.decoding import decode
from ebbtide.tools.export.reading import Fetched, Message, Period, ReadStalled, Span, read
from ebbtide.tools.export.report import ReportFacts, render_report
from ebbtide.tools.export.report_subject import place
from ebbtide.tools.export.selection import Selection, SelectionError, parse_period
from ebbtide.tools.export.views import group, verify_certificate
from tests.report_check import Page

HOSTILE = "<script>alert('x')</script>\"&=cmd|' /C calc'!A0"
PRIVATE, PUBLIC = generate_key()


def decision(subject: str = "cust-1", reason: str = "stamped") -> dict[str, Any]:
    return {
        "decision_id": "d-1",
        "subject_id": subject,
        "record": "customer_db/client/1",
        "category": "client",
        "kind": "STAMPED",
        "rule_id": "account",
        "clause": "seed 001",
        "basis": "GDPR art. 6(1)(b)",
        "deadline": datetime(2027, 3, 1, tzinfo=UTC),
        "reason": reason,
        "policy_version": "v1+abc",
        "caused_by": ["e-1", "e-2"],
        "input": "events/0/7",
        "seq": 3,
        "prev_hash": "00" * 32,
    }


def message(topic: str, raw: bytes | None, key: str | None = "cust-1", offset: int = 0, **kw: Any) -> Message:
    return Message.of(Fetched(topic, 0, offset, 1_790_000_000_000 + offset, key, raw), **kw)


def test_an_avro_decision_decodes_to_json_safe_values_and_its_line_keeps_the_exact_bytes() -> None:
    raw = Codec(DECISION).encode(decision())
    line = json.loads(lines.json_line(message("p.decisions", raw, offset=5, selected=False)))
    assert base64.b64decode(line["raw"]) == raw
    assert line["value"]["deadline"] == "2027-03-01T00:00:00.000Z" and line["value"]["seq"] == 3
    assert (line["topic"], line["partition"], line["offset"], line["key"]) == ("p.decisions", 0, 5, "cust-1")
    assert line["timestamp"] == 1_790_000_000_005 and line["selected"] is False and "decode_error" not in line


def test_an_event_payload_is_avros_json_union_and_json_certificates_and_garbage_are_told_apart() -> None:
    event = {
        "event_id": "e-1",
        "subject_id": "cust-1",
        "event_time": datetime(2020, 1, 2, tzinfo=UTC),
        "producer": "crm",
        "payload": ("io.ebbtide.events.DomainRegistered", {"domain": "example.no"}),
    }
    value, error = decode(Codec(LIFECYCLE_EVENT).encode(event))
    assert error is None and value["payload"] == {
        "io.ebbtide.events.DomainRegistered": {"domain": "example.no"}
    }
    assert decode(b'{"a": [1, 2]}') == ({"a": [1, 2]}, None)
    assert decode(None) == (None, None)
    garbage, why = decode(b"\x00\x01not json")
    assert garbage is None and why == "neither Avro single-object encoded nor JSON"
    unknown, why = decode(b"\xc3\x01" + b"\xff" * 8 + b"body")
    assert unknown is None and why is not None and "unknown schema fingerprint ffffffffffffffff" in why
    line = json.loads(lines.json_line(message("p.events", b"\x00junk")))
    assert line["value"] is None and line["decode_error"] and base64.b64decode(line["raw"]) == b"\x00junk"


def test_csv_rows_are_flat_quoted_and_never_run_as_formulas() -> None:
    raw = Codec(DECISION).encode(decision(reason=HOSTILE + "\nsecond line, with comma"))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(lines.header("decisions"))
    writer.writerow(lines.csv_row("decisions", message("p.decisions", raw)))
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    cells = dict(zip(header, row, strict=True))
    assert header[:7] == list(lines.COMMON) and len(header) == len(row)
    assert cells["reason"] == HOSTILE + "\nsecond line, with comma"  # quoted, not split
    assert cells["caused_by"] == '["e-1","e-2"]' and cells["seq"] == "3" and cells["clause"] == "seed 001"
    assert cells["timestamp"] == "2026-09-21T14:13:20.000Z" and cells["selected"] == "true"
    assert lines.cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and lines.cell("-2+3") == "'-2+3"
    assert lines.cell(-2) == "-2" and lines.cell(None) == "" and lines.cell(False) == "false"


def test_every_file_but_checkpoints_has_its_own_columns() -> None:
    assert set(lines.COLUMNS) == {"events", "decisions", "commands", "receipts", "certificates", "answers"}
    for name in lines.COLUMNS:
        assert len(set(lines.header(name))) == len(lines.header(name)), name


def test_a_period_is_from_before_to_in_iso_8601() -> None:
    assert parse_period("2026-01-01..2026-02-01T12:00:00+01:00") == Period(
        1_767_225_600_000, 1_769_943_600_000
    )
    for bad, words in [
        ("2026-01-01", "is not FROM..TO"),
        ("2026-02-01..2026-01-01", "FROM must be before TO"),
        ("yesterday..2026-01-01", "FROM 'yesterday' is not an ISO-8601"),
    ]:
        with pytest.raises(SelectionError, match=words):
            parse_period(bad)
    with pytest.raises(SelectionError, match="exactly one"):
        Selection()


def signed_certificate(subject: str) -> bytes:
    entry = DeletionEntry(
        store=HOSTILE,
        category="client",
        record="customer_db/client/1",
        command_id="cmd-1",
        rule_id="account",
        deadline="2027-03-01T00:00:00Z",
        ordered_at="2027-03-01T00:05:00Z",
        outcome="DELETED",
        rows=1,
        executed_at="2027-03-01T00:05:02Z",
    )
    body = build(
        subject_id=subject,
        entries=(entry,),
        issued_at="2027-03-01T00:06:00Z",
        policy_version="v1+abc",
        issuer="ISP",
        key_id=key_id(PUBLIC),
    )
    return dumps(sign(body, PRIVATE)).encode()


def answer(subject: str) -> bytes:
    item = {
        "record": HOSTILE,
        "category": "invoice",
        "action": "KEEP",
        "rule_id": "bookkeeping",
        "basis": "GDPR art. 6(1)(c)",
        "reason": "kept for the bookkeeping act",
        "until": "2031-12-31",
    }
    return Codec(ERASURE_ANSWER).encode(
        {
            "request_id": "req-1",
            "subject_id": subject,
            "answered_at": datetime(2027, 3, 2, tzinfo=UTC),
            "due_by": datetime(2027, 4, 1, tzinfo=UTC),
            "policy_version": "v1+abc",
            "items": [item],
        }
    )


def command_and_receipt(subject: str) -> tuple[bytes, bytes]:
    common = {"command_id": "cmd-1", "subject_id": subject, "store": HOSTILE, "category": "client"}
    command = {
        **common,
        "record_key": "1",
        "rule_id": "account",
        "policy_version": "v1+abc",
        "deadline": 1_800_000_000_000,
        "issued_at": 1_800_000_100_000,
        "signature": b"\x01" * 64,
        "signer_key_id": "k",
    }
    receipt = {
        **common,
        "record_key": "1",
        "outcome": "DELETED",
        "rows": 4,
        "reason": None,
        "executed_at": 1_800_000_200_000,
        "signature": None,
        "signer_key_id": None,
    }
    return Codec(DELETION_COMMAND).encode(command), Codec(DELETION_RECEIPT).encode(receipt)


def test_the_report_escapes_everything_links_only_inside_itself_and_shows_the_totals() -> None:
    subject = HOSTILE
    command, receipt = command_and_receipt(subject)
    good = message("p.certificates", signed_certificate(subject), key=subject, offset=1)
    forged = json.loads(signed_certificate(subject))
    forged["certificate"]["entries"][0]["rows"] = 2
    bad = message("p.certificates", json.dumps(forged).encode(), key=subject, offset=2)
    kept = {
        "decisions": [
            message("p.decisions", Codec(DECISION).encode(decision(subject, HOSTILE)), key=subject)
        ],
        "certificates": [good, bad],
        "answers": [message("p.answers", answer(subject), key=subject, offset=3)],
        "commands": [message("p.commands.x", command, key=subject, offset=4)],
        "receipts": [message("p.receipts", receipt, key=subject, offset=5)],
        "checkpoints": [],
    }
    verdicts = {place(m): verify_certificate(m, PUBLIC, None) for m in (good, bad)}
    facts = ReportFacts(
        selection=f"subject {subject}",
        created_at="2026-11-28T00:00:00.000Z",
        version="0.1.0",
        topic_prefix="p",
        policy_versions=["v1+abc"],
        keys=[("public-key.pem", key_id(PUBLIC))],
        notes=[HOSTILE],
        counts={"decisions": 4, "certificates": 2, "checkpoints": 0},
        selected={"decisions": 1, "certificates": 2, "checkpoints": 0},
    )
    page = render_report(facts, group(kept), verdicts)
    parsed = Page(page)
    assert parsed.problems() == []
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert parsed.counts["total-decisions"] == 4 and parsed.counts["total-certificates"] == 2
    assert parsed.counts["subject-count"] == 1
    assert {"s1-cert-1", "s1-cert-2", "s1-answer-1", "s1-deadlines", "s1-store-1"} <= set(parsed.ids)
    assert "DELETED (4 row(s))" in page and "2027-01-15T08:03:20.000Z" in page  # the receipt's executed_at
    assert "2031-12-31" in page and "kept for the bookkeeping act" in page and "req-1" in page
    assert [v.status for v in verdicts.values()] == ["valid", "invalid"]
    assert page.count('class="verdict valid"') == 1 and page.count('class="verdict invalid"') == 1
    assert "bad signature: the certificate&#x27;s content does not match its signature" in page
    assert verify_certificate(good, None, None).status == "not verified"


def test_the_page_check_finds_what_leaves_the_page_or_does_not_resolve() -> None:
    page = Page(
        '<a href="#here">x</a><a href="#gone">y</a><a href="https://example.org/">z</a>'
        '<img src="x.png"><p id="here" style="background: url(a.png)"></p><style>@import "a.css";</style>'
    )
    assert page.problems() == [
        "loads <img>",
        "loads img src=x.png",
        "loads p style=background: url(a.png)",
        "style loads '@import \"a.css\";'",
        "link 'https://example.org/' leaves the page",
        "link '#gone' has no element",
    ]


class StuckConsumer:
    """A consumer whose broker went away after one message: polls give nothing more."""

    def __init__(self) -> None:
        self.given = False
        self.at = 0

    def assign(self, tps: list[Any]) -> None: ...

    def seek(self, tp: Any, offset: int) -> None:
        self.at = offset

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        if self.given:
            return {}
        self.given, self.at = True, self.at + 1
        found = SimpleNamespace(topic="t", partition=0, offset=self.at - 1, timestamp=1, key=b"k", value=b"v")
        return {TP: [found]}

    def position(self, tp: Any) -> int:
        return self.at


TP = TopicPartition("t", 0)


def test_a_read_that_stops_getting_messages_gives_up_naming_where() -> None:
    got: list[Fetched] = []
    with pytest.raises(
        ReadStalled, match=re.escape("no message from the broker for 0.2 s at offset 4 of t partition 0")
    ):
        got.extend(read(StuckConsumer(), Span(TP, 3, 10), stall_timeout=0.2))  # type: ignore[arg-type]
    assert got == [Fetched("t", 0, 3, 1, "k", b"v")]
