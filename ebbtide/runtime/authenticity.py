"""Signed deletion commands and receipts: no message is trusted for the topic it arrived on.

The worker signs every ``DeleteRecord`` with its Ed25519 key (the certificate signing key) and
every sink verifies it with the worker's public key before it touches its store. Each sink signs
its receipts with a key of its own and the worker verifies them with that store's public key.
Anyone who can write to Kafka can still write a command or a receipt; without the private key it
is refused, dead-lettered and counted as a security event.

What is signed is :func:`canonical_bytes` of the message's fields (never the Avro bytes, so a
reader with another schema version checks the same bytes): compact JSON, keys sorted, UTF-8, a
``format`` naming the kind of message (a command's signature is never a receipt's), timestamps as
epoch milliseconds as the wire carries them, and every field of the schema's first version. The
message carries the signature (``signature``: 64 bytes) and the signer's key id (``signer_key_id``:
the first 16 hex characters of the SHA-256 of the raw public key, as certificates name keys).
Ed25519 is deterministic: the same command signed twice is the same bytes, so a re-send or a
replay stays byte-identical.

The worker's checkpoints of the decisions' hash chains (``CHECKPOINT``: partition, seq, head,
policy version and when it was made) are signed the same way with its key (``streams.worker.chaining``).

Legal hold events (``LegalHoldPlaced``, ``LegalHoldReleased``) are signed the same way by a trusted
hold signer (the legal team's tool): the worker refuses one it cannot verify, so writing to the
events topic is not enough to place or lift a legal hold (:class:`HoldKeys`,
:func:`hold_content`). Other events carry no signature: an unsigned ``RestrictionRequested``
still suspends a subject's deletions until it is lifted (a known limitation).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ebbtide.runtime import keys
from ebbtide.runtime.canonical_json import compact_json

if TYPE_CHECKING:
    from ebbtide.runtime.settings import Settings

log = logging.getLogger(__name__)

COMMAND = "command"
RECEIPT = "receipt"
TICK = "tick"  # a clock tick, signed by the clock's key for one partition
HOLD = "hold"  # a LegalHoldPlaced or LegalHoldReleased event, signed by a trusted hold signer's key
CHECKPOINT = "checkpoint"  # a decisions partition's chain checkpoint, signed by the worker's key
FORMATS = {
    COMMAND: "ebbtide-deletion-command/1",
    RECEIPT: "ebbtide-deletion-receipt/1",
    TICK: "ebbtide-clock-tick/1",
    HOLD: "ebbtide-legal-hold/1",
    CHECKPOINT: "ebbtide-chain-checkpoint/1",
}
NAMES = {
    COMMAND: "deletion_command",
    RECEIPT: "deletion_receipt",
    TICK: "clock_tick",
    HOLD: "legal_hold",
    CHECKPOINT: "checkpoint",
}
SIGNED_FIELDS = {
    COMMAND: (
        "command_id",
        "subject_id",
        "store",
        "category",
        "record_key",
        "rule_id",
        "policy_version",
        "deadline",
        "issued_at",
    ),
    RECEIPT: (
        "command_id",
        "subject_id",
        "store",
        "category",
        "record_key",
        "outcome",
        "rows",
        "reason",
        "executed_at",
    ),
    # The partition is signed too (it is not in the message: the clock sends one tick a
    # partition): a tick moved to another partition would claim another partition's events_end.
    TICK: ("now", "events_end", "source", "partition"),
    CHECKPOINT: ("partition", "seq", "head", "policy_version", "made_at"),
}
# A legal hold event is signed over its envelope's identifying fields, its type and these fields of
# its payload (those of lifecycle_event v1): see :func:`hold_content`.
HOLD_ENVELOPE = ("event_id", "subject_id", "event_time", "producer")
HOLD_EVENTS = {
    "LegalHoldPlaced": ("hold_id", "categories", "records"),
    "LegalHoldReleased": ("hold_id",),
}
_HOLD_LISTS = frozenset({"categories", "records"})  # Avro default []: absent from a record not yet encoded
TIME_FIELDS = frozenset({"deadline", "issued_at", "executed_at", "now", "made_at"})
SIGNATURE = "signature"
KEY_ID = "signer_key_id"

# Why a message is refused: the ``kind`` label of ebbtide_security_events_total (bounded).
UNSIGNED = "unsigned"  # no signature or no key id
BAD_SIGNATURE = "bad_signature"  # the signature does not match the fields (changed after signing)
OTHER_KEY = "other_key"  # signed by a key that is not the one trusted for this message
NO_TRUSTED_KEY = "no_trusted_key"  # no public key for the receipt's store (or no hold signer's at all)
NOT_ISSUED = "not_issued"  # a receipt for a command the worker never issued for that copy
KINDS = (UNSIGNED, BAD_SIGNATURE, OTHER_KEY, NO_TRUSTED_KEY, NOT_ISSUED)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STORE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


class Refused(ValueError):
    """A message that failed verification. ``kind`` is one of :data:`KINDS`; ``reason`` names no value."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def millis(value: Any) -> int:
    """Epoch milliseconds of a timestamp-millis field, exactly as fastavro writes it."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # fastavro reads a naive datetime as local time
            return int(time.mktime(value.timetuple())) * 1000 + value.microsecond // 1000
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a timestamp field must be a datetime or epoch milliseconds")
    return value


def signed_content(what: str, datum: Mapping[str, Any]) -> dict[str, Any]:
    """What is signed for a command or receipt (``what``), as a JSON object: its ``format`` and
    its signed fields, timestamps as epoch milliseconds. A deletion certificate embeds a receipt's
    signed content as this object (``streams/certificates``)."""
    if what == HOLD:
        return hold_content(datum)
    body: dict[str, Any] = {"format": FORMATS[what]}
    for name in SIGNED_FIELDS[what]:
        value = datum.get(name)
        body[name] = millis(value) if name in TIME_FIELDS else value
    return body


def hold_event(record: Mapping[str, Any]) -> str | None:
    """The type of a ``lifecycle_event`` record (its Avro form: ``payload`` is ``(record name,
    fields)``) if it is a legal hold event (:data:`HOLD_EVENTS`), else None."""
    payload = record.get("payload")
    if isinstance(payload, tuple | list) and len(payload) == 2 and isinstance(payload[0], str):
        kind = payload[0].rsplit(".", 1)[-1]
        return kind if kind in HOLD_EVENTS else None
    return None


def hold_content(record: Mapping[str, Any]) -> dict[str, Any]:
    """What is signed for a legal hold event: its ``format``, the envelope's ``event_id``,
    ``subject_id``, ``event_time`` (epoch ms) and ``producer``, its ``type`` and its payload's
    fields (a list field absent from a record not yet encoded is its Avro default, empty). So a
    hold cannot be moved to another subject or time, nor its categories or records changed."""
    kind = hold_event(record)
    if kind is None:
        raise TypeError("not a legal hold event")
    fields = record["payload"][1]
    if not isinstance(fields, Mapping):
        raise TypeError("a legal hold event's payload must be a record")
    body: dict[str, Any] = {"format": FORMATS[HOLD], "type": kind}
    for name in HOLD_ENVELOPE:
        value = record.get(name)
        body[name] = millis(value) if name == "event_time" else value
    payload: dict[str, Any] = {}
    for name in HOLD_EVENTS[kind]:
        value = fields.get(name)
        if name in _HOLD_LISTS:
            value = [] if value is None else list(value)
        payload[name] = value
    body["payload"] = payload
    return body


def canonical_bytes(what: str, datum: Mapping[str, Any]) -> bytes:
    """The bytes signed for a command or receipt (``what``): its fields, not its Avro bytes."""
    return compact_json(signed_content(what, datum))


class MessageSigner:
    """Signs commands (the worker), receipts (a sink), ticks (the clock) or legal hold events (the
    legal hold signer) with one Ed25519 private key."""

    def __init__(self, private_pem: bytes) -> None:
        self._key = keys.load_private_key(private_pem)  # ValueError for a wrong key
        self.public_pem = keys.public_pem_of(self._key)
        self.key_id = keys.key_id(self.public_pem)

    @classmethod
    def from_file(cls, path: Path, what: str, create: bool = True) -> MessageSigner:
        """The signer of the PEM key at ``path``; with ``create``, a new pair is made if missing
        (private key mode 600, public key beside it as ``.pub``). ``what`` names the key in errors."""
        return cls(keys.read_or_make_key(path, what, create))

    def sign(self, what: str, datum: Mapping[str, Any]) -> dict[str, Any]:
        """``datum`` with its signature and this key's id (any earlier signature is replaced)."""
        signed = dict(datum)
        signed[SIGNATURE] = self._key.sign(canonical_bytes(what, datum))
        signed[KEY_ID] = self.key_id
        return signed


