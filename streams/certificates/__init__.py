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
it: ebbtide/runtime/authenticity.py>, "signer_key_id": ..., "signature": <base64 of 64 bytes>}``,
or null for an answer the worker kept before receipts were embedded. Certificates of format ``/1``
(no ``receipt`` field) are still verified.

The signature covers :func:`canonical_bytes` of the certificate: JSON with sorted keys, no
whitespace, UTF-8, entries sorted by (store, record). A verifier parses the certificate strictly
(every field present with its type, no unknown field), rebuilds those bytes and checks the
signature over them, so anything the verifier reads is signed.

- :mod:`~streams.certificates.document`: the content, its canonical bytes, what may be issued
  (:func:`problems`, :func:`build`) and :func:`sign`;
- :mod:`~streams.certificates.reading`: strict parsing, :func:`verify` (also each store's
  receipt), :func:`loads` and :func:`dumps` of certificate files.

The worker's signer is :mod:`streams.worker.certify`; the keys are :mod:`ebbtide.runtime.keys`;
the HTML page is :mod:`ebbtide.tools.certificates`. Pure functions: no wall clock, no I/O.
"""

from ebbtide.streams.certificates.document import (
    ALGORITHM,
    CERTIFICATE_FIELDS,
    ENTRY_FIELDS,
    ENTRY_FIELDS_V1,
    FORMAT,
    FORMAT_V1,
    FORMATS,
    RECEIPT_FIELDS,
    SIGNATURE_BYTES,
    SIGNATURE_FIELDS,
    TIME_FIELDS,
    Certificate,
    DeletionEntry,
    StoreReceipt,
    build,
    canonical_bytes,
    entry_name,
    entry_order,
    problems,
    sign,
    signature_bytes,
)
from ebbtide.streams.certificates.reading import (
    dumps,
    loads,
    parse_certificate,
    parse_document,
    verify,
    verify_receipts,
)

__all__ = [
    "ALGORITHM",
    "CERTIFICATE_FIELDS",
    "ENTRY_FIELDS",
    "ENTRY_FIELDS_V1",
    "FORMAT",
    "FORMATS",
    "FORMAT_V1",
    "RECEIPT_FIELDS",
    "SIGNATURE_BYTES",
    "SIGNATURE_FIELDS",
    "TIME_FIELDS",
    "Certificate",
    "DeletionEntry",
    "StoreReceipt",
    "build",
    "canonical_bytes",
    "dumps",
    "entry_name",
    "entry_order",
    "loads",
    "parse_certificate",
    "parse_document",
    "problems",
    "sign",
    "signature_bytes",
    "verify",
    "verify_receipts",
]
