"""The deletion certificate document: its content, canonical bytes, the rules for issuing one,
and its signature. The package docstring (:mod:`streams.certificates`) describes the format.

Pure functions: no wall clock (the caller passes ``issued_at``), no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from ebbtide.runtime import authenticity
from ebbtide.runtime.keys import key_id_of, load_private_key
from ebbtide.streams.policy.calendar import iso
from ebbtide.streams.policy.vocabulary import ANSWERED, answer_problem

FORMAT = "ebbtide-deletion-certificate/2"
FORMAT_V1 = "ebbtide-deletion-certificate/1"  # before store receipts were embedded: still verified
FORMATS = (FORMAT_V1, FORMAT)
ALGORITHM = "Ed25519"
SIGNATURE_BYTES = 64

ENTRY_FIELDS_V1 = (
    "store",
    "category",
    "record",
    "command_id",
    "rule_id",
    "deadline",
    "ordered_at",
    "outcome",
    "rows",
    "executed_at",
)
ENTRY_FIELDS = (*ENTRY_FIELDS_V1, "receipt")
RECEIPT_FIELDS = ("signed", "signer_key_id", "signature")
TIME_FIELDS = ("deadline", "ordered_at", "executed_at")
CERTIFICATE_FIELDS = ("format", "subject_id", "issued_at", "policy_version", "issuer", "key_id", "entries")
SIGNATURE_FIELDS = ("algorithm", "key_id", "value")


@dataclass(frozen=True)
class StoreReceipt:
    """A store's receipt as its sink signed it: the signed fields (``executed_at`` in epoch
    milliseconds, as signed), the sink's key id and the signature (base64 of 64 bytes)."""

    command_id: str
    subject_id: str
    store: str
    category: str
    record_key: str
    outcome: str
    rows: int
    reason: str | None
    executed_at: int
    signer_key_id: str
    signature: str

    def signed(self) -> dict[str, Any]:
        """The receipt's signed content, as :func:`ebbtide.runtime.authenticity.signed_content` makes it."""
        return authenticity.signed_content(authenticity.RECEIPT, asdict(self))

    def signed_bytes(self) -> bytes:
        """The bytes the store signed."""
        return authenticity.canonical_bytes(authenticity.RECEIPT, asdict(self))

    def as_dict(self) -> dict[str, Any]:
        return {"signed": self.signed(), "signer_key_id": self.signer_key_id, "signature": self.signature}


@dataclass(frozen=True)
class DeletionEntry:
    """One record's deletion, as its store confirmed it. Timestamps are ISO-8601 in UTC.
    ``receipt``: the store's signed receipt (None: an answer kept before receipts were embedded,
    or a certificate of format /1)."""

    store: str
    category: str
    record: str
    command_id: str
    rule_id: str
    deadline: str
    ordered_at: str
    outcome: str  # DELETED, NOT_FOUND, ANONYMISED (row kept, personal fields blanked) or EXPIRES
    rows: int
    executed_at: str
    receipt: StoreReceipt | None = None


@dataclass(frozen=True)
class Certificate:
    """Everything that is signed. ``issued_at`` is given by the caller (pipeline time).
    ``format``: :data:`FORMAT` for every certificate issued now; :data:`FORMAT_V1` for one read
    back from a file of that format."""

    subject_id: str
    issued_at: str
    policy_version: str
    entries: tuple[DeletionEntry, ...]
    issuer: str
    key_id: str
    format: str = FORMAT


# --- canonical form -----------------------------------------------------------------------------


def entry_order(entry: DeletionEntry) -> tuple[str, str, str, str, str, str, str, str, int, str, str]:
    """(store, record) first; the other fields only break ties, so the order is always total."""
    return (
        entry.store,
        entry.record,
        entry.category,
        entry.command_id,
        entry.rule_id,
        entry.deadline,
        entry.ordered_at,
        entry.outcome,
        entry.rows,
        entry.executed_at,
        entry.receipt.signature if entry.receipt is not None else "",
    )


def _entry_dict(entry: DeletionEntry, form: str) -> dict[str, Any]:
    out = {name: getattr(entry, name) for name in ENTRY_FIELDS_V1}
    if form != FORMAT_V1:
        out["receipt"] = entry.receipt.as_dict() if entry.receipt is not None else None
    return out


def _certificate_dict(certificate: Certificate) -> dict[str, Any]:
    return {
        "format": certificate.format,
        "subject_id": certificate.subject_id,
        "issued_at": certificate.issued_at,
        "policy_version": certificate.policy_version,
        "issuer": certificate.issuer,
        "key_id": certificate.key_id,
        "entries": [
            _entry_dict(entry, certificate.format) for entry in sorted(certificate.entries, key=entry_order)
        ],
    }


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_bytes(certificate: Certificate) -> bytes:
    """The bytes that are signed: canonical JSON of the certificate, entries sorted by (store, record).

    The same certificate gives the same bytes whatever the order of its entries. Raises
    ``UnicodeEncodeError`` for a string that is not valid Unicode (a lone surrogate);
    :func:`build` refuses those.
    """
    return _canonical_json(_certificate_dict(certificate))


# --- validation ---------------------------------------------------------------------------------


def _text_problem(value: str) -> str | None:
    if not value:
        return "empty"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode"
    return None


def _utc_problem(value: str) -> str | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return "not an ISO-8601 timestamp"
    if moment.utcoffset() != timedelta(0):
        return "not in UTC"
    return None


def entry_name(entry: DeletionEntry) -> str:
    return f"entry {entry.store!r}/{entry.record!r}"


