"""Pending-deadline scale: memory per pending deadline and the cost of a tick, as pending grows.

The worker holds two things per pending deadline, both on disk with its default store
(``streams.worker.store``): the subject's state in the table and an entry of the due index in the
partition database's derived column family (``streams.worker.progress.StoredDueIndex``), beside
the partition's digest of counts (``streams.worker.digest``). The table here is a RocksDB
database of one partition with the worker's own options (``SharedOptions``), filled directly as
an older version left it (states, no digest); the processor reads it through a mapping that
gives what the worker's store gives (``derived``, ``derive_with``, a ``persist`` of the derived
writes after each batch). A first start, in a child process, does the full rebuild (reads every
state, writes the due entries and the digest: ``full_rebuild_s``). The timed start ("rebuild",
``rebuild_s``) is then what a restarted worker does now: open the database and load the digest,
reading no state. Measured per count: the due index's RAM (tracemalloc over that start), the
process's resident memory after it (VmRSS) and at its peak (VmHWM), and the tick cost. The
issue's budget (<= 200 bytes per pending deadline, beyond the state store) applies to the index;
the worker's whole RSS must stay <= 1 GiB at 10M pending. A tick should cost in proportion to
what is due, not to what is pending.
"""

from __future__ import annotations

import gc
import multiprocessing
import shutil
import time
import tracemalloc
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import rocksdict

from bench.common import Context, Figure
from ebbtide.runtime.settings import Topics
from ebbtide.streams.engine.model import RecordState, SubjectState
from ebbtide.streams.policy.calendar import MS_PER_DAY
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker import state_format
from ebbtide.streams.worker.derived import COLUMN_FAMILY, DerivedPartition, Deriver, add
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.staging import subject_key
from ebbtide.streams.worker.store import PartitionStore, SharedOptions

NAME = "pending"
BASE = 20_000 * MS_PER_DAY  # 2024-10-04
SPREAD_DAYS = 3650  # deadlines spread over ten years
TICKS = 20
LABEL = default_policy().label  # stamped under the running policy: no re-judging at rebuild
GOAL_PENDING = 10_000_000  # the scale goal: RSS <= 1 GiB there
CHUNK = 20_000  # states per RocksDB write batch while filling the table
OFFSET_KEY = PartitionStore.offset_key  # Faust's own key (none is written here)


class DiskTable(MutableMapping[str, Any]):
    """A state table on disk: str keys, the worker's encoded values (bytes, as Faust's raw value
    codec keeps them), in one RocksDB database with the worker's options."""

    def __init__(self, path: Path) -> None:
        self.db = SharedOptions().open(path)
        self.deriver: Deriver | None = None

    def derived(self, partition: int) -> DerivedPartition:
        """The database's derived data, as the worker's store gives it (one partition here)."""
        return DerivedPartition(self.db, OFFSET_KEY)

    def derive_with(self, deriver: Deriver) -> None:
        self.deriver = deriver

    def persist(self) -> None:
        """What the worker's store writes beside a batch's states: the held due entries and the
        digest (the states here are written at once, so alone)."""
        if self.deriver is not None:
            batch = rocksdict.WriteBatch(raw_mode=True)
            add(batch, self.db, self.deriver.persisting(0, self.derived(0).offset()))
            self.db.write(batch)

    def __getitem__(self, key: str) -> Any:
        raw = self.db.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return raw

    def __setitem__(self, key: str, value: Any) -> None:
        self.db.put(key.encode(), value)

    def __delitem__(self, key: str) -> None:
        self.db.delete(key.encode())

    def __iter__(self) -> Iterator[str]:
        keys = self.db.keys()  # an Rdict is not iterable itself
        return (key.decode() for key in keys)  # type: ignore[union-attr]  # raw mode: bytes

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def partition_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """One partition's keys and values in one pass over the database, as the worker's store
        gives them (``streams.worker.store.PartitionStore.partition_items``): the bench's table
        holds partition 0 only."""
        for key, value in self.db.items():
            yield bytes(key).decode(), value  # type: ignore[arg-type]  # raw mode: bytes


