"""Deletion certificates: the written confirmation of seed 003 § 13, signed with Ed25519.

When every store has answered for a subject, a certificate lists each record: the store, the
command, the rule, the deadline, when the deletion was ordered, when the store executed it, the
outcome and the number of rows, and the store's own signed receipt. It is signed with the
operator's Ed25519 key so the customer or an auditor can check it offline with the public key
alone (``ebbtide certificate verify``); with the stores' public keys too, each embedded receipt
proves its store's word, not only the worker's (``--store-keys``).

The signed document is JSON::

    {"certificate": {"format": "ebbtide-deletion-certificate/2", "subject_id": ..., "issued_at": ...,
                     "policy_version": ..., "issuer": ..., "key_id": ..., "entries": [{...}, ...]},
     "signature": {"algorithm": "Ed25519", "key_id": ..., "value": <base64 of 64 bytes>}}

Each entry's ``receipt`` is ``{"signed": <the receipt's signed content, exactly as its sink signed
it: ebbtide/authenticity.py>, "signer_key_id": ..., "signature": <base64 of 64 bytes>}``, or null
for an answer the worker kept before receipts were embedded. Certificates of format ``/1`` (no
``receipt`` field) are still verified.

The signature covers :func:`canonical_bytes` of the certificate: JSON with sorted keys, no
whitespace, UTF-8, entries sorted by (store, record). A verifier parses the certificate strictly
(every field present with its type, no unknown field), rebuilds those bytes and checks the
signature over them, so anything the verifier reads is signed.

Pure functions: no wall clock (the caller passes ``issued_at``), no I/O.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ebbtide.runtime import authenticity
from ebbtide.runtime.keys import generate_key, key_id, load_private_key, load_public_key  # noqa: F401
from ebbtide.runtime.keys import key_id_of as _key_id_of
from streams.policy.calendar import iso
from streams.policy.decisions import ANSWERED, answer_problem

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
# A receipt's signed content is ebbtide.runtime.authenticity's (imported where used: that module imports
# this one for its keys).
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


def _entry_order(entry: DeletionEntry) -> tuple[str, str, str, str, str, str, str, str, int, str, str]:
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
            _entry_dict(entry, certificate.format) for entry in sorted(certificate.entries, key=_entry_order)
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


def _entry_name(entry: DeletionEntry) -> str:
    return f"entry {entry.store!r}/{entry.record!r}"


def _signature_problem(value: str) -> str | None:
    found: list[str] = []
    _signature_bytes(value, found, "value")
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
        where = _entry_name(entry)
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
        entries=tuple(sorted(entries, key=_entry_order)),
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
    signer_id = _key_id_of(private.public_key())
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


def _fields(
    value: Any, where: str, names: tuple[str, ...], found: list[str], *, partial: bool = False
) -> dict[str, Any] | None:
    """``value`` as an object with exactly ``names``; otherwise None, with the reasons in ``found``.

    With ``partial``, an object that lacks fields or has extra ones is still returned (after the
    reasons are recorded), so the caller can go on checking the fields that are there.
    """
    if not isinstance(value, Mapping):
        found.append(f"malformed document: {where}: expected an object, got {type(value).__name__}")
        return None
    ok = True
    for name in names:
        if name not in value:
            found.append(f"malformed document: {where}: missing field {name!r}")
            ok = False
    for name in value:
        if name not in names:
            found.append(
                f"malformed document: {where}: unexpected field {str(name)!r} (it would not be signed)"
            )
            ok = False
    return dict(value) if ok or partial else None


def _string(value: Any, where: str, found: list[str]) -> str | None:
    if not isinstance(value, str):
        found.append(f"malformed document: {where}: expected a string, got {type(value).__name__}")
        return None
    return value


def _integer(value: Any, where: str, found: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        found.append(f"malformed document: {where}: expected an integer, got {type(value).__name__}")
        return None
    return value


def _parse_receipt(value: Any, where: str, found: list[str]) -> StoreReceipt | None:
    """An embedded receipt: the signed content exactly as the store signed it, its key id, its signature."""
    data = _fields(value, where, RECEIPT_FIELDS, found)
    if data is None:
        return None
    before = len(found)
    receipt_format = authenticity.FORMATS[authenticity.RECEIPT]
    names = ("format", *authenticity.SIGNED_FIELDS[authenticity.RECEIPT])
    signed = _fields(data["signed"], f"{where}.signed", names, found)
    key = _string(data["signer_key_id"], f"{where}.signer_key_id", found)
    signature = _string(data["signature"], f"{where}.signature", found)
    if signed is None:
        return None
    if signed["format"] != receipt_format:
        found.append(f"malformed document: {where}.signed.format: expected {receipt_format!r}")
    texts = {
        name: _string(signed[name], f"{where}.signed.{name}", found)
        for name in ("command_id", "subject_id", "store", "category", "record_key", "outcome")
    }
    reason = signed["reason"]
    if reason is not None:
        _string(reason, f"{where}.signed.reason", found)
    rows = _integer(signed["rows"], f"{where}.signed.rows", found)
    executed_at = _integer(signed["executed_at"], f"{where}.signed.executed_at", found)
    if len(found) > before:
        return None
    return StoreReceipt(
        rows=int(rows or 0),
        reason=reason,
        executed_at=int(executed_at or 0),
        signer_key_id=str(key),
        signature=str(signature),
        **{name: str(text) for name, text in texts.items()},
    )


def _parse_entry(value: Any, where: str, found: list[str], form: str = FORMAT) -> DeletionEntry | None:
    names = ENTRY_FIELDS_V1 if form == FORMAT_V1 else ENTRY_FIELDS
    data = _fields(value, where, names, found)
    if data is None:
        return None
    before = len(found)
    texts = {
        name: _string(data[name], f"{where}.{name}", found) for name in ENTRY_FIELDS_V1 if name != "rows"
    }
    rows = data["rows"]
    if isinstance(rows, bool) or not isinstance(rows, int):
        found.append(f"malformed document: {where}.rows: expected an integer, got {type(rows).__name__}")
    raw_receipt = data.get("receipt")
    receipt = _parse_receipt(raw_receipt, f"{where}.receipt", found) if raw_receipt is not None else None
    if len(found) > before:
        return None
    return DeletionEntry(rows=rows, receipt=receipt, **{name: str(text) for name, text in texts.items()})


def _parse_certificate(value: Any, found: list[str]) -> Certificate | None:
    data = _fields(value, "certificate", CERTIFICATE_FIELDS, found)
    if data is None:
        return None
    before = len(found)
    form = data["format"]
    if form not in FORMATS:
        found.append(
            f"malformed document: certificate.format: expected {FORMAT!r} (or {FORMAT_V1!r}), got {form!r}"
        )
        form = FORMAT
    texts = {
        name: _string(data[name], f"certificate.{name}", found)
        for name in ("subject_id", "issued_at", "policy_version", "issuer", "key_id")
    }
    raw_entries = data["entries"]
    entries: list[DeletionEntry] = []
    if not isinstance(raw_entries, list):
        found.append(
            f"malformed document: certificate.entries: expected a list, got {type(raw_entries).__name__}"
        )
    else:
        for index, raw in enumerate(raw_entries):
            entry = _parse_entry(raw, f"certificate.entries[{index}]", found, form)
            if entry is not None:
                entries.append(entry)
    if len(found) > before:
        return None
    return Certificate(
        subject_id=str(texts["subject_id"]),
        issued_at=str(texts["issued_at"]),
        policy_version=str(texts["policy_version"]),
        entries=tuple(entries),
        issuer=str(texts["issuer"]),
        key_id=str(texts["key_id"]),
        format=form,
    )


def _signature_bytes(
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


def _check_signature(value: Any, found: list[str]) -> tuple[str | None, bytes | None]:
    """(the signer's key id, the signature bytes), each None when unusable; reasons in ``found``."""
    signature = _fields(value, "signature", SIGNATURE_FIELDS, found, partial=True)
    if signature is None:
        return None, None
    texts = {
        name: _string(signature[name], f"signature.{name}", found)
        for name in SIGNATURE_FIELDS
        if name in signature
    }
    algorithm = texts.get("algorithm")
    if algorithm is not None and algorithm != ALGORITHM:
        found.append(f"bad signature: algorithm {algorithm!r}, expected {ALGORITHM!r}")
    encoded = texts.get("value")
    return texts.get("key_id"), _signature_bytes(encoded, found) if encoded is not None else None


def verify(document: Any, public_pem: bytes, store_keys: Mapping[str, bytes] | None = None) -> list[str]:
    """[] when ``document`` is a valid certificate signed by ``public_pem``; otherwise the reasons.

    With ``store_keys`` (store id → that store's sink public key, PEM), each entry's embedded
    receipt must also be signed by its store's key: a reason names each entry that fails (no
    receipt, no key for its store, another key, a bad signature).

    Never raises on a malformed document: it is reported. An unusable public key raises
    ValueError, because then nothing could be checked.
    """
    public = load_public_key(public_pem)
    expected_id = _key_id_of(public)
    found: list[str] = []
    top = _fields(document, "document", ("certificate", "signature"), found, partial=True)
    if top is None:
        return found
    certificate = _parse_certificate(top["certificate"], found) if "certificate" in top else None
    if certificate is not None and store_keys is not None:
        found.extend(verify_receipts(certificate, store_keys))
    signed_by, raw = _check_signature(top["signature"], found) if "signature" in top else (None, None)
    if signed_by is not None and signed_by != expected_id:
        found.append(
            f"key id mismatch: signed with key {signed_by!r} but the public key given is {expected_id!r}"
        )
    if certificate is None:
        return found
    if signed_by is not None and certificate.key_id != signed_by:
        found.append(
            f"key id mismatch: the certificate names key {certificate.key_id!r} "
            f"but the signature says {signed_by!r}"
        )
    found.extend(problems(certificate))
    if raw is None:
        return found
    try:
        payload = canonical_bytes(certificate)
    except UnicodeEncodeError:
        found.append(
            "bad signature: the certificate has text that cannot be encoded, so it cannot have been signed"
        )
        return found
    try:
        public.verify(raw, payload)
    except InvalidSignature:
        found.append(
            "bad signature: the certificate's content does not match its signature "
            "(it was changed after signing, or signed by another key)"
        )
    return found


def verify_receipts(certificate: Certificate, store_keys: Mapping[str, bytes]) -> list[str]:
    """Why the stores' embedded receipts do not prove the certificate's entries ([] when each is
    signed by its own store's key). ``store_keys``: store id → sink public key (PEM)."""
    if certificate.format == FORMAT_V1:
        return [
            f"no store receipts: a certificate of format {FORMAT_V1!r} embeds none, "
            "so only the issuer's word can be checked"
        ]
    found: list[str] = []
    keys: dict[str, Ed25519PublicKey | str] = {}
    for entry in sorted(certificate.entries, key=_entry_order):
        where = _entry_name(entry)
        receipt = entry.receipt
        if receipt is None:
            found.append(f"{where}: no store receipt embedded, so the store's word cannot be checked")
            continue
        if entry.store not in keys:
            pem = store_keys.get(entry.store)
            try:
                keys[entry.store] = (
                    load_public_key(pem) if pem is not None else f"no public key for store {entry.store!r}"
                )
            except ValueError:
                keys[entry.store] = f"the public key for store {entry.store!r} is not an Ed25519 public key"
        key = keys[entry.store]
        if isinstance(key, str):
            found.append(f"{where}: store receipt not checked: {key}")
            continue
        store_key_id = _key_id_of(key)
        if receipt.signer_key_id != store_key_id:
            found.append(
                f"{where}: store receipt signed with key {receipt.signer_key_id!r} "
                f"but the key of store {entry.store!r} is {store_key_id!r}"
            )
            continue
        raw = _signature_bytes(receipt.signature, [], "")
        try:
            if raw is None:
                raise InvalidSignature
            key.verify(raw, receipt.signed_bytes())
        except (InvalidSignature, UnicodeEncodeError):
            found.append(
                f"{where}: bad store receipt signature: the receipt does not match its store's signature "
                "(it was changed after signing, or signed by another key)"
            )
    return found


def store_keys_in(directory: Path) -> dict[str, bytes]:
    """The sinks' public keys in a directory, by store: ``sink-<store>.pub`` (as the worker
    trusts them, ``EBBTIDE_TRUSTED_KEYS``). OSError if the directory cannot be read."""
    prefix, suffix = "sink-", ".pub"
    return {
        path.name[len(prefix) : -len(suffix)]: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.name.startswith(prefix) and path.name.endswith(suffix) and path.is_file()
    }


# --- files --------------------------------------------------------------------------------------


def dumps(document: Mapping[str, Any]) -> str:
    """The document as a JSON file: indented, keys sorted, UTF-8 text, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate field {name!r}")
        result[name] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse a certificate file strictly: ValueError on invalid JSON, NaN/Infinity or a duplicate field
    (which another JSON reader might resolve differently from the verifier)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not a JSON document: {error}") from None


# --- HTML ---------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f23; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1.2rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.85rem;
              overflow-wrap: anywhere; }
.note { color: #57606a; font-size: 0.9rem; }
@media print { body { margin: 0; max-width: none; } }
"""


def _table_cells(entry: DeletionEntry) -> tuple[str, ...]:
    return (
        entry.store,
        entry.category,
        entry.record,
        entry.rule_id,
        entry.deadline,
        entry.ordered_at,
        entry.executed_at,
        entry.outcome,
    )


def render_html(document: Mapping[str, Any]) -> str:
    """A readable, self-contained HTML page of a signed document (it does not check the signature).

    ValueError if the document is malformed. Every value is HTML-escaped.
    """
    found: list[str] = []
    top = _fields(document, "document", ("certificate", "signature"), found)
    certificate = _parse_certificate(top["certificate"], found) if top is not None else None
    signature = _fields(top["signature"], "signature", SIGNATURE_FIELDS, found) if top is not None else None
    if certificate is None or signature is None:
        raise ValueError("cannot render: " + "; ".join(found))

    def e(value: object) -> str:
        return html.escape(str(value), quote=True)

    ordered = sorted(certificate.entries, key=_entry_order)
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td>{e(value)}</td>" for value in _table_cells(entry))
        + f'<td class="num">{e(entry.rows)}</td></tr>'
        for entry in ordered
    )
    commands = "\n".join(
        f"<tr><td>{e(entry.store)}</td><td>{e(entry.record)}</td>"
        f'<td class="mono">{e(entry.command_id)}</td>'
        f'<td class="mono">{e(entry.receipt.signer_key_id) if entry.receipt is not None else "-"}</td></tr>'
        for entry in ordered
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Deletion certificate</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Deletion certificate</h1>
<p class="note">Written confirmation that each record listed below has been deleted by the store that
held it, or was no longer held there.</p>
<dl class="facts">
<dt>Subject</dt><dd class="mono">{e(certificate.subject_id)}</dd>
<dt>Issuer</dt><dd>{e(certificate.issuer)}</dd>
<dt>Issued at</dt><dd>{e(certificate.issued_at)}</dd>
<dt>Policy version</dt><dd class="mono">{e(certificate.policy_version)}</dd>
<dt>Records</dt><dd>{len(certificate.entries)}</dd>
</dl>

<h2>Deletions</h2>
<table>
<thead><tr><th>Store</th><th>Category</th><th>Record</th><th>Rule</th><th>Deadline</th><th>Ordered</th>
<th>Deleted at</th><th>Outcome</th><th>Rows</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="note">DELETED: the store deleted the record. NOT_FOUND: the store no longer held it.
ANONYMISED: the row is kept (for bookkeeping) with its personal fields blanked. EXPIRES: the record
remains only in immutable backups (the number under Rows) and is gone when the last of them expires,
at the time under "Deleted at"; a restore of such a backup deletes it again. Times are in UTC.</p>

<h2>Deletion commands</h2>
<table>
<thead><tr><th>Store</th><th>Record</th><th>Command</th><th>Receipt signed by store key</th></tr></thead>
<tbody>
{commands}
</tbody>
</table>

<h2>Signature</h2>
<dl class="facts">
<dt>Algorithm</dt><dd>{e(signature["algorithm"])}</dd>
<dt>Key id</dt><dd class="mono">{e(signature["key_id"])}</dd>
<dt>Signature</dt><dd class="mono">{e(signature["value"])}</dd>
</dl>

<h2>How to verify</h2>
<p>This page is a readable copy. The signed certificate is the JSON file it was made from. Anyone holding
that file and the issuer's public key can check it offline, without contacting the issuer:</p>
<pre><code>ebbtide certificate verify FILE --public-key KEY.pem</code></pre>
<p>The command checks the Ed25519 signature over the certificate's content and that the key id of the
public key is {e(signature["key_id"])}. Any change to the file after signing makes verification fail.</p>
<p>Each deletion also carries its store's own signed receipt. With the stores' public keys
(<code>sink-&lt;store&gt;.pub</code> in a directory), each receipt is checked against its store's key too,
so the certificate proves each store's word, not only the issuer's:</p>
<pre><code>ebbtide certificate verify FILE --public-key KEY.pem --store-keys DIR</code></pre>
</body>
</html>
"""
