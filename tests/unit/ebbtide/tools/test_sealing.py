"""The client seals every personal value of an event, and every string field of the event schema
is classified as personal or not."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ebbtide import bootstrap
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.tokens import DataKey, is_token
from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.tools.client import to_record
from ebbtide.tools.sealing import ENVELOPE, PAYLOAD, ref_is_sealed, seal_record


class Keys:
    def __init__(self) -> None:
        self.keys: dict[str, DataKey] = {}

    def current(self, subject_id: str) -> DataKey:
        return self.keys.setdefault(subject_id, DataKey(subject_id, os.urandom(8).hex(), os.urandom(32)))


def _strings(fields: list[dict[str, Any]]) -> set[str]:
    """Names of the fields holding text: strings, optional strings and arrays of strings."""
    out = set()
    for f in fields:
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for t in types:
            if t == "string" or (isinstance(t, dict) and t.get("type") == "array" and t["items"] == "string"):
                out.add(f["name"])
    return out


def test_every_string_field_of_the_event_schema_is_classified() -> None:
    """A new text field must be classified in tools/sealing.py (personal or not) before it ships."""
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    assert _strings(envelope["fields"]) - {"payload"} <= set(ENVELOPE), "envelope field not classified"
    assert set(ENVELOPE) <= _strings(envelope["fields"])
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    for branch in payload["type"]:
        name = branch["name"].rsplit(".", 1)[-1]
        assert _strings(branch["fields"]) == set(PAYLOAD.get(name, {})), f"{name}: fields not classified"


def event(kind: str, subject: str = "cust-7", **payload: Any) -> dict[str, Any]:
    return to_record(
        {
            "event_id": f"evt-{kind}",
            "type": kind,
            "subject_id": subject,
            "event_time": "2024-03-01T12:00:00Z",
            "producer": "crm",
            "payload": payload,
        }
    )


POLICY = bootstrap.policy(Settings())


def test_record_keys_domains_personal_refs_and_hold_records_are_sealed_ids_and_vocabulary_not() -> None:
    keys = Keys()
    sealed = seal_record(
        event(
            "RecordWritten",
            store="customer_db",
            category="domain_contact",
            record_key="k@x.no",
            ref="kari.no",
        ),
        keys,
        POLICY,
    )
    payload = sealed["payload"][1]
    assert is_token(payload["record_key"]) and is_token(payload["ref"]) and payload["ref"].endswith(".no")
    assert payload["store"] == "customer_db" and sealed["subject_id"] == "cust-7"
    key = keys.current("cust-7")
    assert key.open(payload["record_key"]) == "k@x.no" and key.open(payload["ref"]) == "kari.no"
    released = seal_record(event("DomainReleased", domain="kari.no", how="EXPIRED"), keys, POLICY)
    assert released["payload"][1]["domain"] == payload["ref"]  # the engine matches them, sealed
    invoice = seal_record(
        event("RecordWritten", store="billing_db", category="invoice", record_key="inv-row-9", ref="inv-9"),
        keys,
        POLICY,
    )["payload"][1]
    assert is_token(invoice["record_key"]) and invoice["ref"] == "inv-9"  # follows InvoiceIssued's clear id
    assert seal_record(event("InvoiceIssued", invoice_id="inv-9"), keys, POLICY)["payload"][1] == {
        "invoice_id": "inv-9"
    }
    hold = seal_record(
        event("LegalHoldPlaced", hold_id="h-1", records=["customer_db/client/42"], categories=["client"]),
        keys,
        POLICY,
    )["payload"][1]
    store, category, token = hold["records"][0].split("/", 2)
    assert (store, category, key.open(token)) == ("customer_db", "client", "42")
    assert hold["hold_id"] == "h-1" and hold["categories"] == ["client"]
    again = seal_record(sealed, keys, POLICY)
    assert again == sealed  # a token is not sealed twice


@pytest.mark.parametrize(
    ("category", "sealed"), [("domain_contact", True), ("invoice", False), ("marketing", False)]
)
def test_a_ref_is_sealed_unless_its_rule_follows_a_clear_field(category: str, sealed: bool) -> None:
    assert ref_is_sealed(POLICY, category) is sealed
