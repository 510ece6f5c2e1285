"""On the real broker (and on addresses where no broker answers): the producing commands end in
one line and exit 1 within their timeout, never a hang or a traceback; an oversized line refuses
the whole file; dead letters are counted by reason, shown without their contents and replayed to
the topic they came from."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import end_offsets, offsets_reader, producer
from ebbtide.runtime.keys import read_or_make_key
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.streams.worker.routing import partition_for
from ebbtide.tools import processes
from tests.support import EVENT, TopicReader, unique_settings

SECRET = "alice@example.invalid"  # stands for a personal value: it must never be printed


def ebbtide(settings: Settings, *args: str, limit: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebbtide", *args],
        env=processes.settings_env(settings),
        capture_output=True,
        text=True,
        timeout=limit,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def events_file(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def published(settings: Settings) -> int:
    reader = offsets_reader(settings, timeout=10)
    try:
        return sum(end_offsets(reader, Topics(settings.topic_prefix).events).values())
    finally:
        reader.close()


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """An address that accepts connections and never answers (a hung broker)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("broker", ["nothing listens", "nothing answers"])
def test_every_producing_command_ends_within_its_timeout_when_no_broker_answers(
    broker: str, silent_broker: str, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{processes.free_port()}" if broker == "nothing listens" else silent_broker
    settings = replace(unique_settings("unused", tmp_path), kafka_bootstrap=address)
    # The clock's key exists already (a clock's first start logs the key it made: not an error line).
    read_or_make_key(settings.clock_signing_key, "clock signing key")
    path = events_file(tmp_path / "events.jsonl", [{**EVENT, "event_id": f"e{n}"} for n in range(120)])
    commands = [
        (["publish", str(path), "--timeout", "3"], "ebbtide publish: the broker at"),
        (["clock", "tick", "2030-01-01T00:00:00Z", "--timeout", "3"], "ebbtide clock: the broker at"),
        (["dlq", "list", "--timeout", "3"], "ebbtide dlq list: the broker at"),
        (["dlq", "replay", "--timeout", "3"], "ebbtide dlq replay: the broker at"),
    ]
    running = [  # side by side: each must end on its own within its timeout
        subprocess.Popen(
            [sys.executable, "-m", "ebbtide", *args],
            env=processes.settings_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, _ in commands
    ]
    for (args, said), child in zip(commands, running, strict=True):
        try:
            stdout, stderr = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise AssertionError(f"ebbtide {args[0]} hangs") from None
        # The message names the 3 s given, not the 30 s default: the command's own timeout bounded
        # it (a command that hung would have failed above; no wall-clock assertion here).
        error = one_line_error(subprocess.CompletedProcess(args, child.returncode, stdout, stderr))
        assert error.startswith(f"{said} {address} did not answer within 3 s"), error


def test_an_oversized_line_refuses_the_whole_file(settings: Settings, tmp_path: Path) -> None:
    big = {**EVENT, "event_id": "e2", "subject_id": "cust-2", "producer": "x" * 1_200_000}
    path = events_file(tmp_path / "events.jsonl", [EVENT, big, {**EVENT, "event_id": "e3"}])
    done = ebbtide(settings, "publish", str(path))
    assert done.returncode == 1
    assert f"{path}: line 2: field producer is 1200000 characters, over the 512 allowed" in done.stderr
    assert "nothing was published" in done.stderr
    assert "Traceback" not in done.stderr and "xxxx" not in done.stderr
    assert published(settings) == 0
    done = ebbtide(settings, "publish", str(path), "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(
        "published 2 event(s) to " + Topics(settings.topic_prefix).events + "; skipped 1 invalid\n"
    )
    assert published(settings) == 2


def test_events_the_broker_refuses_are_named_by_line(settings: Settings, tmp_path: Path) -> None:
    topic = Topics(settings.topic_prefix).events
    admin = kafka.admin(settings, client_id=None)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "400"})])
    finally:
        admin.close()
    events = [{**EVENT, "event_id": f"e{n}", "subject_id": "cust-1"} for n in range(1, 6)]
    events[2]["producer"] = "x" * 500  # line 3: over this topic's limit, under the client's
    path = events_file(tmp_path / "events.jsonl", events)
    deadline = time.monotonic() + 30  # the broker applies a topic's new config within moments
    while True:
        done = ebbtide(settings, "publish", str(path), "--timeout", "5")
        if done.returncode == 1 or time.monotonic() > deadline:
            break
    error = one_line_error(done)
    assert "event(s) not acknowledged by the broker (MessageSizeTooLargeError)" in error
    assert "every line before line 3 is published, line 3 and those after it are not known to be" in error
    assert error.endswith("publish the file again (event ids make it idempotent)\n")


