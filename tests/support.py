"""Helpers for tests against the real Kafka and PostgreSQL started by the project's scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse, urlunparse

import psycopg2
from kafka import TopicPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.kafka import create_topics
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.tokens import DataKey, Shredded
from ebbtide.schemas import Codec
from ebbtide.tools.processes import free_port
from ebbtide.tools.topics import declared

if TYPE_CHECKING:
    from ebbtide.runtime.authenticity import HoldKeys, MessageSigner, TrustedKeys
    from ebbtide.streams.worker.certify import CertificateSigner

T = TypeVar("T")

# The smallest valid event, in the JSON form `ebbtide publish` and EventPublisher.publish take.
EVENT = {
    "event_id": "e1",
    "type": "CustomerRegistered",
    "subject_id": "cust-1",
    "event_time": "2024-03-01T12:00:00Z",
    "producer": "test",
}


def servers() -> tuple[str, str]:
    """Bootstrap address and test DSN from the environment `make test` provides."""
    bootstrap = os.environ.get("EBBTIDE_KAFKA_BOOTSTRAP")
    dsn = os.environ.get("EBBTIDE_PG_TEST_DSN")
    if not bootstrap or not dsn:
        raise RuntimeError(
            "integration tests need the local stack: run `make test`, or `make stack-up` and "
            "`set -a; . .state/env; set +a` before pytest"
        )
    return bootstrap, dsn


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval of a bounded wait, not a stand-in for one


def unique_settings(bootstrap: str, state_dir: Path, dsn: str | None = None) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"test.{run}",
        partitions=4,
        app_id=f"test-{run}",
        state_dir=state_dir,
        worker_metrics_port=free_port(),
        sink_metrics_port=free_port(),
        worker_web_port=free_port(),
        pg_dsn=dsn,
        session_timeout=6.0,
        clock_mode="replay",  # the tests' clocks are scripted
        topic_replication_factor=1,  # the local stack has one broker
        topic_min_insync_replicas=1,
    )


def drop_topics(settings: Settings, changelogs: bool = True) -> None:
    """Delete a test's topics (its prefix) and its worker's changelogs (its app id; not with
    ``changelogs=False``: a copy of another run's topics under its own prefix shares that run's
    app id): a broker with a small heap serves the whole suite only if tests clean up after
    themselves."""
    admin = kafka.admin(settings, client_id=None)
    prefixes = (
        (f"{settings.topic_prefix}.", f"{settings.app_id}-") if changelogs else (f"{settings.topic_prefix}.",)
    )
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefixes)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def make_topics(settings: Settings, stores: list[str] | None = None) -> Topics:
    topics = Topics(settings.topic_prefix)
    create_topics(settings, declared(settings, stores or ["customer_db"]))
    return topics


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards; yields its DSN."""
    name = f"ebbtide_t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    parts = urlparse(admin_dsn)

    def dropped() -> bool:
        with admin.cursor() as cur:
            try:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except psycopg2.errors.InsufficientPrivilege:
                # A backend of another role (the administrator's, a sink role's) that the test
                # closed still ending: this role may not terminate it. Gone within moments.
                return False
        return True

    try:
        yield urlunparse(parts._replace(path=f"/{name}"))
    finally:
        try:
            wait_until(dropped, 30, f"database {name} dropped (its other roles' connections ended)")
        finally:
            admin.close()


@dataclass
class Received:
    value: dict[str, Any] | None
    raw: bytes
    key: bytes | None
    headers: dict[str, bytes]
    partition: int = 0


@dataclass
class TopicReader:
    """Reads a topic from the beginning, across all partitions, without a consumer group."""

    settings: Settings
    topic: str
    codec: Codec | None = None
    seen: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._consumer = kafka.consumer(self.settings, client_id=None, enable_auto_commit=False)
        partitions = wait_until(
            lambda: self._consumer.partitions_for_topic(self.topic), 30, f"topic {self.topic}"
        )
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self) -> list[Received]:
        for messages in self._consumer.poll(timeout_ms=200).values():
            for m in messages:
                value = revealed(self.codec.decode(m.value)) if self.codec else None
                self.seen.append(Received(value, m.value, m.key, dict(m.headers or []), m.partition))
        return self.seen

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float, what: str
    ) -> list[Received]:
        return wait_until(lambda: predicate(self.poll()) and self.seen, timeout, what)

    def close(self) -> None:
        self._consumer.close()


