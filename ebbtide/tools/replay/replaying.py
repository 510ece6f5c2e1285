"""Replaying a decision log with the worker's own processor, in memory, and comparing.

The worker's inputs are read in bulk (:mod:`.reading`) and fed, partition by partition, in the
order the recorded decisions say (:mod:`.schedule`) to a :class:`LifecycleProcessor` over a
plain dict: the same checks (ticks, receipts and hold events verified with the keys the worker
trusts), the same engine, under the recorded policy versions (:mod:`.policies`). What it sends
is kept, not sent: its decisions are compared (:mod:`.comparing`), its dead letters counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ebbtide.runtime.authenticity import ClockKey, HoldKeys, TrustedKeys
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import CLOCK_TICK, DELETION_RECEIPT, LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.worker.checks import DEFAULT_EVENT_WINDOW
from ebbtide.streams.worker.clock_entry import KIND as CLOCK_APPLIED
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.routing import Out, partition_for
from ebbtide.tools.replay.comparing import Difference, Entry, compare, dedupe
from ebbtide.tools.replay.policies import policies_for
from ebbtide.tools.replay.reading import SOURCES, Log, Message, ReplayError, read_log
from ebbtide.tools.replay.schedule import Feed, Named, Restart, Source, Step, parse_input, schedule

DEAD_LETTER_LOG = "ebbtide.streams.worker.routing"  # warns of each dead letter
ADVANCE = 200  # steps between two moves of the progress bar


class Steps(Protocol):
    """Where progress goes (a progress bar): a phase with its total, then how much more is done."""

    def start(self, what: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True)
class Options:
    """``subject``: only its partition and decisions; ``since`` (epoch ms): compare only the
    decisions whose input's time is that or later; ``policies``: retention rules files to look
    for the recorded labels in, beside the shipped ones."""

    subject: str | None = None
    since: int | None = None
    policies: tuple[Path, ...] = ()
    timeout: float = 30.0


@dataclass
class Result:
    decisions: int = 0  # recorded decisions compared
    differences: list[Difference] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    fed: Counter[str] = field(default_factory=Counter)  # messages fed, by input topic
    dead_letters: int = 0  # messages the replay dead-lettered (counted, sent nowhere)
    duplicates: int = 0  # recorded decisions re-sent after a crash, dropped before comparing
    skipped: int = 0  # other subjects' events and receipts (--subject)
    not_replayed: int = 0  # messages after the last one a decision names


def replay(settings: Settings, options: Options, steps: Steps | None = None) -> Result:
    """Replay the log of ``settings``' topic prefix; raises :class:`ReplayError` if it cannot."""

    def chosen(count: int) -> list[int]:
        return [partition_for(options.subject.encode(), count)] if options.subject else list(range(count))

    def started(total: int) -> None:
        if steps:
            steps.start("reading topics", total)

    log = read_log(settings, chosen, options.timeout, started, _advance(steps))
    recorded = recorded_decisions(log, options.subject)
    every = [e for entries, _ in recorded.values() for e in entries]
    if every and all(e.record.get("input") is None for e in every):
        raise ReplayError(
            "no recorded decision names its input: the log was written before decisions recorded "
            "them (decision schema v1), and cannot be replayed"
        )
    labels = {e.record["policy_version"] for e in every}
    policies = policies_for(labels, settings, options.policies)
    return replay_log(
        log, recorded, Processors.for_worker(settings, log.partitions, policies), options, steps
    )


def recorded_decisions(log: Log, subject: str | None = None) -> dict[int, tuple[list[Entry], int]]:
    """Per partition, the recorded decisions (``subject``'s and the clock's, if given) without
    re-sent copies; and how many copies were dropped."""
    return {p: _recorded(log.of("decisions", p), subject) for p in sorted(log.topics.get("decisions", {}))}


