"""Publishing and ticking never hang and never publish a file in part: an oversized event is
refused while the file is validated, and what the broker does not acknowledge in time ends in one
line naming it (fake producers; the real broker is in tests/integration/tools/test_publish_bounded.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from ebbtide.cli import main
from ebbtide.client import publisher as client  # the sync publisher's module makes its producer
from ebbtide.runtime.kafka import await_delivery, close_producer
from ebbtide.runtime.settings import Settings
from ebbtide.tools import clock as clock_module
from ebbtide.tools.client import EventPublisher, InvalidEvent, PublishFailed, check_size, to_record
from ebbtide.tools.clock import ClockPublisher, TickFailed
from tests.support import EVENT


def event(n: int, **change: Any) -> dict[str, Any]:
    return {**EVENT, "event_id": f"e{n}", "subject_id": f"cust-{n}", **change}


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error

    def succeeded(self) -> bool:
        return self.error is None

    def add_errback(self, errback: Any) -> Future:  # done at once, like a batch that expired
        if self.error is not None:
            errback(self.error)
        return self


class Sender:
    def __init__(self) -> None:
        self.forced = False

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float | None = None) -> None:
        pass


class DeadBroker:
    """A producer whose broker dies after ``alive`` sends: later sends expire unacknowledged
    (or, with ``refuse``, the producer refuses the next send, as for a topic without metadata).
    Like kafka-python's, its timed flush and close raise while a batch is still held."""

    def __init__(self, alive: int, refuse: bool = False) -> None:
        self.alive, self.refuse = alive, refuse
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushes: list[float | None] = []
        self.closed = False
        self._sender = Sender()

    def send(self, topic: str, key: bytes | None = None, value: bytes = b"", **kw: Any) -> Future:
        if self.refuse and len(self.sent) >= self.alive:
            raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")
        self.sent.append((topic, key, value))
        return Future(None if len(self.sent) <= self.alive else KafkaTimeoutError("batch expired"))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes.append(timeout)
        assert timeout is not None, "an untimed flush can wait forever"
        if len(self.sent) > self.alive:
            raise KafkaTimeoutError("Timeout waiting for future")

    def close(self, timeout: float | None = None) -> None:
        assert timeout is not None, "kafka-python's close() without a timeout flushes without one"
        if len(self.sent) > self.alive and not self._sender.forced:
            raise KafkaTimeoutError("Timeout waiting for future")
        self.closed = True


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> list[DeadBroker]:
    """Every producer the client makes, a :class:`DeadBroker` alive for 3 sends."""
    made: list[DeadBroker] = []

    def make(settings: Settings, timeout: float) -> DeadBroker:
        made.append(DeadBroker(3))
        return made[-1]

    monkeypatch.setattr(client, "producer", make)
    return made


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_event_too_large_for_one_message_is_invalid() -> None:
    record = to_record(event(1))
    record["producer"] = "x" * 1_200_000  # built past to_record, whose field limits come first
    with pytest.raises(
        InvalidEvent, match=r"^event is 1\.2 MB encoded, over the 1 MB limit of one Kafka message$"
    ):
        check_size(record)


def test_a_text_over_the_workers_limit_is_invalid_before_it_is_sent() -> None:
    assert to_record(event(1, producer="x" * 512))
    with pytest.raises(InvalidEvent, match=r"^field producer is 513 characters, over the 512 allowed$"):
        to_record(event(1, producer="x" * 513))
    with pytest.raises(InvalidEvent, match=r"^an entry of field payload.records is over 512 characters$"):
        to_record(
            event(
                1, type="LegalHoldPlaced", payload={"hold_id": "h", "categories": [], "records": ["r" * 513]}
            )
        )


def test_publish_refuses_a_file_with_an_oversized_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broker: list[DeadBroker]
) -> None:
    path = write(
        tmp_path / "events.jsonl",
        [json.dumps(event(1)), json.dumps(event(2, producer="x" * 10_400_000)), json.dumps(event(3))],
    )
    assert main(["publish", str(path)]) == 1
    err = capsys.readouterr().err
    assert "events.jsonl: line 2: field producer is 10400000 characters, over the 512 allowed" in err
    assert "xxxx" not in err
    assert "nothing was published" in err
    assert broker == []  # no producer was even made
    assert main(["publish", str(path), "--skip-invalid", "--dry-run"]) == 0
    assert "2 valid event(s)" in capsys.readouterr().out