def _memory_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _state(n: int) -> bytes:
    subject = f"cust-{n:08d}"
    record = RecordState(
        "customer_db",
        "client",
        str(n),
        None,
        f"w{n}",
        BASE - 4000 * MS_PER_DAY,
        "pending",
        "account",
        BASE + (n % SPREAD_DAYS) * MS_PER_DAY,
        (f"w{n}", f"c{n}"),
    )
    state = SubjectState(subject, frozenset({f"w{n}", f"c{n}"}), (), {record.record_id: record}, policy=LABEL)
    return state_format.encode_state(state)  # as the worker stores it


def _state_table(count: int, path: Path) -> tuple[DiskTable, int]:
    """The table a worker holds with ``count`` subjects, one pending client record each, on disk
    under ``path``; and its size on disk in bytes."""
    table = DiskTable(path)
    for first in range(0, count, CHUNK):
        batch = rocksdict.WriteBatch(raw_mode=True)
        for n in range(first, min(first + CHUNK, count)):
            batch.put(subject_key(0, f"cust-{n:08d}").encode(), _state(n))
        table.db.write(batch)
    table.db.flush()
    return table, sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _median_tick(processor: LifecycleProcessor) -> float:
    """Seconds of the median of TICKS one-day ticks."""
    assert processor.state.table.deriver is processor.owned  # type: ignore[attr-defined]  # a DiskTable
    tick_seconds = []
    for day in range(1, TICKS + 1):
        started = time.perf_counter()
        processor.on_tick(0, 0, b"t", _tick(BASE + day * MS_PER_DAY))
        processor.flush()
        processor.state.table.persist()  # type: ignore[attr-defined]  # a DiskTable
        tick_seconds.append(time.perf_counter() - started)
    return sorted(tick_seconds)[len(tick_seconds) // 2]


def _full_rebuild(path: Path) -> float:
    """Seconds of the first start on the database at ``path``: no digest yet, so the full rebuild
    (an older version's database), which writes the due entries and the digest. Run in a child
    process, so that what it allocated does not count in the bench's resident memory."""
    table = DiskTable(path)
    started = time.perf_counter()
    first = LifecycleProcessor(default_policy(), Topics("bench"), table)
    first.owned.index(0)
    table.persist()
    seconds = time.perf_counter() - started
    assert first.owned.starts == {"rebuild": 1}
    table.db.flush()  # as after filling: the entries in files, not in the write-ahead log
    table.db.get_column_family(COLUMN_FAMILY).flush()
    table.db.close()
    return seconds


def _measure(count: int, work_dir: Path) -> dict[str, float]:
    path = work_dir / f"pending-{count}"
    shutil.rmtree(path, ignore_errors=True)
    table, disk = _state_table(count, path)
    table.db.close()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        full_rebuild = child.submit(_full_rebuild, path).result()  # its memory is not this process's
    gc.collect()
    rss_before = _memory_kib("VmRSS")
    started = time.perf_counter()
    table = DiskTable(path)  # the start a restarted worker does: open, load the digest; timed, untraced
    processor = LifecycleProcessor(default_policy(), Topics("bench"), table)
    index = processor.owned.index(0)
    rebuild = time.perf_counter() - started
    assert processor.owned.starts == {"digest": 1} and processor.owned.states_read == 0
    gc.collect()
    rss_after = _memory_kib("VmRSS")  # before tracemalloc, whose own records would count
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    traced = LifecycleProcessor(default_policy(), Topics("bench"), table)
    traced.owned.index(0)  # again, traced: the index's own bytes (in memory: the digest's counts)
    after_index = tracemalloc.get_traced_memory()[0]
    ids = [f"cust-{n:08d}" for n in range(count)]  # baseline: the bare list of subject ids
    after_list = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del ids, traced
    gc.collect()
    table.derive_with(processor.owned)  # the traced processor took the table's deriver over: given back
    assert len(index) == count
    tick = _median_tick(processor)
    due_per_tick = count / SPREAD_DAYS
    table.db.close()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "disk_bytes": disk / count,
        "index_bytes": (after_index - before) / count,
        "list_bytes": (after_list - after_index) / count,
        "rss_mib": rss_after / 1024,
        "rss_growth_bytes": (rss_after - rss_before) * 1024 / count,
        "peak_rss_mib": _memory_kib("VmHWM") / 1024,
        "tick_ms": 1000 * tick,
        "tick_ms_per_due": 1000 * tick / max(due_per_tick, 1),
        "due_per_tick": due_per_tick,
        "rebuild_s": rebuild,
        "full_rebuild_s": full_rebuild,
    }


