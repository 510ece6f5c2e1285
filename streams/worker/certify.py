"""The worker's certificate signer: the engine says a certificate is due, this signs it.

The signing key is an Ed25519 private key in a PEM file (``EBBTIDE_CERTIFICATE_KEY``, default
``<state dir>/keys/certificate-signing.key``). A worker that finds no key makes one on its
first start, with the public key beside it (``.pub``), and logs the key id: give that public
key to customers and auditors, and to every sink (it verifies the deletion commands the worker
signs with the same key, :mod:`ebbtide.runtime.authenticity`). Ed25519 signatures are
deterministic, so a replay with the same key gives the same certificates and commands, byte for
byte. The certificate document is :mod:`streams.certificates`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ebbtide.runtime import authenticity, keys
from ebbtide.streams import certificates
from ebbtide.streams.engine.certificate import CertificateDue, CertifiedCopy
from ebbtide.streams.policy.calendar import iso

log = logging.getLogger(__name__)


class CertificateSigner:
    def __init__(self, private_pem: bytes, issuer: str) -> None:
        key = keys.load_private_key(private_pem)  # ValueError for a wrong key
        self.private_pem = private_pem
        self.issuer = issuer
        self.public_pem = keys.public_pem_of(key)
        self.key_id = keys.key_id(self.public_pem)
        self._commands = authenticity.MessageSigner(private_pem)

    @classmethod
    def from_file(cls, path: Path, issuer: str, create: bool = True) -> CertificateSigner:
        """The signer of the key at ``path``; with ``create``, a new key pair is made if missing."""
        return cls(keys.read_or_make_key(path, "certificate signing key", create), issuer)

    def sign_command(self, record: dict[str, Any]) -> dict[str, Any]:
        """A DeleteRecord (deletion_command) signed with this key, for the sinks to verify."""
        return self._commands.sign(authenticity.COMMAND, record)

    def sign_checkpoint(self, record: dict[str, Any]) -> dict[str, Any]:
        """A chain checkpoint signed with this key, for auditors to verify (``ebbtide audit verify``)."""
        return self._commands.sign(authenticity.CHECKPOINT, record)

    def document(self, due: CertificateDue) -> dict[str, object]:
        """The signed certificate (JSON-able) for the copies the engine found all answered."""
        entries = [
            certificates.DeletionEntry(
                store=c.store,
                category=c.category,
                record=c.record,
                command_id=c.command_id,
                rule_id=c.rule_id,
                deadline=iso(c.deadline),
                ordered_at=iso(c.ordered_at),
                outcome=c.outcome,
                rows=c.rows,
                executed_at=iso(c.executed_at),
                receipt=_receipt(due.subject_id, c),
            )
            for c in due.copies
        ]
        certificate = certificates.build(
            due.subject_id, entries, iso(due.issued_at), due.policy_version, self.issuer, self.key_id
        )
        return certificates.sign(certificate, self.private_pem)

    def encode(self, due: CertificateDue) -> bytes:
        return json.dumps(self.document(due), sort_keys=True, separators=(",", ":")).encode()


def _receipt(subject_id: str, copy: CertifiedCopy) -> certificates.StoreReceipt | None:
    """The store's signed receipt for a copy, rebuilt from what the engine kept of it (the worker
    verified it when it came); None for an answer kept before receipts were embedded."""
    if copy.receipt_signature is None or copy.receipt_key_id is None:
        return None
    prefix = f"{copy.store}/{copy.category}/"  # a copy's record is <store>/<category>/<record key>
    if not copy.record.startswith(prefix):
        raise ValueError(f"copy {copy.record!r} is not a record of {copy.store}/{copy.category}")
    return certificates.StoreReceipt(
        command_id=copy.command_id,
        subject_id=subject_id,
        store=copy.store,
        category=copy.category,
        record_key=copy.record[len(prefix) :],
        outcome=copy.outcome,
        rows=copy.rows,
        reason=copy.reason,
        executed_at=copy.executed_at,
        signer_key_id=copy.receipt_key_id,
        signature=copy.receipt_signature,
    )
