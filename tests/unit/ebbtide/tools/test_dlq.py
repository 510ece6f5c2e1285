"""`ebbtide dlq`: dead letters grouped by reason, selected, shown without their contents, and
replayed to the topic they came from (fake records and a fake producer; no broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from ebbtide.cli import main
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import dlq
from ebbtide.tools.dlq import DeadLetter, ReplayFailed

PREFIX = "t"
TOPICS = Topics(PREFIX)
SECRET = b"alice@example.invalid"  # stands for the personal data a value may hold


def letter(
    offset: int,
    reason: str | None = "lifecycle_event: field subject_id: missing",
    source: str | None = TOPICS.events,
    *,
    partition: int = 0,
    key: bytes | None = b"cust-1",
    value: bytes | None = b"\x00" + SECRET,
    source_partition: int | None = 2,
    extra: tuple[tuple[str, bytes], ...] = (),
) -> DeadLetter:
    headers: list[tuple[str, bytes]] = []
    if reason is not None:
        headers.append(("reason", reason.encode()))
    if source is not None:
        headers.append(("source_topic", source.encode()))
    if source_partition is not None:
        headers.append(("source_partition", str(source_partition).encode()))
    headers.append(("source_offset", str(100 + offset).encode()))
    return DeadLetter(partition, offset, 1_700_000_000_000, key, value, (*headers, *extra))


LETTERS = [
    letter(0, "lifecycle_event: field subject_id: missing"),
    letter(1, "deletion_receipt: no subject with this id on this partition", TOPICS.receipts),
    letter(2, "lifecycle_event: field subject_id: missing", partition=1),
    letter(3, "vendor gave up after 5 attempts", TOPICS.commands("chat_vendor"), partition=1),
    letter(4, None, None),
    letter(5, "clock_tick: far from wall time", TOPICS.clock, key=b"tick", source_partition=3),
]


def test_letters_are_grouped_by_reason_largest_first_with_their_sources() -> None:
    groups = dlq.group_by_reason(LETTERS)
    assert [(g.reason, g.count) for g in groups] == [
        ("lifecycle_event: field subject_id: missing", 2),
        ("(no reason header)", 1),
        ("clock_tick: far from wall time", 1),
        ("deletion_receipt: no subject with this id on this partition", 1),
        ("vendor gave up after 5 attempts", 1),
    ]
    assert groups[0].as_json()["sources"] == {TOPICS.events: 2}
    assert groups[1].as_json()["sources"] == {"(no source_topic header)": 1}
    text = dlq.render_list(groups, TOPICS.dlq)
    assert text.splitlines()[0] == "6 dead letter(s) in t.dlq, 5 reason(s):"
    assert "  2  lifecycle_event: field subject_id: missing  [t.events 2]" in text
    assert dlq.render_list([], TOPICS.dlq) == "no dead letters in t.dlq"


def test_selection_by_reason_substring_source_and_limit_in_dlq_order() -> None:
    def offsets(**kw: Any) -> list[int]:
        return [x.offset for x in dlq.select(reversed(LETTERS), prefix=PREFIX, **kw)]

    assert offsets() == [0, 1, 4, 5, 2, 3]  # by DLQ partition, then offset
    assert offsets(reason="SUBJECT_ID") == [0, 2]  # any case
    assert offsets(reason="no reason") == [4]
    assert offsets(source="events") == [0, 2]  # without the prefix
    assert offsets(source=TOPICS.commands("chat_vendor")) == [3]  # or in full
    assert offsets(source="commands") == []  # a topic, not a substring
    assert offsets(reason="missing", source="receipts") == []
    assert offsets(limit=2) == [0, 1]
    assert offsets(limit=0) == []


def test_show_prints_headers_offsets_and_sizes_never_the_contents() -> None:
    odd = letter(
        9,
        "engine raised ValueError\x1b[31m in apply_event\nnext line",
        extra=(("exception", b"ValueError"), ("blob", b"\xff\xfe")),
    )
    text = dlq.render_show([*LETTERS, odd], TOPICS.dlq)
    as_json = json.dumps([x.summary(TOPICS.dlq) for x in [*LETTERS, odd]])
    for out in (text, as_json):
        assert SECRET.decode() not in out
        assert "cust-1" not in out  # nor the key (a subject id)
    assert "t.dlq[0]@0  2023-11-14T22:13:20.000Z" in text
    assert "  from:   t.events[2]@100" in text
    assert "  sizes:  key 6 bytes, value 22 bytes (contents not shown)" in text
    assert "  header exception: ValueError" in text
    assert "  header blob: <2 bytes, not text>" in text
    # control characters (anyone can write a header) are escaped: one line each, no terminal codes
    assert "reason: engine raised ValueError\\x1b[31m in apply_event\\x0anext line" in text
    assert "\x1b" not in text
    summary = odd.summary(TOPICS.dlq)
    assert (summary["source_partition"], summary["source_offset"], summary["value_bytes"]) == (2, 109, 22)
    assert dlq.render_show([], TOPICS.dlq) == "no dead letters in t.dlq match"


def test_a_long_header_is_cut() -> None:
    text = dlq.render_show([letter(0, "x" * 5000)], TOPICS.dlq)
    assert "… (5000 characters)" in text
    assert "x" * 301 not in text


def test_replay_goes_back_to_the_source_topic_by_key_ticks_to_their_partition() -> None:
    allowed = {TOPICS.events, TOPICS.clock, TOPICS.receipts, TOPICS.commands("chat_vendor")}
    plan = dlq.plan_replay(LETTERS, allowed, TOPICS.clock)
    assert plan.refused == {"(no source_topic header)": 1}
    assert plan.empty == 0
    by_offset = {r.letter.offset: (r.topic, r.partition) for r in plan.replays}
    assert by_offset == {
        0: (TOPICS.events, None),  # keyed: the partition its key gives (fixes a misrouted event)
        1: (TOPICS.receipts, None),
        2: (TOPICS.events, None),
        3: (TOPICS.commands("chat_vendor"), None),
        5: (TOPICS.clock, 3),  # a tick belongs to its partition
    }
    no_key = letter(7, key=b"", source_partition=1)
    lost = letter(8, key=b"", source_partition=None)
    dropped_tick = letter(10, source=TOPICS.clock, key=b"", value=b"", source_partition=0)
    plan = dlq.plan_replay(
        [no_key, lost, letter(9, source="other.topic"), dropped_tick], allowed, TOPICS.clock
    )
    assert [(r.topic, r.partition) for r in plan.replays] == [(TOPICS.events, 1)]
    assert plan.refused == {"t.events (no source_partition header)": 1, "other.topic": 1}
    assert plan.empty == 1
    assert plan.counts() == "t.events 1"
    assert plan.skipped() == "; skipped 1 that hold no message"


def test_replayable_topics_are_the_workers_inputs_and_the_stores_commands() -> None:
    settings = Settings(topic_prefix=PREFIX)
    topics = dlq.replayable_topics(settings)
    assert {TOPICS.events, TOPICS.clock, TOPICS.receipts} <= topics
    assert TOPICS.commands("customer_db") in topics
    assert not {TOPICS.dlq, TOPICS.decisions, TOPICS.certificates, TOPICS.answers} & topics


class Future:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class Producer:
    """Records what is sent; the sends from ``fail_from`` on are not acknowledged."""

    def __init__(self, fail_from: int | None = None, refuse_at: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_from, self.refuse_at = fail_from, refuse_at

    def send(self, topic: str, **kw: Any) -> Future:
        if self.refuse_at is not None and len(self.sent) == self.refuse_at:
            raise KafkaTimeoutError("no metadata")
        self.sent.append({"topic": topic, **kw})
        failing = self.fail_from is not None and len(self.sent) > self.fail_from
        return Future(KafkaTimeoutError("expired") if failing else None)

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_replay_sends_the_original_key_and_value_with_where_they_came_from() -> None:
    allowed = {TOPICS.events, TOPICS.clock, TOPICS.receipts, TOPICS.commands("chat_vendor")}
    replays = dlq.plan_replay(LETTERS, allowed, TOPICS.clock).replays
    out, progressed = Producer(), []
    counts = dlq.replay(replays, out, TOPICS.dlq, 3.0, progressed.append)
    assert counts == {
        TOPICS.events: 2,
        TOPICS.receipts: 1,
        TOPICS.commands("chat_vendor"): 1,
        TOPICS.clock: 1,
    }
    assert sum(progressed) == 5
    first = out.sent[0]
    assert (first["topic"], first["key"], first["value"], first["partition"]) == (
        TOPICS.events,
        b"cust-1",
        b"\x00" + SECRET,
        None,
    )
    assert first["headers"] == [("ebbtide_replay_of", b"t.dlq[0]@0")]
    assert out.sent[-1]["partition"] == 3


def test_replay_names_how_many_the_broker_did_not_acknowledge() -> None:
    allowed = {TOPICS.events, TOPICS.receipts, TOPICS.commands("chat_vendor")}
    replays = dlq.plan_replay(LETTERS[:4], allowed, "").replays
    with pytest.raises(
        ReplayFailed, match=r"^3 of 4 dead letter\(s\) not acknowledged by the broker within 3 s "
    ):
        dlq.replay(replays, Producer(fail_from=1), TOPICS.dlq, 3.0)
    # a send the producer refuses stops the replay; the rest count as not acknowledged
    with pytest.raises(ReplayFailed, match=r"^2 of 4 .* \(KafkaTimeoutError\)$"):
        dlq.replay(replays, Producer(refuse_at=2), TOPICS.dlq, 3.0)


@pytest.fixture
def fake_dlq(monkeypatch: pytest.MonkeyPatch) -> Iterator[Producer]:
    """`ebbtide dlq` reading LETTERS and replaying through a fake producer."""
    out = Producer()
    monkeypatch.setattr(dlq, "read", lambda settings, timeout: iter(LETTERS))
    monkeypatch.setattr("ebbtide.runtime.kafka.producer", lambda settings, timeout: out)
    monkeypatch.setattr("ebbtide.runtime.kafka.close_producer", lambda out, timeout=1.0: None)
    monkeypatch.setenv("EBBTIDE_TOPIC_PREFIX", PREFIX)
    yield out


def test_the_command_lists_shows_and_replays(fake_dlq: Producer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["topic"], listed["total"], listed["reasons"][0]["count"]) == ("t.dlq", 6, 2)
    assert main(["dlq", "show", "--reason", "receipt", "--json"]) == 0
    shown = capsys.readouterr().out
    assert [x["offset"] for x in json.loads(shown)] == [1]
    assert SECRET.decode() not in shown
    assert main(["dlq", "replay", "--reason", "subject_id", "--dry-run"]) == 0
    assert capsys.readouterr().out == "would replay 2 dead letter(s): t.events 2; --dry-run: nothing sent\n"
    assert fake_dlq.sent == []
    assert main(["dlq", "replay", "--source", "events"]) == 0
    assert capsys.readouterr().out == "replayed 2 dead letter(s): t.events 2\n"
    assert len(fake_dlq.sent) == 2


def test_the_command_refuses_to_replay_to_a_topic_outside_the_pipeline(
    fake_dlq: Producer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "replay"]) == 1  # letter 4 has no source topic
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "1 selected dead letter(s) cannot go back to a topic of this pipeline's inputs" in err
    assert "nothing replayed" in err
    assert fake_dlq.sent == []


def test_a_broker_that_stops_answering_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def down(settings: Settings, timeout: float) -> Iterator[DeadLetter]:
        raise dlq.DlqError(f"the broker at {settings.kafka_bootstrap} did not answer within {timeout:g} s")
        yield  # a generator, like the real one

    monkeypatch.setattr(dlq, "read", down)
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    assert main(["dlq", "list", "--timeout", "2"]) == 1
    assert (
        capsys.readouterr().err
        == "ebbtide dlq list: the broker at 127.0.0.1:9092 did not answer within 2 s\n"
    )


def test_from_message_reads_a_consumer_record() -> None:
    record = SimpleNamespace(
        partition=1, offset=7, timestamp=-1, key=None, value=b"v", headers=[("reason", b"r")]
    )
    got = DeadLetter.from_message(record)
    assert (got.partition, got.offset, got.timestamp, got.key, got.reason) == (1, 7, None, None, "r")
    assert got.source_topic is None and got.source_partition is None
