"""Reading a deletion certificate: parse a document strictly, verify its signature and its stores'
receipts. Never trusts a field it has not checked: every field present with its type, no unknown
field, the signature over the bytes rebuilt from what was parsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ebbtide.runtime import authenticity
from ebbtide.runtime.keys import key_id_of, load_public_key
from ebbtide.streams.certificates.document import (
    ALGORITHM,
    CERTIFICATE_FIELDS,
    ENTRY_FIELDS,
    ENTRY_FIELDS_V1,
    FORMAT,
    FORMAT_V1,
    FORMATS,
    RECEIPT_FIELDS,
    SIGNATURE_FIELDS,
    Certificate,
    DeletionEntry,
    StoreReceipt,
    canonical_bytes,
    entry_name,
    entry_order,
    problems,
    signature_bytes,
)


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


def parse_certificate(value: Any, found: list[str]) -> Certificate | None:
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


def parse_document(document: Any) -> tuple[Certificate, dict[str, Any]]:
    """The certificate and the signature object of a signed document, parsed strictly but not
    verified (to render it); ValueError listing what is malformed."""
    found: list[str] = []
    top = _fields(document, "document", ("certificate", "signature"), found)
    certificate = parse_certificate(top["certificate"], found) if top is not None else None
    signature = _fields(top["signature"], "signature", SIGNATURE_FIELDS, found) if top is not None else None
    if certificate is None or signature is None:
        raise ValueError("; ".join(found))
    return certificate, signature


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
    return texts.get("key_id"), signature_bytes(encoded, found) if encoded is not None else None


def verify(document: Any, public_pem: bytes, store_keys: Mapping[str, bytes] | None = None) -> list[str]:
    """[] when ``document`` is a valid certificate signed by ``public_pem``; otherwise the reasons.

    With ``store_keys`` (store id → that store's sink public key, PEM), each entry's embedded
    receipt must also be signed by its store's key: a reason names each entry that fails (no
    receipt, no key for its store, another key, a bad signature).

    Never raises on a malformed document: it is reported. An unusable public key raises
    ValueError, because then nothing could be checked.
    """
    public = load_public_key(public_pem)
    expected_id = key_id_of(public)
    found: list[str] = []
    top = _fields(document, "document", ("certificate", "signature"), found, partial=True)
    if top is None:
        return found
    certificate = parse_certificate(top["certificate"], found) if "certificate" in top else None
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
    for entry in sorted(certificate.entries, key=entry_order):
        where = entry_name(entry)
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
        store_key_id = key_id_of(key)
        if receipt.signer_key_id != store_key_id:
            found.append(
                f"{where}: store receipt signed with key {receipt.signer_key_id!r} "
                f"but the key of store {entry.store!r} is {store_key_id!r}"
            )
            continue
        raw = signature_bytes(receipt.signature, [], "")
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