def replay_log(
    log: Log,
    recorded: dict[int, tuple[list[Entry], int]],
    processors: Processors,
    options: Options,
    steps: Steps | None = None,
) -> Result:
    """Feed ``log``'s inputs to ``processors`` in the order ``recorded`` says and compare."""
    result = Result(partitions=sorted(recorded))
    result.duplicates = sum(dropped for _, dropped in recorded.values())
    plans = {p: _plan(p, log, entries) for p, (entries, _) in recorded.items()}
    if steps:
        steps.start("replaying", sum(len(plan) for plan, _ in plans.values()))
    for p, (entries, _) in recorded.items():
        plan, left = plans[p]
        result.not_replayed += left
        with _quiet(DEAD_LETTER_LOG):  # each dead letter is counted in the result instead
            run = _Run(p, log, processors, options.subject, result)
            run.named = {e.record.get("input") for e in entries}
            replayed = run.feed(plan, _advance(steps))
        if options.since is not None:
            times = _Times(log, p)
            entries = _since(entries, options.since, times)
            replayed = _since(replayed, options.since, times)
        result.decisions += len(entries)
        result.differences += compare(p, entries, replayed)
    return result


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Warnings of the logger ``name`` left out for a while."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _advance(steps: Steps | None) -> Callable[[int], None]:
    return steps.advance if steps else lambda n: None


def _recorded(messages: list[Message], subject: str | None) -> tuple[list[Entry], int]:
    """A partition's recorded decisions (of ``subject`` and the clock's, if given), re-sent copies
    dropped; and how many were."""
    entries = []
    for m in messages:
        if m.value is None:
            continue
        try:
            entry = Entry.of(m.value, m.offset)
        except InvalidMessage as exc:
            raise ReplayError(f"a recorded decision cannot be read ({exc.reason})") from None
        if subject is None or entry.record["subject_id"] == subject or entry.record["kind"] == CLOCK_APPLIED:
            entries.append(entry)
    return dedupe(entries)


def _plan(partition: int, log: Log, entries: list[Entry]) -> tuple[list[Step], int]:
    named = (
        Named(e.record.get("input"), e.record["kind"], e.record["reason"], e.record["policy_version"])
        for e in entries
    )
    offsets: dict[Source, list[int]] = {s: [m.offset for m in log.of(s, partition)] for s in _SOURCES}
    return schedule(partition, named, offsets)


_SOURCES: tuple[Source, ...] = ("events", "clock", "receipts")


class Processors:
    """Makes the worker's processor for a policy label, with the keys the worker trusts, all on
    one in-memory state."""

    def __init__(
        self,
        policies: dict[str, Policy],
        topics: Topics,
        partitions: int,
        keys: tuple[TrustedKeys, ClockKey | None, HoldKeys],
        event_window: tuple[int, int] = DEFAULT_EVENT_WINDOW,
    ) -> None:
        """``keys``: the sinks' keys (receipts), the clock's (ticks; None: any tick) and the hold
        signers' (legal holds)."""
        self.policies = policies
        self.topics = topics
        self.partitions = partitions
        self.trusted, self.clock_key, self.hold_keys = keys
        self.event_window = event_window
        self.table: dict[str, object] = {}  # the state of every partition replayed

    @classmethod
    def for_worker(cls, settings: Settings, partitions: int, policies: dict[str, Policy]) -> Processors:
        """With the keys and settings a worker with ``settings`` uses."""
        try:
            hold_keys = HoldKeys.for_worker(settings)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
        keys = (TrustedKeys(settings.trusted_keys_dir), ClockKey(settings.trusted_keys_dir), hold_keys)
        return cls(policies, Topics(settings.topic_prefix), partitions, keys, settings.event_window)

    def make(self, label: str) -> LifecycleProcessor:
        """A fresh worker on the state so far (a restart), under the policy ``label``. No signer:
        its commands and certificates are not compared. No wall clock check of ticks: the
        worker's refusals by wall time cannot be told again (docs/auditing.md)."""
        return LifecycleProcessor(
            self.policies[label],
            self.topics,
            self.table,
            self.partitions,
            signer=None,
            event_window=self.event_window,
            tick_problem=None,
            clock_key=self.clock_key,
            trusted=self.trusted,
            hold_keys=self.hold_keys,
        )


