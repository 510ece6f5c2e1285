"""Sealing personal values before an event is sent: moved to :mod:`ebbtide.client.sealing` (the
publishing client); these names stay importable from here."""

from ebbtide.client.sealing import (
    ENVELOPE,
    MAX_VALUE,
    PAYLOAD,
    REF_SOURCE,
    Keys,
    NoKeyStore,
    Unsealable,
    key_store,
    ref_is_sealed,
    seal_record,
)

__all__ = [
    "ENVELOPE",
    "MAX_VALUE",
    "PAYLOAD",
    "REF_SOURCE",
    "Keys",
    "NoKeyStore",
    "Unsealable",
    "key_store",
    "ref_is_sealed",
    "seal_record",
]
