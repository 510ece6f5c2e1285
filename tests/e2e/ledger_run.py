"""A pipeline run judged by the chaos run's ledger (``chaos.ledger``), for the e2e tests that kill
a part of the pipeline mid-run (a broker of a cluster, a worker of two).

The scenario's events and an accelerated clock are published in time order and replayed through
the pure engine alongside (:class:`chaos.ledger.Oracle`): what was due is known without asking
the worker. The workers' metrics tell when a tick has settled; the verdict compares what the
oracle ordered with what the databases still hold and what the topics say was done (receipts,
commands, certificates, dead letters), as ``make chaos`` does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from chaos.ledger import Copy, Oracle, Verdict, database_holdings
from chaos.report import topics_verdict
from ebbtide import bootstrap
from ebbtide.demo import database, scenario
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, codec_for
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher, InvalidEvent, to_record
from ebbtide.tools.clock import ClockPublisher, steps
from ebbtide.tools.state_reader import read_to_end
from tests.e2e.test_pipeline import Pipeline
from tests.support import RememberedKeys

# The databases of tests/e2e/own_databases.toml and the table map each one's sink runs.
DATABASES = {scenario.STORE: "customer_db", scenario.BILLING_STORE: "billing_db"}
POLL = 0.1  # seconds between two looks at the workers' metrics


class LoggedPipeline(Pipeline):
    """The pipeline of the e2e tests with its worker logging at INFO: Faust's rebalances and
    recoveries are in its log, to tell what a kill did."""

    def start(self, name: str) -> processes.Child:
        if name == "worker":
            return processes.start(name, ["worker", "--loglevel", "INFO"], self.settings, self.log_dir)
        return super().start(name)


def producible(events: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """The scenario's events as a producer of this store map publishes them (Avro records): an
    announcement of a store the map does not have (a vendor's, say) is refused by the client
    before it is sent, so it is left out here too."""
    policy = bootstrap.policy(settings)
    records = []
    for event in events:
        try:
            records.append(to_record(event, policy))
        except InvalidEvent:
            continue
    return records


@dataclass
class LedgerRun:
    """The events and ticks of a run, what was published of them, and the oracle's replay."""

    settings: Settings
    dsn: str
    records: list[dict[str, Any]]
    ticks: list[datetime]
    oracle: Oracle
    before: set[Copy] = field(default_factory=set)
    published: int = 0  # records published so far
    ticked: int = 0  # ticks published so far

    @classmethod
    def prepare(
        cls, settings: Settings, dsn: str, customers: int, until: datetime, step_days: int, seed: int = 11
    ) -> LedgerRun:
        """Load the scenario's rows into ``dsn`` and plan its events and ticks. Legal holds are
        signed with the worker's local hold key (``settings.hold_signing_key`` set to it)."""
        settings = replace(settings, hold_signing_key=settings.local_hold_signing_key)
        sc = scenario.build(customers, seed)
        database.load(dsn, sc)
        records = producible(sc.events, settings)
        ticks = list(steps(scenario.START, until, step_days))
        run = cls(settings, dsn, records, ticks, Oracle(bootstrap.policy(settings)))
        run.before = run.holdings()
        return run

    def holdings(self) -> set[Copy]:
        """The copies whose personal data the databases hold now."""
        held: set[Copy] = set()
        for store, name in DATABASES.items():
            held |= database_holdings(self.dsn, store, load_table_map(map_path(name)))
        return held

    def publish(self, ticks: int, timeout: float = 60.0) -> None:
        """Publish the next ``ticks`` ticks, each after the events up to its time, and replay
        them in the oracle. Each send waits ``timeout`` s at most for the brokers (a failover
        takes some); one not acknowledged by then fails the test."""
        publisher = EventPublisher(self.settings, self.oracle.policy, timeout=timeout)
        clock = ClockPublisher(self.settings, "accelerated", timeout=timeout)
        try:
            for moment in self.ticks[self.ticked : self.ticked + ticks]:
                batch = []
                while (
                    self.published < len(self.records)
                    and self.records[self.published]["event_time"] <= moment
                ):
                    batch.append(self.records[self.published])
                    self.published += 1
                publisher.publish_all(batch)
                publisher.flush()
                for record in batch:
                    self.oracle.event(record)
                clock.tick(moment)
                self.oracle.tick(to_ms(moment))
                self.ticked += 1
        finally:
            publisher.abort()
            clock.close()

    @property
    def last_tick(self) -> datetime:
        return self.ticks[self.ticked - 1]

    def settled(self, worker_ports: list[int]) -> bool:
        """Every partition's clock (in the workers holding it) at the last tick published, so
        every event before it processed, and no command awaiting a receipt."""
        clocks: dict[str, float] = {}
        awaiting = 0.0
        for port in worker_ports:
            samples = processes.scrape(port)  # empty while a worker is down or starting
            for labels, value in samples.get("ebbtide_clock_time_seconds", {}).items():
                partition = dict(labels).get("partition", "")
                clocks[partition] = max(clocks.get(partition, 0.0), value)
            awaiting += processes.total(samples, "ebbtide_deletions_awaiting_receipt")
        return (
            len(clocks) == self.settings.partitions
            and min(clocks.values()) >= to_ms(self.last_tick) / 1000
            and awaiting == 0
        )

    def wait_settled(
        self, worker_ports: list[int], timeout: float, logs: Callable[[], str] = lambda: ""
    ) -> float:
        """Wait until :meth:`settled`; the seconds it took. Fails naming the tick on timeout."""
        began = time.monotonic()
        while not self.settled(worker_ports):
            if time.monotonic() - began > timeout:
                raise AssertionError(
                    f"the tick of {self.last_tick.date()} did not settle within {timeout:.0f} s\n{logs()}"
                )
            time.sleep(POLL)  # polling interval of a bounded wait on the condition above
        return time.monotonic() - began

    def verdict(self) -> Verdict:
        """The ledger's verdict on the run so far (call once it has settled)."""
        stores = tuple(DATABASES)
        return topics_verdict(
            self.settings,
            self.oracle,
            [],
            list(stores),
            stores,
            self.before,
            self.holdings(),
            RememberedKeys(),
        )


def failures(run: LedgerRun, verdict: Verdict) -> str:
    """What the verdict found wrong, for an assertion message (synthetic keys only), with the
    decisions the worker published about each copy lost or deleted twice (where on the
    decisions topic, of which kind): what a reader of the logs needs to tell what happened."""
    wrong = {"/".join(c) for c in (*verdict.lost, *verdict.duplicated, *verdict.premature)}
    trail: dict[str, list[str]] = {record: [] for record in sorted(wrong)[:10]}
    codec = codec_for(DECISION)
    for message in read_to_end(run.settings, Topics(run.settings.topic_prefix).decisions):
        decision = codec.decode(message.value)
        if decision["record"] in trail:
            trail[decision["record"]].append(f"{decision['kind']}@{message.partition}:{message.offset}")
    return f"{verdict.as_json()}\ndecisions of the copies named: {trail}"
