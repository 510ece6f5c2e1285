"""A sink whose consumer had a fatal error stops (to be started again by its supervisor) rather
than polling a dead consumer for ever: librdkafka reports e.g. a static member fenced after its
group coordinator died as an error event of code _FATAL whose ``fatal()`` is false (the failover
e2e test met it)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException

from ebbtide.sinks.base.loop import _skip


@dataclass
class Event:
    err: KafkaError | None

    def error(self) -> KafkaError | None:
        return self.err


def test_a_fatal_error_event_ends_the_sink() -> None:
    fenced = KafkaError(
        KafkaError._FATAL, "Static consumer fenced by other consumer with same group.instance.id"
    )
    assert not fenced.fatal()  # what librdkafka hands the application
    with pytest.raises(KafkaException):
        _skip(Event(fenced))  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        _skip(Event(KafkaError(KafkaError._TRANSPORT, "x", fatal=True)))  # type: ignore[arg-type]


def test_informational_events_are_skipped_and_messages_kept() -> None:
    assert _skip(Event(KafkaError(KafkaError._PARTITION_EOF, "end")))  # type: ignore[arg-type]
    assert _skip(Event(KafkaError(KafkaError._TRANSPORT, "broker down")))  # type: ignore[arg-type]
    assert not _skip(Event(None))  # type: ignore[arg-type]


def test_the_sink_command_ends_with_one_line_and_exit_1_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from ebbtide import bootstrap
    from ebbtide.cli.pipeline import cmd_sink
    from ebbtide.runtime.settings import Settings

    class Fenced:
        label = "store customer_db"

        def run(self) -> int:
            raise KafkaException(KafkaError(KafkaError._FATAL, "Static consumer fenced"))

    import signal

    from ebbtide.runtime import logging as runtime_logging

    monkeypatch.setattr(bootstrap, "sink", lambda *_: Fenced())
    # the command's own handlers and logging would outlive this test in the pytest process
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    monkeypatch.setattr(runtime_logging, "configure", lambda *_: None)
    code = cmd_sink(argparse.Namespace(kind="postgres", loglevel="warning"), Settings())
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ebbtide sink postgres: the Kafka consumer of store customer_db failed for good" in err


def test_one_of_several_sinks_failing_for_good_logs_one_line_and_stops_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    from ebbtide.sinks.base.kind import SinkGroup

    stop = threading.Event()

    class Sink:
        def __init__(self, store: str, fails: bool) -> None:
            self.store, self.fails = store, fails

        def run(self) -> None:
            if self.fails:
                raise KafkaException(KafkaError(KafkaError._FATAL, "Static consumer fenced"))
            stop.wait(10)  # until the failing one stops the group

    group = SinkGroup([Sink("support_desk", True), Sink("chat_vendor", False)], stop)  # type: ignore[list-item]
    assert group.run() == 1
    (record,) = [r for r in caplog.records if "support_desk" in r.getMessage()]
    assert record.exc_info is None and "Kafka consumer failed" in record.getMessage()
