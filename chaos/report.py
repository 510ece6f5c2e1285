"""The end of a chaos run: the ledger's verdict from what the topics hold, the JSON result, and
the summary on the console."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from chaos.ledger import Copy, Oracle, Sent, Verdict, judge
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.streams import certificates
from ebbtide.streams.policy.calendar import to_ms
from ebbtide.tools import dlq
from ebbtide.tools.revealing import reveal
from ebbtide.tools.state_reader import read_to_end

if TYPE_CHECKING:
    from chaos.run import Run
    from ebbtide.sinks.base.opening import KeyFinder


def verdict_of(
    chaos: Run, checked: list[str], all_stores: tuple[str, ...], before: set[Copy], after: set[Copy]
) -> Verdict:
    return topics_verdict(
        chaos.settings, chaos.oracle, chaos.sent, checked, all_stores, before, after, chaos.sealing_keys()
    )


def topics_verdict(
    settings: Settings,
    oracle: Oracle,
    sent: list[Sent],
    checked: list[str],
    all_stores: tuple[str, ...],
    before: set[Copy],
    after: set[Copy],
    keys: KeyFinder | None = None,
) -> Verdict:
    """The ledger's verdict (:func:`chaos.ledger.judge`) from what the topics of ``settings`` hold:
    receipts, commands, certificates and dead letters; messages of ``sent`` (hostile ones) are
    not counted as genuine. Record keys sealed with one of ``keys`` (those the run published
    with) are compared opened, as the ledger knows them."""

    def opened(subject: str, key: str) -> str:
        return key if keys is None else reveal(subject, key, keys)

    topics = Topics(settings.topic_prefix)
    forged = {(s.topic, s.partition, s.offset) for s in sent}

    def genuine(topic: str) -> Iterator[bytes]:
        for message in read_to_end(settings, topic):
            if (message.topic, message.partition, message.offset) not in forged:
                yield message.value

    receipts = [codec_for(DELETION_RECEIPT).decode(v) for v in genuine(topics.receipts)]
    receipts = [{**r, "record_key": opened(r["subject_id"], r["record_key"])} for r in receipts]
    first: dict[Copy, int] = {}
    commands = codec_for(DELETION_COMMAND)
    for store in all_stores:
        for value in genuine(topics.commands(store)):
            command = commands.decode(value)
            copy = (
                command["store"],
                command["category"],
                opened(command["subject_id"], command["record_key"]),
            )
            issued = to_ms(command["issued_at"])
            first[copy] = min(first.get(copy, issued), issued)
    certified: list[Copy] = []
    for value in genuine(topics.certificates):
        document = certificates.loads(value)["certificate"]
        for entry in document["entries"]:
            store, category, key = entry["record"].split("/", 2)
            certified.append((store, category, opened(document["subject_id"], key)))
    letters = {(d.source_topic, d.source_partition, d.source_offset): d.reason for d in dlq.read(settings)}
    return judge(oracle, checked, before, after, receipts, first, certified, letters, sent)


def write(chaos: Run, verdict: Verdict, run_id: str) -> Path:
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
        "ticks_sent_again": chaos.nudges,  # a tick not settled in 20 s is sent again
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
    return len(os.sched_getaffinity(0))


def show(console: Console, chaos: Run, verdict: Verdict, path: Path) -> None:
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
