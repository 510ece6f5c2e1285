"""The faults of a chaos run: kills, outages, hostile messages, and the targets they aim at."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chaos import hostile
from chaos.cluster import ChaosError, Spec, second_worker
from chaos.ledger import Copy
from chaos.schedule import FLAKY_VENDOR, Fault
from ebbtide.demo import scenario
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.tools.state_reader import read_to_end

if TYPE_CHECKING:
    from chaos.run import Run

SERVES = {
    "customer_db sink": ("customer_db",),
    "billing_db sink": ("billing_db",),
    "log store sink": ("log_store",),
    "backups sink": ("hosting_backups",),
    "PostgreSQL": ("customer_db", "billing_db", "log_store", "hosting_backups"),
}
BUSY_WAIT = 3.0  # seconds a kill waits for work in flight before it strikes anyway


def inject(chaos: Run, fault: Fault, moment: datetime) -> tuple[float, bool | None]:
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
    reader = kafka.offsets_reader(settings)
    try:
        return kafka.end_offsets(reader, Topics(settings.topic_prefix).events)[partition]
    finally:
        reader.close()
