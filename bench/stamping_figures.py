"""The stamping figures, each with its ceiling or baseline from the same run, the issue's goal,
the bytes written per event, and where it falls short, what limits it.

What limits the worker is estimated from the same run's figures (not a profile): its time per
event split into the processor's own (the processor alone, in process), the Kafka I/O of the same
bytes (the output-matched passthrough) and the rest (Faust's per-event machinery, batching, the
event loop). The CPU the worker used while measured says whether it was bound by its one core.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Figure
from bench.harness import Run, WorkerRun
from bench.outputs import Written

NAME = "stamping"
GOAL_TODAY = 4.0  # x today's worker's events/s
GOAL_MATCHED = 0.5  # x the output-matched passthrough
GOAL_CHANGELOG = 0.25  # changelog bytes per event, x today's (cut at least 4x)
GOAL_TWO = 1.7  # two workers, x one
BOUND = 0.8  # cores busy from which a worker counts as bound by its CPU


@dataclass(frozen=True)
class Measured:
    """Everything the stamping figures are made of, measured in one run over the same events."""

    events: int
    partitions: int
    passthrough: Run  # the median bare passthrough
    passes: list[Run]
    worker: WorkerRun
    today: WorkerRun | str  # today's worker, or why it was not measured
    commit: str  # today's worker's commit
    matched: Run  # the median output-matched passthrough
    matched_passes: list[Run]
    alone: Run  # the processor alone, in process
    live: dict[int, WorkerRun]  # workers started before the events arrived -> their run
    event_bytes: float = 0.0  # key + value bytes per event in (what the bare passthrough writes)


def limits(m: Measured) -> str:
    """Where the worker's time per event goes, estimated from this run's figures: CPU time per
    event where every part's is known (steadier on a busy machine), else wall time."""
    parts = {
        "the processor (in process)": m.alone,
        "Kafka client work for the same bytes (output-matched passthrough)": m.matched,
    }
    runs = [m.worker.run, *parts.values()]
    cpu = all(r.cpu_us for r in runs)

    def per_event(run: Run) -> float:
        return (run.cpu_us or 0.0) if cpu else 1e6 / run.rate

    total = per_event(m.worker.run)
    rest = total - sum(per_event(r) for r in parts.values())
    shares = ", ".join(
        f"{name} {per_event(r):,.0f} us ({per_event(r) / total:.0%})" for name, r in parts.items()
    )
    return (
        f"limits (estimate from this run's figures, not a profile; {'CPU' if cpu else 'wall'} time "
        f"per event): {total:,.0f} us/event = {shares}, the rest {rest:,.0f} us ({rest / total:.0%}: "
        f"Faust's per-event machinery, batching, the event loop){_busy(m.worker.run)}"
    )


def _busy(run: Run) -> str:
    """What the CPU the worker used says about what bound it."""
    cores = run.cores
    if cores is None:
        return ""
    if cores < BOUND:
        return (
            f"; the worker kept only {cores:.2f} of a core busy while measured: it waited (for the "
            "broker's acknowledgements, or for a CPU on a busy machine)"
        )
    return f"; the worker kept {cores:.2f} cores busy while measured: bound by the CPU of its one process"


def _rates(runs: list[Run]) -> list[int]:
    return [round(r.rate) for r in runs]


def figures(m: Measured) -> list[Figure]:
    """Every stamping figure of one run."""
    return [
        _matched(m),
        _today(m),
        _bare(m),
        *_bytes(m),
        _two(m),
        _alone(m),
    ]


def _worker_notes(m: Measured) -> str:
    w = m.worker.run
    return (
        f"{m.events:,} demo-scenario events pre-published, keyed by subject, {m.partitions} partitions; "
        f"worker {w.events:,} events in {w.seconds:.2f}s after a startup of {w.startup:.2f}s; "
        f"{m.worker.recording.written.summary()}"
    )


def _worker_extra(m: Measured) -> dict[str, object]:
    w = m.worker.run
    return {
        "events": m.events,
        "worker_startup_s": w.startup,
        "worker_seconds": w.seconds,
        "worker_cores": w.cores,
        "written": m.worker.recording.written.as_json(),
    }


def _matched(m: Measured) -> Figure:
    share = m.worker.run.rate / m.matched.rate
    return Figure(
        NAME,
        "worker events/s (one worker) vs output-matched passthrough",
        m.worker.run.rate,
        "events/s",
        "aiokafka passthrough writing the worker's own outputs and changelog records for the same "
        "events, per batch, acks=-1, output acknowledged before state",
        m.matched.rate,
        goal=f">= {GOAL_MATCHED} x the output-matched passthrough",
        meets_goal=share >= GOAL_MATCHED,
        notes=f"{_worker_notes(m)}; output-matched passthrough median of {_rates(m.matched_passes)}; "
        + limits(m),
        extra={**_worker_extra(m), "matched_rates": _rates(m.matched_passes)},
    )


def _today(m: Measured) -> Figure:
    name = f"worker events/s (one worker) vs today's worker ({m.commit or 'none'})"
    goal = f">= {GOAL_TODAY:g} x today's worker"
    baseline = f"the worker at commit {m.commit} (the issue's start), same events, same run"
    if isinstance(m.today, str):
        return Figure(NAME, name, m.worker.run.rate, "events/s", baseline, None, goal=goal, notes=m.today)
    today = m.today.run
    ratio = m.worker.run.rate / today.rate
    short = "" if ratio >= GOAL_TODAY else "; " + limits(m)
    return Figure(
        NAME,
        name,
        m.worker.run.rate,
        "events/s",
        baseline,
        today.rate,
        goal=goal,
        meets_goal=ratio >= GOAL_TODAY,
        notes=(
            f"{_worker_notes(m)}; today's worker {today.events:,} events in {today.seconds:.2f}s, "
            f"{m.today.recording.written.summary()}{_cpu_ratio(m.worker.run, today)}{short}"
        ),
        extra={
            **_worker_extra(m),
            "today_seconds": today.seconds,
            "today_cores": today.cores,
            "worker_cpu_us_per_event": m.worker.run.cpu_us,
            "today_cpu_us_per_event": today.cpu_us,
            "today_written": m.today.recording.written.as_json(),
        },
    )


