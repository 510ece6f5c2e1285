"""A dead letter as read from ``<prefix>.dlq``: its place, its headers and its original key and
value; selecting and grouping them, and rendering them without their contents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Headers every dead letter carries (the dead-lettering code writes them in this order).
REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = (
    "reason",
    "source_topic",
    "source_partition",
    "source_offset",
)
# Header a replayed message carries: the dead letter it came from (``<dlq>[<partition>]@<offset>``).
REPLAY_OF = "ebbtide_replay_of"
NO_REASON = "(no reason header)"
_MAX_TEXT = 300  # characters of a header shown; headers are meant to be short


class DlqError(RuntimeError):
    """The dead letters cannot be read or replayed; the message is one line for the user."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of the DLQ: where it is, its headers, its original key and value."""

    partition: int
    offset: int
    timestamp: int | None  # ms since the epoch, as the broker has it
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_message(cls, message: Any) -> DeadLetter:
        """From a kafka-python ``ConsumerRecord``."""
        stamp = message.timestamp
        return cls(
            partition=message.partition,
            offset=message.offset,
            timestamp=stamp if isinstance(stamp, int) and stamp >= 0 else None,
            key=message.key,
            value=message.value,
            headers=tuple((str(k), bytes(v or b"")) for k, v in (message.headers or [])),
        )

    def header(self, name: str) -> str | None:
        """The last ``name`` header as text (made safe to print), or None."""
        found = [v for k, v in self.headers if k == name]
        return _text(found[-1]) if found else None

    @property
    def reason(self) -> str:
        return self.header(REASON) or NO_REASON

    @property
    def source_topic(self) -> str | None:
        return self.header(SOURCE_TOPIC) or None

    @property
    def source_partition(self) -> int | None:
        return _int(self.header(SOURCE_PARTITION))

    @property
    def source_offset(self) -> int | None:
        return _int(self.header(SOURCE_OFFSET))

    def summary(self, dlq_topic: str) -> dict[str, Any]:
        """What ``show`` prints: coordinates, headers and sizes, never the key or value bytes."""
        known = {REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET}
        return {
            "dlq": f"{dlq_topic}[{self.partition}]@{self.offset}",
            "partition": self.partition,
            "offset": self.offset,
            "time": _iso(self.timestamp),
            "reason": self.reason,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "key_bytes": None if self.key is None else len(self.key),
            "value_bytes": None if self.value is None else len(self.value),
            "headers": {k: _text(v) for k, v in self.headers if k not in known},
        }


def _text(raw: bytes) -> str:
    """Header bytes as one printable line: control characters escaped (a header is anyone's
    input), long values cut, bytes that are not UTF-8 only counted."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes, not text>"
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return safe if len(safe) <= _MAX_TEXT else safe[:_MAX_TEXT] + f"… ({len(safe)} characters)"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_matches(letter: DeadLetter, source: str, prefix: str) -> bool:
    """``source`` names the letter's source topic in full, or without the pipeline's prefix
    (``events``, ``clock``, ``receipts``, ``commands.<store>``)."""
    topic = letter.source_topic
    return topic is not None and topic in (source, f"{prefix}.{source}")


def select(
    letters: Iterable[DeadLetter],
    *,
    reason: str | None = None,
    source: str | None = None,
    prefix: str = "ebbtide",
    limit: int | None = None,
) -> list[DeadLetter]:
    """The letters whose reason contains ``reason`` (case-insensitive) and whose source is
    ``source`` (see :func:`source_matches`), in DLQ order (by partition, then offset), at most
    ``limit`` of them."""
    wanted = reason.casefold() if reason else None
    chosen = [
        letter
        for letter in letters
        if (wanted is None or wanted in letter.reason.casefold())
        and (source is None or source_matches(letter, source, prefix))
    ]
    chosen.sort(key=lambda letter: (letter.partition, letter.offset))
    return chosen if limit is None else chosen[: max(0, limit)]


@dataclass
class ReasonGroup:
    reason: str
    count: int = 0
    sources: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "count": self.count, "sources": dict(sorted(self.sources.items()))}


def group_by_reason(letters: Iterable[DeadLetter]) -> list[ReasonGroup]:
    """One group per reason, the largest first (ties by reason), with the count per source topic."""
    groups: dict[str, ReasonGroup] = {}
    for letter in letters:
        group = groups.setdefault(letter.reason, ReasonGroup(letter.reason))
        group.count += 1
        group.sources[letter.source_topic or "(no source_topic header)"] += 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def render_list(groups: Sequence[ReasonGroup], topic: str) -> str:
    total = sum(g.count for g in groups)
    if not total:
        return f"no dead letters in {topic}"
    width = len(str(max(g.count for g in groups)))
    lines = [f"{total} dead letter(s) in {topic}, {len(groups)} reason(s):"]
    for group in groups:
        sources = ", ".join(f"{name} {count}" for name, count in sorted(group.sources.items()))
        lines.append(f"  {group.count:>{width}}  {group.reason}  [{sources}]")
    return "\n".join(lines)


def render_show(letters: Sequence[DeadLetter], topic: str) -> str:
    if not letters:
        return f"no dead letters in {topic} match"
    blocks = []
    for letter in letters:
        info = letter.summary(topic)
        where = info["source_topic"] or "(no source_topic header)"
        if info["source_partition"] is not None:
            where += f"[{info['source_partition']}]"
        if info["source_offset"] is not None:
            where += f"@{info['source_offset']}"
        sizes = ", ".join(
            f"{name} {'none' if info[f'{name}_bytes'] is None else str(info[f'{name}_bytes']) + ' bytes'}"
            for name in ("key", "value")
        )
        lines = [
            f"{info['dlq']}  {info['time'] or '(no timestamp)'}",
            f"  reason: {info['reason']}",
            f"  from:   {where}",
            f"  sizes:  {sizes} (contents not shown)",
        ]
        lines += [f"  header {name}: {text}" for name, text in info["headers"].items()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
