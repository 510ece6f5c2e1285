"""The contract every kind of sink keeps, as one test class to subclass per kind.

The sink is built the way ``ebbtide sink <kind>`` builds it (through :mod:`sinks.registry`) and
runs on the real broker against the kind's real store. A kind's test class names the kind, a
store and category it serves and the outcome a held record gets, and says how to put a record in
the store (:meth:`SinkContract.seed`), how to see the command's effect (:meth:`SinkContract.done`)
and how to make the store unavailable for a moment (:meth:`SinkContract.break_once`).

1. A repeated command gets the same receipt, byte for byte, and changes nothing more.
2. A transient error (the store cannot be reached) makes the loop take the batch again: every
   command is answered once, none is lost.
3. A command for a store the sink does not serve goes to the DLQ with the reason and is not
   executed (its FAILED receipt names the reason too).
4. A sealed record key is opened with its subject's key from the key store: the record is
   deleted and the receipt names it sealed, as the command did; one whose key is shredded is
   answered FAILED, dead-lettered and not executed.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks import registry
from ebbtide.sinks.base.loop import CommandSink
from ebbtide.sinks.keys.store import KeyStore
from tests.support import Received, TopicReader, deletion_command, make_topics, signed_command, worker_signer


@dataclass
class Running:
    """A sink of the kind under test, running in a thread on this test's topics."""

    settings: Settings
    sink: CommandSink
    receipts: TopicReader
    dlq: TopicReader

    @property
    def executor(self) -> Any:
        return self.sink.executor

    def send(self, *commands: dict[str, Any]) -> None:
        """Publish ``commands`` (signed as the worker signs them) on the sink's command topic."""
        topics = Topics(self.settings.topic_prefix)
        codec = codec_for(DELETION_COMMAND)
        out = producer(self.settings)
        for command in commands:
            value = codec.encode(signed_command(self.settings, command))
            out.send(topics.commands(self.sink.store), key=command["subject_id"].encode(), value=value)
        out.flush()
        out.close()

    def receipts_until(self, count: int) -> list[Received]:
        return self.receipts.wait_for(lambda seen: len(seen) >= count, 60, f"{count} receipt(s)")


