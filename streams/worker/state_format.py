"""A subject's state as the worker stores it: compact bytes with a summary readable on its own.

Layout (state format version :data:`VERSION`)::

    byte 0        the format version (1)
    bytes 1-2     n, the summary's length (big-endian)
    bytes 3..3+n  the summary: a msgpack array (:class:`Summary`)
    the rest      the body: the state as msgpack arrays (:class:`Body`), raw deflate with the
                  preset dictionary :data:`DICTIONARY`

The summary says what the worker's due index and gauges need (next deadline, records waiting,
policy label, the copies unanswered per store, the records waiting and held per category, the
duties open): a restarted worker rebuilds them from the summaries alone, and a save counts the
change from the old summary to the new one. The body is decoded only when a subject is needed.

States written before (state format 0: a JSON object, as Faust's json codec wrote it, so its
first byte is ``{``) are read by :mod:`snapshot` and written back in this format when next saved.
The version byte never begins a JSON object, and a new format gets a new version, read beside
the ones before it.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, NamedTuple

import msgspec

from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.facts import Fact
from ebbtide.streams.engine.model import Answer, RecordState, Status, SubjectState
from ebbtide.streams.engine.rights import Duty

VERSION = 1
LEGACY = b"{"[0]  # state format 0: JSON
_HEAD = 3  # version byte and summary length

# Words states hold again and again (statuses, outcomes, event kinds, the shipped stores,
# categories and rules): the deflate preset dictionary. Part of format 1: never change it (a new
# dictionary is a new format version). tests/unit/streams/engine/test_state_format.py pins it.
_WORDS = (
    "withdrawn by the person before it was carried out",
    "transferred", "FAILED", "ANONYMISED", "EXPIRES", "EXPIRED", "TRANSFERRED_OUT",
    "hold:", "restriction:", "category:", "record:", "erasure/", "export/", "breach/",
    "breach_authority", "breach_customer", "erasure_response", "export_offer", "verified",
    "CustomerRegistered", "ErasureVerified", "ErasureRefused", "ErasureWithdrawn",
    "RestrictionRequested", "RestrictionLifted", "LegalHoldPlaced", "LegalHoldReleased",
    "BreachDetected", "BreachNotified", "RecordWritten", "ExportOffered",
    "HostingAgreementTerminated", "CertificateRevoked", "ErasureRequested", "DomainReleased",
    "AccountClosed", "ConsentWithdrawn", "CertificateIssued", "ServiceCancelled",
    "DomainRegistered", "ServiceOrdered", "ConsentGiven", "PaymentRecorded", "InvoiceIssued",
    "registry_nicse", "registry_rtr", "registry_norid", "log_store", "logs", "auto_collected",
    "certificate", "hosting_backups", "hosting", "ssl_vendor", "ssl_contact", "domain_contact",
    "domain", "newsletter", "hosted", "processor", "chat_vendor", "support_desk",
    "review_vendor", "correspondence", "account", "client", "payment", "invoice", "customer_db",
    "review_invitation", "marketing", "bookkeeping", "billing_db", "NOT_FOUND", "DELETED",
    "deleted", "ordered", "pending",
)  # fmt: skip
DICTIONARY = msgspec.msgpack.encode(list(_WORDS))
_LEVEL = 6


class Summary(msgspec.Struct, array_like=True, frozen=True):
    """What the due index and the gauges count of a state, readable without its body."""

    next: int | None  # the earliest time a tick has something to do for it
    waiting: int  # records waiting for their deadline
    policy: str  # label of the policy it was last judged under
    late: dict[str, int] = {}  # per store: copies chased for want of a receipt
    open: dict[str, int] = {}  # per store: copies ordered and not answered yet
    waiting_by: dict[str, int] = {}  # per category: records waiting for their deadline
    held: dict[str, int] = {}  # per category: records a legal hold keeps
    duties: dict[str, int] = {}  # per duty (erasure, export, breach): not done or closed yet

    def by_label(self) -> tuple[dict[str, int], ...]:
        """The gauges' counts, in the order of ``streams.worker.partitions._GAUGES``."""
        return self.late, self.open, self.waiting_by, self.held, self.duties


class Entry(NamedTuple):
    """A state staged for the table, with its summary (encoded once, at the batch's flush)."""

    state: SubjectState
    summary: Summary