class _Run:
    """One partition fed to the processor, as planned."""

    def __init__(self, partition: int, log: Log, processors: Processors, subject: str | None, result: Result):
        self.partition = partition
        self.messages = {s: {m.offset: m for m in log.of(s, partition)} for s in SOURCES}
        self.processors = processors
        self.subject = subject.encode() if subject is not None else None
        self.result = result
        topics = processors.topics
        self.names = {"events": topics.events, "clock": topics.clock, "receipts": topics.receipts}
        self.named: set[str | None] = set()  # the inputs the recorded decisions name

    def feed(self, plan: Iterable[Step], advance: Callable[[int], None]) -> list[Entry]:
        """The decisions the processor sends, in order."""
        processor: LifecycleProcessor | None = None
        out: list[Entry] = []
        topics = self.processors.topics
        done = 0
        for step in plan:
            done += 1
            if done % ADVANCE == 0:
                advance(ADVANCE)
            if isinstance(step, Restart):
                processor = self.processors.make(step.label)
                if step.resume:
                    processor.resume({self.partition})
                continue
            assert processor is not None  # every plan starts with the policy of its first decision
            message = self.messages[step.source][step.offset]
            if self._skipped(processor, step, message):
                continue
            self.result.fed[step.source] += 1
            sent = processor.on_message(
                self.names[step.source], self.partition, message.offset, message.key, message.value
            )
            if self._refused(step, sent):
                processor.discard()
                self.result.dead_letters += 1
                continue
            processor.flush()
            for o in sent:
                if o.topic == topics.decisions:
                    entry = Entry.of(o.value)
                    if self.subject is None or entry.record["subject_id"] in (self.subject.decode(), ""):
                        out.append(entry)
                elif o.topic == topics.dlq:
                    self.result.dead_letters += 1
        advance(done % ADVANCE)
        return out

    def _refused(self, step: Feed, sent: list[Out]) -> bool:
        """A receipt no recorded decision names changed nothing when the worker took it (a receipt
        that settles a copy is always decided on): it was refused then, e.g. answering a command
        the worker's state, rolled back by a crash, had not issued yet. Replay, whose state is the
        one the log settled on, might accept it; what it would make of it is dropped."""
        if step.source != "receipts" or f"receipts/{self.partition}/{step.offset}" in self.named:
            return False
        return any(o.topic == self.processors.topics.decisions for o in sent)

    def _skipped(self, processor: LifecycleProcessor, step: Feed, message: Message) -> bool:
        """With --subject, another subject's receipt is not fed: it cannot change this subject's
        decisions. Every event is: a tick waiting for another subject's event is applied while
        that event is processed, and what it fires then names that event as its input."""
        if self.subject is None or step.source != "receipts" or message.key == self.subject:
            return False
        self.result.skipped += 1
        return True


class _Times:
    """The time of a decision's input: an event's time, a tick's clock time, a receipt's
    execution time (epoch ms)."""

    def __init__(self, log: Log, partition: int) -> None:
        self.messages = {s: {m.offset: m for m in log.of(s, partition)} for s in SOURCES}
        self.partition = partition
        self.cache: dict[str, int | None] = {}

    def of(self, source_input: str | None) -> int | None:
        if source_input is None:
            return None
        if source_input not in self.cache:
            self.cache[source_input] = self._decode(source_input)
        return self.cache[source_input]

    def _decode(self, source_input: str) -> int | None:
        found = parse_input(source_input)
        message = self.messages[found[0]].get(found[2]) if found else None
        if found is None or message is None or message.value is None:
            return None
        name = {"events": LIFECYCLE_EVENT, "clock": CLOCK_TICK, "receipts": DELETION_RECEIPT}[found[0]]
        field_name = {"events": "event_time", "clock": "now", "receipts": "executed_at"}[found[0]]
        try:
            value = codec_for(name).decode(message.value).get(field_name)
        except InvalidMessage:
            return None
        return None if value is None else (value if isinstance(value, int) else to_ms(value))


def _since(entries: list[Entry], since: int, times: _Times) -> list[Entry]:
    """The decisions whose input's time is ``since`` or later; one with no input (made on a
    restart) goes with the decision before it."""
    kept: list[Entry] = []
    current: int | None = None
    for entry in entries:
        when = times.of(entry.record.get("input"))
        current = when if when is not None else current
        if current is not None and current >= since:
            kept.append(entry)
    return kept
