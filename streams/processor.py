"""The lifecycle processor: decode, call the pure engine, keep state, say what to send.

No Faust here: the agent in ``streams.app`` feeds it a batch of messages, sends what it
returns, waits for the broker, then calls :meth:`LifecycleProcessor.flush` to apply the staged
state writes.

State is one table. Keys: ``s:<partition>:<subject>`` for a subject's state,
``p:<partition>`` for the partition's progress (clock, events processed, deferred ticks) and
``u:<partition>:<content id>`` for each certificate the engine issued that could not be signed
yet.
All events of a subject share a partition, and every key names its partition, so each
partition's state lives, in order, in that partition of the changelog, and a restarted worker
recovers exactly what it owned.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from ebbtide import authenticity, metrics
from ebbtide.settings import Topics
from ebbtide.signer import CertificateSigner
from schemas import (
    CLOCK_TICK,
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    ERASURE_ANSWER,
    LIFECYCLE_EVENT,
    InvalidMessage,
    codec_for,
    dead_letter_body,
)
from streams.policy import calendar, snapshot
from streams.policy.decisions import CertificateDue, DeleteRecord, answer_problem, stable_id
from streams.policy.due import DueIndex, PartitionProgress
from streams.policy.engine import (
    Outcome,
    SubjectState,
    apply_event,
    apply_receipt,
    fire_due,
    new_subject,
    record_id,
    restamp,
)
from streams.policy.events import DeletionReported, RecordWritten
from streams.policy.rules import Policy
from streams.staging import StagedTable
from streams.translate import (
    answer_record,
    command_record,
    decision_record,
    tick_time,
    to_event,
    to_report,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Out:
    """One message to send."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


DECODED_CACHE = 20_000  # subjects kept decoded in memory beside the table
# Event times the worker accepts by default: 1990 to 2100 (EBBTIDE_EVENT_YEARS). A time outside
# is a producer's error (e.g. a placeholder 9999-12-31), not something to keep data for.
DEFAULT_EVENT_WINDOW = (631_152_000_000, 4_102_444_800_000)


def subject_key(partition: int, subject_id: str) -> str:
    return f"s:{partition}:{subject_id}"


# A subject's state is one changelog message: past what the broker takes (1 MB by default) it
# could not be written and the worker would fail on the same batch again and again. A new record
# may take a subject's state to MAX_STATE_BYTES, with room kept for what each live copy still
# grows by (its order, its answer and signature: RESERVE_PER_COPY); any other event (a fact: an
# account closed, an erasure, ...) may take it to HARD_STATE_BYTES, so a subject that has
# reached the limit can still be closed and deleted.
MAX_STATE_BYTES = 700_000
HARD_STATE_BYTES = 900_000
RESERVE_PER_COPY = 400
MAX_DEFERRED_TICKS = 10_000  # ticks waiting for events of one partition (each a few bytes of progress)
# Entries (seen ids, facts, records) a subject may have before its size is measured: with every
# id and key at its 512-character limit, fewer entries cannot come near the limits.
_MEASURE_FROM = 100


def state_size(state: SubjectState, grows: bool) -> int | None:
    """The size ``state`` counts as (encoded, plus the reserve of its live copies) if that is over
    its limit (MAX_STATE_BYTES where the event adds a record, ``grows``; else HARD_STATE_BYTES),
    else None. Measured only for subjects with many entries."""
    if len(state.seen) + len(state.facts) + len(state.records) < _MEASURE_FROM:
        return None
    live = sum(1 for r in state.records.values() if r.status in ("pending", "ordered") or not r.certified)
    size = len(json.dumps(snapshot.dump(state), separators=(",", ":"))) + RESERVE_PER_COPY * live
    return size if size > (MAX_STATE_BYTES if grows else HARD_STATE_BYTES) else None


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a message key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


_SOURCES = {"lifecycle_event": "events", "deletion_receipt": "receipts", "clock_tick": "clock"}


