"""What every benchmark shares: sizes, figures, and the stack settings.

A benchmark module exposes ``NAME`` and ``run(ctx: Context) -> list[Figure]``. Each figure
is measured together with its baseline in the same run, so the ratio means something on a
noisy machine.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ebbtide.runtime.settings import Settings

SizeName = Literal["small", "medium", "large"]


@dataclass(frozen=True)
class Size:
    name: SizeName
    events: int  # lifecycle events for the stamping benchmark
    rows: int  # rows for the deletion benchmark
    pending: tuple[int, ...]  # pending-deadline counts for the scale benchmark
    latency_seconds: float  # steady-load duration for the latency benchmark
    recovery_pending: int  # pending deadlines held by the worker that is killed


SIZES: dict[str, Size] = {
    "small": Size(
        "small",
        events=20_000,
        rows=20_000,
        pending=(10_000, 100_000),
        latency_seconds=20.0,
        recovery_pending=20_000,
    ),
    "medium": Size(
        "medium",
        events=200_000,
        rows=200_000,
        pending=(100_000, 1_000_000),
        latency_seconds=60.0,
        recovery_pending=200_000,
    ),
    "large": Size(
        "large",
        events=1_000_000,
        rows=1_000_000,
        pending=(100_000, 1_000_000, 10_000_000),
        latency_seconds=120.0,
        recovery_pending=1_000_000,
    ),
}


@dataclass(frozen=True)
class Figure:
    """One measured figure and its baseline from the same run."""

    benchmark: str
    name: str
    value: float
    unit: str
    baseline: str | None = None  # what the baseline is, in words
    baseline_value: float | None = None
    higher_is_better: bool = True
    goal: str | None = None  # the goal, in words
    meets_goal: bool | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0) or self.value is None:
            return None
        return self.value / self.baseline_value

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Context:
    size: Size
    settings: Settings  # from the environment of the local stack (EBBTIDE_*)
    pg_dsn: str  # a database the benchmark may create tables in
    work_dir: Path
    report: Callable[[str], None]  # progress line for the terminal
    # The commit whose worker is "today's worker", measured beside the current one (empty: none).
    baseline_commit: str = "20f1157"

    def unique_settings(self, label: str) -> Settings:
        """Settings with fresh topic prefix and app id for one benchmark run."""
        run = f"{label}-{uuid.uuid4().hex[:8]}"
        return replace(
            self.settings,
            topic_prefix=f"bench.{run}",
            app_id=f"bench-{run}",
            state_dir=self.work_dir / run,
            clock_mode="replay",  # benchmarks tick an accelerated clock
        )


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` in seconds (monotonic)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def env_dsn() -> str:
    dsn = os.environ.get("EBBTIDE_PG_TEST_DSN") or os.environ.get("EBBTIDE_PG_DSN")
    if not dsn:
        raise SystemExit("bench: no EBBTIDE_PG_TEST_DSN; run through `make bench` (it starts the stack)")
    return dsn
