"""``ebbtide demo``: the whole pipeline on the local stack, with a summary at the end."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ebbtide import processes
from ebbtide.client import EventPublisher, to_record
from ebbtide.clock import ClockPublisher, steps
from ebbtide.demo import database, scenario
from ebbtide.kafka_io import CLIENT_ID, create_topics, pipeline_topics
from ebbtide.settings import Settings, Topics
from schemas import DECISION, codec_for
from streams.policy.calendar import to_ms
from streams.policy.engine import record_id

CATCH_UP_SECONDS = 600.0


class DemoFailed(RuntimeError):
    pass


def run_demo(base: Settings, customers: int, seed: int, until: datetime, step_days: int) -> int:
    console = Console()
    dsn = base.require_pg_dsn()
    run_id = f"demo-{int(time.time())}"
    settings = replace(
        base,
        topic_prefix=f"ebbtide.{run_id}",
        app_id=f"ebbtide-{run_id}",
        state_dir=base.state_dir / "demo" / run_id,
    )
    topics = Topics(settings.topic_prefix)
    console.rule("[bold]Ebbtide demo")
    sc = scenario.build(customers, seed)
    database.load(dsn, sc)
    before = database.counts(dsn)
    console.print(
        f"Customer database loaded: {sc.rows} rows "
        f"({', '.join(f'{n} {t}' for t, n in before.items())}); "
        f"{len(sc.events)} lifecycle events, {sc.closed} accounts close, "
        f"{sc.reactivated} come back with a new order."
    )
    create_topics(settings, pipeline_topics(topics, scenario.STORES))
    log_dir = settings.state_dir / "logs"
    worker = processes.start("worker", ["worker"], settings, log_dir)
    sink = processes.start("sink", ["sink", "postgres"], settings, log_dir)
    # The billing store (schema billing) has its own sink; its metrics on a free port (0).
    billing = processes.start(
        "sink-billing",
        ["sink", "postgres", "--map", scenario.BILLING_STORE],
        replace(settings, sink_metrics_port=0),
        log_dir,
    )
    console.print(f"Started the lifecycle worker and the postgres sinks (logs in {log_dir}).")
    try:
        final = _drive(console, settings, sc, until, step_days)
        _catch_up(console, settings, final, [worker, sink, billing])
        return _summarise(console, settings, dsn, sc, before, until)
    except DemoFailed as exc:
        console.print(f"[red]demo failed: {exc}")
        for child in (worker, sink, billing):
            console.print(f"--- last lines of {child.log} ---\n{child.tail()}")
        return 1
    finally:
        worker.stop()
        sink.stop()
        billing.stop()


def publish_timeline(
    settings: Settings,
    records: list[dict[str, Any]],
    ticks: list[datetime],
    on_tick: Callable[[datetime, int], None] | None = None,
) -> None:
    """Publish events (Avro records, sorted by time) and tick the clock as their time passes:
    every event up to a tick's time is published before that tick."""
    publisher = EventPublisher(settings)
    clock = ClockPublisher(settings, "accelerated")
    try:
        index = 0
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
    console: Console, settings: Settings, sc: scenario.Scenario, until: datetime, step_days: int
) -> datetime:
    """Publish the events in time order, ticking the clock as scenario time passes."""
    records = [to_record(e) for e in sc.events]
    ticks = list(steps(scenario.START, until, step_days))
    with _progress(console) as progress:
        task = progress.add_task("publishing events and ticking the clock", total=len(ticks))

        def advance(moment: datetime, sent: int) -> None:
            progress.update(task, advance=1, description=f"clock at {moment.date()}, {sent} events sent")

        publish_timeline(settings, records, ticks, advance)
    return ticks[-1]


def _catch_up(console: Console, settings: Settings, final: datetime, children: list[processes.Child]) -> None:
    """Wait until the worker has applied the last tick and every command has its receipt."""
    goal = to_ms(final) / 1000
    deadline = time.monotonic() + CATCH_UP_SECONDS
    with _progress(console) as progress:
        task = progress.add_task("pipeline catching up", total=None)
        while True:
            for child in children:
                if not child.alive():
                    raise DemoFailed(f"the {child.name} exited with code {child.process.returncode}")
            worker = processes.scrape(settings.worker_metrics_port)
            sink = processes.scrape(settings.sink_metrics_port)
            clocks = list(worker.get("ebbtide_clock_time_seconds", {}).values())
            applied = len(clocks) == settings.partitions and min(clocks) >= goal
            commands = processes.total(worker, "ebbtide_commands_sent_total")
            receipts = processes.total(worker, "ebbtide_receipts_total")
            executed = processes.total(sink, "ebbtide_sink_commands_total")
            clock_at = datetime.fromtimestamp(min(clocks), UTC).date() if clocks else "-"
            progress.update(
                task,
                description=f"worker clock {clock_at}; commands {commands:.0f}, "
                f"executed {executed:.0f}, receipts {receipts:.0f}",
            )
            if applied and receipts >= commands:
                return
            if time.monotonic() > deadline:
                raise DemoFailed(f"pipeline did not catch up within {CATCH_UP_SECONDS:.0f} s")
            time.sleep(0.25)  # polling interval of a bounded wait on the condition above