class Verifier:
    """Checks messages signed with one public key."""

    def __init__(self, public_pem: bytes) -> None:
        self._key: Ed25519PublicKey = keys.load_public_key(public_pem)  # ValueError if not Ed25519
        self.key_id = keys.key_id(public_pem)

    @classmethod
    def from_file(cls, path: Path, setting: str, purpose: str) -> Verifier:
        """The verifier of the public key at ``path``; a one-line ValueError naming ``setting``
        if it is missing or not an Ed25519 public key."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"{setting}: no public key at {path} to verify {purpose} with ({exc.strerror}); "
                f"set {setting} to the file"
            ) from None
        try:
            return cls(pem)
        except ValueError as exc:
            raise ValueError(f"{setting}: {path}: {exc}") from None

    def check(self, what: str, datum: Mapping[str, Any]) -> None:
        """Raise :class:`Refused` unless ``datum`` carries a valid signature by this key."""
        signature, key_id, name = datum.get(SIGNATURE), datum.get(KEY_ID), NAMES[what]
        if not signature or not key_id:
            raise Refused(UNSIGNED, f"{name}: not signed")
        if key_id != self.key_id:
            raise Refused(OTHER_KEY, f"{name}: signed by another key than the trusted {self.key_id}")
        try:
            self._key.verify(bytes(signature), canonical_bytes(what, datum))
        except (InvalidSignature, TypeError, ValueError):
            raise Refused(BAD_SIGNATURE, f"{name}: bad signature (changed after signing?)") from None


def sink_public_key_name(store: str) -> str:
    """The file name of a store's sink public key, in a sink's key directory and the worker's
    trusted-keys directory alike."""
    return f"sink-{store}.pub"


class TrustedKeys:
    """The worker's keys for receipts: one sink public key per store (``sink-<store>.pub`` in a
    directory), read when a store's first receipt comes (a sink may start after the worker) and
    kept; or given as a mapping (tests)."""

    def __init__(self, directory: Path | None = None, keys: Mapping[str, bytes] | None = None) -> None:
        self.directory = directory
        self._verifiers: dict[str, Verifier] = {s: Verifier(pem) for s, pem in (keys or {}).items()}

    def verifier(self, store: str) -> Verifier:
        found = self._verifiers.get(store)
        if found is not None:
            return found
        if self.directory is None or not _STORE_NAME.fullmatch(store):
            raise Refused(NO_TRUSTED_KEY, "deletion_receipt: no trusted key for this store")
        path = self.directory / sink_public_key_name(store)
        try:
            found = Verifier(path.read_bytes())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not an Ed25519 public key"
            raise Refused(
                NO_TRUSTED_KEY, f"deletion_receipt: no trusted key for store {store} at {path} ({reason})"
            ) from None
        self._verifiers[store] = found
        return found

    def check(self, receipt: Mapping[str, Any]) -> None:
        """Raise :class:`Refused` unless the receipt is signed by its own store's key."""
        self.verifier(str(receipt.get("store"))).check(RECEIPT, receipt)


