"""The worker's certificate signer: the engine says a certificate is due, this signs it.

The signing key is an Ed25519 private key in a PEM file (``EBBTIDE_CERTIFICATE_KEY``, default
``<state dir>/keys/certificate-signing.key``). A worker that finds no key makes one on its
first start, with the public key beside it (``.pub``), and logs the key id: give that public
key to customers and auditors. Ed25519 signatures are deterministic, so a replay with the same
key gives the same certificates, byte for byte.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ebbtide import certificates
from streams.policy.calendar import iso
from streams.policy.decisions import CertificateDue

log = logging.getLogger(__name__)


class CertificateSigner:
    def __init__(self, private_pem: bytes, issuer: str) -> None:
        key = certificates.load_private_key(private_pem)  # ValueError for a wrong key
        self.private_pem = private_pem
        self.issuer = issuer
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = certificates.key_id(self.public_pem)

    @classmethod
    def from_file(cls, path: Path, issuer: str, create: bool = True) -> CertificateSigner:
        """The signer of the key at ``path``; with ``create``, a new key pair is made if missing."""
        if not path.exists() and create:
            private, public = certificates.generate_key()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(private)
            path.with_suffix(".pub").write_bytes(public)
            log.warning(
                "made a new certificate signing key %s (public key %s)",
                certificates.key_id(public),
                path.with_suffix(".pub"),
            )
        try:
            return cls(path.read_bytes(), issuer)
        except OSError as exc:
            raise ValueError(f"certificate signing key {path}: {exc.strerror}") from None

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
            )
            for c in due.copies
        ]
        certificate = certificates.build(
            due.subject_id, entries, iso(due.issued_at), due.policy_version, self.issuer, self.key_id
        )
        return certificates.sign(certificate, self.private_pem)

    def encode(self, due: CertificateDue) -> bytes:
        return json.dumps(self.document(due), sort_keys=True, separators=(",", ":")).encode()
