"""Deletion certificates (seed 003 § 13, written confirmation): signed, verifiable offline, tamper-evident."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebbtide.runtime.authenticity import RECEIPT, MessageSigner, millis
from ebbtide.runtime.keys import generate_key, key_id, load_private_key, load_public_key
from ebbtide.streams.certificates import (
    FORMAT_V1,
    Certificate,
    DeletionEntry,
    StoreReceipt,
    build,
    canonical_bytes,
    dumps,
    loads,
    sign,
    verify,
)
from ebbtide.tools.certificates import render_html

PRIVATE, PUBLIC = generate_key()
KEY_ID = key_id(PUBLIC)
OTHER_PRIVATE, OTHER_PUBLIC = generate_key()
OTHER_KEY_ID = key_id(OTHER_PUBLIC)

CUSTOMER_ROW = DeletionEntry(
    store="customer_db",
    category="client",
    record="customers/cust-42",
    command_id="cmd-0001",
    rule_id="account",
    deadline="2027-03-01T00:00:00Z",
    ordered_at="2027-03-01T00:05:00Z",
    outcome="DELETED",
    rows=1,
    executed_at="2027-03-01T00:05:02Z",
)
INVOICE_ROW = DeletionEntry(
    store="customer_db",
    category="invoice",
    record="invoices/inv-2019-17",
    command_id="cmd-0002",
    rule_id="bookkeeping",
    deadline="2025-01-01T00:00:00Z",
    ordered_at="2025-01-01T00:00:00Z",
    outcome="DELETED",
    rows=3,
    executed_at="2025-01-01T00:00:04Z",
)
MAIL_ALREADY_GONE = DeletionEntry(
    store="mail_archive",
    category="correspondence",
    record="tickets/t-881",
    command_id="cmd-0003",
    rule_id="correspondence",
    deadline="2027-03-01T00:00:00Z",
    ordered_at="2027-03-01T00:05:00Z",
    outcome="NOT_FOUND",
    rows=0,
    executed_at="2027-03-01T00:05:09Z",
)
ENTRIES = (CUSTOMER_ROW, INVOICE_ROW, MAIL_ALREADY_GONE)


def certificate(entries: tuple[DeletionEntry, ...] = ENTRIES, key: str = KEY_ID) -> Certificate:
    return build(
        subject_id="cust-42",
        entries=entries,
        issued_at="2027-03-01T00:06:00Z",
        policy_version="v1+ec1092b3d5a0",
        issuer="PRO ISP AS via Ebbtide",
        key_id=key,
    )


def signed() -> dict[str, Any]:
    return sign(certificate(), PRIVATE)


def entry_of(document: dict[str, Any], record: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = document["certificate"]["entries"]
    return next(e for e in entries if e["record"] == record)


def has(reasons: list[str], words: str) -> bool:
    return any(words in reason for reason in reasons)


# --- signing and verifying -----------------------------------------------------------------------


def test_a_signed_certificate_verifies_with_the_issuers_public_key() -> None:
    assert verify(signed(), PUBLIC) == []


def test_the_signed_document_survives_a_round_trip_through_its_json_file() -> None:
    assert verify(loads(dumps(signed())), PUBLIC) == []


def test_the_document_lists_every_store_command_receipt_and_time() -> None:
    document = signed()
    assert document["signature"]["algorithm"] == "Ed25519"
    assert document["signature"]["key_id"] == KEY_ID == document["certificate"]["key_id"]
    assert entry_of(document, "invoices/inv-2019-17") == {
        "store": "customer_db",
        "category": "invoice",
        "record": "invoices/inv-2019-17",
        "command_id": "cmd-0002",
        "rule_id": "bookkeeping",
        "deadline": "2025-01-01T00:00:00Z",
        "ordered_at": "2025-01-01T00:00:00Z",
        "outcome": "DELETED",
        "rows": 3,
        "executed_at": "2025-01-01T00:00:04Z",
        "receipt": None,  # made without the store's receipt (see "store receipts" below)
    }
    assert document["certificate"]["format"] == "ebbtide-deletion-certificate/2"


def test_a_certificate_naming_another_key_is_not_signed() -> None:
    with pytest.raises(ValueError, match="signing key"):
        sign(certificate(key=OTHER_KEY_ID), PRIVATE)


def test_key_id_is_the_start_of_the_sha256_of_the_raw_public_key() -> None:
    raw = load_public_key(PUBLIC).public_bytes_raw()
    assert hashlib.sha256(raw).hexdigest()[:16] == KEY_ID
    derived = (
        load_private_key(PRIVATE).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    assert key_id(derived) == KEY_ID
    assert KEY_ID != OTHER_KEY_ID


def test_keys_are_pem_pkcs8_and_subject_public_key_info() -> None:
    assert PRIVATE.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert PUBLIC.startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError):
        load_public_key(PRIVATE)
    with pytest.raises(ValueError):
        load_private_key(b"not a key")


# --- tampering -----------------------------------------------------------------------------------


def tampered(change: Any) -> list[str]:
    document = signed()
    change(document)
    return verify(document, PUBLIC)


def test_a_changed_row_count_fails() -> None:
    def more_rows(d: dict[str, Any]) -> None:
        entry_of(d, "invoices/inv-2019-17")["rows"] = 4

    assert has(tampered(more_rows), "bad signature")


def test_a_changed_execution_time_fails() -> None:
    def later(d: dict[str, Any]) -> None:
        entry_of(d, "customers/cust-42")["executed_at"] = "2027-03-02T00:05:02Z"

    assert has(tampered(later), "bad signature")


def test_a_certificate_moved_to_another_subject_fails() -> None:
    def other_subject(d: dict[str, Any]) -> None:
        d["certificate"]["subject_id"] = "cust-43"

    assert has(tampered(other_subject), "bad signature")


def test_a_dropped_entry_fails() -> None:
    def drop_mail(d: dict[str, Any]) -> None:
        d["certificate"]["entries"] = [e for e in d["certificate"]["entries"] if e["store"] != "mail_archive"]

    assert has(tampered(drop_mail), "bad signature")


def test_swapping_receipts_between_records_fails() -> None:
    def swap(d: dict[str, Any]) -> None:
        first, second = (entry_of(d, "customers/cust-42"), entry_of(d, "invoices/inv-2019-17"))
        first["record"], second["record"] = second["record"], first["record"]

    assert has(tampered(swap), "bad signature")


def test_listing_the_same_entries_in_another_order_changes_nothing() -> None:
    def reverse(d: dict[str, Any]) -> None:
        d["certificate"]["entries"].reverse()

    assert tampered(reverse) == []


def test_another_keys_signature_swapped_in_fails() -> None:
    forged = sign(replace(certificate(), key_id=OTHER_KEY_ID), OTHER_PRIVATE)["signature"]

    def swap_value(d: dict[str, Any]) -> None:
        d["signature"]["value"] = forged["value"]

    def swap_whole(d: dict[str, Any]) -> None:
        d["signature"] = forged

    assert has(tampered(swap_value), "bad signature")
    assert has(tampered(swap_whole), "key id mismatch")


def test_a_certificate_re_signed_by_a_stranger_fails_against_the_issuers_key() -> None:
    forged = sign(replace(certificate(), key_id=OTHER_KEY_ID), OTHER_PRIVATE)
    assert verify(forged, OTHER_PUBLIC) == []
    assert has(verify(forged, PUBLIC), "key id mismatch")


def test_the_wrong_public_key_fails_with_a_key_id_reason() -> None:
    reasons = verify(signed(), OTHER_PUBLIC)
    assert has(reasons, f"signed with key '{KEY_ID}' but the public key given is '{OTHER_KEY_ID}'")


def test_an_entry_that_was_not_answered_fails_even_if_edited_in() -> None:
    def failed(d: dict[str, Any]) -> None:
        entry_of(d, "tickets/t-881")["outcome"] = "FAILED"

    reasons = tampered(failed)
    assert has(reasons, "not answered")
    assert has(reasons, "bad signature")


def test_a_field_added_after_signing_is_refused_because_it_is_not_signed() -> None:
    def note(d: dict[str, Any]) -> None:
        d["certificate"]["note"] = "all good"

    assert has(tampered(note), "unexpected field 'note'")


def test_a_signature_in_another_encoding_of_the_same_bytes_is_refused() -> None:
    def unpadded(d: dict[str, Any]) -> None:
        d["signature"]["value"] = d["signature"]["value"].rstrip("=")

    assert has(tampered(unpadded), "bad signature")


def test_a_signature_character_changed_only_in_its_unused_bits_is_refused() -> None:
    # 64 bytes in base64: the last character before "==" carries 2 bits of the signature and 4 unused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def same_bytes_other_text(d: dict[str, Any]) -> None:
        value = d["signature"]["value"]
        last = alphabet[alphabet.index(value[-3]) ^ 1]
        d["signature"]["value"] = value[:-3] + last + "=="
        assert base64.b64decode(d["signature"]["value"]) == base64.b64decode(value)

    assert has(tampered(same_bytes_other_text), "not canonical base64")


# --- canonical bytes -----------------------------------------------------------------------------


def test_the_same_certificate_built_twice_has_the_same_bytes() -> None:
    assert canonical_bytes(certificate()) == canonical_bytes(certificate())


def test_the_bytes_do_not_depend_on_the_order_the_entries_were_given() -> None:
    given_order = canonical_bytes(certificate(ENTRIES))
    reversed_order = canonical_bytes(certificate(tuple(reversed(ENTRIES))))
    unsorted = Certificate("cust-42", "2027-03-01T00:06:00Z", "v1+ec1092b3d5a0", ENTRIES[::-1], "x", KEY_ID)
    assert given_order == reversed_order
    assert canonical_bytes(unsorted) == canonical_bytes(replace(unsorted, entries=ENTRIES))


def test_the_bytes_are_compact_sorted_utf8_json_with_entries_by_store_and_record() -> None:
    data = canonical_bytes(certificate())
    assert b" " not in data.replace(b"PRO ISP AS via Ebbtide", b"")
    parsed = json.loads(data)
    assert data == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert [(e["store"], e["record"]) for e in parsed["entries"]] == [
        ("customer_db", "customers/cust-42"),
        ("customer_db", "invoices/inv-2019-17"),
        ("mail_archive", "tickets/t-881"),
    ]


def test_non_ascii_text_is_signed_as_utf8() -> None:
    entry = replace(CUSTOMER_ROW, record="kunder/Ærlig-Østby")
    document = sign(certificate((entry,)), PRIVATE)
    assert "kunder/Ærlig-Østby".encode() in canonical_bytes(certificate((entry,)))
    assert verify(loads(dumps(document).encode("utf-8")), PUBLIC) == []


# --- malformed documents -------------------------------------------------------------------------


def test_a_document_without_its_signature_is_reported_not_raised() -> None:
    document = signed()
    del document["signature"]
    assert has(verify(document, PUBLIC), "missing field 'signature'")


def test_an_entry_missing_a_field_is_reported_naming_the_field() -> None:
    document = signed()
    del entry_of(document, "tickets/t-881")["executed_at"]
    assert has(verify(document, PUBLIC), "certificate.entries[2]: missing field 'executed_at'")


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "certificate",
        {},
        {"certificate": None, "signature": None},
        {"certificate": {"entries": "none"}, "signature": {"value": 7}},
        {"certificate": {"entries": [None, {}]}, "signature": {"value": "####"}},
    ],
)
def test_any_malformed_document_is_reported_not_raised(document: Any) -> None:
    reasons = verify(document, PUBLIC)
    assert reasons
    assert all(reason.startswith(("malformed document", "bad signature")) for reason in reasons)


def test_wrong_types_are_named() -> None:
    document = signed()
    entry_of(document, "customers/cust-42")["rows"] = "1"
    document["certificate"]["issuer"] = None
    reasons = verify(document, PUBLIC)
    assert has(reasons, "certificate.entries[0].rows: expected an integer, got str")
    assert has(reasons, "certificate.issuer: expected a string, got NoneType")


def test_a_file_with_a_duplicate_field_is_refused_before_verifying() -> None:
    text = dumps(signed()).replace(
        '"subject_id": "cust-42"', '"subject_id": "cust-42", "subject_id": "cust-43"'
    )
    with pytest.raises(ValueError, match="duplicate field 'subject_id'"):
        loads(text)


def test_an_unusable_public_key_raises_because_nothing_could_be_checked() -> None:
    with pytest.raises(ValueError, match="public key"):
        verify(signed(), b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


# --- building ------------------------------------------------------------------------------------


def test_build_refuses_an_entry_that_is_not_answered() -> None:
    with pytest.raises(ValueError, match="not answered: outcome 'FAILED'"):
        certificate((CUSTOMER_ROW, replace(MAIL_ALREADY_GONE, outcome="FAILED")))


def test_an_empty_log_partition_dropped_is_a_deletion_of_no_rows() -> None:
    assert certificate((replace(CUSTOMER_ROW, rows=0),)).entries[0].rows == 0


def test_build_refuses_a_certificate_with_no_entries() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        certificate(())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (replace(CUSTOMER_ROW, outcome="ANONYMISED", rows=0), "ANONYMISED with 0 rows"),
        (replace(CUSTOMER_ROW, outcome="EXPIRES", rows=0), "EXPIRES with 0 rows"),
        (replace(MAIL_ALREADY_GONE, rows=2), "NOT_FOUND with 2 rows"),
        (replace(CUSTOMER_ROW, rows=-1), "rows: must be a whole number"),
        (replace(CUSTOMER_ROW, executed_at="2027-03-01T01:05:02+01:00"), "executed_at: not in UTC"),
        (replace(CUSTOMER_ROW, deadline="2027-03-01T00:00:00"), "deadline: not in UTC"),
        (replace(CUSTOMER_ROW, ordered_at="soon"), "ordered_at: not an ISO-8601 timestamp"),
        (replace(CUSTOMER_ROW, command_id=""), "command_id: empty"),
    ],
)
def test_build_refuses_an_inconsistent_receipt(entry: DeletionEntry, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        certificate((entry,))


def test_build_refuses_two_entries_for_one_record() -> None:
    with pytest.raises(ValueError, match="more than one entry"):
        certificate((CUSTOMER_ROW, replace(CUSTOMER_ROW, command_id="cmd-0009")))


# --- store receipts ------------------------------------------------------------------------------

STORE_KEYS = {store: MessageSigner(generate_key()[0]) for store in ("customer_db", "mail_archive")}
STORE_PUBLIC = {store: signer.public_pem for store, signer in STORE_KEYS.items()}


def receipt_of(entry: DeletionEntry, signer: MessageSigner | None = None, **changes: Any) -> StoreReceipt:
    """The receipt ``entry``'s store signed for it (its record is <store>/<category>/<key>)."""
    signed_by = signer or STORE_KEYS[entry.store]
    datum = {
        "command_id": entry.command_id,
        "subject_id": "cust-42",
        "store": entry.store,
        "category": entry.category,
        "record_key": entry.record.split("/", 2)[2],
        "outcome": entry.outcome,
        "rows": entry.rows,
        "reason": "already gone" if entry.outcome == "NOT_FOUND" else None,
        "executed_at": datetime.fromisoformat(entry.executed_at).replace(microsecond=432),
    }
    sent = signed_by.sign(RECEIPT, datum)  # as the sink puts it on the wire
    fields = {**datum, "executed_at": millis(datum["executed_at"]), **changes}
    return StoreReceipt(**fields, signer_key_id=sent["signer_key_id"], signature=b64(sent["signature"]))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


