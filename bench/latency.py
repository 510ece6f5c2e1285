"""Deletion latency under steady load: clock tick past a deadline -> tracking row in PostgreSQL.

The real worker and PostgreSQL sink run as child processes. A few times a second, fresh
subjects whose client record falls due just before the next tick are published, then that
tick. A record's latency runs from the moment the tick is sent (wall clock) to ``applied_at``
of its row in ``ebbtide_sink.applied_commands``. Baseline: a bare Kafka produce -> consume
round trip through the same broker, measured in the same run.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from kafka import TopicPartition

from bench.common import Context, Figure
from bench.deletion import drop_topics, scratch_database
from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, pipeline_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher
from ebbtide.tools.clock import ClockPublisher
from ebbtide.tools.processes import free_port

NAME = "latency"
ROUNDS_PER_SECOND = 4
SUBJECTS_PER_ROUND = 5
FIRST_TICK = datetime(2031, 3, 1, tzinfo=UTC)  # deadlines 3 years on never cross a 29 February
STEP = timedelta(hours=1)  # scripted time between ticks
READY_TIMEOUT = 180.0  # the worker joins its group and recovers within this
DRAIN_TIMEOUT = 120.0
RTT_SAMPLES = 200
GOAL = "p99 < 2 s"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in (0, 1]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def due_subject(n: int, tick: datetime) -> list[dict[str, Any]]:
    """Events of customer ``n`` whose client record's deadline is half a step before ``tick``.

    Due at ``tick`` but not at the tick before it, so it cannot fire early.
    """
    closed = (tick - STEP / 2).replace(year=tick.year - 3)
    base = {"subject_id": f"cust-{n}", "producer": "bench"}
    return [
        {
            **base,
            "event_id": f"w-{n}",
            "type": "RecordWritten",
            "event_time": (closed - STEP).isoformat(),
            "payload": {"store": "customer_db", "category": "client", "record_key": str(n)},
        },
        {
            **base,
            "event_id": f"c-{n}",
            "type": "AccountClosed",
            "event_time": closed.isoformat(),
            "payload": {},
        },
    ]


def prepare_database(dsn: str, customers: int) -> None:
    """The demo schema with ``customers`` customer rows, ids 1..customers."""
    demo_db.load(dsn, build(customers=0))
    with contextlib.closing(psycopg2.connect(dsn)) as conn:
        ensure_tracking(conn)  # so it can be polled before the sink starts
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO customers SELECT g, 'Name ' || g, 'c' || g || '@example.invalid',"
                " lpad(g::text, 8, '0'), 'Storgata 1', '2020-01-01'"
                " FROM generate_series(1, %s) g",
                (customers,),
            )


def applied(dsn: str) -> dict[str, float]:
    """record_key -> applied_at (epoch seconds) of every tracked command."""
    codec = codec_for(DELETION_RECEIPT)
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT receipt, applied_at FROM ebbtide_sink.applied_commands")
        return {codec.decode(bytes(r))["record_key"]: at.timestamp() for r, at in cur.fetchall()}


def wait_applied(dsn: str, keys: set[str], timeout: float, children: list[processes.Child]) -> None:
    """Wait until every record key in ``keys`` has a tracking row; fail if a child dies."""
    deadline = time.monotonic() + timeout
    while not keys <= applied(dsn).keys():
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} died:\n{child.tail()}")
        if time.monotonic() > deadline:
            missing = len(keys - applied(dsn).keys())
            raise RuntimeError(f"{missing} of {len(keys)} deletions not applied within {timeout:.0f}s")
        time.sleep(0.2)  # polling interval of a bounded wait


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
    """record_key -> time the worker produced its command (message CreateTime, epoch seconds)."""
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
        return {codec.decode(m.value)["record_key"]: m.timestamp / 1000 for m in consumer}
    finally:
        consumer.close()


class Load:
    """Publishes due subjects and ticks at a steady rate, remembering when each tick was sent."""

    def __init__(self, settings: Settings) -> None:
        self.events = EventPublisher(settings)
        self.clock = ClockPublisher(settings, "scripted")
        self.sent: dict[str, float] = {}  # record_key -> wall time its tick was sent
        self.rounds = 0

    def round(self, subjects: range) -> None:
        """Publish the subjects due at the next tick, then send that tick."""
        tick = FIRST_TICK + self.rounds * STEP
        for n in subjects:
            for event in due_subject(n, tick):
                self.events.publish(event)
        self.events.flush()
        sent = time.time()
        self.clock.tick(tick)
        self.sent.update({str(n): sent for n in subjects})
        self.rounds += 1

    def steady(self, seconds: float, first: int) -> int:
        """Rounds of fresh subjects numbered from ``first`` for ``seconds``; returns the count."""
        start, interval, rounds = time.monotonic(), 1 / ROUNDS_PER_SECOND, 0
        while time.monotonic() - start < seconds:
            n = first + rounds * SUBJECTS_PER_ROUND
            self.round(range(n, n + SUBJECTS_PER_ROUND))
            rounds += 1
            time.sleep(max(0.0, start + rounds * interval - time.monotonic()))  # pacing the load
        return rounds

    def close(self) -> None:
        self.events.close()
        self.clock.close()


def figures(latencies: list[float], rtts: list[float], extra: dict[str, Any]) -> list[Figure]:
    """p50 and p99 figures (ms), each against the same percentile of the broker round trip."""
    notes = (
        "Latency = the sink's applied_at (wall clock when it executes the command, just "
        "before its transaction commits) minus time.time() just before ClockPublisher.tick "
        "(which reads the events end offsets, sends one tick per partition, waits for acks). "
        "Path: tick -> worker (waits for the events the tick covers, fires, sends the command "
        "acks=all) -> sink poll -> delete; extra splits it at the command's CreateTime. Receipt "
        "publication is not included. Baseline: "
        "the project's producer (acks=all, linger 5 ms) -> a kafka-python consumer, 1 message."
    )
    out = []
    for label, q in (("p50", 0.50), ("p99", 0.99)):
        value = 1000 * percentile(latencies, q)
        out.append(
            Figure(
                NAME,
                f"tick -> tracking row {label}",
                value,
                "ms",
                f"bare Kafka produce -> consume round trip {label}",
                1000 * percentile(rtts, q),
                higher_is_better=False,
                goal=GOAL if label == "p99" else None,
                meets_goal=value < 2000 if label == "p99" else None,
                notes=notes,
                extra=extra,
            )
        )
    return out


def measure(ctx: Context, settings: Settings, dsn: str, log_dir: Path) -> list[Figure]:
    """Warm up, measure the broker round trip, then run the steady load and collect latencies."""
    children = [
        processes.start("worker", ["worker"], settings, log_dir),
        processes.start("sink", ["sink", "postgres"], settings, log_dir),
    ]
    load = Load(settings)
    try:
        load.round(range(1, 2))  # warm-up: the worker joins its group and recovers first
        wait_applied(dsn, {"1"}, READY_TIMEOUT, children)
        rtts = round_trips(settings, RTT_SAMPLES)
        ctx.report(f"latency: pipeline ready; broker round trip p50 {percentile(rtts, 0.5) * 1000:.1f} ms")
        load.sent.clear()
        rounds = load.steady(ctx.size.latency_seconds, first=2)
        wait_applied(dsn, set(load.sent), DRAIN_TIMEOUT, children)
    finally:
        load.close()
        for child in children:
            child.stop()
    done, produced = applied(dsn), commands_sent(settings)
    latencies = [done[key] - sent for key, sent in load.sent.items()]
    worker = [produced[key] - sent for key, sent in load.sent.items()]
    sink = [done[key] - produced[key] for key in load.sent]
    ctx.report(
        f"latency: {len(latencies)} deletions, p50 {1000 * percentile(latencies, 0.5):.0f} ms, "
        f"p99 {1000 * percentile(latencies, 0.99):.0f} ms"
    )
    extra = {
        "samples": len(latencies),
        "rounds": rounds,
        "rounds_per_second": ROUNDS_PER_SECOND,
        "subjects_per_round": SUBJECTS_PER_ROUND,
        "rtt_samples": len(rtts),
        "min_ms": 1000 * min(latencies),
        "max_ms": 1000 * max(latencies),
    }
    for part, values in (("tick_to_command", worker), ("command_to_row", sink)):
        extra |= {
            f"{part}_p50_ms": 1000 * percentile(values, 0.5),
            f"{part}_p99_ms": 1000 * percentile(values, 0.99),
        }
    return figures(latencies, rtts, extra)


# What this benchmark measures is one store's path, tick -> command -> PostgreSQL row deleted:
# a store map in which the customer database alone holds client records (no vendor copies).
ONE_STORE = """version = "bench-one-store"
[[stores]]
id = "customer_db"
name = "Customer database"
kind = "postgres"
service_level = { hours = 1 }
source = "bench/latency.py: the one store this benchmark measures"
[[stores.holds]]
category = "client"
fields = ["name", "email", "phone", "address"]
"""


def run(ctx: Context) -> list[Figure]:
    """Start the worker and sink on fresh topics and a scratch database, and measure."""
    customers = 2 + math.ceil(ctx.size.latency_seconds * ROUNDS_PER_SECOND + 10) * SUBJECTS_PER_ROUND
    with scratch_database(ctx.pg_dsn, NAME) as dsn:
        prepare_database(dsn, customers)
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
        create_topics(settings, pipeline_topics(Topics(settings.topic_prefix), ["customer_db"]))
        try:
            return measure(ctx, settings, dsn, settings.state_dir / "logs")
        finally:
            drop_topics(settings, [f"{settings.topic_prefix}.", settings.app_id])
