"""Pending-deadline scale: memory per pending deadline and the cost of a tick, as pending grows.

The worker holds two things per pending deadline: the subject's state in the table (the
state store; in RAM with Faust's memory:// store) and an entry in the in-memory due index.
The issue's budget (<= 200 bytes per pending deadline, beyond the state store) applies to
the index. A tick should cost in proportion to what is due, not to what is pending.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from bench.common import Context, Figure
from ebbtide.runtime.settings import Topics
from ebbtide.streams.engine.model import RecordState, SubjectState
from ebbtide.streams.policy.calendar import MS_PER_DAY
from ebbtide.streams.policy.rules import default_policy
from ebbtide.streams.worker import state_format
from ebbtide.streams.worker.processor import LifecycleProcessor
from ebbtide.streams.worker.staging import subject_key

NAME = "pending"
BASE = 20_000 * MS_PER_DAY  # 2024-10-04
SPREAD_DAYS = 3650  # deadlines spread over ten years
TICKS = 20
LABEL = default_policy().label  # stamped under the running policy: no re-judging at rebuild


def _state_table(count: int) -> dict[str, Any]:
    """The table a worker holds with ``count`` subjects, one pending client record each."""
    table: dict[str, Any] = {}
    for n in range(count):
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
        state = SubjectState(
            subject, frozenset({f"w{n}", f"c{n}"}), (), {record.record_id: record}, policy=LABEL
        )
        table[subject_key(0, subject)] = state_format.encode_state(state)  # as the worker stores it
    return table


def _measure(count: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = _state_table(count)
    after_table = tracemalloc.get_traced_memory()[0]
    processor = LifecycleProcessor(default_policy(), Topics("bench"), table)
    started = time.perf_counter()
    index = processor.owned.index(0)  # the rebuild a restarted worker does
    rebuild = time.perf_counter() - started
    after_index = tracemalloc.get_traced_memory()[0]
    ids = [f"cust-{n:08d}" for n in range(count)]  # baseline: the bare list of subject ids
    after_list = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(index) == count
    tick_seconds = []
    for day in range(1, TICKS + 1):
        started = time.perf_counter()
        processor.on_tick(0, 0, b"t", _tick(BASE + day * MS_PER_DAY))
        processor.flush()
        tick_seconds.append(time.perf_counter() - started)
    due_per_tick = count / SPREAD_DAYS
    del ids
    return {
        "table_bytes": (after_table - before) / count,
        "index_bytes": (after_index - after_table) / count,
        "list_bytes": (after_list - after_index) / count,
        "tick_ms": 1000 * sorted(tick_seconds)[len(tick_seconds) // 2],
        "tick_ms_per_due": 1000 * sorted(tick_seconds)[len(tick_seconds) // 2] / max(due_per_tick, 1),
        "due_per_tick": due_per_tick,
        "rebuild_s": rebuild,
    }


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
        results[count] = _measure(count)
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
                notes=f"state store (memory:// table, JSON form) {r['table_bytes']:.0f} bytes/subject; "
                f"index rebuild after restart {r['rebuild_s']:.2f} s",
                extra=r,
            )
        )
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