def _cpu_ratio(now: Run, today: Run) -> str:
    """The two workers' CPU per event, a second view of the ratio that a busy machine skews less."""
    if not now.cpu_us or not today.cpu_us:
        return ""
    return (
        f"; CPU per event: this worker {now.cpu_us:,.0f} us, today's {today.cpu_us:,.0f} us "
        f"(today's / this: {today.cpu_us / now.cpu_us:.2f} x)"
    )


def _bare(m: Measured) -> Figure:
    return Figure(
        NAME,
        "worker events/s (one worker) vs bare passthrough",
        m.worker.run.rate,
        "events/s",
        "bare aiokafka consume->produce passthrough (each event copied once), same broker and partitions",
        m.passthrough.rate,
        goal=None,
        notes=(
            f"the earlier baseline, kept; passthrough median of {_rates(m.passes)}, writing "
            f"{m.event_bytes:,.0f} B/event (each event's key+value once); {_worker_notes(m)}"
        ),
        extra={"passthrough_rates": _rates(m.passes), "passthrough_startup_s": m.passthrough.startup},
    )


def _bytes(m: Measured) -> list[Figure]:
    """Changelog bytes per event (goal: cut 4x) and all bytes per event, against today's worker."""
    now = m.worker.recording.written
    then: Written | None = None if isinstance(m.today, str) else m.today.recording.written
    note = m.today if isinstance(m.today, str) else f"today's worker: {then.summary() if then else ''}"
    log_ratio = (
        None
        if then is None or not then.bytes["changelog"]
        else now.bytes["changelog"] / then.bytes["changelog"]
    )
    baseline = f"today's worker ({m.commit}), same events, same run"
    return [
        Figure(
            NAME,
            "changelog bytes written per event",
            now.per_event()["changelog"],
            "B/event",
            baseline,
            None if then is None else then.per_event()["changelog"],
            higher_is_better=False,
            goal=f"<= {GOAL_CHANGELOG} x today's worker (cut >= {1 / GOAL_CHANGELOG:g}x)",
            meets_goal=None if log_ratio is None else log_ratio <= GOAL_CHANGELOG,
            notes=(
                f"key+value bytes read back from the changelog; this worker: {now.summary()}; {note}"
                f"{_changelog_limit(now) if log_ratio is not None and log_ratio > GOAL_CHANGELOG else ''}"
            ),
            extra={"written": now.as_json(), "today_written": None if then is None else then.as_json()},
        ),
        Figure(
            NAME,
            "bytes written per event (every output and the changelog)",
            now.per_event()["total"],
            "B/event",
            baseline,
            None if then is None else then.per_event()["total"],
            higher_is_better=False,
            notes=f"decisions and commands are to stay byte-identical; this worker: {now.summary()}; {note}",
            extra={"per_event": now.per_event()},
        ),
    ]


def _changelog_limit(now: Written) -> str:
    """What the changelog's bytes per event are made of, where they fall short of the goal."""
    records = now.records["changelog"]
    mean = now.bytes["changelog"] / records if records else 0.0
    return (
        f"; limit: {records / now.events:.2f} changelog records per event of {mean:,.0f} B on average "
        "(a value per subject written per batch; fewer or smaller values cut it)"
    )


def _two(m: Measured) -> Figure:
    one, two = m.live[1], m.live[2]
    ratio = two.run.rate / one.run.rate
    busy = ""
    if one.run.cores is not None and two.run.cores is not None:
        busy = f"; cores busy: one worker {one.run.cores:.2f}, two workers {two.run.cores:.2f} together"
    short = ""
    if ratio < GOAL_TWO:
        short = (
            "; limit: two workers can only gain where they get a core each, and the machine's cores are "
            "shared with the broker and the publisher (and any other work on it)"
        )
    return Figure(
        NAME,
        "two workers events/s (two processes, one group)",
        two.run.rate,
        "events/s",
        "one worker, same procedure, same events, same run",
        one.run.rate,
        goal=f">= {GOAL_TWO} x one worker",
        meets_goal=ratio >= GOAL_TWO,
        notes=(
            f"workers started and holding all {m.partitions} partitions before the {m.events:,} events "
            f"are published; timed from the first publish to the last event taken (publishing included)"
            f"{busy}{short}; one worker: {one.recording.written.summary()}; two workers: "
            f"{two.recording.written.summary()}"
        ),
        extra={
            "one_seconds": one.run.seconds,
            "two_seconds": two.run.seconds,
            "one_cores": one.run.cores,
            "two_cores": two.run.cores,
            "one_written": one.recording.written.as_json(),
            "two_written": two.recording.written.as_json(),
        },
    )


def _alone(m: Measured) -> Figure:
    return Figure(
        NAME,
        "processor events/s in process (no Kafka, no Faust)",
        m.alone.rate,
        "events/s",
        "the worker, same events, same run",
        m.worker.run.rate,
        goal=None,
        notes=(
            f"LifecycleProcessor.on_event on a dict, its writes flushed every 500 events, "
            f"{m.alone.seconds:.2f}s: the ceiling of the worker's processing alone (it writes nothing; "
            f"the worker's bytes per event: {m.worker.recording.written.summary()})"
        ),
        extra={"seconds": m.alone.seconds, "events": m.events},
    )
