"""Sealed values: a personal value of a lifecycle event as it travels and is kept in the log.

A publisher seals each personal value of an event (a record key, a domain name, a ref that is
one) with its subject's data key before the event reaches Kafka; the worker decides on the
tokens alone, and whoever must act on a value (a sink deleting a row, ``explain``) opens it
with the subject's key from the key store (:mod:`ebbtide.sinks.keys`). Once the key is shredded,
no copy of the log can be opened again.

Format (version 1), at most :data:`MAX_TOKEN` characters::

    enc:v1:<key id>:<base64url(nonce | ciphertext | tag)>[.<top-level domain>]

- key id: 16 hex characters naming the subject's data key (a new key gets a new id);
- the body: AES-256-GCM of the UTF-8 value, without base64 padding;
- a domain name keeps its top-level domain in clear after a dot (``.no``): the store map routes a
  domain's copies by it (per-TLD registries), and a TLD is shared by millions. It is bound to the
  ciphertext as associated data, so it cannot be changed without the token failing to open.

Deterministic on purpose, a synthetic-IV construction: the nonce is the first 12 bytes of an
HMAC-SHA256 of the value (and its associated data) under a key derived from the data key, so one
subject's equal values give equal tokens and the engine can match a record's ref to the event
that ends it, or a copy announced twice, without ever seeing a value. What that leaks: whether
two sealed values *of the same subject* are equal (and, roughly, their length); nothing across
subjects, since each has its own key, and nothing of the value itself. Opening checks the GCM tag
and that the nonce is the one the value gives (a token made under another key, for another
subject or changed in any byte is refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_TOKEN = 512  # the worker's limit on one text field of an event (translate.MAX_TEXT)
_TLD = re.compile(r"^[a-z0-9-]{2,63}$")
_TOKEN = re.compile(r"^enc:v1:(?P<kid>[0-9a-f]{16}):(?P<body>[A-Za-z0-9_-]+)(?:\.(?P<tld>[a-z0-9-]{2,63}))?$")
SHREDDED = "shredded"  # what a tool shows for a value whose key is destroyed


def _max_plain(suffix: int) -> int:
    """The longest value (UTF-8 bytes) whose token, with a ``suffix`` of that many characters,
    stays within :data:`MAX_TOKEN`."""
    room = MAX_TOKEN - len(PREFIX) - 17 - suffix
    return room * 3 // 4 - NONCE_BYTES - TAG_BYTES


MAX_VALUE = _max_plain(64)  # bytes of a value that can always be sealed, domain names included (290)


class TokenError(ValueError):
    """A token that cannot be opened: malformed, another key's, or changed."""


class Shredded(TokenError):
    """The token's data key has been destroyed: the value is gone for good."""


def is_token(value: str | None) -> bool:
    return value is not None and _TOKEN.match(value) is not None


def key_id_of(value: str) -> str | None:
    """The key id a token names, None if ``value`` is not a token."""
    match = _TOKEN.match(value)
    return match["kid"] if match else None


@dataclass(frozen=True)
class DataKey:
    """One subject's data key: ``key_id`` names it in every token it made."""

    subject_id: str
    key_id: str
    secret: bytes

    def _keys(self) -> tuple[bytes, bytes]:
        derived = HKDF(hashes.SHA256(), 2 * KEY_BYTES, salt=None, info=b"ebbtide-token/1").derive(self.secret)
        return derived[:KEY_BYTES], derived[KEY_BYTES:]

    def _aad(self, tld: str | None) -> bytes:
        return f"ebbtide-token/1\x00{self.subject_id}\x00{self.key_id}\x00{tld or ''}".encode()

    def seal(self, value: str, domain: bool = False) -> str:
        """The token of ``value``; with ``domain``, its top-level domain stays in clear. A
        ValueError (its size, never the value) if the token would be over :data:`MAX_TOKEN`."""
        plain = value.encode()
        tld = _tld(value) if domain else None
        if len(plain) > _max_plain(0 if tld is None else len(tld) + 1):
            raise ValueError(f"{len(plain)} bytes, over the {MAX_VALUE} a sealed value may hold")
        enc_key, mac_key = self._keys()
        aad = self._aad(tld)
        nonce = hmac.new(mac_key, aad + b"\x00" + plain, hashlib.sha256).digest()[:NONCE_BYTES]
        body = base64.urlsafe_b64encode(nonce + AESGCM(enc_key).encrypt(nonce, plain, aad))
        return f"{PREFIX}{self.key_id}:{body.decode().rstrip('=')}" + (f".{tld}" if tld else "")

    def open(self, token: str) -> str:
        """The value sealed in ``token``; :class:`TokenError` if it is not one of this key's."""
        match = _TOKEN.match(token)
        if match is None:
            raise TokenError("not a sealed value (enc:v1:<key id>:<data>)")
        if match["kid"] != self.key_id:
            raise TokenError(f"sealed with key {match['kid']}, not {self.key_id}")
        body = match["body"]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        enc_key, mac_key = self._keys()
        aad = self._aad(match["tld"])
        try:
            plain = AESGCM(enc_key).decrypt(nonce, sealed, aad)
        except (InvalidTag, ValueError):
            raise TokenError(f"does not open with key {self.key_id}: changed, or another subject's") from None
        expected = hmac.new(mac_key, aad + b"\x00" + plain, hashlib.sha256).digest()[:NONCE_BYTES]
        if not hmac.compare_digest(nonce, expected):
            raise TokenError("its nonce is not the one its value gives: not made by a publisher")
        return plain.decode()


def _tld(value: str) -> str | None:
    """``example.co.no`` → ``no``; None when ``value`` is not a domain name (as the store map reads it)."""
    if "." not in value:
        return None
    tld = value.rstrip(".").rsplit(".", 1)[1].lower()
    return tld if _TLD.match(tld) else None