CLOCK_PUBLIC_KEY = "clock.pub"  # the clock's public key, in the worker's trusted-keys directory


class ClockKey:
    """The worker's key for clock ticks: the clock's public key (``clock.pub`` in the trusted-keys
    directory), read at the first tick (a clock may first start after the worker), or given (tests)."""

    def __init__(self, directory: Path | None = None, pem: bytes | None = None) -> None:
        self.directory = directory
        self._verifier = Verifier(pem) if pem is not None else None

    def check(self, tick: Mapping[str, Any], partition: int) -> None:
        """Raise :class:`Refused` unless the tick is signed by the clock's key for ``partition``."""
        if self._verifier is None:
            path = (self.directory or Path(".")) / CLOCK_PUBLIC_KEY
            try:
                self._verifier = Verifier(path.read_bytes())
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not an Ed25519 public key"
                raise Refused(
                    NO_TRUSTED_KEY, f"clock_tick: no trusted clock key at {path} ({reason})"
                ) from None
        self._verifier.check(TICK, {**tick, "partition": partition})


HOLD_SIGNING_KEY = "holds.key"  # the default pair on one host: <state dir>/keys/holds.key and .pub


def _other_role(name: str) -> bool:
    """A public key file named as the pipeline names the keys of its other roles."""
    return name in ("clock.pub", "certificate-signing.pub") or (
        name.startswith("sink-") and name.endswith(".pub")
    )


