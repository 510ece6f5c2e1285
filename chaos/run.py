"""The chaos run: load, faults on a schedule, the ledger's verdict, a JSON result."""

from __future__ import annotations

import json
import logging
import platform
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from kafka import TopicPartition
from rich.console import Console

from chaos import hostile
from chaos.cluster import ChaosError, Servers, Spec, Supervisor, second_worker
from chaos.ledger import Copy, Oracle, Sent, Verdict, database_holdings, judge
from ebbtide import bootstrap
from ebbtide.demo import database, scenario
from ebbtide.demo.run import DEMO_VENDORS
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics, pipeline_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import dlq, processes
from ebbtide.tools.client import EventPublisher, InvalidEvent, to_record
from ebbtide.tools.clock import ClockPublisher, steps
from ebbtide.tools.progress import progress_bar
from ebbtide.tools.state_reader import read_to_end
from schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from sinks import registry
from sinks.http.vendors import tuned
from sinks.logstore import partitions as logstore
from sinks.postgres.table_map import load_table_map, map_path
from streams import certificates
from streams.policy.calendar import to_ms
from streams.policy.stores import StoreMap

log = logging.getLogger(__name__)

SETTLE_SECONDS = 240.0  # a tick not settled this long after its faults fails the run
POLL = 0.05  # seconds between two looks at the workers' metrics while waiting for a tick
DATABASES = {scenario.STORE: "customer_db", scenario.BILLING_STORE: scenario.BILLING_STORE}
FLAKY_VENDOR = "review_vendor"  # fails a burst of requests
# A vendor is down from OUTAGE[0] to OUTAGE[1] of the run: the one with the most deletions ordered
# in that stretch (from a replay of the whole scenario before the run), so its commands wait and
# the forged receipts have real, unanswered commands to answer.
OUTAGE = (0.40, 0.62)


@dataclass
class Fault:
    """One fault of the schedule: ``at`` is its place in the run (0..1 of the ticks)."""

    name: str
    at: float


SCHEDULE = (
    Fault("kill -9 worker", 0.08),
    Fault("kill -9 customer_db sink", 0.12),
    Fault("poison pills", 0.16),
    Fault("kill -9 billing_db sink", 0.20),
    Fault("add a second worker", 0.24),
    Fault("kill -9 worker (of two)", 0.28),
    Fault("remove the second worker", 0.32),
    Fault("kill -9 broker", 0.36),
    Fault("vendor down", OUTAGE[0]),
    Fault("kill -9 vendor sinks", 0.45),
    Fault("forged receipts", 0.50),
    Fault("forged commands", 0.54),
    Fault("kill -9 PostgreSQL", 0.58),
    Fault("vendor back", OUTAGE[1]),
    Fault("kill -9 log store sink", 0.66),
    Fault("forged ticks", 0.70),
    Fault("forged legal hold", 0.73),
    Fault("kill -9 backups sink", 0.77),
    Fault(f"{FLAKY_VENDOR} fails 20 requests", 0.81),
    Fault("kill -9 worker", 0.86),
)


@dataclass
class Options:
    customers: int = 150
    seed: int = 11
    until: datetime = datetime(2032, 1, 1, tzinfo=UTC)
    step_days: int = 14
    outage_seconds: float = 10.0  # how long the broker and PostgreSQL stay dead
    max_minutes: float = 15.0  # the whole run is given up (exit 2) after this long
    results: Path = Path("chaos/results")
    name: str | None = None  # the result file's name (default: the run's time stamp)


@dataclass
class Recovery:
    fault: str
    tick: str
    injected_at: float  # seconds since the start of the load
    down_s: float  # seconds the faulted part stayed down (0: started again at once)
    recovered_s: float  # seconds from its return until the pipeline had settled the tick
    # For a kill: whether the killed part had work in flight (commands awaiting its store's
    # receipt) when it was killed; None for other faults.
    busy: bool | None = None


