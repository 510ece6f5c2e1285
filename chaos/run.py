"""The chaos run: load, faults on a schedule, the ledger's verdict, a JSON result."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg2
from rich.console import Console

from chaos.cluster import ChaosError, Servers, Spec, Supervisor
from chaos.faults import BUSY_WAIT, inject
from chaos.ledger import Copy, Oracle, Sent, database_holdings
from chaos.report import show, verdict_of, write
from chaos.schedule import SCHEDULE, Fault, Options, Recovery, choose_outage_vendor
from ebbtide import bootstrap
from ebbtide.demo import database, scenario
from ebbtide.demo.run import DEMO_VENDORS, vendor_standin
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.sinks.http.vendors import tuned
from ebbtide.sinks.keys import kind as keys_kind
from ebbtide.sinks.logstore import partitions as logstore
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.streams.policy.stores import StoreMap
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher, InvalidEvent, to_record
from ebbtide.tools.clock import ClockPublisher, steps
from ebbtide.tools.progress import progress_bar
from ebbtide.tools.revealing import RememberedKeys
from ebbtide.tools.sealing import key_store
from ebbtide.tools.topics import declared

log = logging.getLogger(__name__)

SETTLE_SECONDS = 240.0  # a tick not settled this long after its faults fails the run
POLL = 0.05  # seconds between two looks at the workers' metrics while waiting for a tick
NUDGE_SECONDS = 20.0  # a tick not settled this long is sent again (a real clock ticks on)
DATABASES = {scenario.STORE: "customer_db", scenario.BILLING_STORE: scenario.BILLING_STORE}


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
    vendors: list[str] = field(default_factory=list)  # the HTTP stores of the store map
    started: float = field(default_factory=time.monotonic)
    settles: int = 0
    nudges: int = 0  # ticks sent again because one did not settle within NUDGE_SECONDS
    retick: Callable[[datetime], None] = field(default=lambda _: None, repr=False)
    settle_times: list[float] = field(default_factory=list)  # seconds to settle a tick, faults aside

    # -- waiting for the pipeline ------------------------------------------------------------

    def scrape_workers(self) -> tuple[dict[str, float], dict[str, float]]:
        """Over the workers: each partition's clock (the furthest a worker holding it reports) and
        the commands awaiting a receipt, by store."""
        clocks: dict[str, float] = {}
        awaiting: dict[str, float] = {}
        for spec in self.supervisor.workers():
            samples = processes.scrape(spec.metrics_port)  # empty while a worker starts again
            for labels, value in samples.get("ebbtide_clock_time_seconds", {}).items():
                partition = dict(labels).get("partition", "")
                clocks[partition] = max(clocks.get(partition, 0.0), value)
            for labels, value in samples.get("ebbtide_deletions_awaiting_receipt", {}).items():
                store = dict(labels).get("store", "")
                awaiting[store] = awaiting.get(store, 0.0) + value
        return clocks, awaiting

    def settled(self, moment: datetime) -> bool:
        """Every partition's clock at ``moment`` (in the workers that hold it) and no command
        awaiting a receipt from a store that is up."""
        clocks, awaiting = self.scrape_workers()
        return (
            len(clocks) == self.settings.partitions
            and min(clocks.values()) >= to_ms(moment) / 1000
            and not any(n for store, n in awaiting.items() if store not in self.vendors_down)
        )

    def wait_busy(self, stores: tuple[str, ...] | list[str] | None) -> bool:
        """Wait (BUSY_WAIT at most) until one of ``stores`` (None: any) has commands in flight, so
        a kill strikes a part at work; whether it had."""
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            _, awaiting = self.scrape_workers()
            if any(n > 0 for store, n in awaiting.items() if stores is None or store in stores):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)  # polling interval of a bounded wait on the condition above

    def settle(self, moment: datetime) -> float:
        """Wait until :meth:`settled`, starting again any process that exits; seconds waited."""
        began = nudged = time.monotonic()
        while not self.settled(moment):
            for name in self.supervisor.revive():
                self.console.print(f"[yellow]the {name} exited on its own; started again")
            if self.now() > self.options.max_minutes * 60:
                raise ChaosError(f"the run took longer than {self.options.max_minutes:g} minutes")
            if time.monotonic() - nudged > NUDGE_SECONDS:
                # As a real clock would tick again: a tick applied already is a no-op, one whose
                # effect a kill lost is applied again. Counted: a run that needs many says so.
                nudged = time.monotonic()
                self.nudges += 1
                self.retick(moment)
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
    _keys: RememberedKeys | None = None

    def publisher(self) -> EventPublisher:
        if self._publisher is None:
            keys = self.sealing_keys()
            self._publisher = EventPublisher(self.settings, self.oracle.policy, timeout=20.0, keys=keys)
        return self._publisher

    def sealing_keys(self) -> RememberedKeys:
        """The keys the run seals its events with, remembered: the verdict compares the stores'
        answers with the ledger's keys, also of subjects whose keys are shredded since."""
        if self._keys is None:
            self._keys = RememberedKeys(key_store(self.settings))
        return self._keys

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
    outage_vendor = choose_outage_vendor(policy, records, ticks, vendors)
    with vendor_standin(sc, stores) as standin:
        before = _holdings(dsn, maps, standin, vendors)
        supervisor = Supervisor(settings.state_dir / "logs")
        chaos = Run(console, settings, Servers(base.state_dir), supervisor, standin, Oracle(policy), options)
        chaos.outage_vendor, chaos.vendors = outage_vendor, vendors
        chaos.retick = lambda moment: _tick(chaos, moment)
        try:
            _forget_earlier_runs(settings)
            create_topics(settings, declared(settings, stores.ids))
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
            verdict = verdict_of(chaos, checked, stores.ids, before, after)
        except ChaosError as exc:
            console.print(f"[red]chaos run failed: {exc}")
            return 2
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup
            chaos.drop_clients()
            supervisor.stop()
    path = write(chaos, verdict, run_id)
    show(console, chaos, verdict, path)
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
    sinks = registry.sink_processes(stores.stores)  # a sink per store of the map
    sinks.update(keys_kind.PROCESS)  # and the key store's: a shredded key's command is answered
    for name, args in sinks.items():
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
                struck.append((fault, chaos.now(), *inject(chaos, fault, moment)))
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
