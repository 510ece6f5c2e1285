"""``ebbtide demo``: the whole pipeline on the local stack, every store of the map included,
with a vendor outage in the middle and a summary (and proof) at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from ebbtide import bootstrap
from ebbtide.demo import database, report, scenario
from ebbtide.demo.vendor_standin import VendorStandIn
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings
from ebbtide.sinks import registry
from ebbtide.sinks.http.vendors import tuned
from ebbtide.sinks.keys import kind as keys_kind
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.streams.policy.stores import StoreMap
from ebbtide.tools import processes
from ebbtide.tools.client import EventPublisher, to_record
from ebbtide.tools.clock import ClockPublisher, steps
from ebbtide.tools.progress import progress_bar
from ebbtide.tools.revealing import RememberedKeys
from ebbtide.tools.sealing import Keys, key_store
from ebbtide.tools.topics import declared

CATCH_UP_SECONDS = 600.0
# The chat vendor is down from the start until the pipeline clock reaches this day: its
# deletions wait (none dropped), go overdue past its service level, and recover when it is back.
OUTAGE_VENDOR = "chat_vendor"
OUTAGE_UNTIL = datetime(2024, 1, 1, tzinfo=UTC)
# Vendor sinks fail fast in the demo: a second's timeout, half a second's breaker pause.
DEMO_VENDORS: dict[str, float | int] = {"timeout": 2.0, "backoff_max": 0.5, "breaker_open_seconds": 0.5}


class DemoFailed(RuntimeError):
    pass


@dataclass
class Running:
    """The demo's processes, with the metrics port of each."""

    settings: Settings
    stores: StoreMap
    children: dict[str, processes.Child]
    ports: dict[str, int]
    # The keys the demo seals its events with, remembered to check the outcome (revealing.py).
    keys: RememberedKeys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = RememberedKeys(key_store(self.settings))

    def scrape(self) -> dict[str, processes.Samples]:
        return {name: processes.scrape(port) for name, port in self.ports.items()}

    def check_alive(self) -> None:
        for child in self.children.values():
            if not child.alive():
                raise DemoFailed(f"the {child.name} exited with code {child.process.returncode}")

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()
        self.keys.close()


def run_demo(base: Settings, customers: int, seed: int, until: datetime, step_days: int) -> int:
    console = Console()
    dsn = base.require_pg_dsn()
    run_id = f"demo-{int(time.time())}"
    settings = replace(
        base,
        topic_prefix=f"ebbtide.{run_id}",
        app_id=f"ebbtide-{run_id}",
        state_dir=base.state_dir / "demo" / run_id,
        clock_mode="replay",  # an accelerated clock: years in a minute
        hold_keys=None,  # the worker trusts the local pair <state dir>/keys/holds.pub ...
    )
    # ... and the demo, playing the legal team too, signs its legal holds with holds.key (made
    # before the worker starts, processes.start).
    settings = replace(settings, hold_signing_key=settings.local_hold_signing_key)
    stores = bootstrap.store_map(settings)
    console.rule("[bold]Ebbtide demo")
    sc = scenario.build(customers, seed)
    database.load(dsn, sc)
    with vendor_standin(sc, stores) as standin:
        before = report.Inventory.take(dsn, standin, stores)
        console.print(
            f"Loaded {sc.rows} database rows, {len(sc.log_days)} days of logs, {len(sc.backups())} backups, "
            f"and {before.vendor_total()} records at {len(before.vendors)} vendors (a local stand-in); "
            f"{len(sc.events)} lifecycle events: {sc.closed} accounts close, {sc.reactivated} come back."
        )
        console.print(
            f"Store map: {len(stores.stores)} stores ({', '.join(stores.ids)}). The {OUTAGE_VENDOR} vendor "
            f"is down until the pipeline clock reaches {OUTAGE_UNTIL.date()}."
        )
        create_topics(settings, declared(settings, stores.ids))
        running = _start(settings, stores, standin)
        console.print(
            f"Started the worker and {len(running.children) - 1} sink processes "
            f"(logs in {settings.state_dir / 'logs'})."
        )
        try:
            standin.set_mode(OUTAGE_VENDOR, "down")
            final = _drive(console, running, sc, until, step_days, standin)
            _catch_up(console, running, final, "pipeline catching up")
            purged = database.purge_backups(dsn, final)
            console.print(
                f"The backup catalogue purged {len(purged.backups)} backups expired by {final.date()} "
                f"({purged.records} record copies gone with them)."
            )
            samples, keys = running.scrape(), running.keys
            code = report.summarise(
                console, running.settings, samples, dsn, standin, stores, sc, before, final, keys
            )
            _audit_hint(console, running.settings)
            return code
        except DemoFailed as exc:
            console.print(f"[red]demo failed: {exc}")
            for child in running.children.values():
                console.print(f"--- last lines of {child.log} ---\n{child.tail()}")
            return 1
        finally:
            running.stop()


