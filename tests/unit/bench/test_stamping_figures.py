"""The stamping figures: each against its ceiling or baseline, with the issue's goal and the
bytes written per event; a missing baseline is said, not guessed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.common import Figure
from bench.harness import Run, WorkerRun
from bench.outputs import Recording, Written
from bench.stamping_figures import Measured, figures, limits

pytestmark = pytest.mark.unit

EVENTS = 1000
TODAY = "worker events/s (one worker) vs today's worker (20f1157)"


def _written(decisions: int, changelog: int) -> Written:
    written = Written(EVENTS)
    written.records.update(decisions=800, changelog=250)
    written.bytes.update(decisions=decisions, changelog=changelog)
    return written


def _measured(today: WorkerRun | str, worker_rate: float = 8000.0, two_rate: float = 14000.0) -> Measured:
    def run(rate: float, cpu: float | None = None) -> Run:
        return Run(0.5, EVENTS / rate, EVENTS, cpu)

    return Measured(
        events=EVENTS,
        partitions=4,
        passthrough=run(80_000),
        passes=[run(70_000), run(80_000), run(90_000)],
        worker=WorkerRun(run(worker_rate, cpu=0.1), Recording(_written(400_000, 100_000))),
        today=today,
        commit="20f1157",
        matched=run(20_000),
        matched_passes=[run(20_000)] * 3,
        alone=run(16_000),
        live={
            1: WorkerRun(run(5000), Recording(Written(EVENTS))),
            2: WorkerRun(run(two_rate), Recording(Written(EVENTS))),
        },
        event_bytes=73.0,
    )


def _by_name(measured: Measured) -> dict[str, Figure]:
    return {f.name: f for f in figures(measured)}


def test_every_figure_has_its_ceiling_ratio_and_goal() -> None:
    today = WorkerRun(Run(0.5, EVENTS / 2000, EVENTS), Recording(_written(400_000, 700_000)))
    out = {f.name.split(" vs ")[-1] if " vs " in f.name else f.name: f for f in figures(_measured(today))}

    matched = out["output-matched passthrough"]
    assert matched.ratio == pytest.approx(0.4) and matched.meets_goal is False
    assert "limits" in matched.notes and "500 B written/event" in matched.notes  # 500,000 B over 1000 events
    assert out["today's worker (20f1157)"].ratio == pytest.approx(4.0)
    assert out["today's worker (20f1157)"].meets_goal is True
    assert out["bare passthrough"].ratio == pytest.approx(0.1) and out["bare passthrough"].goal is None
    assert "writing 73 B/event" in out["bare passthrough"].notes
    changelog = out["changelog bytes written per event"]
    assert (changelog.value, changelog.baseline_value) == (100.0, 700.0)
    assert changelog.meets_goal is True and changelog.higher_is_better is False
    two = out["two workers events/s (two processes, one group)"]
    assert two.ratio == pytest.approx(2.8) and two.meets_goal is True
    assert "two workers: 0 B written/event" in two.notes  # each run's own bytes
    for figure in figures(_measured(today)):
        assert figure.as_json()["ratio"] is not None, figure.name


def test_a_changelog_cut_short_of_four_times_and_a_slow_second_worker_miss_their_goals() -> None:
    today = WorkerRun(Run(0.5, EVENTS / 2000, EVENTS), Recording(_written(400_000, 300_000)))
    out = _by_name(_measured(today, worker_rate=7000.0, two_rate=6000.0))
    assert out["changelog bytes written per event"].meets_goal is False
    assert (
        "limit: 0.25 changelog records per event of 400 B" in out["changelog bytes written per event"].notes
    )
    assert out[TODAY].meets_goal is False
    two = out["two workers events/s (two processes, one group)"]
    assert two.meets_goal is False and "limit" in two.notes


def test_without_todays_worker_the_figures_say_why_and_claim_no_goal() -> None:
    why = "today's worker (20f1157) not measured: git is not available"
    out = _by_name(_measured(why))
    for name in (TODAY, "changelog bytes written per event"):
        figure = out[name]
        assert figure.baseline_value is None and figure.ratio is None and figure.meets_goal is None
        assert why in figure.notes


def test_limits_split_the_time_per_event_by_this_runs_figures() -> None:
    text = limits(_measured("skipped"))
    # 125 us/event: the processor 62.5 (50%), the same Kafka I/O 50 (40%), the rest 12.5 (10%).
    assert "125 us/event" in text and "62 us (50%)" in text and "50 us (40%)" in text and "(10%" in text
    assert "0.80 cores" in text  # 0.1 CPU-s over 0.125 s


def test_limits_use_cpu_time_per_event_where_every_part_has_it() -> None:
    measured = _measured("skipped")
    measured = replace(
        measured,
        worker=replace(measured.worker, run=Run(0.5, 2.0, EVENTS, cpu=0.4)),  # 400 us, 0.20 cores
        alone=replace(measured.alone, cpu=0.1),
        matched=replace(measured.matched, cpu=0.1),
    )
    text = limits(measured)
    assert "CPU time per event" in text and "400 us/event" in text and "100 us (25%)" in text
    assert "the rest 200 us (50%" in text and "only 0.20 of a core busy" in text