@dataclass
class Run:
    console: Console
    settings: Settings
    servers: Servers
    supervisor: Supervisor
    standin: VendorStandIn
    oracle: Oracle
    options: Options
    sent: list[Sent] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    vendors_down: set[str] = field(default_factory=set)
    outage_vendor: str = ""
    started: float = field(default_factory=time.monotonic)
    settles: int = 0
    settle_times: list[float] = field(default_factory=list)  # seconds to settle a tick, faults aside

    # -- waiting for the pipeline ------------------------------------------------------------

    def settled(self, moment: datetime) -> bool:
        """Every partition's clock at ``moment`` (in the workers that hold it) and no command
        awaiting a receipt from a store that is up."""
        clocks: dict[str, float] = {}
        awaiting = 0.0
        for spec in self.supervisor.workers():
            try:
                samples = processes.scrape(spec.metrics_port)
            except OSError:
                return False  # a worker starting again: not settled yet
            for labels, value in samples.get("ebbtide_clock_time_seconds", {}).items():
                partition = dict(labels).get("partition", "")
                clocks[partition] = max(clocks.get(partition, 0.0), value)
            for labels, value in samples.get("ebbtide_deletions_awaiting_receipt", {}).items():
                if dict(labels).get("store") not in self.vendors_down:
                    awaiting += value
        return (
            len(clocks) == self.settings.partitions
            and min(clocks.values()) >= to_ms(moment) / 1000
            and awaiting == 0
        )

    @property
    def vendors(self) -> list[str]:
        return [s.id for s in bootstrap.store_map(self.settings).stores if s.kind == "http"]

    def awaiting(self) -> dict[str, float]:
        """Commands awaiting a receipt, by store, over the workers."""
        out: dict[str, float] = {}
        for spec in self.supervisor.workers():
            for labels, value in (
                processes.scrape(spec.metrics_port).get("ebbtide_deletions_awaiting_receipt", {}).items()
            ):
                store = dict(labels).get("store", "")
                out[store] = out.get(store, 0.0) + value
        return out

    def wait_busy(self, stores: tuple[str, ...] | list[str] | None) -> bool:
        """Wait (BUSY_WAIT at most) until one of ``stores`` (None: any) has commands in flight, so
        a kill strikes a part at work; whether it had."""
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            awaiting = self.awaiting()
            if any(n > 0 for store, n in awaiting.items() if stores is None or store in stores):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)  # polling interval of a bounded wait on the condition above

    def settle(self, moment: datetime) -> float:
        """Wait until :meth:`settled`, starting again any process that exits; seconds waited."""
        began = time.monotonic()
        while not self.settled(moment):
            for name in self.supervisor.revive():
                self.console.print(f"[yellow]the {name} exited on its own; started again")
            if self.now() > self.options.max_minutes * 60:
                raise ChaosError(f"the run took longer than {self.options.max_minutes:g} minutes")
            if time.monotonic() - began > SETTLE_SECONDS:
                tails = "\n".join(
                    f"--- {name} ---\n{self.supervisor.tail(name)}" for name in self.supervisor.children
                )
                raise ChaosError(
                    f"the tick of {moment.date()} did not settle in {SETTLE_SECONDS:.0f} s\n{tails}"
                )
            time.sleep(POLL)  # polling interval of a bounded wait on the condition above
        self.settles += 1
        return time.monotonic() - began

    def now(self) -> float:
        return time.monotonic() - self.started

    # -- the run's own clients, made again after a failure (the broker may have died) ---------

    _publisher: EventPublisher | None = None
    _clock: ClockPublisher | None = None

    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            self._publisher = EventPublisher(self.settings, self.oracle.policy, timeout=20.0)
        return self._publisher

    def clock(self) -> ClockPublisher:
        if self._clock is None:
            self._clock = ClockPublisher(self.settings, "chaos", timeout=20.0)
        return self._clock

    def drop_clients(self) -> None:
        for client in (self._publisher, self._clock):
            if client is not None:
                try:
                    client.close()
                except Exception:  # a client of a dead broker may fail to close: it is dropped all the same
                    log.debug("closing a client failed", exc_info=True)
        self._publisher = self._clock = None