def summarise(state: SubjectState) -> Summary:
    """The summary of ``state`` (one pass over its records and duties)."""
    late: dict[str, int] = {}
    unanswered: dict[str, int] = {}
    waiting: dict[str, int] = {}
    held: dict[str, int] = {}
    for r in state.records.values():
        if r.status == "ordered":
            unanswered[r.store] = unanswered.get(r.store, 0) + 1
            if r.overdue():
                late[r.store] = late.get(r.store, 0) + 1
        elif r.status == "pending":
            if r.deadline is not None and not r.blockers:
                waiting[r.category] = waiting.get(r.category, 0) + 1
            if any(b.startswith("hold:") for b in r.blockers):
                held[r.category] = held.get(r.category, 0) + 1
    duties: dict[str, int] = {}
    for d in state.duties.values():
        if d.done_at is None and not d.closed_as:
            kind = d.duty_id.split("/")[0]
            duties[kind] = duties.get(kind, 0) + 1
    return Summary(
        state.next_deadline(), sum(waiting.values()), state.policy, late, unanswered, waiting, held, duties
    )


# -- the body -------------------------------------------------------------------------------


class FactRow(msgspec.Struct, array_like=True, omit_defaults=True):
    time: int
    event_id: str
    kind: str
    ref: str | None = None
    until: int | None = None
    detail: tuple[str, ...] = ()


class RecordRow(msgspec.Struct, array_like=True, omit_defaults=True):
    """A copy not pruned (trailing fields at their defaults are left out)."""

    store: str
    category: str
    record_key: str
    ref: str | None
    written_by: str
    written_at: int
    status: Status
    rule_id: str | None = None
    deadline: int | None = None
    caused_by: tuple[str, ...] = ()
    command_id: str | None = None
    blockers: tuple[str, ...] = ()
    restricted_by: str | None = None
    failures: int = 0
    ordered_at: int | None = None
    chase_at: int | None = None
    reissues: int = 0
    answer: tuple[str, int, int, str | None, str | None, str | None] | None = None
    certified: bool = False
    earlier: tuple[str, ...] = ()


class PrunedRow(msgspec.Struct, array_like=True, omit_defaults=True):
    """A copy deleted, certified and pruned: what the engine still needs of it."""

    store: str
    category: str
    record_key: str
    command_id: str | None
    ordered_at: int | None
    answer: tuple[str, int, int] | None
    certificate: int
    written_by: str = ""
    earlier: tuple[str, ...] = ()


class DutyRow(msgspec.Struct, array_like=True, omit_defaults=True):
    duty_id: str
    kind: str
    due: int
    opened_by: str
    source: str
    done_at: int | None = None
    done_by: str | None = None
    closed_as: str | None = None


class Body(msgspec.Struct, array_like=True, omit_defaults=True):
    subject_id: str
    policy: str
    seen: list[str]
    facts: list[FactRow]
    records: list[RecordRow]
    pruned: list[PrunedRow] = []
    duties: list[DutyRow] = []
    overdue: list[str] = []


_encoder = msgspec.msgpack.Encoder()
_summary = msgspec.msgpack.Decoder(Summary)
_body = msgspec.msgpack.Decoder(Body)


def _record_row(r: RecordState) -> RecordRow:
    return RecordRow(
        r.store, r.category, r.record_key, r.ref, r.written_by, r.written_at, r.status, r.rule_id,
        r.deadline, r.caused_by, r.command_id, r.blockers, r.restricted_by, r.failures, r.ordered_at,
        r.chase_at, r.reissues, r.answer, r.certified, r.earlier,
    )  # fmt: skip


def _pruned_row(r: RecordState) -> PrunedRow:
    answer = (r.answer[0], r.answer[1], r.answer[2]) if r.answer is not None else None
    assert r.certificate is not None
    return PrunedRow(
        r.store, r.category, r.record_key, r.command_id, r.ordered_at, answer, r.certificate,
        r.written_by, r.earlier,
    )  # fmt: skip


