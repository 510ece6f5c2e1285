"""What every sink answers: a receipt per command, encoded once, plus what the loop must do with it.

Receipts are signed with the sink's key of its store (:mod:`ebbtide.runtime.authenticity`) before they are
encoded, so the bytes a tracked executor stores and gives back for a repeated command are the
signed ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ebbtide.runtime.authenticity import RECEIPT, MessageSigner
from ebbtide.schemas import DELETION_RECEIPT, codec_for
from ebbtide.streams.policy.vocabulary import OUTCOMES  # what a store may answer (the receipt schema's enum)

_RECEIPTS = codec_for(DELETION_RECEIPT)


@dataclass(frozen=True)
class Executed:
    receipt: dict[str, Any]
    encoded: bytes
    repeated: bool  # True when the command had already been applied
    dead_letter: str | None = None  # also dead-letter the command, with this reason (gave up on it)


def receipt_for(
    command: dict[str, Any], outcome: str, rows: int, reason: str | None, executed_at: datetime
) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown receipt outcome {outcome!r}")
    # The wire carries milliseconds: the receipt is what its reader decodes (and what is signed).
    executed_at = executed_at.replace(microsecond=executed_at.microsecond // 1000 * 1000)
    return {
        "command_id": command["command_id"],
        "subject_id": command["subject_id"],
        "store": command["store"],
        "category": command["category"],
        # The record key as the command named it: sealed, if the sink opened it (base/opening.py).
        "record_key": command.get("sealed_key", command["record_key"]),
        "outcome": outcome,
        "rows": rows,
        "reason": reason,
        "executed_at": executed_at,
    }


def executed(
    command: dict[str, Any],
    outcome: str,
    rows: int,
    reason: str | None,
    executed_at: datetime,
    *,
    repeated: bool = False,
    dead_letter: str | None = None,
    signer: MessageSigner | None = None,
) -> Executed:
    """The receipt of a command, signed with ``signer`` (the sink's key) when given."""
    receipt = receipt_for(command, outcome, rows, reason, executed_at)
    if signer is not None:
        receipt = signer.sign(RECEIPT, receipt)
    return Executed(receipt, _RECEIPTS.encode(receipt), repeated, dead_letter)


def signed(done: Executed, signer: MessageSigner) -> Executed:
    """``done`` with a signed receipt: as it is if already signed by ``signer`` (a stored receipt
    stays byte for byte); else signed now (a receipt stored before receipts were signed, or by an
    executor that does not sign). Ed25519 is deterministic, so signing again gives the same bytes."""
    if done.receipt.get("signer_key_id") == signer.key_id and done.receipt.get("signature"):
        return done
    receipt = signer.sign(RECEIPT, done.receipt)
    return Executed(receipt, _RECEIPTS.encode(receipt), done.repeated, done.dead_letter)


def decode_receipt(encoded: bytes) -> dict[str, Any]:
    return _RECEIPTS.decode(encoded)