def run(base: Settings, options: Options) -> int:
    console = Console()
    run_id = options.name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = _settings(base, run_id)
    dsn = settings.require_pg_dsn()
    stores = bootstrap.store_map(settings)
    sc = scenario.build(options.customers, options.seed)
    policy = bootstrap.policy(settings)
    records = [to_record(e, policy) for e in sc.events]
    ticks = list(steps(scenario.START, options.until, options.step_days))
    console.rule("[bold]Ebbtide chaos run")
    database.load(dsn, sc)
    maps = {store: load_table_map(map_path(name)) for store, name in DATABASES.items()}
    vendors = [s.id for s in stores.stores if s.kind == "http"]
    checked = [*maps, *vendors, logstore.STORE]
    outage_vendor = _outage_vendor(policy, records, ticks, vendors)
    with _standin(sc, stores) as standin:
        before = _holdings(dsn, maps, standin, vendors)
        supervisor = Supervisor(settings.state_dir / "logs")
        chaos = Run(console, settings, Servers(base.state_dir), supervisor, standin, Oracle(policy), options)
        chaos.outage_vendor = outage_vendor
        try:
            _forget_earlier_runs(settings)
            create_topics(settings, pipeline_topics(Topics(settings.topic_prefix), stores.ids))
            _start(supervisor, settings, stores, standin)
            console.print(
                f"{options.customers} customers, {len(records)} events, {len(before)} copies held in "
                f"{len(checked)} checked stores; {len(SCHEDULE)} faults over the run ({outage_vendor} is "
                f"the vendor that goes down). Logs in {settings.state_dir / 'logs'}."
            )
            final = _drive(chaos, records, ticks)
            console.print("Waiting for the last deletions …")
            chaos.settle(final)
            after = _holdings(dsn, maps, standin, vendors)
            verdict = _judge(chaos, checked, stores.ids, before, after)
        except ChaosError as exc:
            console.print(f"[red]chaos run failed: {exc}")
            return 2
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
            chaos.drop_clients()
            supervisor.stop()
    path = _write(chaos, verdict, run_id)
    _show(console, chaos, verdict, path)
    return 0 if verdict.passed else 1


def _settings(base: Settings, run_id: str) -> Settings:
    stamp = int(time.time())
    settings = replace(
        base,
        topic_prefix=f"ebbtide.chaos-{stamp}",
        app_id=f"ebbtide-chaos-{stamp}",
        state_dir=base.state_dir / "chaos-runs" / run_id,
        clock_mode="replay",  # an accelerated clock
        worker_instance_id="chaos-worker-1",
        worker_metrics_port=processes.free_port(),
        worker_web_port=processes.free_port(),
        session_timeout=10.0,
        hold_keys=None,  # the worker trusts the local pair <state dir>/keys/holds.pub, and the run,
    )
    # playing the legal team too, signs the scenario's legal holds with holds.key.
    return replace(settings, hold_signing_key=settings.local_hold_signing_key)


def _outage_vendor(
    policy: Any, records: list[dict[str, Any]], ticks: list[datetime], vendors: list[str]
) -> str:
    """The vendor with the most deletions ordered while it is down (OUTAGE), from a replay of the
    whole scenario through the pure engine before the run."""
    plan = Oracle(policy)
    index = 0
    for moment in ticks:
        while index < len(records) and records[index]["event_time"] <= moment:
            plan.event(records[index])
            index += 1
        plan.tick(to_ms(moment))
    start, end = (to_ms(ticks[round(f * len(ticks))]) for f in OUTAGE)
    ordered = Counter(copy[0] for copy, at in plan.ordered.items() if start < at < end and copy[0] in vendors)
    if not ordered:
        raise ChaosError("no vendor has a deletion ordered in the outage window: a bigger --customers")
    return ordered.most_common(1)[0][0]


def _forget_earlier_runs(settings: Settings) -> None:
    """Delete the topics of earlier chaos runs on this stack (kept until now for inspection): a
    broker killed with many partitions takes long to recover them all."""
    admin = kafka.admin(settings, client_id=None)
    try:
        earlier = [t for t in admin.list_topics() if t.startswith(("ebbtide.chaos-", "ebbtide-chaos-"))]
        if earlier:
            admin.delete_topics(earlier)
    finally:
        admin.close()


@contextmanager
def _standin(sc: scenario.Scenario, stores: Any) -> Iterator[VendorStandIn]:
    standin = VendorStandIn()
    standin.start()
    try:
        vendors = {s.id for s in stores.stores if s.kind == "http"}
        for category, key, ref in sc.vendor_copies():
            for store in stores.holders(category, ref or None):
                if store in vendors:
                    standin.seed(store, category, key)
        yield standin
    finally:
        standin.stop()


def _holdings(dsn: str, maps: dict[str, Any], standin: VendorStandIn, vendors: list[str]) -> set[Copy]:
    held: set[Copy] = set()
    for store, store_map in maps.items():
        held |= database_holdings(dsn, store, store_map)
    conn = psycopg2.connect(dsn)
    try:  # the log store: a day's partition is the record (its key is the partition's name)
        held |= {(logstore.STORE, logstore.CATEGORY, p.name) for p in logstore.list_partitions(conn)}
    finally:
        conn.close()
    for store in vendors:
        for category in standin.stats(store)["records"]:
            held |= {(store, category, key) for key in standin.keys(store, category)}
    return held