# Every data key this test process's publishers sealed with (tests/conftest.py records them): a
# test reads the decisions, receipts and certificates it waits for with their values opened, as
# it wrote them ("shredded" for a key it never had), while the topics hold only tokens.
SEALED_WITH: dict[tuple[str, str], DataKey] = {}


class RememberedKeys:
    def find(self, subject_id: str, key_id: str) -> DataKey:
        key = SEALED_WITH.get((subject_id, key_id))
        if key is None:
            raise Shredded(f"key {key_id} is not one this test sealed with")
        return key


def revealed(value: Any, subject: str | None = None) -> Any:
    """A decoded message with every sealed value in it opened with :data:`SEALED_WITH`."""
    from ebbtide.tools.revealing import reveal_text

    if isinstance(value, dict):
        subject = value.get("subject_id", subject)
        return {k: revealed(v, subject) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(revealed(v, subject) for v in value)
    if isinstance(value, str) and subject is not None and "enc:v1:" in value:
        return reveal_text(subject, value, RememberedKeys())
    return value


def demo_database(dsn: str, rows_sql: str) -> str:
    """The demo customer schema in ``dsn``, with the rows ``rows_sql`` inserts; returns ``dsn``."""
    from ebbtide.demo import database as demo_db
    from ebbtide.demo.scenario import build

    demo_db.load(dsn, build(customers=0))
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(rows_sql)
    conn.close()
    return dsn


@contextmanager
def sink_thread(settings: Settings, executor: Any) -> Iterator[threading.Event]:
    """A :class:`~sinks.base.loop.CommandSink` with ``executor`` (made with the yielded stop event's
    twin) running in a thread on the real broker; stopped and joined afterwards."""
    from ebbtide.sinks.base.loop import CommandSink

    make_topics(settings, stores=[executor.store])
    worker_signer(settings)  # the worker's key, whose .pub the sink verifies commands with
    sink = CommandSink(settings, executor, stop=executor.stop)
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    yield executor.stop
    executor.stop.set()
    thread.join(30)
    assert not thread.is_alive()


def commands_and_receipts(
    settings: Settings, store: str, commands: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Send ``commands`` (signed here with the worker's test key, :func:`signed_command`) to the
    store's command topic; the receipts, once there is one each."""
    from ebbtide.runtime.kafka import producer
    from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for

    topics = Topics(settings.topic_prefix)
    out = producer(settings)
    codec = codec_for(DELETION_COMMAND)
    for command in commands:
        value = codec.encode(signed_command(settings, command))
        out.send(topics.commands(store), key=command["subject_id"].encode(), value=value)
    out.flush()
    out.close()
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    try:
        got = receipts.wait_for(lambda seen: len(seen) >= len(commands), 60, f"{len(commands)} receipts")
    finally:
        receipts.close()
    return [r.value for r in got if r.value is not None]


def deletion_command(
    store: str,
    category: str,
    key: str,
    *,
    command_id: str,
    subject: str = "cust-00001",
    rule_id: str = "account",
    deadline: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    issued_at: datetime = datetime(2025, 1, 2, tzinfo=UTC),
) -> dict[str, Any]:
    """A DeleteRecord command as a sink decodes it (deletion_command.v1), for the sink tests."""
    return {
        "command_id": command_id,
        "subject_id": subject,
        "store": store,
        "category": category,
        "record_key": key,
        "rule_id": rule_id,
        "policy_version": "v1+test",
        "deadline": deadline,
        "issued_at": issued_at,
    }


# -- authenticity: the one way tests sign what the worker or a sink would sign ----------------------


def worker_signer(settings: Settings) -> CertificateSigner:
    """The worker's signer of ``settings`` (its key made under the state directory if missing, with
    the .pub a sink of the same settings verifies commands with)."""
    from ebbtide.streams.worker.certify import CertificateSigner

    return CertificateSigner.from_file(settings.signing_key, "Test ISP")


def signed_command(settings: Settings, command: dict[str, Any]) -> dict[str, Any]:
    """``command`` signed as the worker of ``settings`` signs it: what its sinks accept."""
    return worker_signer(settings).sign_command(command)


def sink_signer(settings: Settings, store: str) -> MessageSigner:
    """The receipt key of ``store``'s sink under ``settings`` (made if missing): the one the
    worker of the same settings trusts (``sink-<store>.pub`` in its trusted-keys directory)."""
    from ebbtide.runtime.authenticity import MessageSigner

    return MessageSigner.from_file(settings.sink_key_for(store), f"test receipt key of {store}")


def signed_receipt(settings: Settings, receipt: dict[str, Any]) -> dict[str, Any]:
    """``receipt`` signed as its store's sink under ``settings`` signs it."""
    from ebbtide.runtime.authenticity import RECEIPT

    return sink_signer(settings, receipt["store"]).sign(RECEIPT, receipt)


def hold_signer(settings: Settings) -> MessageSigner:
    """The legal hold signing key the worker of ``settings`` trusts by default (the local pair
    ``<state dir>/keys/holds.key``, made if missing): what signs the tests' hold events."""
    from ebbtide.runtime.authenticity import MessageSigner

    return MessageSigner.from_file(settings.local_hold_signing_key, "test legal hold signing key")


_UNIT_HOLD_KEY: list[MessageSigner] = []


def unit_hold_signer() -> MessageSigner:
    """A test legal hold signing key kept in memory (unit tests of the processor)."""
    from ebbtide.runtime import keys
    from ebbtide.runtime.authenticity import MessageSigner

    if not _UNIT_HOLD_KEY:
        _UNIT_HOLD_KEY.append(MessageSigner(keys.generate_key()[0]))
    return _UNIT_HOLD_KEY[0]


def unit_hold_keys() -> HoldKeys:
    """The hold keys of a processor under unit test: :func:`unit_hold_signer`'s public key."""
    from ebbtide.runtime.authenticity import HoldKeys

    return HoldKeys([unit_hold_signer().public_pem])


_UNIT_SINK_KEYS: dict[str, MessageSigner] = {}


def unit_sink_signer(store: str) -> MessageSigner:
    """A test receipt key of ``store`` kept in memory (unit tests of the processor)."""
    from ebbtide.runtime import keys
    from ebbtide.runtime.authenticity import MessageSigner

    if store not in _UNIT_SINK_KEYS:
        _UNIT_SINK_KEYS[store] = MessageSigner(keys.generate_key()[0])
    return _UNIT_SINK_KEYS[store]


def unit_trusted_keys() -> TrustedKeys:
    """Trusted keys of a processor under unit test: every store's :func:`unit_sink_signer` key."""
    from ebbtide.runtime.authenticity import TrustedKeys, Verifier

    class _Trusted(TrustedKeys):
        def verifier(self, store: str) -> Verifier:
            return Verifier(unit_sink_signer(store).public_pem)

    return _Trusted()


def state_dir() -> Path:
    """The local stack's state directory (as deploy/local/*.sh resolve it)."""
    return Path(os.environ.get("EBBTIDE_STATE_DIR") or Path(__file__).resolve().parent.parent / ".state")


def admin_dsn(dsn: str) -> str:
    """The administrator's DSN (roles, DROP OWNED) for ``dsn``'s database: EBBTIDE_PG_ADMIN_DSN, or
    the local stack's ``postgres/admin-dsn``; ``dsn`` itself on a cluster made before the
    application role lost SUPERUSER (no admin DSN there)."""
    admin = os.environ.get("EBBTIDE_PG_ADMIN_DSN")
    if not admin:
        path = state_dir() / "postgres" / "admin-dsn"
        if not path.exists():
            return dsn
        admin = path.read_text().strip()
    return urlunparse(urlparse(admin)._replace(path=urlparse(dsn).path))


def security_events(source: str, kind: str) -> float:
    """ebbtide_security_events_total{source, kind} in this process (0 before the first)."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("ebbtide_security_events_total", {"source": source, "kind": kind})
    return value or 0.0


def build_wheel(source: Path, out: Path) -> Path:
    """The project's wheel built from the tree at ``source`` into ``out`` (pip, no dependencies,
    no build isolation: the dev extra pins setuptools); its path."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=240,
    )
    (built,) = out.glob("ebbtide-*.whl")
    return built