def _audit_hint(console: Console, settings: Settings) -> None:
    """How to audit this run's log afterwards: its topics and its keys (docs/auditing.md)."""
    holds = settings.local_hold_signing_key.with_suffix(".pub")  # the signer the demo's worker trusted
    where = (
        f"EBBTIDE_TOPIC_PREFIX={settings.topic_prefix} EBBTIDE_STATE_DIR={settings.state_dir} "
        f"EBBTIDE_HOLD_KEYS={holds}"
    )
    console.print(
        f"Audit this run (docs/auditing.md): {where} .venv/bin/ebbtide audit verify; the same with "
        "`audit replay`, `log decisions --subject cust-00001` or "
        "`audit export --subject cust-00001 --out DIR`."
    )


@contextmanager
def vendor_standin(sc: scenario.Scenario, stores: StoreMap) -> Iterator[VendorStandIn]:
    """The vendor stand-in, holding each vendor's copies of the scenario's records."""
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


def _start(settings: Settings, stores: StoreMap, standin: VendorStandIn) -> Running:
    log_dir = settings.state_dir / "logs"
    vendors = settings.state_dir / "vendors.toml"
    vendors.parent.mkdir(parents=True, exist_ok=True)
    vendors.write_text(tuned(DEMO_VENDORS), encoding="utf-8")
    sinks = registry.sink_processes(stores.stores)  # the sinks of every store of the map
    sinks.update(keys_kind.PROCESS)  # and the key store's, which destroys shredded keys
    ports = {"worker": settings.worker_metrics_port}
    children = {"worker": processes.start("worker", ["worker"], settings, log_dir)}
    for name, args in sinks.items():
        port = processes.free_port()
        ports[name] = port
        if args[0] == "http":  # the demo's vendor timings; the HTTP sink's own metrics port
            args = [*args, "--config", str(vendors), "--metrics-port", str(port)]
        children[name] = processes.start(
            name.replace(" ", "-"),
            ["sink", *args],
            replace(settings, sink_metrics_port=port),
            log_dir,
            env={"EBBTIDE_VENDOR_URL": standin.url},
        )
    return Running(settings, stores, children, ports)


def publish_timeline(
    settings: Settings,
    records: list[dict[str, Any]],
    ticks: list[datetime],
    on_tick: Callable[[datetime, int], None] | None = None,
    after: datetime | None = None,
    keys: Keys | None = None,
) -> None:
    """Publish events (Avro records, sorted by time) and tick the clock as their time passes:
    every event up to a tick's time is published before that tick. Events at or before ``after``
    are left out (an earlier call, whose last tick was ``after``, published them). ``keys``: where
    the publisher gets the subjects' keys (default: the settings' key store)."""
    publisher = EventPublisher(settings, keys=keys)
    clock = ClockPublisher(settings, "accelerated")
    try:
        index = 0
        while after is not None and index < len(records) and records[index]["event_time"] <= after:
            index += 1
        for moment in ticks:
            while index < len(records) and records[index]["event_time"] <= moment:
                publisher.publish_record(records[index])
                index += 1
            publisher.flush()
            clock.tick(moment)
            if on_tick is not None:
                on_tick(moment, index)
    finally:
        publisher.close()
        clock.close()