def _start(supervisor: Supervisor, settings: Settings, stores: StoreMap, standin: VendorStandIn) -> None:
    config = settings.state_dir / "vendors.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(tuned(DEMO_VENDORS), encoding="utf-8")
    # INFO: Faust's rebalances and recoveries are in the logs of a run, to tell what a fault did.
    worker = ["worker", "--loglevel", "INFO"]
    supervisor.add("worker", Spec(worker, settings, {}, settings.worker_metrics_port, worker=True))
    for name, args in registry.sink_processes(stores.stores).items():  # a sink per store of the map
        port = processes.free_port()
        if args[0] == "http":
            args = [*args, "--config", str(config), "--metrics-port", str(port)]
        supervisor.add(
            name,
            Spec(
                ["sink", *args],
                replace(settings, sink_metrics_port=port),
                {"EBBTIDE_VENDOR_URL": standin.url},
                port,
            ),
        )


def _drive(chaos: Run, records: list[dict[str, Any]], ticks: list[datetime]) -> datetime:
    """Publish the events up to each tick, then the tick; strike with the faults due at that
    tick while the pipeline works on it, and wait until it has settled the tick."""
    at: dict[int, list[Fault]] = {}
    for fault in SCHEDULE:
        at.setdefault(min(len(ticks) - 1, round(fault.at * len(ticks))), []).append(fault)
    index = 0
    with progress_bar(chaos.console) as progress:
        task = progress.add_task("chaos", total=len(ticks))
        for number, moment in enumerate(ticks):
            batch = []
            while index < len(records) and records[index]["event_time"] <= moment:
                batch.append(records[index])
                index += 1
            _publish(chaos, batch)
            for record in batch:
                chaos.oracle.event(record)
            sent = time.monotonic()
            _tick(chaos, moment)
            chaos.oracle.tick(to_ms(moment))
            struck = []
            for fault in at.get(number, []):
                progress.update(task, description=f"clock at {moment.date()}: {fault.name}")
                struck.append((fault, chaos.now(), *_inject(chaos, fault, moment)))
            back = time.monotonic()  # every faulted part is back (started again, or never down)
            chaos.settle(moment)
            if not struck:
                chaos.settle_times.append(time.monotonic() - sent)
            for fault, injected, down, busy in struck:
                name = fault.name
                if name in ("vendor down", "vendor back", "forged receipts"):
                    name = f"{name} ({chaos.outage_vendor})"
                chaos.recoveries.append(
                    Recovery(
                        name,
                        str(moment.date()),
                        round(injected, 1),
                        down,
                        round(time.monotonic() - back, 2),
                        busy,
                    )
                )
            progress.update(task, advance=1, description=f"clock at {moment.date()}")
    return ticks[-1]


def _retry(chaos: Run, what: str, action: Callable[[], None]) -> None:
    """``action`` until it succeeds (the broker may be starting again), at most 10 times."""
    for attempt in range(10):
        try:
            action()
            return
        except InvalidEvent as exc:  # the run's own mistake: trying again would not help
            raise ChaosError(f"{what}: {exc}") from None
        except Exception as exc:  # the broker's errors are many; all are retried
            chaos.console.print(
                f"[yellow]{what} failed ({type(exc).__name__}); again (attempt {attempt + 2})"
            )
            chaos.supervisor.revive()
    raise ChaosError(f"{what} failed 10 times")


def _publish(chaos: Run, batch: list[dict[str, Any]]) -> None:
    if not batch:
        return

    def send() -> None:
        publisher = chaos.publisher()
        try:
            publisher.publish_all(batch)
            publisher.flush()
        except BaseException:
            chaos.drop_clients()
            raise

    _retry(chaos, f"publishing {len(batch)} events", send)


def _tick(chaos: Run, moment: datetime) -> None:
    def send() -> None:
        try:
            chaos.clock().tick(moment)
        except BaseException:
            chaos.drop_clients()
            raise

    _retry(chaos, f"the tick of {moment.date()}", send)


# The stores each process serves: a kill waits (a little) until one has commands in flight.
SERVES = {
    "customer_db sink": ("customer_db",),
    "billing_db sink": ("billing_db",),
    "log store sink": ("log_store",),
    "backups sink": ("hosting_backups",),
    "PostgreSQL": ("customer_db", "billing_db", "log_store", "hosting_backups"),
}
BUSY_WAIT = 3.0  # seconds a kill waits for work in flight before it strikes anyway


