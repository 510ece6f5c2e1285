"""Dead letters: the messages the worker and the sinks could not process, on ``<prefix>.dlq``.

Each dead letter keeps the original message's key and value and says why and where from in its
headers (``reason``, ``source_topic``, ``source_partition``, ``source_offset``; see
``streams.worker.routing`` and ``sinks.base.loop``). ``ebbtide dlq`` lists them by reason, shows
them (headers, offsets and sizes: never a key or a value, which may hold personal data) and replays
them to their source topic after a fix.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from ebbtide import bootstrap
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import DELIVERY_TIMEOUT, await_delivery, not_acknowledged
from ebbtide.runtime.settings import Settings, Topics

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


# -- reading ----------------------------------------------------------------------------------


def read(settings: Settings, timeout: float = DELIVERY_TIMEOUT) -> Iterator[DeadLetter]:
    """Every dead letter of ``<prefix>.dlq``, each partition from its beginning to its end as of
    now (no consumer group, nothing committed). Raises :class:`DlqError` if the topic does not
    exist or the broker does not answer for ``timeout`` seconds."""
    topic = Topics(settings.topic_prefix).dlq
    ms = max(1000, round(timeout * 1000))
    where = f"the broker at {settings.kafka_bootstrap}"
    try:
        consumer = kafka.consumer(
            settings,
            enable_auto_commit=False,
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
        )
    except KafkaError as exc:
        raise DlqError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
    try:
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise DlqError(f"no topic {topic}: create the pipeline's topics (ebbtide topics create)")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            starts = consumer.beginning_offsets(tps, timeout_ms=ms)
            ends = consumer.end_offsets(tps, timeout_ms=ms)
        except KafkaError as exc:
            raise DlqError(f"{where} did not answer within {timeout:g} s ({type(exc).__name__})") from None
        for tp in tps:
            consumer.seek(tp, starts[tp])
        done = {tp: starts[tp] for tp in tps}  # the next offset to read
        quiet_since = time.monotonic()
        while any(done[tp] < ends[tp] for tp in tps):
            try:
                batch = consumer.poll(timeout_ms=500)
                if not batch:
                    for tp in tps:  # past control records; known locally after the explicit seek
                        position = consumer.position(tp, timeout_ms=0)
                        if position is not None:
                            done[tp] = max(done[tp], position)
            except KafkaError as exc:
                raise DlqError(f"reading {topic} failed ({type(exc).__name__})") from None
            if not batch:
                if time.monotonic() - quiet_since > timeout and any(done[tp] < ends[tp] for tp in tps):
                    read_so_far = sum(done[tp] - starts[tp] for tp in tps)
                    total = sum(ends[tp] - starts[tp] for tp in tps)
                    raise DlqError(
                        f"{where} stopped answering while {topic} was read ({read_so_far} of {total} "
                        f"messages in {timeout:g} s)"
                    )
                continue
            quiet_since = time.monotonic()
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset < ends[tp]:
                        yield DeadLetter.from_message(message)
                    done[tp] = max(done[tp], message.offset + 1)
    finally:
        consumer.close()


# -- selecting and grouping -------------------------------------------------------------------


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


# -- replaying --------------------------------------------------------------------------------


def replayable_topics(settings: Settings) -> set[str]:
    """The topics a dead letter may come from and be replayed to: the worker's inputs (events,
    clock, receipts) and the command topic of each store of the store map."""
    topics = Topics(settings.topic_prefix)
    commands = {topics.commands(store) for store in bootstrap.store_map(settings).ids}
    return {topics.events, topics.clock, topics.receipts} | commands


@dataclass(frozen=True)
class Replay:
    """Where one dead letter goes back to."""

    letter: DeadLetter
    topic: str
    partition: int | None  # None: the partition its key gives (Kafka's default partitioner)


@dataclass
class ReplayPlan:
    replays: list[Replay] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # source topic -> letters
    empty: int = 0  # letters that hold no message to send back (e.g. a dropped tick)

    def counts(self) -> str:
        """``t.events 2, t.clock 1``: how many go back to each topic."""
        return ", ".join(f"{t} {n}" for t, n in sorted(Counter(r.topic for r in self.replays).items()))

    def skipped(self) -> str:
        return f"; skipped {self.empty} that hold no message" if self.empty else ""


def plan_replay(letters: Iterable[DeadLetter], allowed: set[str], clock_topic: str) -> ReplayPlan:
    """Each letter's way back; the source topics refused (not in ``allowed``) with how many
    letters came from each; and how many letters hold no message (empty value: the dead letter of
    a tick dropped after it was consumed keeps only its reason). A keyed message goes where its
    key puts it (a message dead-lettered for being on the wrong partition goes to the right one);
    a tick, or a message without a key, goes back to its source partition."""
    plan = ReplayPlan()
    for letter in letters:
        topic = letter.source_topic
        if topic is None or topic not in allowed:
            plan.refused[topic or "(no source_topic header)"] += 1
            continue
        if not letter.value:
            plan.empty += 1
            continue
        by_partition = topic == clock_topic or not letter.key
        if by_partition and letter.source_partition is None:
            plan.refused[f"{topic} (no source_partition header)"] += 1
            continue
        plan.replays.append(Replay(letter, topic, letter.source_partition if by_partition else None))
    return plan


class ReplayFailed(DlqError):
    """``failed`` of the ``total`` dead letters replayed were not acknowledged by the broker."""

    def __init__(self, failed: int, total: int, reason: str, timeout: float) -> None:
        self.failed, self.total, self.reason, self.timeout = failed, total, reason, timeout
        super().__init__(f"{failed} of {total} dead letter(s) {not_acknowledged(reason, timeout)}")


def replay(
    replays: Sequence[Replay],
    out: Any,
    dlq_topic: str,
    timeout: float = DELIVERY_TIMEOUT,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Send each letter's key and value back to its topic with ``out`` (a kafka-python producer)
    and wait until the broker has acknowledged them all; the count per topic. Raises
    :class:`ReplayFailed` naming how many were not acknowledged within ``timeout`` seconds."""
    futures: list[Any] = []
    for item in replays:
        letter = item.letter
        headers = [(REPLAY_OF, f"{dlq_topic}[{letter.partition}]@{letter.offset}".encode())]
        try:
            futures.append(
                out.send(
                    item.topic,
                    key=letter.key or None,
                    value=letter.value or b"",
                    partition=item.partition,
                    headers=headers,
                )
            )
        except KafkaError as exc:  # nothing after this one is sent: settle what was
            undelivered = await_delivery(out, futures, timeout)
            failed = (undelivered.failed if undelivered else 0) + len(replays) - len(futures)
            raise ReplayFailed(failed, len(replays), type(exc).__name__, timeout) from None
        if progress is not None:
            progress(1)
    undelivered = await_delivery(out, futures, timeout)
    if undelivered is not None:
        raise ReplayFailed(undelivered.failed, len(replays), undelivered.reason, timeout)
    return Counter(item.topic for item in replays)