class SinkContract:
    """Subclass per kind (``Test<Kind>Contract``); see the module docstring."""

    kind: ClassVar[str]
    store: ClassVar[str]
    category: ClassVar[str]
    outcome: ClassVar[str] = "DELETED"  # what a command for a held record is answered

    # -- what a kind's test class provides --------------------------------------------------------

    def args(self) -> argparse.Namespace:
        """The ``ebbtide sink <kind>`` options the sink is built with (default: none)."""
        return argparse.Namespace()

    def seed(self, key: str) -> None:
        """Put a record with ``key`` (of :attr:`category`, held for ``subject``) in the store."""
        raise NotImplementedError

    def done(self, key: str) -> bool:
        """Whether the store shows the effect of a deletion command for ``key``."""
        raise NotImplementedError

    def break_once(self, running: Running) -> None:
        """Make the store unavailable to the next batch: the executor raises a ``transient`` error."""
        raise NotImplementedError

    @pytest.fixture
    def store_ready(self, settings: Settings) -> Iterator[None]:
        """The store, ready for the sink (override: load its tables, start its server)."""
        yield

    # -- the sink --------------------------------------------------------------------------------

    def command(self, key: str, command_id: str, subject: str = "cust-00001") -> dict[str, Any]:
        return deletion_command(self.store, self.category, key, command_id=command_id, subject=subject)

    @pytest.fixture
    def running(self, settings: Settings, store_ready: None) -> Iterator[Running]:
        topics = make_topics(settings, stores=[self.store])
        worker_signer(settings)  # the worker's key, whose .pub the sink verifies commands with
        stop = threading.Event()
        process = registry.get(self.kind).build(settings, self.args(), stop)
        (sink,) = [s for s in process.sinks if s.store == self.store]
        thread = threading.Thread(target=process.run, daemon=True)
        thread.start()
        receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
        dlq = TopicReader(settings, topics.dlq)
        try:
            yield Running(settings, sink, receipts, dlq)
        finally:
            stop.set()
            thread.join(30)
            receipts.close()
            dlq.close()
        assert not thread.is_alive()

    # -- the contract ----------------------------------------------------------------------------

    def test_a_repeated_command_gets_the_same_receipt_byte_for_byte(self, running: Running) -> None:
        self.seed("rep-1")
        command = self.command("rep-1", "cmd-repeated")
        running.send(command)
        (first,) = running.receipts_until(1)
        assert first.value is not None and first.value["outcome"] == self.outcome
        assert self.done("rep-1")
        running.send(command)
        second = running.receipts_until(2)[1]
        assert second.raw == first.raw
        assert self.done("rep-1")

    def test_a_transient_error_takes_the_batch_again_and_loses_nothing(
        self, running: Running, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keys = ["tr-1", "tr-2", "tr-3"]
        for key in keys:
            self.seed(key)
        recovered: list[int] = []
        recover = running.executor.recover

        def counted() -> None:
            recovered.append(1)
            recover()

        monkeypatch.setattr(running.executor, "recover", counted)
        self.break_once(running)
        running.send(*(self.command(key, f"cmd-{key}") for key in keys))
        got = running.receipts_until(len(keys))
        assert recovered, "the batch did not fail: the store was not made unavailable"
        answered = sorted((r.value or {}).get("command_id") for r in got)
        assert answered == sorted(f"cmd-{key}" for key in keys)  # each command once, none lost
        assert {(r.value or {}).get("outcome") for r in got} == {self.outcome}
        assert all(self.done(key) for key in keys)
        assert running.dlq.poll() == []

    def test_a_command_for_a_store_it_does_not_serve_goes_to_the_dlq(self, running: Running) -> None:
        self.seed("un-1")
        running.send({**self.command("un-1", "cmd-elsewhere"), "store": "no_such_store"})
        reason = f"command for store no_such_store sent to {self.store}"
        (dead,) = running.dlq.wait_for(lambda seen: len(seen) >= 1, 60, "a dead letter")
        assert dead.headers["reason"].decode() == reason
        topic = Topics(running.settings.topic_prefix).commands(self.store)
        assert dead.headers["source_topic"].decode() == topic
        (receipt,) = running.receipts_until(1)
        assert receipt.value is not None
        assert (receipt.value["outcome"], receipt.value["reason"]) == ("FAILED", reason)
        assert not self.done("un-1")  # nothing of it was executed

    def test_a_sealed_key_is_opened_and_one_whose_key_is_shredded_is_not_executed(
        self, running: Running
    ) -> None:
        self.seed("se-1")
        self.seed("se-2")
        plain = self.command("se-1", "cmd-sealed")
        lost = self.command("se-2", "cmd-shredded", subject="cust-00002")
        keys = KeyStore(running.settings.require_keys_dsn())
        try:
            live, gone = keys.current(plain["subject_id"]), keys.current(lost["subject_id"])
            keys.shred(gone.subject_id, gone.key_id)
        finally:
            keys.close()
        sealed = {**plain, "record_key": live.seal(plain["record_key"])}
        running.send(sealed, {**lost, "record_key": gone.seal(lost["record_key"])})
        received = {r.value["command_id"]: r for r in running.receipts_until(2) if r.value is not None}
        got = {command_id: r.value for command_id, r in received.items() if r.value is not None}
        assert got["cmd-sealed"]["outcome"] == self.outcome and self.done("se-1")
        # The receipt names the record sealed, as the command did (the reader opens it: the key).
        assert sealed["record_key"].encode() in received["cmd-sealed"].raw
        assert got["cmd-sealed"]["record_key"] == plain["record_key"]
        assert got["cmd-shredded"]["outcome"] == "FAILED" and "shredded" in got["cmd-shredded"]["reason"]
        (dead,) = running.dlq.wait_for(lambda seen: len(seen) >= 1, 60, "a dead letter")
        assert "shredded" in dead.headers["reason"].decode()
        assert not self.done("se-2")