def _inject(chaos: Run, fault: Fault, moment: datetime) -> tuple[float, bool | None]:
    """Do ``fault``: the seconds the faulted part stayed down, and (for a kill) whether it had
    work in flight."""
    supervisor, servers, name = chaos.supervisor, chaos.servers, fault.name
    if name.startswith("kill -9 "):
        what = name.removeprefix("kill -9 ").removesuffix(" (of two)")
        busy = chaos.wait_busy(SERVES.get(what, tuple(chaos.vendors)) if what != "worker" else None)
        if what == "broker":
            chaos.drop_clients()
            return _outage(chaos, servers.kill_broker, servers.start_broker), busy
        if what == "PostgreSQL":
            return _outage(chaos, servers.kill_postgres, servers.start_postgres), busy
        supervisor.kill(what)
        return 0.0, busy
    sender = hostile.Sender(chaos.settings, producer(chaos.settings))
    try:
        if name == "add a second worker":
            second = second_worker(chaos.settings, chaos.settings.state_dir)
            args = ["worker", "--loglevel", "INFO"]
            supervisor.add("worker 2", Spec(args, second, {}, second.worker_metrics_port, worker=True))
        elif name == "remove the second worker":
            supervisor.remove("worker 2")
        elif name == "vendor down":
            chaos.standin.set_mode(chaos.outage_vendor, "down")
            chaos.vendors_down.add(chaos.outage_vendor)
        elif name == "vendor back":
            chaos.standin.set_mode(chaos.outage_vendor, "ok")
            chaos.vendors_down.discard(chaos.outage_vendor)
        elif name.endswith("fails 20 requests"):
            chaos.standin.set_mode(FLAKY_VENDOR, "fail", count=20)
        elif name == "poison pills":
            chaos.sent += hostile.poison_pills(sender, _a_subject(chaos), moment)
        elif name == "forged receipts":
            waiting = _waiting_commands(chaos, chaos.outage_vendor, 4)
            if not waiting:
                raise ChaosError(f"no command waits at {chaos.outage_vendor} to forge a receipt for")
            chaos.sent += hostile.forged_receipts(sender, waiting, moment)
        elif name == "forged commands":
            chaos.sent += hostile.forged_commands(sender, _not_due(chaos, 3), moment)
        elif name == "forged ticks":
            chaos.sent += hostile.forged_ticks(sender, lambda p: _events_end(chaos.settings, p))
        elif name == "forged legal hold":
            chaos.sent.append(hostile.forged_hold(sender, _soon_due_subject(chaos), moment))
        else:
            raise ChaosError(f"unknown fault {name!r}")
        sender.producer.flush(timeout=30)
    finally:
        sender.producer.close(timeout=1)
    return 0.0, None


def _outage(chaos: Run, kill: Callable[[], None], start: Callable[[], None]) -> float:
    kill()
    began = time.monotonic()
    time.sleep(chaos.options.outage_seconds)  # the outage itself: the server stays dead this long
    start()
    return round(time.monotonic() - began, 1)


def _a_subject(chaos: Run) -> str:
    return sorted(chaos.oracle.states)[0]


def _not_due(chaos: Run, count: int) -> list[tuple[Copy, str]]:
    """Client records (customer rows) not due, of customers whose account is open: forged
    commands aim at them."""
    picked = []
    for subject, state in sorted(chaos.oracle.states.items()):
        for record in state.records.values():
            copy = (record.store, record.category, record.record_key)
            if (
                record.store == scenario.STORE
                and record.category == "client"
                and copy not in chaos.oracle.ordered
            ):
                picked.append((copy, subject))
        if len(picked) >= count:
            break
    return picked[:count]


def _soon_due_subject(chaos: Run) -> str:
    """A subject with copies announced and not yet ordered deleted whose account is closed (the
    forged hold would keep them): the first in order, for a deterministic run."""
    for subject, state in sorted(chaos.oracle.states.items()):
        if any(
            (r.store, r.category, r.record_key) not in chaos.oracle.ordered and r.deadline is not None
            for r in state.records.values()
        ):
            return subject
    return _a_subject(chaos)


