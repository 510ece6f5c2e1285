"""The lifecycle processor: decode, call the pure engine, keep tables, say what to send.

No Faust here: the agent in ``streams.app`` feeds it messages and sends what it returns.
Tables are plain mutable mappings (Faust tables in production, dicts in unit tests).
All events of a subject share a partition, and every table write happens while a message
of that partition is processed, so each partition's state lives in that partition's
changelog and a restarted worker recovers exactly what it owned.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from ebbtide import metrics
from ebbtide.settings import Topics
from schemas import (
    CLOCK_TICK,
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    LIFECYCLE_EVENT,
    InvalidMessage,
    codec_for,
)
from streams.policy import snapshot
from streams.policy.due import PartitionProgress, schedule, take_due
from streams.policy.engine import Outcome, SubjectState, apply_event, apply_receipt, fire_due, new_subject
from streams.policy.events import RecordWritten
from streams.policy.rules import Policy
from streams.translate import command_record, decision_record, tick_time, to_event, to_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Out:
    """One message to send."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class LifecycleProcessor:
    def __init__(
        self,
        policy: Policy,
        topics: Topics,
        subjects: MutableMapping[str, Any],
        due: MutableMapping[str, Any],
        progress: MutableMapping[str, Any],
    ) -> None:
        self.policy = policy
        self.topics = topics
        self.subjects = subjects
        self.due = due
        self.progress = progress
        self._events = codec_for(LIFECYCLE_EVENT)
        self._ticks = codec_for(CLOCK_TICK)
        self._receipts = codec_for(DELETION_RECEIPT)
        self._commands = codec_for(DELETION_COMMAND)
        self._decisions = codec_for(DECISION)

    # -- entry points, one per input topic -------------------------------------------------

    def on_message(self, topic: str, partition: int, offset: int, key: bytes | None,
                   value: bytes | None) -> list[Out]:
        if topic == self.topics.events:
            return self.on_event(partition, offset, key, value)
        if topic == self.topics.clock:
            return self.on_tick(partition, offset, key, value)
        if topic == self.topics.receipts:
            return self.on_receipt(partition, offset, key, value)
        raise ValueError(f"lifecycle processor does not read topic {topic}")

    def on_event(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        progress = self._progress(partition)
        out: list[Out] = []
        try:
            event = to_event(self._events.decode(value))
            if key is not None and key != event.subject_id.encode():
                raise InvalidMessage("lifecycle_event: message key is not the event's subject_id")
        except InvalidMessage as exc:
            out.append(self._dead_letter("events", self.topics.events, partition, offset, key, value, exc))
        else:
            metrics.EVENTS_CONSUMED.labels(type(event).__name__).inc()
            state = self._subject(event.subject_id)
            outcome = apply_event(state, event, self.policy)
            out += self._settle(partition, progress, state, outcome)
            if isinstance(event, RecordWritten) and outcome.decisions:
                metrics.RECORDS_STAMPED.labels(event.category).inc()
        progress.events_done = max(progress.events_done, offset + 1)
        out += self._release_deferred(partition, progress)
        self._save_progress(partition, progress)
        return out

    def on_tick(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            tick = self._ticks.decode(value)
        except InvalidMessage as exc:
            return [self._dead_letter("clock", self.topics.clock, partition, offset, key, value, exc)]
        progress = self._progress(partition)
        now = tick_time(tick)
        progress.deferred.append((now, int(tick["events_end"])))
        out = self._release_deferred(partition, progress)
        metrics.TICKS_DEFERRED.labels(str(partition)).set(len(progress.deferred))
        self._save_progress(partition, progress)
        return out

    def on_receipt(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            report = to_report(self._receipts.decode(value))
        except InvalidMessage as exc:
            return [self._dead_letter("receipts", self.topics.receipts, partition, offset, key, value, exc)]
        metrics.RECEIPTS.labels(report.store, report.outcome).inc()
        raw = self.subjects.get(report.subject_id)
        if raw is None:
            return []
        progress = self._progress(partition)
        state = snapshot.load(raw)
        out = self._settle(partition, progress, state, apply_receipt(state, report, self.policy))
        self._save_progress(partition, progress)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _release_deferred(self, partition: int, progress: PartitionProgress) -> list[Out]:
        """Apply, in order, the ticks whose preceding events have all been processed."""
        out: list[Out] = []
        while progress.deferred and progress.deferred[0][1] <= progress.events_done:
            now, _ = progress.deferred.pop(0)
            if progress.now is not None and now <= progress.now:
                continue  # the clock never goes back; a replayed tick is a no-op
            progress.now = now
            for subject_id in take_due(self.due, progress, partition, now):
                raw = self.subjects.get(subject_id)
                if raw is not None:
                    state = snapshot.load(raw)
                    outcome = fire_due(state, now, self.policy)
                    out += self._settle(partition, progress, state, outcome, refile=True)
            metrics.CLOCK_TIME.labels(str(partition)).set(now / 1000)
        metrics.TICKS_DEFERRED.labels(str(partition)).set(len(progress.deferred))
        return out

    def _settle(self, partition: int, progress: PartitionProgress, before: SubjectState,
                outcome: Outcome, refile: bool = False) -> list[Out]:
        """Store the new state, file its next deadline and turn decisions into messages.

        ``refile``: the subject was just taken out of the due index by a tick, so its next
        deadline must be filed again even if nothing changed.
        """
        state = outcome.state
        key = state.subject_id.encode()
        if state is not before:
            self.subjects[state.subject_id] = snapshot.dump(state)
            progress.pending += state.pending_deadlines() - before.pending_deadlines()
            metrics.PENDING_DEADLINES.labels(str(partition)).set(progress.pending)
        next_deadline = state.next_deadline()
        if next_deadline is not None and (refile or state is not before):
            schedule(self.due, progress, partition, state.subject_id, next_deadline)
        out = [Out(self.topics.decisions, key, self._decisions.encode(decision_record(d)))
               for d in outcome.decisions]
        for decision in outcome.decisions:
            metrics.DECISIONS.labels(decision.kind).inc()
        for command in outcome.commands:
            out.append(Out(self.topics.commands(command.store), key,
                           self._commands.encode(command_record(command))))
            metrics.COMMANDS_SENT.labels(command.store, command.category).inc()
        return out

    def _subject(self, subject_id: str) -> SubjectState:
        raw = self.subjects.get(subject_id)
        return new_subject(subject_id) if raw is None else snapshot.load(raw)

    def _progress(self, partition: int) -> PartitionProgress:
        return PartitionProgress.load(self.progress.get(str(partition)))

    def _save_progress(self, partition: int, progress: PartitionProgress) -> None:
        self.progress[str(partition)] = progress.dump()

    def _dead_letter(self, source: str, topic: str, partition: int, offset: int,
                     key: bytes | None, value: bytes | None, exc: InvalidMessage) -> Out:
        metrics.DLQ_MESSAGES.labels(source).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, exc.reason)
        headers = (
            ("reason", exc.reason.encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        )
        return Out(self.topics.dlq, key or b"", value or b"", headers)