def _drive(
    console: Console,
    running: Running,
    sc: scenario.Scenario,
    until: datetime,
    step_days: int,
    standin: VendorStandIn,
) -> datetime:
    """Publish the events in time order, ticking the clock as scenario time passes. Midway, wait
    until the worker has caught up with the outage (its overdue deletions visible), then bring
    the vendor back and go on."""
    # Validated as the client's publish() does: an announcement the policy could not enforce (a
    # store that does not hold its category, a missing ref its rule follows) stops the demo here.
    policy = bootstrap.policy(running.settings)
    records = [to_record(e, policy) for e in sc.events]
    ticks = list(steps(scenario.START, until, step_days))
    first = [t for t in ticks if t <= OUTAGE_UNTIL]
    _publish(console, running, records, first)
    overdue = _catch_up(console, running, first[-1], f"{OUTAGE_VENDOR} down: waiting for the worker")
    console.print(
        f"[yellow]{OUTAGE_VENDOR} down until {OUTAGE_UNTIL.date()}: {overdue.get(OUTAGE_VENDOR, 0):.0f} "
        f"deletions overdue there (sent again at growing intervals, none dropped; "
        f"`ebbtide overdue` lists them). The vendor comes back now."
    )
    standin.set_mode(OUTAGE_VENDOR, "ok")
    _publish(console, running, records, [t for t in ticks if t > OUTAGE_UNTIL], after=first[-1])
    return ticks[-1]


def _publish(
    console: Console,
    running: Running,
    records: list[dict[str, Any]],
    ticks: list[datetime],
    after: datetime | None = None,
) -> None:
    """Publish the events up to each tick (those after ``after``) and the tick, each tick paced
    (:func:`_paced`)."""
    with progress_bar(console) as progress:
        task = progress.add_task("publishing events and ticking the clock", total=len(ticks))

        def advance(moment: datetime, sent: int) -> None:
            _paced(running, moment)
            progress.update(task, advance=1, description=f"clock at {moment.date()}, {sent} events sent")

        publish_timeline(running.settings, records, ticks, advance, after, running.keys)


@dataclass
class Progressed:
    """Where the pipeline is, from the worker's metrics."""

    applied: bool  # the worker's clock has reached the goal on every partition
    waiting: int  # commands awaiting a receipt from stores that are up
    awaiting: float
    overdue: dict[str, float]
    clock: str


def _progressed(running: Running, final: datetime) -> Progressed:
    running.check_alive()
    worker = processes.scrape(running.settings.worker_metrics_port)
    clocks = list(worker.get("ebbtide_clock_time_seconds", {}).values())
    applied = len(clocks) == running.settings.partitions and min(clocks) >= to_ms(final) / 1000
    awaiting = _by_store(worker, "ebbtide_deletions_awaiting_receipt")
    down = final <= OUTAGE_UNTIL
    waiting = sum(n for store, n in awaiting.items() if not (down and store == OUTAGE_VENDOR))
    clock = str(datetime.fromtimestamp(min(clocks), UTC).date()) if clocks else "-"
    overdue = _by_store(worker, "ebbtide_deletions_overdue")
    return Progressed(applied, int(waiting), sum(awaiting.values()), overdue, clock)


def _settled(
    running: Running, final: datetime, interval: float, show: Callable[[Progressed], None] | None = None
) -> Progressed:
    """Wait until the worker has applied the tick of ``final`` and the stores that are up have
    answered every command (the outage vendor excepted while it is down), polling the worker's
    metrics every ``interval`` seconds; fail after CATCH_UP_SECONDS."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        state = _progressed(running, final)
        if show is not None:
            show(state)
        if state.applied and state.waiting == 0:
            return state
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"the pipeline did not settle the tick of {final.date()} in {CATCH_UP_SECONDS:.0f} s"
            )
        time.sleep(interval)  # polling interval of a bounded wait on the condition above


def _paced(running: Running, moment: datetime) -> None:
    """A tick is answered before the next one is sent, as within a tick of a real clock: the
    service levels are in pipeline time, and an accelerated clock must not outrun the stores."""
    _settled(running, moment, 0.02)


def _catch_up(console: Console, running: Running, final: datetime, what: str) -> dict[str, float]:
    """:func:`_settled` with a progress line; the overdue count per store."""
    with progress_bar(console) as progress:
        task = progress.add_task(what, total=None)

        def show(state: Progressed) -> None:
            progress.update(
                task,
                description=f"{what}: worker clock {state.clock}; awaiting receipts "
                f"{state.awaiting:.0f}, overdue {sum(state.overdue.values()):.0f}",
            )

        return _settled(running, final, 0.25, show).overdue


def _by_store(samples: processes.Samples, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in samples.get(name, {}).items():
        store = dict(labels).get("store", "")
        out[store] = out.get(store, 0.0) + value
    return out