def _rss_figure(results: dict[int, dict[str, float]]) -> Figure:
    """The bench's resident memory after the index start (the digest loaded) at the largest count,
    against the smallest, extrapolated to GOAL_PENDING."""
    smallest, largest = min(results), max(results)
    growth = (results[largest]["rss_mib"] - results[smallest]["rss_mib"]) * 1024**2 / (largest - smallest)
    at_goal = results[smallest]["rss_mib"] + growth * (GOAL_PENDING - smallest) / 1024**2
    return Figure(
        NAME,
        f"resident memory after the index rebuild @ {largest:,} pending (state on disk)",
        results[largest]["rss_mib"],
        "MiB",
        baseline=f"the same @ {smallest:,} pending (same run)",
        baseline_value=results[smallest]["rss_mib"],
        higher_is_better=False,
        goal=f"<= 1 GiB at {GOAL_PENDING:,} pending",
        meets_goal=at_goal <= 1024,
        notes=f"{growth:.0f} bytes more per pending deadline from {smallest:,} to {largest:,}: "
        f"{at_goal:,.0f} MiB at {GOAL_PENDING:,} (extrapolated unless measured there); the "
        "process is the bench (policy, processor, due index), not a whole worker",
    )


def _tick(now: int) -> bytes:
    from datetime import UTC, datetime

    from ebbtide.schemas import CLOCK_TICK, codec_for

    return codec_for(CLOCK_TICK).encode(
        {"now": datetime.fromtimestamp(now / 1000, UTC), "events_end": 0, "source": "bench"}
    )


def run(ctx: Context) -> list[Figure]:
    """Measure each pending count of the size; ratios against the smallest count and a bare list."""
    results = {}
    for count in ctx.size.pending:
        ctx.report(f"pending: {count:,} pending deadlines")
        results[count] = _measure(count, ctx.work_dir)
    smallest, largest = min(results), max(results)
    figures = []
    for count, r in results.items():
        figures.append(
            Figure(
                NAME,
                f"due index RAM per pending deadline @ {count:,}",
                r["index_bytes"],
                "bytes",
                baseline="bare list of the subject ids (same run)",
                baseline_value=r["list_bytes"],
                higher_is_better=False,
                goal="<= 200 bytes per pending deadline beyond the state store",
                meets_goal=r["index_bytes"] <= 200,
                notes=f"state on disk (RocksDB, worker's format) {r['disk_bytes']:.0f} bytes/subject; "
                f"index start after restart (open, digest) {r['rebuild_s']:.2f} s (full rebuild of a "
                f"database without digest {r['full_rebuild_s']:.2f} s); process RSS after the start "
                f"{r['rss_mib']:.0f} MiB (grew {r['rss_growth_bytes']:.0f} bytes per pending deadline), "
                f"peak {r['peak_rss_mib']:.0f} MiB",
                extra=r,
            )
        )
    figures.append(_rss_figure(results))
    due_large, due_small = results[largest]["due_per_tick"], results[smallest]["due_per_tick"]
    figures.append(
        Figure(
            NAME,
            f"tick cost per due deadline @ {largest:,} pending",
            results[largest]["tick_ms_per_due"],
            "ms",
            baseline=f"the same @ {smallest:,} pending (same run)",
            baseline_value=results[smallest]["tick_ms_per_due"],
            higher_is_better=False,
            goal="tick cost grows with due deadlines, not with pending (ratio ~1)",
            meets_goal=results[largest]["tick_ms_per_due"] <= 2 * results[smallest]["tick_ms_per_due"],
            notes=f"{TICKS} one-day ticks, deadlines spread over {SPREAD_DAYS} days: "
            f"{due_large:.0f} vs {due_small:.0f} due per tick",
        )
    )
    return figures
