"""A PostgreSQL sink killed with SIGKILL and started again takes its partitions back at once
(static group membership), instead of waiting for the broker to give up on the dead process."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.tools import processes
from tests.support import TopicReader, deletion_command, signed_command, worker_signer

SESSION_TIMEOUT = 30.0  # the default: what a dynamic member's restart would wait for (librdkafka's: 45)


def test_a_sink_restarted_after_sigkill_answers_well_within_the_session_timeout(
    settings: Settings, database: str, tmp_path: Path
) -> None:
    settings = replace(settings, session_timeout=SESSION_TIMEOUT)
    demo_db.load(database, build(customers=5, seed=3))
    topics = Topics(settings.topic_prefix)
    commands = codec_for(DELETION_COMMAND)
    out = producer(settings)
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))

    def send(key: str) -> str:
        command = deletion_command(
            "customer_db", "client", key, command_id=f"cmd-{key}", subject=f"cust-{key:0>5}"
        )
        value = commands.encode(signed_command(settings, command))
        out.send(topics.commands("customer_db"), key=command["subject_id"].encode(), value=value)
        out.flush(30)
        return str(command["command_id"])

    def answered(command_id: str, timeout: float, what: str) -> None:
        receipts.wait_for(
            lambda seen: any(r.value and r.value["command_id"] == command_id for r in seen), timeout, what
        )

    worker_signer(settings)  # the worker key whose .pub the sink verifies commands with
    sink = processes.start("sink", ["sink", "postgres"], settings, tmp_path / "logs")
    try:
        answered(send("1"), 90, "the first command answered (the sink joined its group)")
        sink.kill()  # no clean shutdown: the broker still counts the dead process as a member
        restarted = time.monotonic()
        sink = processes.start("sink", ["sink", "postgres"], settings, tmp_path / "logs")
        answered(send("2"), 2 * SESSION_TIMEOUT, f"a command answered after the restart:\n{sink.tail()}")
        elapsed = time.monotonic() - restarted
        assert sink.alive(), sink.tail()
        # A dynamic member would get its partitions only once the dead one's session timed out.
        assert elapsed < SESSION_TIMEOUT / 2, f"answered {elapsed:.1f} s after the restart"
    finally:
        sink.stop()
        receipts.close()
        out.close()
