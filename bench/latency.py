"""Deletion latency under load, and a burst of deadlines falling due in one tick.

The real worker and PostgreSQL sink run as child processes, on fresh topics and a scratch
database. Every subject is published before the clock starts (the worker stamps them first), each
with a client record whose deadline falls half a step before one tick, then:

1. steady load: ``ROUNDS_PER_SECOND`` ticks a second, each making ``rate / ROUNDS_PER_SECOND``
   deletions due, for ``Size.latency_seconds``. A deletion's latency runs from the moment its tick
   is sent (wall clock) to ``applied_at`` of its row in ``ebbtide_sink.applied_commands``
   (baseline: a bare Kafka produce -> consume round trip through the same broker, same run); the
   rate sustained is the deletions applied over the time from the first tick to the last row
   (baseline: the rate offered).
2. burst: one tick makes ``burst`` deletions due at once; the drain time runs from that tick to
   the last tracking row, every deletion checked present (baseline: the raw ``DELETE ... = ANY``
   of as many rows at the sink's batch size, in the same database).

The issue's figures (10k deletions/s; 1M in one tick) are the large size's; small and medium
scale both down (:data:`SCALES`), and their goals with them (the same drain rate).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2
from kafka import TopicPartition

from bench import deletion_ceilings as ceilings
from bench.common import Context, Figure
from bench.deletion import drop_topics, scratch_database
from bench.latency_load import ROUNDS_PER_SECOND, SCALES, Plan, one_tick, prepare_database, ticking
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, pipeline_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.base.loop import BATCH
from ebbtide.tools import processes
from ebbtide.tools.processes import free_port

NAME = "latency"
READY_TIMEOUT = 600.0  # the worker joins its group and stamps every subject within this
DRAIN_TIMEOUT = 600.0
RTT_SAMPLES = 200
P99_GOAL_MS = 250.0
BURST_GOAL = 1_000_000 / 60  # deletions/s: 1M falling due in one tick drained in 60 s


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in (0, 1]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def query(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute(statement)
        return list(cur.fetchall())


def applied(dsn: str) -> dict[str, float]:
    """subject -> applied_at (epoch seconds) of every tracked command."""
    codec = codec_for(DELETION_RECEIPT)
    rows = query(dsn, "SELECT receipt, applied_at FROM ebbtide_sink.applied_commands")
    return {codec.decode(bytes(r))["subject_id"]: at.timestamp() for r, at in rows}


def wait_applied(
    dsn: str, count: int, timeout: float, children: list[processes.Child], partial: bool = False
) -> int:
    """Wait until ``count`` commands have a tracking row, and return how many have; fail if a
    child dies. At ``timeout``: fail, or with ``partial`` return the count reached (the figures
    then say how many were still to be applied)."""
    deadline = time.monotonic() + timeout
    while (done := int(query(dsn, "SELECT count(*) FROM ebbtide_sink.applied_commands")[0][0])) < count:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} died:\n{child.tail()}")
        if time.monotonic() > deadline:
            if partial:
                return done
            raise RuntimeError(f"{count - done} of {count} deletions not applied within {timeout:.0f}s")
        time.sleep(0.05)  # polling interval of a bounded wait
    return done


def round_trips(settings: Settings, samples: int) -> list[float]:
    """Seconds from send to receipt of one message each, through the project's producer."""
    topic = f"{settings.topic_prefix}.rtt"
    create_topics(settings, [topic])
    out, tp = producer(settings), TopicPartition(topic, 0)
    consumer = kafka.consumer(settings, client_id=None, enable_auto_commit=False)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    consumer.position(tp)
    found: list[float] = []
    try:
        for i in range(samples):
            sent, value = time.time(), str(i).encode()
            out.send(topic, value=value, partition=0)
            while not any(m.value == value for ms in consumer.poll(100).values() for m in ms):
                if time.time() - sent > 30:
                    raise RuntimeError("a round-trip message did not come back within 30 s")
            found.append(time.time() - sent)
    finally:
        out.close()
        consumer.close()
    return found