def _engine(step: Callable[..., Outcome], what: str, *args: Any) -> Outcome:
    """Run one pure engine step; an exception it raises is this record's, not the pipeline's: it
    becomes an :class:`InvalidMessage` (dead-lettered with the reason) instead of stopping every
    deletion. The engine is deterministic, so running it again would fail the same way. The
    reason names the exception type and where it was raised, never a value."""
    try:
        return step(*args)
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).stem}.{frame.name}"
        metrics.PROCESSING_ERRORS.labels(_SOURCES[what]).inc()
        raise InvalidMessage(f"{what}: processing failed ({type(exc).__name__} in {where})") from None


def _check_issued(state: SubjectState, report: DeletionReported) -> None:
    """Refuse a receipt for a command the worker never issued for that copy (the engine would
    ignore it; here it is a security event). A copy whose order failed forgets its command id
    until it is ordered again with the same id, so a late answer to that order is let through
    (the engine ignores it)."""
    record = state.records.get(record_id(report.store, report.category, report.record_key))
    if record is None or (
        record.command_id != report.command_id and (record.command_id is not None or record.failures == 0)
    ):
        why = "deletion_receipt: answers a command the worker never issued for this copy"
        raise authenticity.Refused(authenticity.NOT_ISSUED, why)


def partition_of_key(key: str) -> int:
    """The partition a state key belongs to: ``s:<p>:<subject>``, ``p:<p>`` or ``u:<p>:<id>``."""
    return int(key.split(":", 2)[1])