# -- the command ------------------------------------------------------------------------------


def main(args: Any, settings: Settings) -> int:
    """``ebbtide dlq list|show|replay`` (arguments from :func:`ebbtide.cli.build_parser`)."""
    topic = Topics(settings.topic_prefix).dlq
    name = f"ebbtide dlq {args.action}"
    try:
        if args.action == "list":
            groups = group_by_reason(read(settings, args.timeout))
            if args.json:
                total = sum(g.count for g in groups)
                print(json.dumps({"topic": topic, "total": total, "reasons": [g.as_json() for g in groups]}))
            else:
                print(render_list(groups, topic))
            return 0
        chosen = select(
            read(settings, args.timeout),
            reason=args.reason,
            source=args.source,
            prefix=settings.topic_prefix,
            limit=args.limit,
        )
        if args.action == "show":
            if args.json:
                print(json.dumps([letter.summary(topic) for letter in chosen], indent=2))
            else:
                print(render_show(chosen, topic))
            return 0
        return _replay(args, settings, chosen, name)
    except DlqError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


def _replay(args: Any, settings: Settings, chosen: list[DeadLetter], name: str) -> int:
    from rich.console import Console

    from ebbtide.runtime.kafka import close_producer, producer
    from ebbtide.tools.progress import progress_bar

    topics = Topics(settings.topic_prefix)
    plan = plan_replay(chosen, replayable_topics(settings), topics.clock)
    replays = plan.replays
    if plan.refused:
        named = ", ".join(f"{t} {n}" for t, n in sorted(plan.refused.items()))
        print(
            f"{name}: {sum(plan.refused.values())} selected dead letter(s) cannot go back to a topic of "
            f"this pipeline's inputs ({named}); nothing replayed (narrow the selection with --source or "
            "--reason)",
            file=sys.stderr,
        )
        return 1
    if not replays:
        print(f"no dead letters in {topics.dlq} to replay{plan.skipped()}")
        return 0
    if args.dry_run:
        print(
            f"would replay {len(replays)} dead letter(s): {plan.counts()}{plan.skipped()}; "
            "--dry-run: nothing sent"
        )
        return 0
    try:
        out = producer(settings, args.timeout)
    except KafkaError as exc:
        raise DlqError(
            f"the broker at {settings.kafka_bootstrap} did not answer within {args.timeout:g} s "
            f"({type(exc).__name__}); nothing replayed"
        ) from None
    console = Console(stderr=True)
    try:
        if console.is_terminal and len(replays) > 1:
            with progress_bar(console, transient=True) as bar:
                task = bar.add_task("replaying dead letters", total=len(replays))
                done = replay(replays, out, topics.dlq, args.timeout, lambda n: bar.advance(task, n))
        else:
            done = replay(replays, out, topics.dlq, args.timeout)
    except ReplayFailed as exc:
        print(
            f"{name}: {exc}; run the replay again (replaying an event twice is harmless: event ids make "
            "it idempotent)",
            file=sys.stderr,
        )
        return 1
    finally:
        close_producer(out)
    print(f"replayed {sum(done.values())} dead letter(s): {plan.counts()}{plan.skipped()}")
    return 0
