"""The lifecycle processor: decode a message, check it, call the pure engine, stage the new
state and say what to send.

No Faust here: the agent in ``streams.worker.app`` feeds it a batch of messages and the batch
step (``streams.worker.batch``) sends what it returns, waits for the broker, then calls
:meth:`LifecycleProcessor.flush` to apply the staged state writes. The table's keys and the
staging are in ``streams.worker.staging``; the per-partition indexes and gauges in
``partitions``; checks in ``checks``; the dead-letter path in ``routing``; encoding in
``outputs``; certificates in ``issuing``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from ebbtide.runtime import authenticity, metrics
from ebbtide.runtime.settings import Topics
from ebbtide.schemas import CLOCK_TICK, DELETION_RECEIPT, LIFECYCLE_EVENT, InvalidMessage, codec_for
from ebbtide.schemas.wire import WireDecoder, WriterSchemas
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.events import RecordWritten
from ebbtide.streams.engine.firing import fire_due
from ebbtide.streams.engine.model import Outcome, SubjectState, new_subject
from ebbtide.streams.engine.receipts import apply_receipt
from ebbtide.streams.engine.stamping import apply_event, restamp
from ebbtide.streams.policy.rules import Policy
from ebbtide.streams.policy.vocabulary import answer_problem
from ebbtide.streams.worker import checks, state_format
from ebbtide.streams.worker.certify import CertificateSigner
from ebbtide.streams.worker.chaining import Chains
from ebbtide.streams.worker.checks import DEFAULT_EVENT_WINDOW
from ebbtide.streams.worker.clock_entry import clock_applied, position
from ebbtide.streams.worker.issuing import Certificates
from ebbtide.streams.worker.outputs import Outputs, count
from ebbtide.streams.worker.partitions import Partitions
from ebbtide.streams.worker.progress import PartitionProgress
from ebbtide.streams.worker.routing import SECURITY, Out, check_routing, dead_letter, engine_step
from ebbtide.streams.worker.staging import PartitionNotHeld, StagedTable, Subjects, state_size, subject_key
from ebbtide.streams.worker.translate import to_event, to_report

log = logging.getLogger(__name__)

MAX_DEFERRED_TICKS = 10_000  # ticks waiting for events of one partition (each a few bytes of progress)


class LifecycleProcessor:
    """Events, clock ticks and receipts in; staged state and the messages to send out."""

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
        checkpoints: tuple[int, float] = (1000, 60.0),
        registry: WriterSchemas | None = None,
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
        (None: no key is trusted, so every hold event is refused).
        ``checkpoints``: a chain checkpoint every so many decisions or seconds (``chaining``).
        ``registry``: the writer schemas of Confluent-framed events by id (``schema_wait`` fetches
        them before a batch; None: such an event is dead-lettered, naming the setting)."""
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
        self.subjects = Subjects(self.state, self._judged_now)
        self.owned = Partitions(self.state, policy.label, self.load)
        self.chains = Chains(self.state, topics.checkpoints, policy.label, signer, *checkpoints)
        self.outputs = Outputs(topics, signer, self.chains)
        self.certificates = Certificates(signer, topics.certificates, self.state, self.owned)
        self._backlog: list[Out] = []  # decisions of subjects judged again under a new policy
        self._events = WireDecoder(codec_for(LIFECYCLE_EVENT), registry)  # either framing
        self._ticks = codec_for(CLOCK_TICK)
        self._receipts = codec_for(DELETION_RECEIPT)

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

    def end_batch(self) -> list[Out]:
        """What the batch sends last, with the rest of its output: the chain checkpoints due."""
        return self.chains.checkpoints()

    def flush(self) -> int:
        """Apply this batch's state writes (after its output is on the broker)."""
        return self.state.flush()

    def discard(self) -> None:
        """Drop this batch's state writes (its output may not be on the broker)."""
        self.state.discard()

    def lookup(self, subject_id: str) -> tuple[dict[str, Any], int | None] | None:
        """A subject's stored state and its partition's clock (for state queries), if known here."""
        for partition in range(self.partitions):
            try:
                raw = self.state.table.get(subject_key(partition, subject_id))
            except PartitionNotHeld:
                continue  # its state is on another worker
            if raw is not None:
                return snapshot.dump(state_format.decode(raw)), self.owned.progress(partition).now
        return None

    def resume(self, partitions: set[int]) -> None:
        """Once the state of ``partitions`` is recovered (a start, a rebalance): their gauges say
        where they are at once (the clock of each, the copies awaiting a receipt), not only after
        their next message, which may be long in coming. Decisions made here (subjects judged
        again under a new policy) go out with the next message, with no ``input``."""
        self.outputs.input = None
        self.owned.resume(partitions)
        self.chains.resume(partitions)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is held in memory for partitions this worker lost or (re)gained: their
        state may have moved on elsewhere, so the due index and counts are started again (from
        the partition's digest or its states) when next needed."""
        self.owned.forget(partitions)
        self.chains.forget(partitions)
        for partition in partitions:
            self.subjects.forget(partition)

    def overdue(self, kind: str = "late") -> dict[str, int]:
        """Per store, over the partitions this worker holds: copies chased for want of a receipt
        (``late``) or all copies ordered and not answered yet (``open``)."""
        return self.owned.overdue(kind)

    def unsigned(self) -> int:
        """Certificates held for want of a signature, over the partitions this worker holds."""
        return self.owned.unsigned()

    def load(self, partition: int, subject_id: str) -> SubjectState | None:
        """A subject's state, judged under the current policy when it is decoded, if it has one."""
        return self.subjects.load(partition, subject_id)

    def on_event(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        self.outputs.input = position("events", partition, offset)  # every decision's ``input``
        return self._with_backlog(self._on_event(partition, offset, key, value))

    def on_tick(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        self.outputs.input = position("clock", partition, offset)
        return self._with_backlog(self._on_tick(partition, offset, key, value))

    def on_receipt(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        self.outputs.input = position("receipts", partition, offset)
        return self._with_backlog(self._on_receipt(partition, offset, key, value))

    # -- one message --------------------------------------------------------------------------

    def _on_event(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        progress = self.owned.progress(partition)
        out: list[Out] = []
        try:
            record = self._events.decode(value)
            event = to_event(record)
            check_routing("lifecycle_event", partition, key, event.subject_id, self.partitions)
            checks.check_event_time(event.time, self.event_window)
            if authenticity.hold_event(record) is not None:
                checks.check_hold(self.hold_keys, record)
            if isinstance(event, RecordWritten):
                problem = self.policy.announcement_problem(event.store, event.category, event.ref)
                if problem is not None:
                    raise InvalidMessage(f"lifecycle_event: {problem}")
            state = self.load(partition, event.subject_id) or new_subject(event.subject_id)
            outcome = engine_step(apply_event, "lifecycle_event", state, event, self.policy)
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
        self.owned.save_progress(partition, progress)
        return out

    def _on_tick(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            tick = self._ticks.decode(value)
            now, events_end = checks.check_tick(tick, partition, self.clock_key, self.tick_problem)
        except InvalidMessage as exc:
            return [self._dead_letter("clock", self.topics.clock, partition, offset, key, value, exc)]
        progress = self.owned.progress(partition)
        latest = max([progress.now or -1, *(entry[0] for entry in progress.deferred)])
        if now <= latest:  # a replayed or stale tick: the clock never goes back, so it is a no-op
            if progress.now is not None:  # ...but for the gauge, which says where the clock is
                metrics.CLOCK_TIME.labels(str(partition)).set(progress.now / 1000)
            out = self.certificates.sign_held(partition)
            return out + self._release_deferred(partition, progress)
        if len(progress.deferred) >= MAX_DEFERRED_TICKS:
            metrics.SECURITY_EVENTS.labels("clock", "deferred_full").inc()
            full = InvalidMessage(
                f"{SECURITY}clock_tick: {MAX_DEFERRED_TICKS} ticks already wait for events of this "
                "partition; refused (see EbbtideTicksDeferred)"
            )
            return [self._dead_letter("clock", self.topics.clock, partition, offset, key, value, full)]
        progress.deferred.append((now, events_end, offset))
        self.owned.index(partition)  # the certificates held for want of a signature are known from here
        out = self.certificates.sign_held(partition)
        out += self._release_deferred(partition, progress)
        self.owned.save_progress(partition, progress)
        return out

    def _on_receipt(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list[Out]:
        try:
            receipt = self._receipts.decode(value)
            report = to_report(receipt)
            problem = answer_problem(report.outcome, report.rows)
            if problem is not None:  # it could not be certified: the copy waits for a true answer
                raise InvalidMessage(f"deletion_receipt: {problem}")
            check_routing("deletion_receipt", partition, key, report.subject_id, self.partitions)
            self.trusted.check(receipt)  # its own store's key, over its fields
            state = self.load(partition, report.subject_id)
            if state is None:
                raise InvalidMessage("deletion_receipt: no subject with this id on this partition")
            checks.check_issued(state, report, self.policy)
            outcome = engine_step(apply_receipt, "deletion_receipt", state, report, self.policy)
        except authenticity.Refused as exc:  # changes nothing; dead-lettered, counted, alerted
            metrics.SECURITY_EVENTS.labels("receipts", exc.kind).inc()
            why = InvalidMessage(f"security: {exc.reason}")
            return [self._dead_letter("receipts", self.topics.receipts, partition, offset, key, value, why)]
        except InvalidMessage as exc:
            return [self._dead_letter("receipts", self.topics.receipts, partition, offset, key, value, exc)]
        metrics.RECEIPTS.labels(report.store, report.outcome).inc()
        return self._settle(partition, state, outcome)

    # -- internals ----------------------------------------------------------------------------

    def _release_deferred(self, partition: int, progress: PartitionProgress) -> list[Out]:
        """Apply, in order, the ticks whose preceding events have all been processed."""
        out: list[Out] = []
        while progress.deferred and progress.deferred[0][1] <= progress.events_done:
            now, _, tick = progress.deferred.pop(0)
            if progress.now is not None and now <= progress.now:
                continue  # the clock never goes back; a replayed tick is a no-op
            progress.now = now
            entry = clock_applied(partition, now, progress.events_done, tick, self.policy.label)
            out.append(self.outputs.clock_applied(partition, entry, position("clock", partition, tick)))
            for subject_id in self.owned.index(partition).take(now):
                state = self.load(partition, subject_id)
                if state is None:
                    continue
                try:
                    outcome = engine_step(fire_due, "clock_tick", state, now, self.policy)
                except InvalidMessage as exc:  # the tick is not at fault: the subject waits, counted
                    log.error(
                        "subject on partition %d not judged at this tick: %s",
                        partition,
                        exc.reason,
                        extra={"partition": partition},
                    )
                    next_deadline = state.next_deadline()
                    if next_deadline is not None:  # tried again at the next tick, never dropped
                        self.owned.index(partition).file(subject_id, next_deadline)
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
            old, summary = self.subjects.save(partition, state)  # ``old``: ``before`` as stored
            self.owned.count_state(partition, old, summary)
            next_deadline = summary.next
        else:
            next_deadline = state.next_deadline()
        if next_deadline is not None and (refile or state is not before):
            self.owned.index(partition).file(state.subject_id, next_deadline)
        out = self.outputs.messages(outcome, partition)
        out += self.certificates.issue(partition, outcome.certificates)
        count(before, outcome)
        return out

    def _judged_now(self, partition: int, state: SubjectState) -> SubjectState:
        """A state just decoded from the table, judged again if it was stamped under another
        policy version; the decisions go out with the current batch."""
        if state.policy == self.policy.label:
            return state
        try:
            outcome = engine_step(
                restamp, "clock_tick", state, state, self.policy, None, True, f"policy:{self.policy.label}"
            )
        except InvalidMessage as exc:  # kept as it was judged; tried again when next decoded
            log.error(
                "subject on partition %d not judged again under the new policy: %s", partition, exc.reason
            )
            return state
        self._backlog += self._settle(partition, state, outcome)
        return outcome.state

    def _with_backlog(self, out: list[Out]) -> list[Out]:
        if not self._backlog:
            return out
        backlog, self._backlog = self._backlog, []
        return backlog + out

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
        return dead_letter(self.topics.dlq, source, topic, partition, offset, key, value, exc)
