"""Kafka ACLs per principal on the real broker: after `ebbtide acls apply`, each principal of the
pipeline may write what its process writes and the broker refuses it the rest.

The local broker (deploy/local/kafka.sh) has a SASL/PLAIN listener with one user per role and the
StandardAuthorizer; its settings are in the stack's env file (EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP,
EBBTIDE_LOCAL_KAFKA_SASL_MECHANISM, EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from ebbtide.cli import main
from ebbtide.runtime import kafka
from ebbtide.runtime.kafka_security import KafkaSecurity
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.acls import Principals, password_for, plan
from tests.support import drop_topics, make_topics, unique_settings, wait_until

STORE = "customer_db"
TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Sasl:
    bootstrap: str
    mechanism: str
    passwords: Path

    def config(self, user: str) -> dict[str, Any]:
        """kafka-python keywords to connect as ``user`` (the library's default client id)."""
        password = password_for(self.passwords, user)
        credentials = KafkaSecurity("SASL_PLAINTEXT", self.mechanism, user, password)
        return kafka.client_config(self.bootstrap, client_id=None, security=credentials)


@pytest.fixture(scope="module")
def sasl() -> Sasl:
    """The SASL listener of the local broker, from the stack's settings: a failure, not a skip, if
    they are not there (a broker started by an older kafka.sh has no SASL listener)."""
    names = (
        "EBBTIDE_KAFKA_BOOTSTRAP",
        "EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP",
        "EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS",
    )
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: the Kafka ACL tests need the local broker's SASL listener. "
            "Restart the broker with this version of deploy/local/kafka.sh (kafka.sh stop; kafka.sh start) "
            "and export $EBBTIDE_STATE_DIR/env (`set -a; . .state/env; set +a`, as make test does)"
        )
    passwords = Path(os.environ["EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS"])
    if not passwords.is_file():
        pytest.fail(
            f"EBBTIDE_LOCAL_KAFKA_SASL_PASSWORDS: no such file {passwords} "
            "(made by deploy/local/kafka.sh start)"
        )
    bootstrap = os.environ["EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP"]
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        pytest.fail(
            f"EBBTIDE_LOCAL_KAFKA_SASL_BOOTSTRAP={bootstrap}: nothing answers there ({exc}); is the broker "
            "running, started by this version of deploy/local/kafka.sh?"
        )
    return Sasl(bootstrap, os.environ.get("EBBTIDE_LOCAL_KAFKA_SASL_MECHANISM") or "PLAIN", passwords)


@pytest.fixture
def pipeline(sasl: Sasl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Fresh topics under a unique prefix (made over the development listener); afterwards the
    topics and every ACL of the plan for them are deleted (ACLs outlive their topics)."""
    settings = unique_settings(os.environ["EBBTIDE_KAFKA_BOOTSTRAP"], tmp_path)
    make_topics(settings, [STORE])
    monkeypatch.setenv("EBBTIDE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("EBBTIDE_APP_ID", settings.app_id)
    yield settings
    admin = KafkaAdminClient(**sasl.config("admin"))
    try:
        admin.delete_acls([g.acl() for g in plan(settings, [STORE], Principals())])
    finally:
        admin.close()
    drop_topics(settings)


def write(sasl: Sasl, user: str, topic: str, partition: int | None = None) -> KafkaError | None:
    """Send one message as ``user``; the error the broker answered with, None if it took it."""
    out = KafkaProducer(
        **sasl.config(user),
        acks="all",
        max_block_ms=TIMEOUT_MS,
        request_timeout_ms=TIMEOUT_MS,
        delivery_timeout_ms=TIMEOUT_MS + 1000,
    )
    try:
        out.send(topic, key=b"cust-1", value=f"from {user}".encode(), partition=partition).get(
            TIMEOUT_MS / 1000
        )
        return None
    except KafkaError as exc:
        return exc
    finally:
        out.close(timeout=5)


def may_write(sasl: Sasl, user: str, topic: str, partition: int | None = None) -> None:
    # ACLs reach the broker's authorizer through its metadata log, just after CreateAcls answers.
    errors: list[KafkaError] = []

    def took() -> bool:
        error = write(sasl, user, topic, partition)
        if error is not None:
            errors.append(error)
        return error is None

    try:
        wait_until(took, 20, f"User:{user} writing {topic}", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the broker answered {errors[-1]!r}") from None


def refused(sasl: Sasl, user: str, topic: str) -> None:
    error = write(sasl, user, topic)
    assert isinstance(error, TopicAuthorizationFailedError), f"User:{user} writing {topic}: {error!r}"


def apply_acls(sasl: Sasl, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(
        [
            "acls",
            "apply",
            "--bootstrap",
            sasl.bootstrap,
            "--sasl-user",
            "admin",
            "--sasl-password-file",
            str(sasl.passwords),
            "--sasl-mechanism",
            sasl.mechanism,
            "--store",
            STORE,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_each_principal_writes_only_what_its_process_writes(
    sasl: Sasl, pipeline: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = Topics(pipeline.topic_prefix)
    commands = topics.commands(STORE)
    # Without the ACLs the authorizer lets the SASL users do nothing: what passes below, they grant.
    refused(sasl, "producer", topics.events)
    refused(sasl, "worker", commands)

    out = apply_acls(sasl, capsys)
    assert f"User:producer WRITE topic {topics.events}" in out
    # The broker answers from its metadata, which follows the controller's: once the producer
    # may write, the ACLs created above are there to be described (they were created together).
    may_write(sasl, "producer", topics.events)
    again = apply_acls(sasl, capsys)  # idempotent: nothing new the second time
    assert again.startswith("0 ACL(s) created,"), again

    for topic in (commands, topics.receipts, topics.clock):
        refused(sasl, "producer", topic)

    may_write(sasl, "clock", topics.clock, partition=0)
    refused(sasl, "clock", commands)

    may_write(sasl, "sink", topics.receipts)
    refused(sasl, "sink", commands)

    may_write(sasl, "worker", commands)
    refused(sasl, "worker", topics.receipts)


def test_the_clock_reads_event_offsets_and_a_sink_its_commands_in_its_group(
    sasl: Sasl, pipeline: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = Topics(pipeline.topic_prefix)
    commands = topics.commands(STORE)
    apply_acls(sasl, capsys)
    may_write(sasl, "worker", commands)

    # A tick carries the events partitions' end offsets: the clock may look them up.
    clock = KafkaConsumer(**sasl.config("clock"), request_timeout_ms=TIMEOUT_MS)
    try:
        tps = [TopicPartition(topics.events, p) for p in range(pipeline.partitions)]
        assert sorted(clock.end_offsets(tps)) == tps
    finally:
        clock.close()

    group = f"{pipeline.topic_prefix}-sink-{STORE}"
    sink = KafkaConsumer(
        commands,
        **sasl.config("sink"),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS + 25_000,
    )
    try:
        seen = wait_until(
            lambda: [m for ms in sink.poll(timeout_ms=500).values() for m in ms], 30, "the command"
        )
        assert seen[0].value == b"from worker"
        sink.commit()
    finally:
        sink.close()

    # Another group is not the sink's: the broker refuses to let it join.
    stranger = KafkaConsumer(
        commands,
        **sasl.config("sink"),
        group_id=f"other-{uuid.uuid4().hex[:6]}",
        request_timeout_ms=TIMEOUT_MS + 25_000,
    )
    try:
        with pytest.raises(KafkaError, match="GroupAuthorizationFailed"):
            wait_until(lambda: stranger.poll(timeout_ms=500), 20, "a refusal")
    finally:
        stranger.close()
