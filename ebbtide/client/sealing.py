"""Which fields of a lifecycle event are personal, and sealing them before the event is sent.

Every string field of the event schema is classified here (a unit test fails when the schema
gets one that is not): ``CLEAR`` for the pipeline's own pseudonymous ids and vocabulary (the
subject id, event ids, ids of services, invoices, payments, certificates, agreements, requests,
restrictions, holds and breaches, store ids, consent purposes, the producer), which the worker
and the auditors read as they are; ``SEALED`` for the person's data (a store's record key);
``DOMAIN`` for domain names (sealed, their top-level domain kept in clear for the store map's
per-TLD registries); ``RECORDS`` for a legal hold's record ids (``store/category/key``: the key is
sealed); ``REF`` for a record's ref, which is as personal as what it refers to: sealed (as a
domain) unless the category's rule follows it to a clear field (an invoice id, a consent purpose),
where the engine must match it to that field's value.

Sealing is deterministic per subject (:mod:`ebbtide.runtime.tokens`), so the engine matches equal
values without seeing them. A value that is already a token is left as it is (publishing again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.runtime.tokens import MAX_VALUE, DataKey, is_token

if TYPE_CHECKING:
    from ebbtide.streams.policy.rules import Policy

How = Literal["CLEAR", "SEALED", "DOMAIN", "RECORDS", "REF"]

ENVELOPE: dict[str, How] = {
    "event_id": "CLEAR",
    "subject_id": "CLEAR",
    "producer": "CLEAR",
    "signer_key_id": "CLEAR",  # a legal hold signer's key id
}
PAYLOAD: dict[str, dict[str, How]] = {
    "ServiceOrdered": {"service_id": "CLEAR"},
    "ServiceCancelled": {"service_id": "CLEAR"},
    "InvoiceIssued": {"invoice_id": "CLEAR"},
    "PaymentRecorded": {"payment_id": "CLEAR"},
    "RecordWritten": {"store": "CLEAR", "record_key": "SEALED", "ref": "REF"},
    "DomainRegistered": {"domain": "DOMAIN"},
    "DomainReleased": {"domain": "DOMAIN"},
    "CertificateIssued": {"certificate_id": "CLEAR"},
    "CertificateRevoked": {"certificate_id": "CLEAR"},
    "HostingAgreementTerminated": {"agreement_id": "CLEAR"},
    "ExportOffered": {"agreement_id": "CLEAR"},
    "ConsentGiven": {"purpose": "CLEAR"},
    "ConsentWithdrawn": {"purpose": "CLEAR"},
    "ErasureRequested": {"request_id": "CLEAR"},
    "ErasureVerified": {"request_id": "CLEAR"},
    "ErasureRefused": {"request_id": "CLEAR"},
    "ErasureWithdrawn": {"request_id": "CLEAR"},
    "RestrictionRequested": {"restriction_id": "CLEAR"},
    "RestrictionLifted": {"restriction_id": "CLEAR"},
    "LegalHoldPlaced": {"hold_id": "CLEAR", "categories": "CLEAR", "records": "RECORDS"},
    "LegalHoldReleased": {"hold_id": "CLEAR"},
    "BreachDetected": {"breach_id": "CLEAR"},
    "BreachNotified": {"breach_id": "CLEAR"},
}
# The field of each event type that becomes its fact's ref (streams/engine/facts.py), for REF.
REF_SOURCE: dict[str, str] = {
    "ServiceOrdered": "service_id",
    "ServiceCancelled": "service_id",
    "InvoiceIssued": "invoice_id",
    "PaymentRecorded": "payment_id",
    "DomainRegistered": "domain",
    "DomainReleased": "domain",
    "CertificateIssued": "certificate_id",
    "CertificateRevoked": "certificate_id",
    "HostingAgreementTerminated": "agreement_id",
    "ExportOffered": "agreement_id",
    "ConsentGiven": "purpose",
    "ConsentWithdrawn": "purpose",
}


class Keys(Protocol):
    """Where a publisher gets a subject's data key (the key store)."""

    def current(self, subject_id: str) -> DataKey: ...


class NoKeyStore:
    """Settings without a key store: an event with a personal value cannot be sealed, so it is
    refused (a one-line SettingsError naming the setting); other events go as they are."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def current(self, subject_id: str) -> DataKey:
        self.settings.require_keys_dsn()  # raises, naming EBBTIDE_KEYS_DSN
        raise AssertionError("unreachable")


def key_store(settings: Settings) -> Keys:
    """The key store of ``settings`` (``EBBTIDE_KEYS_DSN``, else ``EBBTIDE_PG_DSN``)."""
    if not (settings.keys_dsn or settings.pg_dsn):
        return NoKeyStore(settings)
    try:
        from ebbtide.sinks.keys.store import KeyStore
    except ModuleNotFoundError as exc:  # `pip install ebbtide` alone: the client without psycopg2
        raise SettingsError(
            f"EBBTIDE_KEYS_DSN (or EBBTIDE_PG_DSN): the key store needs {exc.name}: "
            "pip install 'ebbtide[keys]'"
        ) from None

    return KeyStore(settings.require_keys_dsn())


class Unsealable(ValueError):
    """A personal value too long to seal; the message names the field, never the value."""


def ref_is_sealed(policy: Policy | None, category: str) -> bool:
    """Whether a record of ``category`` has its ref sealed: unless its rule follows the ref to a
    field kept clear (the engine must match them)."""
    rule = policy.needs_ref(category) if policy is not None else None
    if rule is None:
        return True
    sources = (PAYLOAD.get(start, {}).get(REF_SOURCE.get(start, ""), "CLEAR") for start in rule.starts)
    return any(how != "CLEAR" for how in sources)


def seal_record(record: dict[str, Any], keys: Keys, policy: Policy | None) -> dict[str, Any]:
    """``record`` (Avro form) with its personal values sealed under its subject's key."""
    branch, payload = record["payload"]
    kind = branch.rsplit(".", 1)[-1]
    fields = PAYLOAD.get(kind, {})
    if not any(how != "CLEAR" and payload.get(name) for name, how in fields.items()):
        return record
    key = keys.current(record["subject_id"])
    out = dict(payload)
    for name, how in fields.items():
        value = payload.get(name)
        if not value or how == "CLEAR":
            continue
        if how == "REF" and not ref_is_sealed(policy, str(payload["category"]).lower()):
            continue
        try:
            if how == "RECORDS":
                out[name] = [_seal_record_id(key, v) for v in value]
            else:
                out[name] = _seal(key, value, domain=how in ("DOMAIN", "REF"))
        except ValueError as exc:
            raise Unsealable(f"field payload.{name}: {exc}") from None
    return {**record, "payload": (branch, out)}


def _seal(key: DataKey, value: str, domain: bool) -> str:
    return value if is_token(value) else key.seal(value, domain=domain)


def _seal_record_id(key: DataKey, record_id: str) -> str:
    """``store/category/key`` with the key sealed (a malformed id is sealed whole)."""
    parts = record_id.split("/", 2)
    if len(parts) != 3:
        return _seal(key, record_id, domain=False)
    store, category, record_key = parts
    return f"{store}/{category}/{_seal(key, record_key, domain=False)}"


__all__ = [
    "ENVELOPE",
    "MAX_VALUE",
    "PAYLOAD",
    "Keys",
    "Unsealable",
    "key_store",
    "ref_is_sealed",
    "seal_record",
]