def test_the_client_refuses_an_oversized_event_and_sends_nothing(broker: list[DeadBroker]) -> None:
    publisher = EventPublisher(Settings())
    with pytest.raises(InvalidEvent, match="over the 512 allowed"):
        publisher.publish(event(1, producer="x" * 1_200_000))
    record = to_record(event(1))
    record["producer"] = "x" * 1_200_000  # a record built past to_record
    with pytest.raises(InvalidEvent, match="over the 1 MB limit"):
        publisher.publish_record(record)
    publisher.close()
    assert broker[0].sent == []
    assert broker[0].closed


def test_a_broker_that_dies_mid_file_ends_in_one_line_naming_the_first_line_not_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broker: list[DeadBroker]
) -> None:
    lines = [json.dumps(event(n)) for n in range(1, 6)]
    path = write(tmp_path / "events.jsonl", [lines[0], "", *lines[1:]])  # a blank line 2
    assert main(["publish", str(path), "--timeout", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "ebbtide publish: 2 of 5 event(s) not acknowledged by the broker within 1 s (KafkaTimeoutError); "
        "every line before line 5 is published, line 5 and those after it are not known to be; "
        "publish the file again (event ids make it idempotent)\n"
    )
    assert all(timeout is not None for timeout in broker[0].flushes)
    assert broker[0].closed  # closed (the held batch given up), not left to raise at exit


def test_a_send_the_producer_refuses_stops_the_file_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = DeadBroker(2, refuse=True)
    monkeypatch.setattr(client, "producer", lambda settings, timeout: out)
    path = write(tmp_path / "events.jsonl", [json.dumps(event(n)) for n in range(1, 6)])
    assert main(["publish", str(path), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "ebbtide publish: 3 of 5 event(s) not acknowledged by the broker within 2 s (KafkaTimeoutError); "
        "every line before line 3 is published"
    )
    assert len(out.sent) == 2  # nothing after the refused send
    assert out.closed


def test_leaving_the_with_block_on_an_error_does_not_hide_it_behind_a_flush(broker: list[DeadBroker]) -> None:
    with pytest.raises(RuntimeError, match="the caller's own error"), EventPublisher(Settings()) as publisher:
        for n in range(1, 5):
            publisher.publish(event(n))  # the 4th is not acknowledged
        raise RuntimeError("the caller's own error")
    assert broker[0].flushes == []  # not flushed: the error is on its way out
    assert broker[0].closed


def test_once_an_event_fails_the_publisher_sends_nothing_more(broker: list[DeadBroker]) -> None:
    publisher = EventPublisher(Settings(), timeout=1)
    for n in range(1, 5):
        publisher.publish(event(n))  # the 4th is not acknowledged
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(event(5))
    assert (failed.value.failed, failed.value.total, failed.value.first) == (1, 4, 3)
    assert len(broker[0].sent) == 4  # the 5th was not sent to a broker that is gone
    publisher.close()  # nothing pending any more: closes without raising again
    assert broker[0].closed


def test_await_delivery_and_close_are_bounded_with_a_producer_that_holds_a_batch() -> None:
    out = DeadBroker(1)
    futures = [out.send("t", b"k", b"v") for _ in range(3)]
    undelivered = await_delivery(out, futures, timeout=1)
    assert undelivered is not None
    assert (undelivered.failed, undelivered.total, undelivered.first, undelivered.reason) == (
        2,
        3,
        1,
        "KafkaTimeoutError",
    )
    close_producer(out)  # its close(timeout) raises: the sender is forced closed, then it closes
    assert out._sender.forced and out.closed


class Offsets:
    def close(self) -> None:
        self.closed = True


def test_a_tick_the_broker_does_not_take_names_its_partitions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = DeadBroker(2)
    monkeypatch.setattr(clock_module, "producer", lambda settings, timeout: out)
    monkeypatch.setattr(clock_module, "offsets_reader", lambda settings, timeout: Offsets())
    monkeypatch.setattr(clock_module, "end_offsets", lambda consumer, topic: {0: 5, 1: 0, 2: 7, 3: 1})
    clock = ClockPublisher(Settings(), "scripted", timeout=2)
    at = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(
        TickFailed,
        match=r"^tick 2030-01-01T00:00:00\+00:00: 2 of 4 partition\(s\) \(2, 3\) not acknowledged by the "
        r"broker within 2 s \(KafkaTimeoutError\)$",
    ):
        clock.tick(at)
    clock.close()
    assert out.closed
    assert main(["clock", "run", "2030-01-01", "2030-03-01", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ebbtide clock: tick 2030-01-01T00:00:00+00:00: 4 of 4 partition(s)")
    assert err.endswith("; the ticks before it were sent (ticking a time again is harmless)\n")