def _summarise(
    console: Console,
    settings: Settings,
    dsn: str,
    sc: scenario.Scenario,
    before: dict[str, int],
    until: datetime,
) -> int:
    worker = processes.scrape(settings.worker_metrics_port)
    sink = processes.scrape(settings.sink_metrics_port)
    after = database.counts(dsn)
    decisions = _read_decisions(settings)
    latest = {d["record"]: d for d in decisions}
    present = database.present_keys(dsn)

    flow = Table(title=f"Pipeline (clock ran {scenario.START.date()} .. {until.date()})")
    flow.add_column("step")
    flow.add_column("count", justify="right")
    for label, value in (
        ("events consumed", processes.total(worker, "ebbtide_events_consumed_total")),
        ("records stamped", processes.total(worker, "ebbtide_records_stamped_total")),
        ("deadlines still pending", processes.total(worker, "ebbtide_pending_deadlines")),
        ("deletion commands sent", processes.total(worker, "ebbtide_commands_sent_total")),
        ("rows deleted by the sink", processes.total(sink, "ebbtide_rows_deleted_total")),
        ("receipts received", processes.total(worker, "ebbtide_receipts_total")),
        ("dead-lettered messages", processes.total(worker, "ebbtide_dlq_messages_total")),
    ):
        flow.add_row(label, f"{value:.0f}")
    console.print(flow)

    rows = Table(title="Customer database")
    for column in ("table", "before", "after", "deleted"):
        rows.add_column(column, justify="left" if column == "table" else "right")
    for table, count in before.items():
        rows.add_row(table, str(count), str(after[table]), str(count - after[table]))
    console.print(rows)
    console.print(_rights_table(decisions, sc))

    kept: Counter[tuple[str, str]] = Counter()
    problems = []
    for category, keys in present.items():
        for key in keys:
            decision = latest.get(record_id(scenario.STORE_OF[category], category, key))
            if decision is None:
                problems.append(f"{category} {key}: in the database but no decision explains it")
                continue
            if decision["kind"] == "DELETION_CONFIRMED":
                problems.append(f"{category} {key}: deletion confirmed but the row is still there")
            kept[(category, _why(decision))] += 1
    why = Table(title="Rows kept, and why")
    for column in ("category", "why", "rows"):
        why.add_column(column, justify="right" if column == "rows" else "left")
    for (category, reason), count in sorted(kept.items()):
        why.add_row(category, reason, str(count))
    console.print(why)
    confirmed = sum(1 for d in latest.values() if d["kind"] == "DELETION_CONFIRMED")
    if problems:
        for problem in problems[:20]:
            console.print(f"[red]{problem}")
        console.print(f"[red]{len(problems)} inconsistencies between decisions and the database")
        return 1
    console.print(
        f"[green]Proven: {confirmed} deletions confirmed by receipts, each row really gone; "
        f"every remaining row is explained by a rule."
    )
    return 0


def _why(decision: dict[str, Any]) -> str:
    """Why a record is still there, from its latest decision."""
    reason = str(decision["reason"]).split(";")[0]
    if decision["kind"] in ("HELD", "RESTRICTED") or decision["deadline"] is None:
        return reason  # a hold, a restriction or a stopped clock says it all
    deadline = decision["deadline"]
    when = deadline.date() if isinstance(deadline, datetime) else deadline
    if decision["kind"] == "DELETION_ORDERED":
        return f"deletion ordered, receipt pending ({decision['rule_id']})"
    return f"rule {decision['rule_id']}: kept until {when}"


def _read_decisions(settings: Settings) -> list[dict[str, Any]]:
    """Every decision on the decisions topic, in partition order."""
    topic = Topics(settings.topic_prefix).decisions
    codec = codec_for(DECISION)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, client_id=CLIENT_ID, enable_auto_commit=False
    )
    decisions: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for messages in consumer.poll(timeout_ms=1000).values():
                decisions += [codec.decode(m.value) for m in messages]
    finally:
        consumer.close()
    return decisions


def _rights_table(decisions: list[dict[str, Any]], sc: scenario.Scenario) -> Table:
    kinds = Counter(d["kind"] for d in decisions)
    erased = {
        d["record"] for d in decisions if d["kind"] == "DEADLINE_MOVED" and "erasure request" in d["reason"]
    }
    after_hold = {d["record"] for d in decisions if d["kind"] == "RELEASED"}
    confirmed = {d["record"] for d in decisions if d["kind"] == "DELETION_CONFIRMED"}
    opened = sum(
        1 for d in decisions if d["kind"] == "DUTY_OPENED" and d["record"].startswith("duty/erasure/")
    )
    table = Table(title="Rights and duties")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("records whose clock stopped (reactivation, new consent)", kinds["CLOCK_STOPPED"]),
        ("consents withdrawn (marketing deleted at once)", sc.withdrawn),
        ("erasure requests answered", kinds["ERASURE_ANSWERED"]),
        ("erasure requests held: identity not verified", opened - kinds["ERASURE_ANSWERED"]),
        ("records erased early on request", len(erased & confirmed)),
        ("records kept, restricted (e.g. bookkeeping)", kinds["RESTRICTED"]),
        ("records held by a legal hold", kinds["HELD"]),
        ("records deleted after their hold was released", len(after_hold & confirmed)),
        ("duties overdue (unanswered requests, late notices)", kinds["DUTY_OVERDUE"]),
    ):
        table.add_row(label, str(value))
    return table


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