def _body_of(state: SubjectState) -> Body:
    return Body(
        state.subject_id,
        state.policy,
        sorted(state.seen),
        [FactRow(f.time, f.event_id, f.kind, f.ref, f.until, f.detail) for f in state.facts],
        [_record_row(r) for r in state.records.values() if not r.pruned],
        [_pruned_row(r) for r in state.records.values() if r.pruned],
        [
            DutyRow(d.duty_id, d.kind, d.due, d.opened_by, d.source, d.done_at, d.done_by, d.closed_as)
            for d in state.duties.values()
        ],
        sorted(state.overdue),
    )


def encode(entry: Entry) -> bytes:
    """The stored form of a state (see the module docstring)."""
    summary = _encoder.encode(entry.summary)
    body = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    packed = body.compress(_encoder.encode(_body_of(entry.state))) + body.flush()
    return bytes((VERSION,)) + len(summary).to_bytes(2, "big") + summary + packed


def size_bound(state: SubjectState) -> int:
    """At least the size of ``state`` encoded, measured without compressing it: its summary and
    uncompressed body (deflate adds at most a few bytes per 16 kB to data it cannot shrink)."""
    summary = summarise(state)
    body = len(_encoder.encode(_body_of(state)))
    return _HEAD + len(_encoder.encode(summary)) + body + 5 * (body // 16_384 + 1)


def encode_state(state: SubjectState) -> bytes:
    return encode(Entry(state, summarise(state)))


def is_legacy(raw: bytes) -> bool:
    """Written in state format 0 (JSON)."""
    return raw[0] == LEGACY


def _check(raw: bytes) -> None:
    if raw[0] != VERSION:
        raise ValueError(f"state format {raw[0]} unknown to this worker (it reads 0 and {VERSION})")


def read_summary(raw: bytes) -> Summary:
    """The summary of a stored state, without decoding its body (a state in format 0 is parsed)."""
    if is_legacy(raw):
        return legacy_summary(json.loads(raw))
    _check(raw)
    end = _HEAD + int.from_bytes(raw[1:_HEAD], "big")
    return _summary.decode(memoryview(raw)[_HEAD:end])


def decode(raw: bytes) -> SubjectState:
    """A stored state, in any format this worker reads."""
    if is_legacy(raw):
        return snapshot.load(json.loads(raw))
    _check(raw)
    start = _HEAD + int.from_bytes(raw[1:_HEAD], "big")
    inflate = zlib.decompressobj(-15, DICTIONARY)
    body = _body.decode(inflate.decompress(memoryview(raw)[start:]) + inflate.flush())
    return _state_of(body)


def _state_of(body: Body) -> SubjectState:
    records = {}
    for r in body.records:
        answer: Answer | None = r.answer
        record = RecordState(
            r.store, r.category, r.record_key, r.ref, r.written_by, r.written_at, r.status,
            r.rule_id, r.deadline, r.caused_by, r.command_id, r.blockers, r.restricted_by, r.failures,
            r.ordered_at, r.chase_at, r.reissues, answer, r.certified, earlier=r.earlier,
        )  # fmt: skip
        records[record.record_id] = record
    for p in body.pruned:
        outcome = (p.answer[0], p.answer[1], p.answer[2], None, None, None) if p.answer is not None else None
        record = RecordState(
            p.store, p.category, p.record_key, None, p.written_by, 0, "deleted", command_id=p.command_id,
            ordered_at=p.ordered_at, answer=outcome, certified=True, certificate=p.certificate,
            earlier=p.earlier,
        )  # fmt: skip
        records[record.record_id] = record
    return SubjectState(
        subject_id=body.subject_id,
        seen=frozenset(body.seen),
        facts=tuple(Fact(f.time, f.event_id, f.kind, f.ref, f.until, f.detail) for f in body.facts),
        records=records,
        duties={d.duty_id: Duty(*msgspec.structs.astuple(d)) for d in body.duties},
        overdue=frozenset(body.overdue),
        policy=body.policy,
    )


def legacy_summary(raw: dict[str, Any]) -> Summary:
    """The summary of a state in format 0 (a dumped dict, :mod:`snapshot`)."""
    _, next_deadline, waiting, label = snapshot.summary(raw)
    late, unanswered = snapshot.unanswered_summary(raw)
    by_category, held, duties = snapshot.open_summary(raw)
    return Summary(next_deadline, waiting, label, late, unanswered, by_category, held, duties)
