"""Record the golden run (``tests/golden/run.py``) with the worker's processor as it is now.

Only for a deliberate, reviewed change of what the worker sends:
``PYTHONPATH=$PWD python -m tests.golden.record`` rewrites ``tests/golden/run.msgpack.xz``.

The demo scenario's customers (:mod:`ebbtide.demo.scenario`) publish their events in time order,
the clock ticks every ``STEP_DAYS`` on every partition, and stand-in sinks answer each command
at the next tick, signed with their store's key: most with DELETED, some NOT_FOUND, some first
FAILED and then DELETED when the command comes again; one vendor answers nothing until
``OUTAGE_UNTIL`` (its commands are chased). Halfway the worker restarts under a longer retention.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from faust.serializers.codecs import get_codec

from ebbtide.demo.scenario import START, build
from ebbtide.runtime.authenticity import RECEIPT
from ebbtide.schemas import CLOCK_TICK, DELETION_COMMAND, DELETION_RECEIPT, LIFECYCLE_EVENT, codec_for
from ebbtide.streams.worker.routing import partition_for
from ebbtide.tools.client import sign_hold, to_record
from ebbtide.tools.clock import steps
from tests.golden.run import (
    PARTITIONS,
    Batch,
    Input,
    Output,
    Phase,
    Run,
    Wall,
    hold_signer,
    processor,
    run_batch,
    sink_signer,
    write,
)

CUSTOMERS, SEED = 24, 7
STEP_DAYS = 30
UNTIL = datetime(2031, 1, 1, tzinfo=UTC)
RESTART = datetime(2022, 6, 1, tzinfo=UTC)  # the worker restarts here, under the longer retention
OUTAGE_STORE, OUTAGE_UNTIL = "chat_vendor", datetime(2023, 1, 1, tzinfo=UTC)
BATCH = 40  # messages per batch
WALL_STEP = 1.7  # seconds of wall time per batch


def json_table(table: dict[str, Any]) -> dict[str, bytes]:
    """The table's values as Faust's json codec writes them to the changelog."""
    codec = get_codec("json")
    return {key: codec.dumps(value) for key, value in table.items()}


class Recorder:
    def __init__(self) -> None:
        self.table: dict[str, Any] = {}
        self.wall = Wall()
        self.clock = 0.0
        self.offsets: dict[tuple[str, int], int] = {}
        self.receipts: list[Input] = []  # answers to send with the next round
        self.answered: set[str] = set()
        self.failed: set[str] = set()
        self.phases: list[Phase] = []

    def phase(self, policy: str) -> None:
        if self.phases:
            self.phases[-1].table = json_table(self.table)
        self.phases.append(Phase(policy, [], {}))
        self.worker = processor(policy, self.table, self.wall)
        self.worker.resume(set(range(PARTITIONS)))

    def input(self, source: str, partition: int, key: bytes, value: bytes) -> Input:
        offset = self.offsets.get((source, partition), 0)
        self.offsets[source, partition] = offset + 1
        return Input(source, partition, offset, key, value)

    def round(self, moment: datetime, events: list[dict[str, Any]]) -> None:
        """One tick's worth: the answers due, the events up to ``moment``, then a tick per partition."""
        inputs, self.receipts = self.receipts, []
        encode = codec_for(LIFECYCLE_EVENT).encode
        for record in events:
            key = record["subject_id"].encode()
            inputs.append(self.input("events", partition_for(key, PARTITIONS), key, encode(record)))
        for p in range(PARTITIONS):
            tick = {"now": moment, "events_end": self.offsets.get(("events", p), 0), "source": "golden"}
            inputs.append(self.input("clock", p, b"tick", codec_for(CLOCK_TICK).encode(tick)))
        for start in range(0, len(inputs), BATCH):
            self.clock += WALL_STEP
            chunk = inputs[start : start + BATCH]
            sent = run_batch(self.worker, self.wall, self.clock, chunk)
            self.phases[-1].batches.append(Batch(self.clock, chunk, [Output.of(o) for o in sent]))
            for out in sent:
                if ".commands." in out.topic:
                    self.answer(codec_for(DELETION_COMMAND).decode(out.value), moment)

    def answer(self, command: dict[str, Any], moment: datetime) -> None:
        """The store's signed receipt, sent with the next round (none from the vendor in outage)."""
        command_id = command["command_id"]
        if (command["store"] == OUTAGE_STORE and moment < OUTAGE_UNTIL) or command_id in self.answered:
            return
        pick = hashlib.sha256(command_id.encode()).digest()[0] % 10
        outcome, rows, reason = "DELETED", 1, None
        if pick == 0:
            outcome, rows = "NOT_FOUND", 0
        elif pick == 1 and command_id not in self.failed:
            outcome, rows, reason = "FAILED", 0, "lock timeout"
            self.failed.add(command_id)
        if outcome != "FAILED":
            self.answered.add(command_id)
        receipt = {
            **{k: command[k] for k in ("command_id", "subject_id", "store", "category", "record_key")},
            "outcome": outcome,
            "rows": rows,
            "reason": reason,
            "executed_at": moment + timedelta(hours=1),
        }
        signed = sink_signer(command["store"]).sign(RECEIPT, receipt)
        key = command["subject_id"].encode()
        value = codec_for(DELETION_RECEIPT).encode(signed)
        self.receipts.append(self.input("receipts", partition_for(key, PARTITIONS), key, value))


def record() -> Run:
    scenario = build(customers=CUSTOMERS, seed=SEED)
    holds = hold_signer()
    records = [sign_hold(to_record(e), holds) for e in scenario.events]
    recorder = Recorder()
    recorder.phase("shipped")
    index = 0
    for moment in steps(START, UNTIL, STEP_DAYS):
        if moment >= RESTART and len(recorder.phases) == 1:
            recorder.phase("longer")
        first = index
        while index < len(records) and records[index]["event_time"] <= moment:
            index += 1
        recorder.round(moment, records[first:index])
    recorder.phases[-1].table = json_table(recorder.table)
    return Run(CUSTOMERS, SEED, recorder.phases)


def main() -> None:
    run = record()
    size = write(run)
    batches = [b for p in run.phases for b in p.batches]
    inputs = sum(len(b.inputs) for b in batches)
    outputs = sum(len(b.outputs) for b in batches)
    print(f"recorded {len(batches)} batches, {inputs} inputs, {outputs} outputs: {size:,} bytes")


if __name__ == "__main__":
    main()