def commands_sent(settings: Settings) -> dict[str, float]:
    """subject -> time the worker produced its command (message CreateTime, epoch seconds)."""
    topic, codec = Topics(settings.topic_prefix).commands("customer_db"), codec_for(DELETION_COMMAND)
    consumer = kafka.consumer(
        settings,
        client_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
    try:
        return {codec.decode(m.value)["subject_id"]: m.timestamp / 1000 for m in consumer}
    finally:
        consumer.close()


def latency_figures(latencies: list[float], rtts: list[float], extra: dict[str, Any]) -> list[Figure]:
    """p50 and p99 figures (ms), each against the same percentile of the broker round trip."""
    notes = (
        "Latency = the sink's applied_at (wall clock when it executes the command, just "
        "before its transaction commits) minus time.time() just before ClockPublisher.tick "
        "(which reads the events end offsets, sends one tick per partition, waits for acks). "
        "Path: tick -> worker (fires the due deadlines, sends the commands acks=all) -> sink "
        "poll -> verify -> delete; extra splits it at the command's CreateTime. Receipt "
        "publication is not included. Baseline: the project's producer (acks=all, linger 5 ms) "
        "-> a kafka-python consumer, 1 message."
    )
    if extra["not_applied"]:
        notes += (
            f" {extra['not_applied']:,} deletions had no tracking row when the "
            f"{extra['drain_timeout_s']:.0f} s wait ended; each counts with its latency so far, "
            "so these percentiles are lower bounds."
        )
    out = []
    for label, q in (("p50", 0.50), ("p99", 0.99)):
        value = 1000 * percentile(latencies, q)
        out.append(
            Figure(
                NAME,
                f"tick -> tracking row {label} at {extra['offered_per_second']:,} deletions/s",
                value,
                "ms",
                f"bare Kafka produce -> consume round trip {label}",
                1000 * percentile(rtts, q),
                higher_is_better=False,
                goal=f"p99 < {P99_GOAL_MS:.0f} ms" if label == "p99" else None,
                meets_goal=value < P99_GOAL_MS if label == "p99" else None,
                notes=notes,
                extra=extra,
            )
        )
    return out


def steady(
    ctx: Context, settings: Settings, dsn: str, plan: Plan, children: list[processes.Child]
) -> list[Figure]:
    """The steady load: latency percentiles and the rate sustained."""
    rtts = round_trips(settings, RTT_SAMPLES)
    ctx.report(f"latency: broker round trip p50 {percentile(rtts, 0.5) * 1000:.1f} ms; ticking")
    sent = ticking(settings, plan)
    wait_applied(dsn, 1 + len(plan.steady), DRAIN_TIMEOUT, children, partial=True)
    ended, done, produced = time.time(), applied(dsn), commands_sent(settings)
    # A deletion not applied when the wait ended counts with its latency so far: a lower bound.
    latencies = [done.get(s, ended) - at for s, at in sent.items()]
    missing = sum(1 for s in sent if s not in done)
    offered = plan.per_round * ROUNDS_PER_SECOND
    last = max((done[s] for s in sent if s in done), default=ended)
    sustained = (len(sent) - missing) / (last - min(sent.values()))
    ctx.report(
        f"latency: {len(latencies)} deletions at {offered:,}/s offered, {sustained:,.0f}/s applied; "
        f"p50 {1000 * percentile(latencies, 0.5):.0f} ms, p99 {1000 * percentile(latencies, 0.99):.0f} ms"
        + (f"; {missing:,} not applied within {DRAIN_TIMEOUT:.0f} s (lower bounds)" if missing else "")
    )
    extra: dict[str, Any] = {
        "samples": len(latencies),
        "rounds": plan.rounds,
        "rounds_per_second": ROUNDS_PER_SECOND,
        "deletions_per_round": plan.per_round,
        "offered_per_second": offered,
        "sustained_per_second": sustained,
        "rtt_samples": len(rtts),
        "min_ms": 1000 * min(latencies),
        "max_ms": 1000 * max(latencies),
        "not_applied": missing,
        "drain_timeout_s": DRAIN_TIMEOUT,
    }
    extra |= _split(sent, produced, done)
    rate = Figure(
        NAME,
        "deletions/s sustained under the steady load",
        sustained,
        "deletions/s",
        "deletions/s offered (due per tick x ticks/s)",
        offered,
        goal=f">= 0.95 of {offered:,}/s offered (the issue: 10,000/s at SIZE=large)",
        meets_goal=sustained >= 0.95 * offered,
        notes=(
            "From the first steady tick sent to the last of its tracking rows"
            + (
                f"; {missing:,} of {len(sent):,} were not applied within the {DRAIN_TIMEOUT:.0f} s wait "
                "(not counted): the pipeline fell behind the load"
                if missing
                else ""
            )
            + "."
        ),
        extra=extra,
    )
    return [*latency_figures(latencies, rtts, extra), rate]


def _split(sent: dict[str, float], produced: dict[str, float], done: dict[str, float]) -> dict[str, float]:
    """p50/p99 (ms) of the latency's two parts: tick -> command produced -> tracking row."""
    split: dict[str, float] = {}
    for part, values in (
        ("tick_to_command", [produced[s] - at for s, at in sent.items() if s in produced]),
        ("command_to_row", [done[s] - produced[s] for s in sent if s in done and s in produced]),
    ):
        if values:
            split[f"{part}_p50_ms"] = 1000 * percentile(values, 0.5)
            split[f"{part}_p99_ms"] = 1000 * percentile(values, 0.99)
    return split


def burst(ctx: Context, settings: Settings, dsn: str, plan: Plan, children: list[processes.Child]) -> Figure:
    """One tick makes ``plan.burst`` deletions due: time until the last is applied, none lost."""
    before = 1 + len(plan.steady)
    at = one_tick(settings, plan.rounds + 1)
    reached = wait_applied(dsn, before + plan.burst, DRAIN_TIMEOUT, children, partial=True)
    last = query(dsn, "SELECT extract(epoch FROM max(applied_at)) FROM ebbtide_sink.applied_commands")
    seconds = float(last[0][0]) - at
    left = int(query(dsn, f"SELECT count(*) FROM customers WHERE customer_id >= {plan.bursting.start}")[0][0])
    drained = plan.burst - left
    if reached >= before + plan.burst and left:
        raise RuntimeError(f"{left} of the burst's {plan.burst} customers not deleted")
    ceiling = raw_ceiling(dsn, plan.burst)
    value = drained / seconds
    ctx.report(
        f"latency: burst: {drained:,} of {plan.burst:,} drained in {seconds:.1f} s ({value:,.0f}/s); "
        f"raw {ceiling:,.0f}/s"
    )
    if left:
        checked = (
            f"{left:,} of the burst's customer rows were still there when the {DRAIN_TIMEOUT:.0f} s wait "
            "ended (the pipeline was still draining; whether they were lost is not checked)"
        )
    else:
        checked = "every customer row of the burst checked gone"
    return Figure(
        NAME,
        f"burst: {plan.burst:,} deletions due in one tick, drained per second",
        value,
        "deletions/s",
        f"raw DELETE ... = ANY of {plan.burst:,} rows, {BATCH} per statement and commit",
        ceiling,
        goal=f">= {BURST_GOAL:,.0f}/s (1M in <= 60 s), nothing lost",
        meets_goal=value >= BURST_GOAL and not left,
        notes=(
            f"From the tick sent to the last tracking row; {checked}. The worker fires the whole "
            "tick's deadlines, the sink takes them in batches. Rows of the steady load still "
            "draining when the tick was sent are applied in the same time."
        ),
        extra={"deletions": plan.burst, "drained": drained, "seconds": seconds, "not_drained": left},
    )


def raw_ceiling(dsn: str, rows: int) -> float:
    """Rows/s of the raw DELETE at the sink's batch size and cadence on a fresh table."""
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        return ceilings.raw(conn, "burst_ceiling", rows, BATCH).per_second


def measure(ctx: Context, settings: Settings, dsn: str, plan: Plan, log_dir: Path) -> list[Figure]:
    """Publish every subject, warm up, then the steady load and the burst."""
    ctx.report(f"latency: publishing {plan.subjects:,} subjects")
    plan.publish(settings, settings.keys_dsn or dsn)
    children = [
        processes.start("worker", ["worker"], settings, log_dir),
        processes.start("sink", ["sink", "postgres"], settings, log_dir),
    ]
    try:
        one_tick(settings, 0)  # warm-up: covers every event, so the worker has stamped them all
        wait_applied(dsn, 1, READY_TIMEOUT, children)
        figures = steady(ctx, settings, dsn, plan, children)
        return [*figures, burst(ctx, settings, dsn, plan, children)]
    finally:
        for child in children:
            child.stop()


# What this benchmark measures is one store's path, tick -> command -> PostgreSQL row deleted:
# a store map in which the customer database alone holds client records (no vendor copies).
ONE_STORE = """version = "bench-one-store"
[[stores]]
id = "customer_db"
name = "Customer database"
kind = "postgres"
service_level = { days = 60 }  # scripted ticks are an hour apart: no re-sends while measuring
source = "bench/latency.py: the one store this benchmark measures"
[[stores.holds]]
category = "client"
fields = ["name", "email", "phone", "address"]
"""


def run(ctx: Context) -> list[Figure]:
    """Start the worker and sink on fresh topics and a scratch database, and measure."""
    plan = Plan(ctx.size.latency_seconds, SCALES[ctx.size.name])
    with scratch_database(ctx.pg_dsn, NAME) as dsn:
        prepare_database(dsn, plan.subjects)
        settings = replace(
            ctx.unique_settings(NAME),
            pg_dsn=dsn,
            worker_metrics_port=free_port(),
            sink_metrics_port=free_port(),
            worker_web_port=free_port(),
        )
        store_map = settings.state_dir / "stores.toml"
        store_map.parent.mkdir(parents=True, exist_ok=True)
        store_map.write_text(ONE_STORE, encoding="utf-8")
        settings = replace(settings, store_map=store_map)
        # customer_db's commands, and the key store's: once a subject's copies are gone, the
        # worker orders its data key shredded (no sink of it runs here; nothing waits for it).
        create_topics(settings, pipeline_topics(Topics(settings.topic_prefix), ["customer_db", "keys"]))
        try:
            return measure(ctx, settings, dsn, plan, settings.state_dir / "logs")
        finally:
            drop_topics(settings, [f"{settings.topic_prefix}.", settings.app_id])