def dead_letter(
    out: Any, dlq: str, reason: str, source: str, partition: int, offset: int, key: bytes, value: bytes
) -> None:
    headers = [
        ("reason", reason.encode()),
        ("source_topic", source.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    out.send(dlq, key=key, value=value, headers=headers)


def test_dead_letters_are_listed_by_reason_shown_without_contents_and_replayed(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    out = producer(settings)
    misrouted = "lifecycle_event: misrouted: on partition 3, but its subject's partition is 1 of 4"
    letters = [
        (misrouted, topics.events, 3, 10, b"cust-1", b"\x02event one " + SECRET.encode()),
        (misrouted, topics.events, 3, 11, b"cust-2", b"\x02event two " + SECRET.encode()),
        (
            "deletion_receipt: no subject with this id on this partition",
            topics.receipts,
            0,
            5,
            b"cust-3",
            b"r",
        ),
        ("clock_tick: far from wall time", topics.clock, 2, 7, b"tick", b"\x04tick"),
        ("came from elsewhere", "elsewhere.topic", 0, 1, b"k", SECRET.encode()),
    ]
    for letter in letters:
        dead_letter(out, topics.dlq, *letter)
    out.flush(timeout=30)
    out.close(timeout=5)

    listed = ebbtide(settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["total"] == 5
    assert report["reasons"][0] == {"reason": misrouted, "count": 2, "sources": {topics.events: 2}}
    text = ebbtide(settings, "dlq", "list").stdout
    assert f"5 dead letter(s) in {topics.dlq}, 4 reason(s):" in text
    assert f"  2  {misrouted}  [{topics.events} 2]" in text

    for args in (["show"], ["show", "--json"], ["show", "--source", "events", "--limit", "1"]):
        shown = ebbtide(settings, "dlq", *args)
        assert shown.returncode == 0, shown.stderr
        assert SECRET not in shown.stdout and "cust-" not in shown.stdout  # no value, no key
    shown = ebbtide(settings, "dlq", "show", "--reason", "MISROUTED").stdout
    assert shown.count("  reason: lifecycle_event: misrouted") == 2
    assert f"  from:   {topics.events}[3]@11" in shown
    assert "  sizes:  key 6 bytes, value 32 bytes (contents not shown)" in shown

    refused = ebbtide(settings, "dlq", "replay")  # one of them comes from a topic not of this pipeline
    assert "cannot go back to a topic of this pipeline's inputs (elsewhere.topic 1); nothing replayed" in (
        one_line_error(refused)
    )
    dry = ebbtide(settings, "dlq", "replay", "--reason", "misrouted", "--dry-run")
    assert dry.stdout == f"would replay 2 dead letter(s): {topics.events} 2; --dry-run: nothing sent\n"
    assert published(settings) == 0

    done = ebbtide(settings, "dlq", "replay", "--reason", "misrouted", "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"replayed 2 dead letter(s): {topics.events} 2\n"
    events = TopicReader(settings, topics.events)
    try:
        got = events.wait_for(lambda seen: len(seen) >= 2, 30, "the replayed events")
    finally:
        events.close()
    assert sorted((m.key, m.raw) for m in got) == [(k, v) for _, _, _, _, k, v in letters[:2]]
    for message in got:  # each on its subject's partition, not the one it was misrouted to
        assert message.key is not None
        assert message.partition == partition_for(message.key, settings.partitions)
        assert message.headers["ebbtide_replay_of"].startswith(f"{topics.dlq}[".encode())

    assert ebbtide(settings, "dlq", "replay", "--source", "clock").returncode == 0
    ticks = TopicReader(settings, topics.clock)
    try:
        (tick,) = ticks.wait_for(lambda seen: len(seen) >= 1, 30, "the replayed tick")
    finally:
        ticks.close()
    assert (tick.partition, tick.key, tick.raw) == (2, b"tick", b"\x04tick")


def test_a_pipeline_without_a_dlq_topic_is_told_so(stack: tuple[str, str], tmp_path: Path) -> None:
    settings = unique_settings(stack[0], tmp_path)  # no topics made
    error = one_line_error(ebbtide(settings, "dlq", "list", "--timeout", "10"))
    assert error == (
        f"ebbtide dlq list: no topic {settings.topic_prefix}.dlq: create the pipeline's topics "
        "(ebbtide topics create)\n"
    )
