"""Comparing replayed decisions with recorded ones, byte for byte of their Avro encoding with the
hash chain's fields (``seq``, ``prev_hash``) left out: ``audit verify`` checks the chain."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Literal

from ebbtide.schemas import DECISION, codec_for

CHAIN_FIELDS = ("seq", "prev_hash")


@dataclass(frozen=True)
class Entry:
    """One decision, decoded, and its encoding without the chain's fields. ``offset``: its place
    in the decisions topic (None for a replayed one)."""

    record: dict[str, Any]
    value: bytes
    offset: int | None = None
    seq: int | None = None  # its place in its partition's hash chain, as sent

    @classmethod
    def of(cls, value: bytes, offset: int | None = None) -> Entry:
        codec = codec_for(DECISION)
        record = codec.decode(value)
        seq = record.get("seq")
        if any(record.get(name) is not None for name in CHAIN_FIELDS):
            record = {**record, **dict.fromkeys(CHAIN_FIELDS)}
            value = codec.encode(record)
        return cls(record, value, offset, seq)

    @property
    def key(self) -> tuple[str, str | None]:
        return self.record["decision_id"], self.record.get("input")


Kind = Literal["changed", "missing", "extra"]


@dataclass(frozen=True)
class Difference:
    """A recorded decision the replay made otherwise (``changed``: the fields that differ) or did
    not make (``missing``), or one it made that is not recorded (``extra``, placed before the
    recorded decision at ``offset``, None: after the last)."""

    kind: Kind
    partition: int
    offset: int | None
    recorded: dict[str, Any] | None
    replayed: dict[str, Any] | None
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        def plain(record: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if record is None else {k: _plain(v) for k, v in record.items()}

        return {
            "kind": self.kind,
            "partition": self.partition,
            "offset": self.offset,
            "fields": list(self.fields),
            "recorded": plain(self.recorded),
            "replayed": plain(self.replayed),
        }

    def describe(self) -> str:
        """One line (and one per field that differs)."""
        at = f"decisions partition {self.partition} offset {self.offset}"
        if self.kind == "missing" and self.recorded is not None:
            return f"{at}: recorded {_name(self.recorded)}, which the replay did not make"
        if self.kind == "extra" and self.replayed is not None:
            where = f"before {at}" if self.offset is not None else f"at the end of partition {self.partition}"
            return f"{where}: the replay made {_name(self.replayed)}, which is not recorded"
        assert self.recorded is not None and self.replayed is not None
        lines = [f"{at}: {_name(self.recorded)} differs in {', '.join(self.fields)}"]
        lines += [
            f"    {f}: recorded {_shown(self.recorded.get(f))}, replayed {_shown(self.replayed.get(f))}"
            for f in self.fields
        ]
        return "\n".join(lines)


def _name(record: dict[str, Any]) -> str:
    return f"{record['kind']} of {record['record']} (input {record.get('input')})"


def _shown(value: Any) -> str:
    """A decoded field as the text output shows it (timestamps in ISO-8601 UTC)."""
    from datetime import datetime

    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else repr(value)


def _plain(value: Any) -> Any:
    """A decoded field as JSON takes it (timestamps as epoch ms)."""
    from datetime import datetime

    from ebbtide.streams.policy.calendar import to_ms

    return to_ms(value) if isinstance(value, datetime) else value


def dedupe(recorded: list[Entry]) -> tuple[list[Entry], int]:
    """The recorded decisions without those a worker sent again when it replayed a batch after a
    crash; and how many were dropped. A chained decision whose ``seq`` is not past the one before
    it starts a batch sent again from an earlier head of the chain: it and those after it
    supersede what was sent from that head on (the same decisions if the inputs came in the same
    order). Without a chain, a decision with the same id and input as one before is a copy."""
    seen: set[tuple[str, str | None]] = set()
    kept: list[Entry] = []
    dropped = 0
    for entry in recorded:
        if entry.seq is not None:
            cut = len(kept)
            while cut and _at_or_after(kept[cut - 1].seq, entry.seq):
                cut -= 1
            dropped += len(kept) - cut
            del kept[cut:]
        elif entry.key in seen:
            dropped += 1
            continue
        seen.add(entry.key)
        kept.append(entry)
    return kept, dropped


def _at_or_after(seq: int | None, start: int) -> bool:
    return seq is not None and seq >= start


def compare(partition: int, recorded: list[Entry], replayed: list[Entry]) -> list[Difference]:
    """The differences between a partition's recorded and replayed decisions, each in log order."""
    if [e.key for e in recorded] == [e.key for e in replayed]:
        return [
            _changed(partition, r, p) for r, p in zip(recorded, replayed, strict=True) if r.value != p.value
        ]
    out: list[Difference] = []
    matcher = SequenceMatcher(None, [e.key for e in recorded], [e.key for e in replayed], autojunk=False)
    for tag, r1, r2, p1, p2 in matcher.get_opcodes():
        rec, rep = recorded[r1:r2], replayed[p1:p2]
        paired = min(len(rec), len(rep)) if tag in ("equal", "replace") else 0
        out += [
            _changed(partition, r, p)
            for r, p in zip(rec[:paired], rep[:paired], strict=True)
            if r.value != p.value
        ]
        out += [Difference("missing", partition, r.offset, r.record, None) for r in rec[paired:]]
        after = recorded[r2].offset if r2 < len(recorded) else None
        out += [Difference("extra", partition, after, None, p.record) for p in rep[paired:]]
    return out


def _changed(partition: int, recorded: Entry, replayed: Entry) -> Difference:
    fields = tuple(k for k in recorded.record if recorded.record[k] != replayed.record.get(k))
    return Difference("changed", partition, recorded.offset, recorded.record, replayed.record, fields)
