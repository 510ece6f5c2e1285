"""Replaying dead letters: where each goes back to (its source topic, by key or by partition), and
sending them there with a header naming the dead letter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError

from ebbtide import bootstrap
from ebbtide.runtime.kafka import DELIVERY_TIMEOUT, await_delivery, not_acknowledged
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.dlq.letters import REPLAY_OF, DeadLetter, DlqError


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
