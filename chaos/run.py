"""The chaos run: load, faults on a schedule, the ledger's verdict, a JSON result."""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from sinks.postgres.table_map import load_table_map, map_path
from streams import certificates
from streams.policy.calendar import to_ms
from streams.policy.stores import StoreMap

log = logging.getLogger(__name__)

SETTLE_SECONDS = 240.0  # a tick not settled this long after its faults fails the run
POLL = 0.05  # seconds between two looks at the workers' metrics while waiting for a tick
DATABASES = {scenario.STORE: "customer_db", scenario.BILLING_STORE: scenario.BILLING_STORE}
VENDOR_OUTAGE = "chat_vendor"  # down for a stretch: forged receipts answer its waiting commands
FLAKY_VENDOR = "review_vendor"  # fails a burst of requests


@dataclass
class Fault:
    """One fault of the schedule: ``at`` is its place in the run (0..1 of the ticks)."""

    name: str
    at: float


SCHEDULE = (
    Fault("kill -9 worker", 0.08),
    Fault("kill -9 customer_db sink", 0.12),
    Fault(f"{VENDOR_OUTAGE} down", 0.16),
    Fault("poison pills", 0.20),
    Fault("kill -9 billing_db sink", 0.24),
    Fault("add a second worker", 0.28),
    Fault(f"forged receipts for {VENDOR_OUTAGE}", 0.31),
    Fault("kill -9 worker (of two)", 0.34),
    Fault(f"{VENDOR_OUTAGE} back", 0.37),
    Fault("remove the second worker", 0.40),
    Fault("kill -9 broker", 0.45),
    Fault("kill -9 vendor sinks", 0.50),
    Fault("forged commands", 0.54),
    Fault("kill -9 PostgreSQL", 0.58),
    Fault("kill -9 log store sink", 0.63),
    Fault("forged ticks", 0.67),
    Fault("forged legal hold", 0.70),
    Fault("kill -9 backups sink", 0.75),
    Fault(f"{FLAKY_VENDOR} fails 20 requests", 0.80),
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
    recovered_s: float  # seconds from its return until the pipeline had settled the next tick


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
    settings = replace(
        base,
        topic_prefix=f"ebbtide.chaos-{int(time.time())}",
        app_id=f"ebbtide-chaos-{int(time.time())}",
        state_dir=base.state_dir / "chaos-runs" / run_id,
        clock_mode="replay",  # an accelerated clock
        worker_instance_id="chaos-worker-1",
        worker_metrics_port=processes.free_port(),
        worker_web_port=processes.free_port(),
        session_timeout=10.0,
        hold_keys=None,  # the worker trusts the local pair <state dir>/keys/holds.pub, and the run,
    )
    # playing the legal team too, signs the scenario's legal holds with holds.key.
    settings = replace(settings, hold_signing_key=settings.local_hold_signing_key)
    dsn = settings.require_pg_dsn()
    stores = bootstrap.store_map(settings)
    sc = scenario.build(options.customers, options.seed)
    policy = bootstrap.policy(settings)
    records = [to_record(e, policy) for e in sc.events]
    console.rule("[bold]Ebbtide chaos run")
    database.load(dsn, sc)
    maps = {store: load_table_map(map_path(name)) for store, name in DATABASES.items()}
    vendors = [s.id for s in stores.stores if s.kind == "http"]
    checked = [*maps, *vendors]
    servers = Servers(base.state_dir)
    with _standin(sc, stores) as standin:
        before = _holdings(dsn, maps, standin, vendors)
        _forget_earlier_runs(settings)
        create_topics(settings, pipeline_topics(Topics(settings.topic_prefix), stores.ids))
        supervisor = _start(settings, stores, standin)
        chaos = Run(console, settings, servers, supervisor, standin, Oracle(policy), options)
        console.print(
            f"{options.customers} customers, {len(records)} events, {len(before)} copies held in "
            f"{len(checked)} checked stores; {len(SCHEDULE)} faults over the run. "
            f"Logs in {settings.state_dir / 'logs'}."
        )
        try:
            final = _drive(chaos, records)
            console.print("Waiting for the last deletions …")
            chaos.settle(final)
            after = _holdings(dsn, maps, standin, vendors)
            verdict = _judge(chaos, checked, before, after)
        except ChaosError as exc:
            console.print(f"[red]chaos run failed: {exc}")
            return 2
        finally:
            chaos.drop_clients()
            supervisor.stop()
    path = _write(chaos, verdict, run_id)
    _show(console, chaos, verdict, path)
    return 0 if verdict.passed else 1


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
    for store in vendors:
        for category in standin.stats(store)["records"]:
            held |= {(store, category, key) for key in standin.keys(store, category)}
    return held


def _start(settings: Settings, stores: StoreMap, standin: VendorStandIn) -> Supervisor:
    supervisor = Supervisor(settings.state_dir / "logs")
    config = settings.state_dir / "vendors.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(tuned(DEMO_VENDORS), encoding="utf-8")
    supervisor.add("worker", Spec(["worker"], settings, {}, settings.worker_metrics_port, worker=True))
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
    return supervisor


def _drive(chaos: Run, records: list[dict[str, Any]]) -> datetime:
    """Publish the events up to each tick, then the tick; apply the faults due at that tick
    and wait until the pipeline has settled it."""
    options = chaos.options
    ticks = list(steps(scenario.START, options.until, options.step_days))
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
            # A fault strikes while the batch is being processed; the tick is sent once the part
            # is back, and the time from then until the tick is settled is the recovery time.
            struck = []
            for fault in at.get(number, []):
                progress.update(task, description=f"clock at {moment.date()}: {fault.name}")
                injected = chaos.now()
                struck.append((fault, injected, _inject(chaos, fault, moment)))
            back = time.monotonic()
            _tick(chaos, moment)
            chaos.oracle.tick(to_ms(moment))
            chaos.settle(moment)
            settled = time.monotonic() - back
            if not struck:
                chaos.settle_times.append(settled)
            for fault, injected, down in struck:
                chaos.recoveries.append(
                    Recovery(fault.name, str(moment.date()), round(injected, 1), down, round(settled, 2))
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


def _inject(chaos: Run, fault: Fault, moment: datetime) -> float:
    """Do ``fault``; the seconds the faulted part stayed down."""
    supervisor, servers, name = chaos.supervisor, chaos.servers, fault.name
    sender = hostile.Sender(chaos.settings, producer(chaos.settings))
    try:
        if (name.startswith("kill -9 ") and name.endswith(" sink")) or name == "kill -9 vendor sinks":
            supervisor.kill(name.removeprefix("kill -9 "))
        elif name.startswith("kill -9 worker"):
            supervisor.kill("worker")
        elif name == "kill -9 broker":
            chaos.drop_clients()
            return _outage(chaos, servers.kill_broker, servers.start_broker)
        elif name == "kill -9 PostgreSQL":
            return _outage(chaos, servers.kill_postgres, servers.start_postgres)
        elif name == "add a second worker":
            second = second_worker(chaos.settings, chaos.settings.state_dir)
            supervisor.add("worker 2", Spec(["worker"], second, {}, second.worker_metrics_port, worker=True))
        elif name == "remove the second worker":
            supervisor.remove("worker 2")
        elif name.endswith(" down"):
            chaos.standin.set_mode(VENDOR_OUTAGE, "down")
            chaos.vendors_down.add(VENDOR_OUTAGE)
        elif name.endswith(" back"):
            chaos.standin.set_mode(VENDOR_OUTAGE, "ok")
            chaos.vendors_down.discard(VENDOR_OUTAGE)
        elif name.endswith("fails 20 requests"):
            chaos.standin.set_mode(FLAKY_VENDOR, "fail", count=20)
        elif name == "poison pills":
            chaos.sent += hostile.poison_pills(sender, _a_subject(chaos), moment)
        elif name.startswith("forged receipts"):
            chaos.sent += hostile.forged_receipts(sender, _waiting_commands(chaos, VENDOR_OUTAGE, 4), moment)
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
    return 0.0


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
    """Commands the down vendor has not carried out: the latest of each copy on its topic."""
    codec = codec_for(DELETION_COMMAND)
    latest: dict[Copy, dict[str, Any]] = {}
    for message in read_to_end(chaos.settings, Topics(chaos.settings.topic_prefix).commands(store)):
        command = codec.decode(message.value)
        latest[(command["store"], command["category"], command["record_key"])] = command
    return [latest[c] for c in sorted(latest)][:count]


def _events_end(settings: Settings, partition: int) -> int:
    consumer = kafka.consumer(settings, client_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(Topics(settings.topic_prefix).events, partition)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def _judge(chaos: Run, checked: list[str], before: set[Copy], after: set[Copy]) -> Verdict:
    topics = Topics(chaos.settings.topic_prefix)
    forged = {(s.topic, s.partition, s.offset) for s in chaos.sent}
    receipts = [
        codec_for(DELETION_RECEIPT).decode(m.value)
        for m in read_to_end(chaos.settings, topics.receipts)
        if (m.topic, m.partition, m.offset) not in forged
    ]
    certified: list[Copy] = []
    for message in read_to_end(chaos.settings, topics.certificates):
        for entry in certificates.loads(message.value)["certificate"]["entries"]:
            store, category, key = entry["record"].split("/", 2)
            certified.append((store, category, key))
    letters = [(d.source_topic, d.source_partition, d.source_offset) for d in dlq.read(chaos.settings)]
    return judge(chaos.oracle, checked, before, after, receipts, certified, letters, chaos.sent)


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