def _waiting_commands(chaos: Run, store: str, count: int) -> list[dict[str, Any]]:
    """Commands the down vendor has not carried out (no receipt says it deleted): the latest of
    each copy on its topic."""
    topics = Topics(chaos.settings.topic_prefix)
    receipts = codec_for(DELETION_RECEIPT)
    done = {
        receipt["command_id"]
        for receipt in (receipts.decode(m.value) for m in read_to_end(chaos.settings, topics.receipts))
        if receipt["store"] == store and receipt["outcome"] != "FAILED"
    }
    codec = codec_for(DELETION_COMMAND)
    latest: dict[Copy, dict[str, Any]] = {}
    for message in read_to_end(chaos.settings, topics.commands(store)):
        command = codec.decode(message.value)
        if command["command_id"] not in done:
            latest[(command["store"], command["category"], command["record_key"])] = command
    return [latest[c] for c in sorted(latest)][:count]


def _events_end(settings: Settings, partition: int) -> int:
    consumer = kafka.consumer(settings, client_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(Topics(settings.topic_prefix).events, partition)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def _judge(
    chaos: Run, checked: list[str], all_stores: tuple[str, ...], before: set[Copy], after: set[Copy]
) -> Verdict:
    topics = Topics(chaos.settings.topic_prefix)
    forged = {(s.topic, s.partition, s.offset) for s in chaos.sent}

    def genuine(topic: str) -> Iterator[bytes]:
        for message in read_to_end(chaos.settings, topic):
            if (message.topic, message.partition, message.offset) not in forged:
                yield message.value

    receipts = [codec_for(DELETION_RECEIPT).decode(v) for v in genuine(topics.receipts)]
    first: dict[Copy, int] = {}
    commands = codec_for(DELETION_COMMAND)
    for store in all_stores:
        for value in genuine(topics.commands(store)):
            command = commands.decode(value)
            copy = (command["store"], command["category"], command["record_key"])
            issued = to_ms(command["issued_at"])
            first[copy] = min(first.get(copy, issued), issued)
    certified: list[Copy] = []
    for value in genuine(topics.certificates):
        for entry in certificates.loads(value)["certificate"]["entries"]:
            store, category, key = entry["record"].split("/", 2)
            certified.append((store, category, key))
    letters = {
        (d.source_topic, d.source_partition, d.source_offset): d.reason for d in dlq.read(chaos.settings)
    }
    return judge(chaos.oracle, checked, before, after, receipts, first, certified, letters, chaos.sent)


def _write(chaos: Run, verdict: Verdict, run_id: str) -> Path:
    options = chaos.options
    out = options.results
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run_id}.json"
    document = {
        "run": run_id,
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "options": {
            "customers": options.customers,
            "seed": options.seed,
            "until": options.until.date().isoformat(),
            "step_days": options.step_days,
            "outage_seconds": options.outage_seconds,
        },
        "seconds": round(chaos.now(), 1),
        # What a tick takes to settle without a fault (the baseline of recovered_s, same run).
        "tick_settle_s": _spread(chaos.settle_times),
        "ledger": verdict.as_json(),
        "faults": [r.__dict__ for r in chaos.recoveries],
        "hostile_messages": [
            {"kind": s.kind, "what": s.what, "topic": s.topic.rsplit(".", 1)[-1], "partition": s.partition}
            for s in chaos.sent
        ],
        "processes": {
            "killed": dict(chaos.supervisor.kills),
            "exited_on_their_own": dict(chaos.supervisor.exits),
        },
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {
        "ticks": len(values),
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
        "max": round(ordered[-1], 3),
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _show(console: Console, chaos: Run, verdict: Verdict, path: Path) -> None:
    base = _spread(chaos.settle_times)["median"]
    console.print(f"A tick settles in {base:.2f} s (median) without faults. After each fault:")
    for r in chaos.recoveries:
        down = f", down {r.down_s:.0f} s" if r.down_s else ""
        console.print(f"  {r.tick} {r.fault}{down}: settled {r.recovered_s:.2f} s after")
    counts = verdict.counts
    console.print(
        f"Ledger: {counts['copies_due']} copies due of {counts['copies_announced_in_checked_stores']} "
        f"announced in the checked stores; {counts['copies_gone']} gone, {counts['copies_held_after']} "
        f"still held; {len(chaos.sent)} hostile messages sent, {counts['dead_letters']} dead letters."
    )
    for what, n in verdict.failures.items():
        console.print(f"  {what.replace('_', ' ')}: " + ("[green]0" if n == 0 else f"[red]{n}"))
    console.print(("[green]PASSED" if verdict.passed else "[red]FAILED") + f" — {path}")
