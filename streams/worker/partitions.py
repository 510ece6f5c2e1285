"""What the worker counts per partition it holds, and the gauges that report it.

Per partition: the due index (which subjects may have a deadline in which day), the number of
records waiting for a deadline, the copies ordered and not answered per store (all of them, and
those chased for want of a receipt), the records waiting and held per category, the duties open,
the subjects per policy label and the keys of certificates held for want of a signature. The
partition's progress (clock, events processed, deferred ticks) is in the table.

With the memory store all of it is in memory, rebuilt from the recovered table when a partition is
first needed (after a start or a rebalance: :meth:`Partitions._rebuild`, which reads every
state's summary). With the rocksdb store the due index is on disk (``progress.StoredDueIndex``)
and the counts are written as the partition's digest (``digest``) with every batch's states
(:meth:`Partitions.persisting`, called by the store), so a partition is started from its digest
without reading a state; the recovery paths keep the digest in step with what they write. The
full rebuild is left for a database without a valid digest (written by an older version) or with
subjects stamped under another policy, which are judged again; it writes a digest and all due
entries. Each start is logged with the path it took (``starts`` counts them).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from ebbtide.runtime import metrics
from ebbtide.streams.worker import digest, state_format
from ebbtide.streams.worker.derived import DerivedPartition, Replayed, Writes
from ebbtide.streams.worker.digest import DIGEST_KEY, Digest
from ebbtide.streams.worker.progress import Due, DueIndex, PartitionProgress, StoredDueIndex
from ebbtide.streams.worker.staging import PartitionNotHeld, StagedTable, partition_items, subject_key
from ebbtide.streams.worker.state_format import Entry, Summary

log = logging.getLogger(__name__)

# The gauges counted from each subject's summary (``state_format.Summary.by_label``, in this
# order), by their one label: store, category or duty.
_GAUGES = (
    ("late", metrics.OVERDUE),
    ("open", metrics.AWAITING_RECEIPT),
    ("waiting", metrics.RECORDS_WAITING),
    ("held", metrics.RECORDS_HELD),
    ("duties", metrics.DUTIES_OPEN),
)
SPILL = 100_000  # due entries a full rebuild holds before it writes them


def _policy_counts(counts: dict[str, int], old: Summary | None, new: Summary) -> None:
    if old is not None:
        digest.add_to(counts, old.policy, -1)
    digest.add_to(counts, new.policy, 1)


class Partitions:
    """The per-partition indexes and counts of the partitions this worker holds (see above)."""

    def __init__(self, state: StagedTable, policy_label: str, load: Callable[[int, str], object]) -> None:
        """``load`` loads a subject (``partition``, ``subject_id``): called, once its partition's
        index is rebuilt, for each subject stamped under a policy other than ``policy_label``,
        so that it is judged again now."""
        self.state = state
        self.policy_label = policy_label
        self.load = load
        self._due: dict[int, DueIndex | StoredDueIndex] = {}
        self._policies: dict[int, dict[str, int]] = {}  # per partition: policy label -> subjects
        self._judged: dict[int, str | None] = {}  # per partition: Digest.judged
        self.starts: Counter[str] = Counter()  # partitions started per path: digest, rebuild, memory
        self.states_read = 0  # summaries read by full rebuilds since the start
        self._changed: set[int] = set()  # partitions whose digest must be written with the next persist
        self._dropped: set[int] = set()  # partitions whose digest a persist dropped (logged once)
        derive_with = getattr(state.table, "derive_with", None)
        if derive_with is not None:  # the rocksdb store: it asks what to write beside the states
            derive_with(self)
        self._pending: dict[int, int] = {}
        # Per partition: the table keys of certificates held for want of a signature.
        self._unsigned: dict[int, set[str]] = {}
        # Per gauge of _GAUGES, partition and label: copies chased for want of a receipt
        # ("late") and all copies ordered and not answered yet ("open"), by store; records
        # waiting for a deadline ("waiting") and kept by a legal hold ("held"), by category;
        # duties not done ("duties"), by duty.
        self._unanswered: dict[str, dict[int, dict[str, int]]] = {kind: {} for kind, _ in _GAUGES}

    def progress(self, partition: int) -> PartitionProgress:
        return PartitionProgress.load(self.state.get(f"p:{partition}"))

    def save_progress(self, partition: int, progress: PartitionProgress) -> None:
        self.state[f"p:{partition}"] = progress.dump()

    def index(self, partition: int) -> Due:
        """The partition's due index, started when first asked for (see the module docstring):
        from its digest, or rebuilt from the recovered states' summaries (no state is decoded but
        those stamped under another policy, judged again)."""
        index = self._due.get(partition)
        if index is not None:
            return index
        started = time.perf_counter()
        derived = self._derived(partition)
        found, why = (None, "memory store") if derived is None else digest.stored(derived, self.policy_label)
        index = self._due[partition] = (  # first: counting below asks for the index again
            DueIndex() if derived is None else StoredDueIndex(lambda: self._derived_of(partition))
        )
        try:
            if found is not None:
                self._load(partition, found)
            else:
                self._rebuild(partition)
        except BaseException:  # nothing half built is kept: started again when next needed
            self.forget({partition})
            raise
        path = "memory" if derived is None else "digest" if found is not None else "rebuild"
        self.starts[path] += 1
        if derived is not None:
            log.info(
                "partition %d started from %s (%s) in %.2f s",
                partition,
                "its digest" if found is not None else "its states",
                why,
                time.perf_counter() - started,
            )
        return index

    def _derived(self, partition: int) -> DerivedPartition | None:
        derived: Callable[[int], DerivedPartition | None] | None = getattr(self.state.table, "derived", None)
        return None if derived is None else derived(partition)

    def _derived_of(self, partition: int) -> DerivedPartition:
        derived = self._derived(partition)
        assert derived is not None  # a StoredDueIndex is made only where there is one
        return derived

    def _load(self, partition: int, found: Digest) -> None:
        """Start the partition's counts and gauges from its digest (no state is read), with the
        writes the store holds for it (made before a rebalance, not on disk yet) counted in."""
        index = self._due[partition]
        assert isinstance(index, StoredDueIndex)
        index.cursor = found.cursor
        held: Callable[[int, Callable[[str], bool]], Replayed] | None = getattr(
            self.state.table, "held_writes", None
        )
        if held is not None:
            index.held.update(dict.fromkeys(digest.advance(found, held(partition, digest.wants)), True))
        self._unsigned[partition] = set(found.unsigned)
        self._policies[partition] = dict(found.policies)
        self._judged[partition] = found.judged
        self._set_gauges(partition, [dict(g) for g in found.gauges] or [{} for _ in _GAUGES])
        self._pending[partition] = 0
        self.count_pending(partition, found.pending)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())

    def _set_gauges(self, partition: int, totals: Sequence[dict[str, int]]) -> None:
        for (kind, gauge), total in zip(_GAUGES, totals, strict=True):
            self._unanswered[kind][partition] = total
            for label in total:
                gauge.labels(label).set(sum(c.get(label, 0) for c in self._unanswered[kind].values()))

    def _rebuild(self, partition: int) -> None:
        """Build the partition's due index, counts and gauges from its states' summaries (long
        because it is one pass over every state, counting as it goes)."""
        index = self._due[partition]
        pending = 0
        judged_before: list[tuple[str, Summary]] = []
        totals: list[dict[str, int]] = [{} for _ in _GAUGES]  # the gauges' counts, set once at the end
        held = self._unsigned[partition] = set()
        policies = self._policies[partition] = {}
        self._judged[partition] = self.policy_label  # every subject under another policy: judged below
        for key, raw in partition_items(self.state.table, partition):
            if key.startswith("u:"):
                held.add(key)
            elif key.startswith("s:"):
                self.states_read += 1
                summary = state_format.read_summary(raw)
                for total, counts in zip(totals, summary.by_label(), strict=True):
                    for label, n in counts.items():
                        total[label] = total.get(label, 0) + n
                subject_id = key.split(":", 2)[2]
                if summary.next is not None:
                    index.file(subject_id, summary.next)
                    if isinstance(index, StoredDueIndex) and len(index.held) >= SPILL:
                        index.spill()
                pending += summary.waiting
                digest.add_to(policies, summary.policy, 1)
                if summary.policy != self.policy_label:
                    judged_before.append((subject_id, summary))
        if isinstance(index, StoredDueIndex):
            index.spill()  # the digest goes with the next persist, with the states it counts
            self._changed.add(partition)
        self._set_gauges(partition, totals)
        self._pending[partition] = 0
        self.count_pending(partition, pending)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
        for subject_id, stored in judged_before:  # stamped under another policy: judge them again now
            staged = self.state.staged(subject_key(partition, subject_id))
            if isinstance(staged, Entry):  # judged again already, before a rebalance dropped the index
                self.count_state(partition, stored, staged.summary)  # counted as staged, not as stored
                if staged.summary.next is not None:
                    index.file(subject_id, staged.summary.next)
            else:
                self.load(partition, subject_id)

    # -- what the rocksdb store asks (``derived.Deriver``) -----------------------------------------

    def wants(self, key: str) -> bool:
        return digest.wants(key)

    def dirty(self) -> Iterable[int]:
        due = self._due.items()
        return [p for p, i in due if isinstance(i, StoredDueIndex) and (i.held or p in self._changed)]

    def persisting(self, partition: int, offset: int | None) -> Writes:
        """The partition's held due entries and its digest as counted now (every state write the
        store persists with them is counted), written with the states at ``offset``. A partition
        not started here has its digest dropped: only a started one counts what is written."""
        index = self._due.get(partition)
        if not isinstance(index, StoredDueIndex):
            if partition not in self._dropped:
                self._dropped.add(partition)
                log.info(
                    "partition %d written before its index was started: its digest is dropped (its "
                    "next start rebuilds from its states)",
                    partition,
                )
            return {DIGEST_KEY: None}
        self._dropped.discard(partition)
        writes = dict(index.take_held())
        unanswered = [self._unanswered[kind].get(partition, {}) for kind, _ in _GAUGES]
        found = Digest(
            offset,
            {label: n for label, n in self._policies.get(partition, {}).items() if n},
            index.cursor,
            self._pending.get(partition, 0),
            [{label: n for label, n in counts.items() if n} for counts in unanswered],
            sorted(self._unsigned.get(partition, ())),
            self._judged.get(partition),
        )
        writes[DIGEST_KEY] = digest.encode(found)
        self._changed.discard(partition)
        return writes

    def replayed(self, derived: DerivedPartition, records: Replayed, offset: int) -> Writes:
        return digest.replay(derived, records, offset)

    # -- counts -----------------------------------------------------------------------------------

    def count_pending(self, partition: int, delta: int) -> None:
        self.index(partition)  # make sure the count starts from the recovered states
        self._pending[partition] = self._pending.get(partition, 0) + delta
        metrics.PENDING_DEADLINES.labels(str(partition)).set(self._pending[partition])

    def count_state(self, partition: int, old: Summary | None, new: Summary) -> None:
        """A subject's state saved: what it was (``old``, None if it had none) and is now
        (``new``) counted in the pending deadlines and the gauges of :data:`_GAUGES`, by the
        difference only."""
        self.count_pending(partition, new.waiting - (old.waiting if old is not None else 0))
        self._count(partition, old, new)
        _policy_counts(self._policies.setdefault(partition, {}), old, new)

    def _count(self, partition: int, old: Summary | None, new: Summary) -> None:
        before = old.by_label() if old is not None else ({},) * len(_GAUGES)
        for (kind, gauge), was, now in zip(_GAUGES, before, new.by_label(), strict=True):
            if was == now:
                continue
            counts = self._unanswered[kind].setdefault(partition, {})
            for label in was.keys() | now.keys():
                change = now.get(label, 0) - was.get(label, 0)
                if change:
                    counts[label] = counts.get(label, 0) + change
                    gauge.labels(label).set(sum(c.get(label, 0) for c in self._unanswered[kind].values()))

    def overdue(self, kind: str = "late") -> dict[str, int]:
        """Per store, over the partitions this worker holds: copies chased for want of a receipt
        (``late``) or all copies ordered and not answered yet (``open``)."""
        total: dict[str, int] = {}
        for counts in self._unanswered[kind].values():
            for store, n in counts.items():
                total[store] = total.get(store, 0) + n
        return total

    def hold(self, partition: int, key: str) -> None:
        """Count the table key of a certificate held for want of a signature."""
        self.index(partition)  # so the held keys are known before this one is added
        self._unsigned.setdefault(partition, set()).add(key)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())

    def held(self, partition: int) -> set[str] | None:
        """The keys of the partition's certificates held for want of a signature (the live set;
        None until its index is built)."""
        return self._unsigned.get(partition)

    def unsigned(self) -> int:
        """Certificates held for want of a signature, over the partitions this worker holds."""
        return sum(len(keys) for keys in self._unsigned.values())

    def resume(self, partitions: set[int]) -> None:
        """Once the state of ``partitions`` is recovered (a start, a rebalance): their gauges say
        where they are at once (the clock of each, the copies awaiting a receipt), not only after
        their next message, which may be long in coming."""
        clocks = {}
        for partition in sorted(partitions):
            progress = self.progress(partition)
            if progress.now is not None:
                metrics.CLOCK_TIME.labels(str(partition)).set(progress.now / 1000)
            clocks[partition] = progress.now
            try:
                self.index(partition)
            except PartitionNotHeld as error:  # rebuilt on its next message, or the batch fails
                log.warning("%s; its due index is built when next needed", error)
        log.info("partitions recovered, with their clocks (ms): %s", clocks)

    def forget(self, partitions: set[int]) -> None:
        """Drop what is held for partitions this worker lost or (re)gained: their state may have
        moved on elsewhere, so it is rebuilt from the table when next needed."""
        touched = {  # the labels (stores, categories, duties) whose gauges count these partitions' share
            kind: {store for p in partitions for store in by_partition.get(p, {})}
            for kind, by_partition in self._unanswered.items()
        }
        for partition in partitions:
            self._due.pop(partition, None)  # with the due entries held for it (with its states' writes)
            self._pending.pop(partition, None)
            self._policies.pop(partition, None)
            self._judged.pop(partition, None)
            self._changed.discard(partition)
            if self._unsigned.pop(partition, None):
                metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
            for counts in self._unanswered.values():
                counts.pop(partition, None)
            # Gauges by partition say what this worker holds: a lost partition's series go (the
            # worker that took it reports them), and the per-store totals lose its share.
            metrics.PENDING_DEADLINES.remove(str(partition))
            metrics.CLOCK_TIME.remove(str(partition))
        for kind, gauge in _GAUGES:
            for store in touched[kind]:  # a store, category or duty
                gauge.labels(store).set(sum(c.get(store, 0) for c in self._unanswered[kind].values()))