CLIENT = replace(CUSTOMER_ROW, record="customer_db/client/42")
TICKET = replace(MAIL_ALREADY_GONE, record="mail_archive/correspondence/t-881")
RECEIPTED = (replace(CLIENT, receipt=receipt_of(CLIENT)), replace(TICKET, receipt=receipt_of(TICKET)))


def with_receipts(entries: tuple[DeletionEntry, ...] = RECEIPTED) -> dict[str, Any]:
    return sign(certificate(entries), PRIVATE)


def test_each_entry_embeds_its_stores_receipt_exactly_as_the_store_signed_it() -> None:
    document = with_receipts()
    embedded = entry_of(document, "customer_db/client/42")["receipt"]
    assert set(embedded) == {"signed", "signer_key_id", "signature"}
    assert embedded["signer_key_id"] == STORE_KEYS["customer_db"].key_id
    assert embedded["signed"]["format"] == "ebbtide-deletion-receipt/1"
    # The bytes the store signed are the canonical JSON of the embedded object, ms included.
    rebuilt = json.dumps(embedded["signed"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signed_bytes = RECEIPTED[0].receipt.signed_bytes()  # type: ignore[union-attr]
    assert rebuilt.encode() == signed_bytes
    assert embedded["signed"]["executed_at"] % 1000 == 0  # the entry's second, the store's millisecond
    load_public_key(STORE_PUBLIC["customer_db"]).verify(base64.b64decode(embedded["signature"]), signed_bytes)


def test_a_certificate_with_receipts_verifies_with_and_without_the_store_keys() -> None:
    document = with_receipts()
    assert verify(document, PUBLIC) == []
    assert verify(document, PUBLIC, STORE_PUBLIC) == []
    assert verify(loads(dumps(document)), PUBLIC, STORE_PUBLIC) == []


def test_the_same_receipts_give_the_same_certificate_bytes() -> None:
    again = tuple(replace(e, receipt=receipt_of(e)) for e in (TICKET, CLIENT))
    assert dumps(with_receipts()) == dumps(with_receipts(again))


def test_a_tampered_receipt_fails_store_verification_naming_the_entry() -> None:
    # The worker's own signature is good: only the store's key shows the store never said this.
    forged = replace(RECEIPTED[0], receipt=receipt_of(CLIENT, STORE_KEYS["mail_archive"]))
    assert forged.receipt is not None
    forged = replace(forged, receipt=replace(forged.receipt, signer_key_id=STORE_KEYS["customer_db"].key_id))
    document = with_receipts((forged, RECEIPTED[1]))
    assert verify(document, PUBLIC) == []
    reasons = verify(document, PUBLIC, STORE_PUBLIC)
    assert reasons == [
        "entry 'customer_db'/'customer_db/client/42': bad store receipt signature: the receipt does not "
        "match its store's signature (it was changed after signing, or signed by another key)"
    ]


def test_a_receipt_edited_in_the_file_fails_both_signatures() -> None:
    document = with_receipts()
    entry_of(document, "mail_archive/correspondence/t-881")["receipt"]["signed"]["reason"] = "deleted"
    reasons = verify(document, PUBLIC, STORE_PUBLIC)
    assert has(reasons, "bad signature: the certificate's content does not match")
    assert has(
        reasons, "entry 'mail_archive'/'mail_archive/correspondence/t-881': bad store receipt signature"
    )
    assert not has(reasons, "customer_db/client/42")


def test_a_receipt_signed_by_another_stores_key_names_both_keys() -> None:
    document = with_receipts((replace(CLIENT, receipt=receipt_of(CLIENT, STORE_KEYS["mail_archive"])),))
    (reason,) = verify(document, PUBLIC, STORE_PUBLIC)
    assert reason == (
        f"entry 'customer_db'/'customer_db/client/42': store receipt signed with key "
        f"'{STORE_KEYS['mail_archive'].key_id}' but the key of store 'customer_db' is "
        f"'{STORE_KEYS['customer_db'].key_id}'"
    )


def test_a_store_without_a_key_or_an_entry_without_a_receipt_is_reported() -> None:
    document = with_receipts((RECEIPTED[0], TICKET))
    assert verify(document, PUBLIC) == []
    reasons = verify(document, PUBLIC, {"mail_archive": STORE_PUBLIC["mail_archive"]})
    assert reasons == [
        "entry 'customer_db'/'customer_db/client/42': store receipt not checked: "
        "no public key for store 'customer_db'",
        "entry 'mail_archive'/'mail_archive/correspondence/t-881': no store receipt embedded, "
        "so the store's word cannot be checked",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": 2}, "its rows is not the entry's"),
        ({"outcome": "NOT_FOUND", "rows": 0}, "its outcome is not the entry's"),
        ({"subject_id": "cust-43"}, "its subject_id is not the entry's"),
        ({"record_key": "43"}, "its record_key is not the entry's record"),
        ({"command_id": "cmd-9"}, "its command_id is not the entry's"),
        ({"executed_at": 0}, "its executed_at is not the entry's"),
    ],
)
def test_build_refuses_a_receipt_that_says_something_else_than_its_entry(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        certificate((replace(CLIENT, receipt=receipt_of(CLIENT, **change)),))


def test_a_malformed_embedded_receipt_is_reported_not_raised() -> None:
    document = with_receipts()
    embedded = entry_of(document, "customer_db/client/42")["receipt"]
    embedded["signed"]["rows"] = "1"
    embedded["extra"] = True
    reasons = verify(document, PUBLIC, STORE_PUBLIC)
    assert has(reasons, "certificate.entries[0].receipt: unexpected field 'extra'")


def test_a_format_1_certificate_still_verifies_but_proves_no_stores_word() -> None:
    old = replace(certificate(), format=FORMAT_V1)
    document = sign(old, PRIVATE)
    assert document["certificate"]["format"] == FORMAT_V1
    assert "receipt" not in document["certificate"]["entries"][0]
    assert verify(document, PUBLIC) == []
    assert verify(document, PUBLIC, STORE_PUBLIC) == [
        f"no store receipts: a certificate of format '{FORMAT_V1}' embeds none, "
        "so only the issuer's word can be checked"
    ]
    entry_of(document, "invoices/inv-2019-17")["receipt"] = None
    assert has(verify(document, PUBLIC), "unexpected field 'receipt'")


def test_the_html_page_names_each_receipts_store_key() -> None:
    page = render_html(with_receipts())
    assert STORE_KEYS["customer_db"].key_id in page
    assert "--store-keys DIR" in page


# --- HTML ----------------------------------------------------------------------------------------


def test_the_html_page_shows_every_entry_and_how_to_verify() -> None:
    document = signed()
    page = render_html(document)
    assert "<title>Deletion certificate</title>" in page
    for entry in ENTRIES:
        assert entry.store in page
        assert entry.record in page
        assert entry.command_id in page
    for fact in ("cust-42", "PRO ISP AS via Ebbtide", "2027-03-01T00:06:00Z", "v1+ec1092b3d5a0", KEY_ID):
        assert fact in page
    assert document["signature"]["value"] in page
    assert "ebbtide certificate verify FILE --public-key KEY.pem" in page


def test_the_html_page_escapes_a_hostile_record_key() -> None:
    hostile = replace(CUSTOMER_ROW, record='<script>alert("x")</script>')
    page = render_html(sign(certificate((hostile, INVOICE_ROW)), PRIVATE))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_the_html_page_loads_nothing_from_elsewhere() -> None:
    page = render_html(signed())
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    assert "src=" not in page


def test_the_html_page_refuses_a_malformed_document() -> None:
    with pytest.raises(ValueError, match="missing field 'signature'"):
        render_html({"certificate": signed()["certificate"]})


# --- property ------------------------------------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
TIME = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
)


@st.composite
def entries(draw: st.DrawFn) -> DeletionEntry:
    outcome = draw(st.sampled_from(("DELETED", "NOT_FOUND")))
    return DeletionEntry(
        store=draw(TEXT),
        category=draw(TEXT),
        record=draw(TEXT),
        command_id=draw(TEXT),
        rule_id=draw(TEXT),
        deadline=draw(TIME),
        ordered_at=draw(TIME),
        outcome=outcome,
        rows=draw(st.integers(1, 10**9)) if outcome == "DELETED" else 0,
        executed_at=draw(TIME),
    )


def string_fields(document: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (object, field) of the document holding a string, the signature's included."""
    holders = [document["certificate"], document["signature"], *document["certificate"]["entries"]]
    return [(holder, name) for holder in holders for name, value in holder.items() if isinstance(value, str)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entry_list=st.lists(entries(), min_size=1, max_size=5, unique_by=lambda e: (e.store, e.record)),
    subject=TEXT,
    issued_at=TIME,
    data=st.data(),
)
def test_signed_certificates_verify_and_any_one_character_changed_fails(
    entry_list: list[DeletionEntry], subject: str, issued_at: str, data: st.DataObject
) -> None:
    document = sign(build(subject, entry_list, issued_at, "v1+ec1092b3d5a0", "PRO ISP AS", KEY_ID), PRIVATE)
    assert verify(document, PUBLIC) == []
    assert verify(loads(dumps(document)), PUBLIC) == []

    flipped = copy.deepcopy(document)
    value = flipped["signature"]["value"]
    at = data.draw(st.integers(0, len(value) - 1), label="signature position")
    other = data.draw(st.characters(codec="ascii").filter(lambda c: c != value[at]), label="replacement")
    flipped["signature"]["value"] = value[:at] + other + value[at + 1 :]
    assert verify(flipped, PUBLIC) != []

    edited = copy.deepcopy(document)
    holder, name = data.draw(st.sampled_from(string_fields(edited)), label="field")
    text: str = holder[name]
    at = data.draw(st.integers(0, len(text) - 1), label="character position")
    other = data.draw(st.characters(exclude_categories=["Cs"]).filter(lambda c: c != text[at]))
    holder[name] = text[:at] + other + text[at + 1 :]
    assert verify(edited, PUBLIC) != []