class LifecycleProcessor:
    def __init__(
        self,
        policy: Policy,
        topics: Topics,
        table: MutableMapping[str, Any],
        partitions: int = 1,
        signer: CertificateSigner | None = None,
        event_window: tuple[int, int] = DEFAULT_EVENT_WINDOW,
        tick_problem: Callable[[int], str | None] | None = None,
        clock_key: authenticity.ClockKey | None = None,
        trusted: authenticity.TrustedKeys | None = None,
        hold_keys: authenticity.HoldKeys | None = None,
    ) -> None:
        """A record announced by a store the policy's store map does not list as holding its
        category is dead-lettered (its deletion commands would have nowhere to go).
        ``signer`` signs the deletion certificates the engine issues (None: none are published,
        which only tests of other things should do); it also signs every deletion command.
        ``trusted`` holds the sinks' public keys: a receipt not signed by its store's key, or
        answering a command never issued for its copy, is dead-lettered and changes nothing
        (None: no key is trusted, so every receipt is refused).
        ``hold_keys`` holds the legal hold signers' public keys: a ``LegalHoldPlaced`` or
        ``LegalHoldReleased`` not signed by one of them is dead-lettered before the engine sees it
        (None: no key is trusted, so every hold event is refused)."""
        self.trusted = trusted or authenticity.TrustedKeys()
        self.hold_keys = hold_keys if hold_keys is not None else authenticity.HoldKeys()
        self.policy = policy
        self.signer = signer
        self.partitions = partitions
        # Event times accepted: [from, until) in epoch ms; outside, an event is dead-lettered.
        self.event_window = event_window
        # Why a tick's time is refused (e.g. far ahead of the wall clock), if it is; None: any.
        self.tick_problem = tick_problem
        # The clock's public key: a tick it did not sign for its partition is refused (None: any
        # tick is taken, as in-process replays and the tests' oracles feed their own).
        self.clock_key = clock_key
        self.topics = topics
        self.state = StagedTable(table)
        self._due: dict[int, DueIndex] = {}
        # Decoded states, valid while the table still holds the very object they came from.
        self._decoded: dict[str, tuple[Any, SubjectState]] = {}
        self._backlog: list[Out] = []  # decisions of subjects judged again under a new policy
        self._pending: dict[int, int] = {}
        # Per partition: the table keys of certificates held for want of a signature.
        self._unsigned: dict[int, set[str]] = {}
        # Per partition and store: copies chased for want of a receipt ("late") and all copies
        # ordered and not answered yet ("open").
        self._unanswered: dict[str, dict[int, dict[str, int]]] = {"late": {}, "open": {}}
        self._events = codec_for(LIFECYCLE_EVENT)
        self._ticks = codec_for(CLOCK_TICK)
        self._receipts = codec_for(DELETION_RECEIPT)
        self._commands = codec_for(DELETION_COMMAND)
        self._decisions = codec_for(DECISION)
        self._answers = codec_for(ERASURE_ANSWER)

    # -- entry points -----------------------------------------------------------------------

    def on_message(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> list[Out]:
        if topic == self.topics.events:
            return self.on_event(partition, offset, key, value)
        if topic == self.topics.clock:
            return self.on_tick(partition, offset, key, value)
        if topic == self.topics.receipts:
            return self.on_receipt(partition, offset, key, value)
        raise ValueError(f"lifecycle processor does not read topic {topic}")

    def lookup(self, subject_id: str) -> tuple[dict[str, Any], int | None] | None:
        """A subject's stored state and its partition's clock (for state queries), if known here."""
        for partition in range(self.partitions):
            raw = self.state.table.get(subject_key(partition, subject_id))
            if raw is not None:
                return raw, self._progress(partition).now
        return None

    def _with_backlog(self, out: list[Out]) -> list[Out]:
        if not self._backlog:
            return out
        backlog, self._backlog = self._backlog, []
        return backlog + out

    def resume(self, partitions: set[int]) -> None:
        """Once the state of ``partitions`` is recovered (a start, a rebalance): their gauges say
        where they are at once (the clock of each, the copies awaiting a receipt), not only after
        their next message, which may be long in coming."""
        for partition in sorted(partitions):
            progress = self._progress(partition)
            if progress.now is not None:
                metrics.CLOCK_TIME.labels(str(partition)).set(progress.now / 1000)
            self._index(partition)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is held in memory for partitions this worker lost or (re)gained: their
        state may have moved on elsewhere, so the due index is rebuilt from the table when next
        needed."""
        touched = {  # the stores whose per-store gauges count these partitions' copies
            kind: {store for p in partitions for store in by_partition.get(p, {})}
            for kind, by_partition in self._unanswered.items()
        }
        for partition in partitions:
            self._due.pop(partition, None)
            self._pending.pop(partition, None)
            if self._unsigned.pop(partition, None):
                metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
            for counts in self._unanswered.values():
                counts.pop(partition, None)
            # Gauges by partition say what this worker holds: a lost partition's series go (the
            # worker that took it reports them), and the per-store totals lose its share.
            metrics.PENDING_DEADLINES.remove(str(partition))
            metrics.CLOCK_TIME.remove(str(partition))
            prefix = f"s:{partition}:"
            for key in [k for k in self._decoded if k.startswith(prefix)]:
                del self._decoded[key]
        for kind, gauge in (("late", metrics.OVERDUE), ("open", metrics.AWAITING_RECEIPT)):
            for store in touched[kind]:
                gauge.labels(store).set(sum(c.get(store, 0) for c in self._unanswered[kind].values()))

    def flush(self) -> int:
        """Apply this message's state writes (after its output is on the broker)."""
        return self.state.flush()

    def on_event(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        return self._with_backlog(self._on_event(partition, offset, key, value))

    def _on_event(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        progress = self._progress(partition)
        out: list[Out] = []
        try:
            record = self._events.decode(value)
            event = to_event(record)
            self._check_routing("lifecycle_event", partition, key, event.subject_id)
            if not self.event_window[0] <= event.time < self.event_window[1]:
                raise InvalidMessage(
                    f"lifecycle_event: event_time outside the accepted window "
                    f"[{calendar.iso(self.event_window[0])}, {calendar.iso(self.event_window[1])})"
                )
            if authenticity.hold_event(record) is not None:
                self._check_hold(record)
            if isinstance(event, RecordWritten):
                problem = self.policy.announcement_problem(event.store, event.category, event.ref)
                if problem is not None:
                    raise InvalidMessage(f"lifecycle_event: {problem}")
            state = self._subject(partition, event.subject_id)
            outcome = _engine(apply_event, "lifecycle_event", state, event, self.policy)
            size = state_size(outcome.state, isinstance(event, RecordWritten))
            if size is not None:
                raise InvalidMessage(
                    f"lifecycle_event: the subject's state would grow to {size:,} bytes (with room for "
                    "its live copies' answers), over what one changelog message may hold; not applied"
                )
        except InvalidMessage as exc:
            out.append(self._dead_letter("events", self.topics.events, partition, offset, key, value, exc))
        else:
            metrics.EVENTS_CONSUMED.labels(type(event).__name__).inc()
            out += self._settle(partition, state, outcome)
            if isinstance(event, RecordWritten) and any(d.kind == "STAMPED" for d in outcome.decisions):
                metrics.RECORDS_STAMPED.labels(event.category).inc()
        progress.events_done = max(progress.events_done, offset + 1)
        out += self._release_deferred(partition, progress)
        self._save_progress(partition, progress)
        return out

    def on_tick(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        return self._with_backlog(self._on_tick(partition, offset, key, value))

    def _on_tick(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            tick = self._ticks.decode(value)
            if self.clock_key is not None:
                try:
                    self.clock_key.check(tick, partition)  # the clock's key, for this partition
                except authenticity.Refused as refused:
                    metrics.SECURITY_EVENTS.labels("clock", refused.kind).inc()
                    raise InvalidMessage(f"security: {refused.reason}") from None
            now, events_end = tick_time(tick), int(tick["events_end"])
            problem = self.tick_problem(now) if self.tick_problem is not None else None
            if problem is not None:
                metrics.SECURITY_EVENTS.labels("clock", "tick_time").inc()
                raise InvalidMessage(f"clock_tick: {problem}")
            if events_end < 0:
                raise InvalidMessage("clock_tick: events_end is negative")
        except InvalidMessage as exc:
            return [self._dead_letter("clock", self.topics.clock, partition, offset, key, value, exc)]
        progress = self._progress(partition)
        latest = max([progress.now or -1, *(when for when, _ in progress.deferred)])
        if now <= latest:  # a replayed or stale tick: the clock never goes back, so it is a no-op
            out = self._sign_held(partition) if self.signer is not None else []
            return out + self._release_deferred(partition, progress)
        if len(progress.deferred) >= MAX_DEFERRED_TICKS:
            metrics.SECURITY_EVENTS.labels("clock", "deferred_full").inc()
            full = InvalidMessage(
                f"clock_tick: {MAX_DEFERRED_TICKS} ticks already wait for events of this partition; "
                "refused (see EbbtideTicksDeferred)"
            )
            return [self._dead_letter("clock", self.topics.clock, partition, offset, key, value, full)]
        progress.deferred.append((now, events_end))
        self._index(partition)  # the certificates held for want of a signature are known from here
        out = self._sign_held(partition) if self.signer is not None else []
        out += self._release_deferred(partition, progress)
        self._save_progress(partition, progress)
        return out

    def on_receipt(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        return self._with_backlog(self._on_receipt(partition, offset, key, value))

    def _on_receipt(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            receipt = self._receipts.decode(value)
            report = to_report(receipt)
            problem = answer_problem(report.outcome, report.rows)
            if problem is not None:  # it could not be certified: the copy waits for a true answer
                raise InvalidMessage(f"deletion_receipt: {problem}")
            self._check_routing("deletion_receipt", partition, key, report.subject_id)
            self.trusted.check(receipt)  # its own store's key, over its fields
            state = self._load(partition, report.subject_id)
            if state is None:
                raise InvalidMessage("deletion_receipt: no subject with this id on this partition")
            _check_issued(state, report)
            outcome = _engine(apply_receipt, "deletion_receipt", state, report, self.policy)
        except authenticity.Refused as exc:  # changes nothing; dead-lettered, counted, alerted
            metrics.SECURITY_EVENTS.labels("receipts", exc.kind).inc()
            why = InvalidMessage(f"security: {exc.reason}")
            return [self._dead_letter("receipts", self.topics.receipts, partition, offset, key, value, why)]
        except InvalidMessage as exc:
            return [self._dead_letter("receipts", self.topics.receipts, partition, offset, key, value, exc)]
        metrics.RECEIPTS.labels(report.store, report.outcome).inc()
        return self._settle(partition, state, outcome)

    # -- internals ----------------------------------------------------------------------------

    def _check_hold(self, record: dict[str, Any]) -> None:
        """A legal hold event must be signed by a trusted hold signer's key, over its fields (its
        subject, time and what it holds), or anyone who can write to the events topic could keep a
        subject's data forever or lift a real hold. One that is not is refused as a security event
        (an :class:`InvalidMessage`: dead-lettered, not applied). The keys are fixed for the
        worker's life, so a replay of the same log gets the same answer."""
        try:
            self.hold_keys.check(record)
        except authenticity.Refused as refused:
            metrics.SECURITY_EVENTS.labels("events", refused.kind).inc()
            raise InvalidMessage(f"security: {refused.reason}") from None

    def _check_routing(self, what: str, partition: int, key: bytes | None, subject_id: str) -> None:
        """A subject's messages must be keyed by it and on its partition (Kafka's default
        partitioner, murmur2), or its state would split across partitions and its deletions be
        lost: a message proves nothing by the partition it arrived on."""
        if not subject_id.strip():
            raise InvalidMessage(f"{what}: empty subject_id")
        if key is None or key != subject_id.encode():
            raise InvalidMessage(f"{what}: message key is not the subject_id (messages are keyed by subject)")
        expected = partition_for(key, self.partitions)
        if partition != expected:
            raise InvalidMessage(
                f"{what}: misrouted: on partition {partition}, but its subject's partition is {expected} "
                f"of {self.partitions}"
            )

    def _release_deferred(self, partition: int, progress: PartitionProgress) -> list[Out]:
        """Apply, in order, the ticks whose preceding events have all been processed."""
        out: list[Out] = []
        while progress.deferred and progress.deferred[0][1] <= progress.events_done:
            now, _ = progress.deferred.pop(0)
            if progress.now is not None and now <= progress.now:
                continue  # the clock never goes back; a replayed tick is a no-op
            progress.now = now
            for subject_id in self._index(partition).take(now):
                state = self._load(partition, subject_id)
                if state is None:
                    continue
                try:
                    outcome = _engine(fire_due, "clock_tick", state, now, self.policy)
                except InvalidMessage as exc:  # the tick is not at fault: the subject waits, counted
                    log.error("subject on partition %d not judged at this tick: %s", partition, exc.reason)
                    next_deadline = state.next_deadline()
                    if next_deadline is not None:  # tried again at the next tick, never dropped
                        self._index(partition).file(subject_id, next_deadline)
                    continue
                out += self._settle(partition, state, outcome, refile=True)
            metrics.CLOCK_TIME.labels(str(partition)).set(now / 1000)
        metrics.TICKS_DEFERRED.labels(str(partition)).set(len(progress.deferred))
        return out

    def _settle(
        self, partition: int, before: SubjectState, outcome: Outcome, refile: bool = False
    ) -> list[Out]:
        """Stage the new state, file its next deadline and turn decisions into messages.

        ``refile``: the subject was just taken out of the due index by a tick, so its next
        deadline must be filed again even if nothing changed.
        """
        state = outcome.state
        if state is not before:
            key = subject_key(partition, state.subject_id)
            old = self.state.get(key)  # ``before`` as stored (None for a new subject)
            raw = snapshot.dump(state)  # with its derived counts, read here rather than recounted
            self.state[key] = raw
            self._remember(key, raw, state)
            self._count_pending(partition, raw["waiting"] - (snapshot.summary(old)[2] if old else 0))
            if old is not None:
                self._count_unanswered(partition, snapshot.unanswered_summary(old), -1)
            self._count_unanswered(partition, snapshot.unanswered_summary(raw), +1)
            next_deadline = raw["next"]
        else:
            next_deadline = state.next_deadline()
        if next_deadline is not None and (refile or state is not before):
            self._index(partition).file(state.subject_id, next_deadline)
        message_key = state.subject_id.encode()
        out = [
            Out(self.topics.commands(c.store), message_key, self._commands.encode(self._command(c)))
            for c in outcome.commands
        ]
        out += [
            Out(self.topics.decisions, message_key, self._decisions.encode(decision_record(d)))
            for d in outcome.decisions
        ]
        out += [
            Out(self.topics.answers, message_key, self._answers.encode(answer_record(a)))
            for a in outcome.answers
        ]
        for certificate in outcome.certificates:
            if self.signer is None:
                metrics.CERTIFICATES.labels("unsigned").inc()
                continue
            signed = self._signed(certificate)
            if signed is None:
                self._hold_unsigned(partition, certificate)
            else:
                out.append(signed)
        for command in outcome.commands:
            metrics.COMMANDS_SENT.labels(command.store, command.category).inc()
            sent = before.records.get(record_id(command.store, command.category, command.record_key))
            if sent is not None and sent.status == "ordered" and sent.command_id == command.command_id:
                metrics.COMMANDS_RESENT.labels(command.store).inc()  # chased: no receipt in time
        for decision in outcome.decisions:
            metrics.DECISIONS.labels(decision.kind).inc()
            if decision.kind == "DUTY_OVERDUE":  # record: duty/<erasure|export|breach>/<id>...
                metrics.DUTIES_OVERDUE.labels(decision.record.split("/")[1]).inc()
        return out

    def _command(self, command: DeleteRecord) -> dict[str, Any]:
        """A deletion command as sent: signed with the worker's key, for the sinks to verify."""
        record = command_record(command)
        return self.signer.sign_command(record) if self.signer is not None else record

    def _signed(self, certificate: CertificateDue, retry: bool = False) -> Out | None:
        """The signed certificate to publish, or None if signing failed (it is then kept and
        tried again at the partition's next tick: a certified round is never lost)."""
        assert self.signer is not None
        try:
            signed = self.signer.encode(certificate)
        except Exception as exc:  # a broken key, a refused content: kept, retried, alerted
            if not retry:
                metrics.CERTIFICATES.labels("deferred").inc()
            log.error(
                "certificate for subject %s not signed (%s: %s); kept and tried again at the next tick",
                certificate.subject_id,
                type(exc).__name__,
                exc,
            )
            return None
        metrics.CERTIFICATES.labels("issued").inc()
        return Out(self.topics.certificates, certificate.subject_id.encode(), signed)

    def unsigned(self) -> int:
        """Certificates held for want of a signature, over the partitions this worker holds."""
        return sum(len(keys) for keys in self._unsigned.values())

    def _hold_unsigned(self, partition: int, certificate: CertificateDue) -> None:
        """Keep a certificate that could not be signed in the partition's state, under a key of
        its own (``u:<partition>:<content id>``), so no state value grows with an outage."""
        self._index(partition)  # so the held keys are known before this one is added
        content = snapshot.dump_certificate(certificate)
        key = f"u:{partition}:{stable_id(json.dumps(content, sort_keys=True))}"
        self.state[key] = content
        self._unsigned.setdefault(partition, set()).add(key)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())

    def _sign_held(self, partition: int) -> list[Out]:
        """Try again to sign the partition's certificates that could not be signed before."""
        held = self._unsigned.get(partition)
        if not held:
            return []
        out: list[Out] = []
        for key in sorted(held):
            signed = self._signed(snapshot.load_certificate(self.state[key]), retry=True)
            if signed is not None:
                out.append(signed)
                del self.state[key]
                held.discard(key)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
        return out

    def _index(self, partition: int) -> DueIndex:
        """The partition's due index; after a restart, rebuilt from the recovered states."""
        index = self._due.get(partition)
        if index is None:
            index = self._due[partition] = DueIndex()
            prefix = f"s:{partition}:"
            pending = 0
            judged_before: list[str] = []
            for counts in self._unanswered.values():
                counts[partition] = {}
            held = self._unsigned[partition] = set()
            for key in self.state.keys_in_table():
                if key.startswith(f"u:{partition}:"):
                    held.add(key)
                elif key.startswith(prefix):
                    raw = self.state.table[key]
                    self._count_unanswered(partition, snapshot.unanswered_summary(raw), +1)
                    subject_id, deadline, waiting, label = snapshot.summary(raw)
                    if deadline is not None:
                        index.file(subject_id, deadline)
                    pending += waiting
                    if label != self.policy.label:
                        judged_before.append(subject_id)
            self._pending[partition] = 0
            self._count_pending(partition, pending)
            metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
            for subject_id in judged_before:  # stamped under another policy: judge them again now
                self._load(partition, subject_id)
        return index

    def _count_unanswered(
        self, partition: int, by_store: tuple[dict[str, int], dict[str, int]], sign: int
    ) -> None:
        for (kind, gauge), changes in zip(
            (("late", metrics.OVERDUE), ("open", metrics.AWAITING_RECEIPT)), by_store, strict=True
        ):
            counts = self._unanswered[kind].setdefault(partition, {})
            for store, n in changes.items():
                counts[store] = counts.get(store, 0) + sign * n
                gauge.labels(store).set(sum(c.get(store, 0) for c in self._unanswered[kind].values()))

    def overdue(self, kind: str = "late") -> dict[str, int]:
        """Per store, over the partitions this worker holds: copies chased for want of a receipt
        (``late``) or all copies ordered and not answered yet (``open``)."""
        total: dict[str, int] = {}
        for counts in self._unanswered[kind].values():
            for store, n in counts.items():
                total[store] = total.get(store, 0) + n
        return total

    def _count_pending(self, partition: int, delta: int) -> None:
        self._index(partition)  # make sure the count starts from the recovered states
        self._pending[partition] = self._pending.get(partition, 0) + delta
        metrics.PENDING_DEADLINES.labels(str(partition)).set(self._pending[partition])

    def _subject(self, partition: int, subject_id: str) -> SubjectState:
        return self._load(partition, subject_id) or new_subject(subject_id)

    def _load(self, partition: int, subject_id: str) -> SubjectState | None:
        key = subject_key(partition, subject_id)
        raw = self.state.get(key)
        if raw is None:
            return None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        state = snapshot.load(raw)
        self._remember(key, raw, state)
        if state.policy != self.policy.label:
            state = self._judge_again(partition, state)
        return state

    def _judge_again(self, partition: int, state: SubjectState) -> SubjectState:
        """Judge every record of a subject stamped under another policy version under this one;
        the decisions go out with the current batch."""
        try:
            outcome = _engine(
                restamp, "clock_tick", state, state, self.policy, None, True, f"policy:{self.policy.label}"
            )
        except InvalidMessage as exc:  # kept as it was judged; tried again when next loaded
            log.error(
                "subject on partition %d not judged again under the new policy: %s", partition, exc.reason
            )
            return state
        self._backlog += self._settle(partition, state, outcome)
        return outcome.state

    def _remember(self, key: str, raw: Any, state: SubjectState) -> None:
        self._decoded.pop(key, None)
        self._decoded[key] = (raw, state)
        if len(self._decoded) > DECODED_CACHE:
            del self._decoded[next(iter(self._decoded))]  # the oldest entry (first in, first out)

    def _progress(self, partition: int) -> PartitionProgress:
        return PartitionProgress.load(self.state.get(f"p:{partition}"))

    def _save_progress(self, partition: int, progress: PartitionProgress) -> None:
        self.state[f"p:{partition}"] = progress.dump()

    def _dead_letter(
        self,
        source: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        exc: InvalidMessage,
    ) -> Out:
        metrics.DLQ_MESSAGES.labels(source).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, exc.reason)
        key, value, dropped = dead_letter_body(key, value)
        headers = (
            ("reason", exc.reason.encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
            *dropped,
        )
        return Out(self.topics.dlq, key, value, headers)