def _signature_problem(value: str) -> str | None:
    found: list[str] = []
    signature_bytes(value, found, "value")
    return found[0] if found else None


def _receipt_problems(certificate: Certificate, entry: DeletionEntry, where: str) -> list[str]:
    """Why an entry's embedded receipt does not say what the entry says (or is not well formed)."""
    receipt = entry.receipt
    if receipt is None:
        return []
    if certificate.format == FORMAT_V1:
        return [f"{where}: receipt: a certificate of format {FORMAT_V1!r} embeds no receipts"]
    found = []
    expected = {
        "command_id": entry.command_id,
        "subject_id": certificate.subject_id,
        "store": entry.store,
        "category": entry.category,
        "outcome": entry.outcome,
        "rows": entry.rows,
    }
    for name, value in expected.items():
        if getattr(receipt, name) != value:
            found.append(f"{where}: receipt: its {name} is not the entry's")
    if f"{receipt.store}/{receipt.category}/{receipt.record_key}" != entry.record:
        found.append(f"{where}: receipt: its record_key is not the entry's record")
    try:
        same_time = iso(receipt.executed_at) == entry.executed_at
    except (OverflowError, ValueError, OSError):
        same_time = False
    if not same_time:
        found.append(f"{where}: receipt: its executed_at is not the entry's")
    problem = _text_problem(receipt.signer_key_id)
    if problem:
        found.append(f"{where}: receipt: signer_key_id: {problem}")
    problem = _signature_problem(receipt.signature)
    if problem:
        found.append(f"{where}: receipt: signature: {problem}")
    return found


def problems(certificate: Certificate) -> list[str]:
    """Why this certificate must not be issued: [] when it can be.

    It needs at least one entry; every entry answered (DELETED; ANONYMISED or EXPIRES with at
    least one row or backup; NOT_FOUND with none); one entry per (store, record); non-empty text;
    UTC timestamps; an embedded receipt that says what its entry says.
    """
    found: list[str] = []
    if certificate.format not in FORMATS:
        found.append(f"format: {certificate.format!r} is not one of {', '.join(FORMATS)}")
    for name in ("subject_id", "policy_version", "issuer", "key_id"):
        problem = _text_problem(getattr(certificate, name))
        if problem:
            found.append(f"{name}: {problem}")
    problem = _text_problem(certificate.issued_at) or _utc_problem(certificate.issued_at)
    if problem:
        found.append(f"issued_at: {problem}")
    if not certificate.entries:
        found.append("entries: a certificate needs at least one entry")
    seen: set[tuple[str, str]] = set()
    for entry in certificate.entries:
        where = entry_name(entry)
        for name in ENTRY_FIELDS_V1:
            if name == "rows":
                continue
            value = getattr(entry, name)
            problem = _text_problem(value) or (_utc_problem(value) if name in TIME_FIELDS else None)
            if problem:
                found.append(f"{where}: {name}: {problem}")
        rows_ok = isinstance(entry.rows, int) and not isinstance(entry.rows, bool)
        if entry.outcome not in ANSWERED:
            found.append(
                f"{where}: not answered: outcome {entry.outcome!r} is not one of {', '.join(ANSWERED)}; "
                "a certificate is issued only when every store has confirmed"
            )
        elif not rows_ok:
            found.append(f"{where}: rows: must be a whole number, 0 or more")
        else:
            problem = answer_problem(entry.outcome, entry.rows)
            if problem:
                found.append(f"{where}: {problem}")
        if (entry.store, entry.record) in seen:
            found.append(f"{where}: more than one entry for this record")
        found.extend(_receipt_problems(certificate, entry, where))
        seen.add((entry.store, entry.record))
    return found


def build(
    subject_id: str,
    entries: Iterable[DeletionEntry],
    issued_at: str,
    policy_version: str,
    issuer: str,
    key_id: str,
) -> Certificate:
    """A certificate for a subject whose stores have all answered; ValueError listing every problem."""
    certificate = Certificate(
        subject_id=subject_id,
        issued_at=issued_at,
        policy_version=policy_version,
        entries=tuple(sorted(entries, key=entry_order)),
        issuer=issuer,
        key_id=key_id,
    )
    found = problems(certificate)
    if found:
        raise ValueError("cannot issue a deletion certificate: " + "; ".join(found))
    return certificate


# --- signing ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign(certificate: Certificate, private_pem: bytes) -> dict[str, Any]:
    """The signed JSON-able document. ValueError if the certificate is not issuable or its key_id
    is not the signing key's."""
    private = load_private_key(private_pem)
    signer_id = key_id_of(private.public_key())
    if certificate.key_id != signer_id:
        raise ValueError(f"certificate names key {certificate.key_id!r} but the signing key is {signer_id!r}")
    found = problems(certificate)
    if found:
        raise ValueError("cannot sign this deletion certificate: " + "; ".join(found))
    payload = canonical_bytes(certificate)
    return {
        "certificate": json.loads(payload),
        "signature": {"algorithm": ALGORITHM, "key_id": signer_id, "value": _b64(private.sign(payload))},
    }


def signature_bytes(
    value: str, found: list[str], what: str = "bad signature: signature.value"
) -> bytes | None:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        found.append(f"{what} is not base64")
        return None
    if _b64(raw) != value:  # one value per signature: no alternative padding or stray low bits
        found.append(f"{what} is not canonical base64")
        return None
    if len(raw) != SIGNATURE_BYTES:
        found.append(f"{what}: an Ed25519 signature has {SIGNATURE_BYTES} bytes, this one {len(raw)}")
        return None
    return raw
