"""The load of ``bench.latency``: subjects whose client record falls due at a chosen tick of a
scripted clock, which tick each subject is due at (:class:`Plan`), and the ticks themselves."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.tokens import KEY_BYTES, DataKey
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.keys.store import TABLE as KEYS_TABLE
from ebbtide.sinks.keys.store import KeyStore
from ebbtide.tools.client import EventPublisher
from ebbtide.tools.clock import ClockPublisher

ROUNDS_PER_SECOND = 4
FIRST_TICK = datetime(2031, 3, 1, tzinfo=UTC)  # deadlines 3 years on never cross a 29 February
STEP = timedelta(hours=1)  # scripted time between ticks


@dataclass(frozen=True)
class Scale:
    rate: int  # deletions a second made due during the steady load
    burst: int  # deletions made due by one tick


SCALES = {
    "small": Scale(rate=200, burst=5_000),
    "medium": Scale(rate=1_000, burst=50_000),
    "large": Scale(rate=10_000, burst=1_000_000),  # the figures
}


def due_subject(n: int, tick: datetime) -> list[dict[str, Any]]:
    """Events of customer ``n`` whose client record's deadline is half a step before ``tick``.

    Due at ``tick`` but not at the tick before it, so it cannot fire early.
    """
    closed = (tick - STEP / 2).replace(year=tick.year - 3)
    base = {"subject_id": f"cust-{n:05d}", "producer": "bench"}
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


class BulkKeys:
    """Every subject's data key, made here and stored in the key store in a few statements: the
    key store's ``current`` costs a round trip and a commit per new subject, which would make
    publishing the large size's million subjects take longer than the benchmark."""

    def __init__(self, dsn: str, subjects: range) -> None:
        store = KeyStore(dsn)
        try:
            store.current("cust-0")  # the key store's tables, made as a publisher makes them
        finally:
            store.close()
        self.keys = {
            f"cust-{n:05d}": DataKey(f"cust-{n:05d}", secrets.token_hex(8), os.urandom(KEY_BYTES))
            for n in subjects
        }
        made = list(self.keys.values())
        with contextlib.closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
            for start in range(0, len(made), 50_000):  # a statement's arrays stay a few MB
                chunk = made[start : start + 50_000]
                cur.execute(
                    f"INSERT INTO {KEYS_TABLE} (subject_id, key_id, secret) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])",
                    ([k.subject_id for k in chunk], [k.key_id for k in chunk], [k.secret for k in chunk]),
                )

    def current(self, subject_id: str) -> DataKey:
        return self.keys[subject_id]


class Plan:
    """Which subjects fall due at which tick: tick 0 the warm-up (subject 1), ticks 1..rounds the
    steady load, the tick after them the burst."""

    def __init__(self, seconds: float, scale: Scale) -> None:
        self.rounds = max(1, round(seconds * ROUNDS_PER_SECOND))
        self.per_round = max(1, scale.rate // ROUNDS_PER_SECOND)
        self.burst = scale.burst
        self.steady = range(2, 2 + self.rounds * self.per_round)
        self.bursting = range(self.steady.stop, self.steady.stop + self.burst)

    @property
    def subjects(self) -> int:
        return self.bursting.stop - 1

    def round(self, r: int) -> range:
        """Subjects due at steady tick ``r`` (1-based)."""
        first = self.steady.start + (r - 1) * self.per_round
        return range(first, first + self.per_round)

    @staticmethod
    def tick(r: int) -> datetime:
        return FIRST_TICK + r * STEP

    def publish(self, settings: Settings, dsn: str) -> None:
        """Every subject's events, in tick order, sealed with keys made in bulk (:class:`BulkKeys`)."""
        events = EventPublisher(settings, keys=BulkKeys(dsn, range(1, self.subjects + 1)))
        try:
            events_of = [(range(1, 2), 0)] + [(self.round(r), r) for r in range(1, self.rounds + 1)]
            for subjects, r in [*events_of, (self.bursting, self.rounds + 1)]:
                for n in subjects:
                    for event in due_subject(n, self.tick(r)):
                        events.publish(event)
            events.flush()
        finally:
            events.close()


def ticking(settings: Settings, plan: Plan) -> dict[str, float]:
    """The steady ticks, paced; subject -> wall time its tick was sent."""
    clock, sent = ClockPublisher(settings, "scripted"), {}
    start, interval = time.monotonic(), 1 / ROUNDS_PER_SECOND
    try:
        for r in range(1, plan.rounds + 1):
            at = time.time()
            clock.tick(plan.tick(r))
            sent.update({f"cust-{n:05d}": at for n in plan.round(r)})
            time.sleep(max(0.0, start + r * interval - time.monotonic()))  # pacing the load
    finally:
        clock.close()
    return sent


def one_tick(settings: Settings, r: int) -> float:
    """Send tick ``r``; the wall time it was sent."""
    clock = ClockPublisher(settings, "scripted")
    try:
        at = time.time()
        clock.tick(Plan.tick(r))
        return at
    finally:
        clock.close()
