"""Ed25519 keys: make a pair, load a PEM, name a key, read a key file or make it on first start.

One key format for everything that signs: the worker (deletion commands and certificates), the
sinks (receipts), the clock (ticks) and the legal hold signer (hold events). A key is named by
its id: the first 16 hex characters of the SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)


def generate_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair: (private key, unencrypted PKCS#8 PEM; public key, SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, public_pem_of(private)


def public_pem_of(private: Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``private``'s public key."""
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An unencrypted PEM Ed25519 private key; ValueError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"not an Ed25519 private key but {type(key).__name__}")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A PEM (SubjectPublicKeyInfo) Ed25519 public key; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key but {type(key).__name__}")
    return key


def key_id_of(public: Ed25519PublicKey) -> str:
    """First 16 hex characters of the SHA-256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def key_id(public_pem: bytes) -> str:
    """First 16 hex characters of the SHA-256 of the raw 32-byte public key (a PEM)."""
    return key_id_of(load_public_key(public_pem))


def read_or_make_key(path: Path, what: str, create: bool = True) -> bytes:
    """The private PEM at ``path``; made (with its ``.pub``) if missing and ``create``."""
    if not path.exists() and create:
        private, public = generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(private)
            path.with_suffix(".pub").write_bytes(public)
            log.warning("made a new %s %s (public key %s)", what, key_id(public), path.with_suffix(".pub"))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror}") from None