class HoldKeys:
    """The worker's keys for legal hold events: the public keys of the trusted hold signers (e.g.
    the legal team's tool), read once at the worker's start, so the same log replayed gets the same
    decisions. With no key, every hold event is refused."""

    def __init__(self, pems: Iterable[bytes] = ()) -> None:
        verifiers = [Verifier(pem) for pem in pems]  # ValueError if one is not an Ed25519 public key
        self._verifiers = {v.key_id: v for v in verifiers}

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._verifiers))

    @classmethod
    def from_paths(cls, paths: Sequence[Path], setting: str = "EBBTIDE_HOLD_KEYS") -> HoldKeys:
        """The keys in ``paths``: each a public key PEM file, or a directory whose ``*.pub`` files
        are all trusted. A one-line ValueError naming ``setting`` if one is missing, empty or not an
        Ed25519 public key."""
        pems: list[bytes] = []
        for path in paths:
            files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
            if not files:
                raise ValueError(f"{setting}: no public key (*.pub) in the directory {path}")
            others = [f.name for f in files if path.is_dir() and _other_role(f.name)]
            if others:  # a directory of every key (e.g. <state dir>/keys) would trust sinks, clock...
                raise ValueError(
                    f"{setting}: the directory {path} holds keys of other roles ({', '.join(others)}); "
                    "give the hold signers' key files, or a directory of theirs only"
                )
            for file in files:
                try:
                    pem = file.read_bytes()
                except OSError as exc:
                    raise ValueError(
                        f"{setting}: no public key at {file} to verify legal holds with ({exc.strerror}); "
                        f"set {setting} to the hold signers' public keys"
                    ) from None
                try:
                    keys.load_public_key(pem)
                except ValueError:
                    raise ValueError(f"{setting}: {file}: not an Ed25519 public key") from None
                pems.append(pem)
        return cls(pems)

    @classmethod
    def for_worker(cls, settings: Settings) -> HoldKeys:
        """The hold signers' keys a worker with ``settings`` trusts: ``EBBTIDE_HOLD_KEYS``. Unset,
        a worker on the wall clock refuses to start (a ValueError naming the setting): with no key
        it trusts, every real hold would be refused and the held data deleted. A worker on a
        replay clock (the demo, the tests, a replay) then trusts ``<state dir>/keys/holds.pub``,
        whose pair (``holds.key``, mode 600) is made if missing, for one host."""
        if settings.hold_keys is None:
            if settings.clock_mode == "wall":
                raise ValueError(
                    "EBBTIDE_HOLD_KEYS is not set: give the public keys of the legal hold signers (a "
                    "worker that trusts none refuses every legal hold, and the held data is deleted)"
                )
            keys.read_or_make_key(settings.local_hold_signing_key, "legal hold signing key")
        return cls.from_paths(settings.hold_public_keys)

    def check(self, record: Mapping[str, Any]) -> None:
        """Raise :class:`Refused` unless the legal hold event ``record`` (Avro form) carries a
        valid signature by one of these keys."""
        signature, key_id, name = record.get(SIGNATURE), record.get(KEY_ID), NAMES[HOLD]
        if not signature or not key_id:
            raise Refused(UNSIGNED, f"{name}: not signed")
        if not self._verifiers:
            why = f"{name}: the worker trusts no hold signer's key (EBBTIDE_HOLD_KEYS)"
            raise Refused(NO_TRUSTED_KEY, why)
        verifier = self._verifiers.get(str(key_id))
        if verifier is None:
            raise Refused(OTHER_KEY, f"{name}: signed by a key that is not a trusted hold signer's")
        verifier.check(HOLD, record)
