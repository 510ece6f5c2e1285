"""What the worker keeps in memory per partition it holds, and the gauges that report it.

Per partition: the due index (which subjects may have a deadline in which day), the number of
records waiting for a deadline, the copies ordered and not answered per store (all of them, and
those chased for want of a receipt), and the keys of certificates held for want of a signature.
None of it is written anywhere: it is rebuilt from the recovered table when a partition is
first needed (after a start or a rebalance), so it never has to be kept in step with the
changelog. The partition's progress (clock, events processed, deferred ticks) is in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ebbtide.runtime import metrics
from ebbtide.streams.worker import state_format
from ebbtide.streams.worker.progress import DueIndex, PartitionProgress
from ebbtide.streams.worker.staging import PartitionNotHeld, StagedTable, partition_items
from ebbtide.streams.worker.state_format import Summary

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


class Partitions:
    """The per-partition indexes and counts of the partitions this worker holds (see above)."""

    def __init__(self, state: StagedTable, policy_label: str, load: Callable[[int, str], object]) -> None:
        """``load`` loads a subject (``partition``, ``subject_id``): called, once its partition's
        index is rebuilt, for each subject stamped under a policy other than ``policy_label``,
        so that it is judged again now."""
        self.state = state
        self.policy_label = policy_label
        self.load = load
        self._due: dict[int, DueIndex] = {}
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

    def index(self, partition: int) -> DueIndex:
        """The partition's due index; after a restart, rebuilt from the recovered states'
        summaries (no state is decoded but those stamped under another policy, judged again)."""
        index = self._due.get(partition)
        if index is None:
            self._due[partition] = DueIndex()  # first: counting below asks for the index again
            try:
                self._rebuild(partition)
            except BaseException:  # nothing half built is kept: rebuilt when next needed
                self.forget({partition})
                raise
            index = self._due[partition]
        return index

    def _rebuild(self, partition: int) -> None:
        """Build the partition's due index, counts and gauges from its states' summaries."""
        index = self._due[partition]
        pending = 0
        judged_before: list[str] = []
        totals: list[dict[str, int]] = [{} for _ in _GAUGES]  # the gauges' counts, set once at the end
        held = self._unsigned[partition] = set()
        for key, raw in partition_items(self.state.table, partition):
            if key.startswith("u:"):
                held.add(key)
            elif key.startswith("s:"):
                summary = state_format.read_summary(raw)
                for total, counts in zip(totals, summary.by_label(), strict=True):
                    for label, n in counts.items():
                        total[label] = total.get(label, 0) + n
                subject_id = key.split(":", 2)[2]
                if summary.next is not None:
                    index.file(subject_id, summary.next)
                pending += summary.waiting
                if summary.policy != self.policy_label:
                    judged_before.append(subject_id)
        for (kind, gauge), total in zip(_GAUGES, totals, strict=True):
            self._unanswered[kind][partition] = total
            for label in total:
                gauge.labels(label).set(sum(c.get(label, 0) for c in self._unanswered[kind].values()))
        self._pending[partition] = 0
        self.count_pending(partition, pending)
        metrics.CERTIFICATES_UNSIGNED.set(self.unsigned())
        for subject_id in judged_before:  # stamped under another policy: judge them again now
            self.load(partition, subject_id)

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
        for kind, gauge in _GAUGES:
            for store in touched[kind]:  # a store, category or duty
                gauge.labels(store).set(sum(c.get(store, 0) for c in self._unanswered[kind].values()))
