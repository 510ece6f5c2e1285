"""The PostgreSQL sink against the real database and broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from kafka.partitioner.default import murmur2

from ebbtide.demo import database as demo_db
from ebbtide.demo.scenario import build
from ebbtide.runtime import keys
from ebbtide.runtime.authenticity import COMMAND, MessageSigner, TrustedKeys
from ebbtide.runtime.kafka import producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_COMMAND, DELETION_RECEIPT, codec_for
from ebbtide.sinks.base.tracking import ensure_tracking
from ebbtide.sinks.postgres.executor import PostgresExecutor
from ebbtide.sinks.postgres.sink import PostgresSink
from ebbtide.sinks.postgres.table_map import load_table_map
from tests.support import TopicReader, deletion_command, security_events, signed_command, worker_signer

# Whose rows a key matches in the database the ``loaded`` fixture fills (the sink refuses a
# command whose key matches another subject's rows).
_DEMO = build(customers=5, seed=3)
_OWNERS = {
    "client": {str(c["customer_id"]): c["customer_id"] for c in _DEMO.customers},
    "correspondence": {str(t["ticket_id"]): t["customer_id"] for t in _DEMO.tickets},
    "invoice": {str(i["invoice_id"]): i["customer_id"] for i in _DEMO.invoices},
    "payment": {str(p["payment_id"]): p["customer_id"] for p in _DEMO.payments},
}


def owner(category: str, key: str) -> str:
    """The subject whose rows ``key`` matches in the demo database (cust-00001 for a key of none)."""
    return f"cust-{_OWNERS.get(category, {}).get(key, 1):05d}"


def command(
    category: str, key: str, command_id: str | None = None, subject: str | None = None
) -> dict[str, Any]:
    """A deletion command to customer_db, by default for the subject the key's rows belong to."""
    return deletion_command(
        "customer_db",
        category,
        key,
        command_id=command_id or f"cmd-{category}-{key}",
        subject=subject or owner(category, key),
    )


@pytest.fixture
def loaded(database: str) -> str:
    demo_db.load(database, build(customers=5, seed=3))
    return database


def count(dsn: str, sql: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return int(row[0])


def execute(dsn: str, executor: PostgresExecutor, cmd: dict[str, Any]) -> Any:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        done = executor.execute(cur, cmd)
    conn.close()
    return done


@pytest.fixture
def executor(loaded: str) -> PostgresExecutor:
    conn = psycopg2.connect(loaded)
    ensure_tracking(conn)
    conn.close()
    return PostgresExecutor(load_table_map())


def client_rows(dsn: str, customer: int) -> int:
    """Rows a client command for ``customer`` touches: services, orders and the customer row."""
    return sum(
        count(dsn, f"SELECT count(*) FROM {table} WHERE customer_id = {customer}")
        for table in ("services", "orders", "customers")
    )


def test_a_command_runs_its_category_actions_children_first(loaded: str, executor: PostgresExecutor) -> None:
    services = count(loaded, "SELECT count(*) FROM services WHERE customer_id = 1")
    orders = count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 1")
    all_orders = count(loaded, "SELECT count(*) FROM orders")
    assert services >= 1 and orders >= 1
    done = execute(loaded, executor, command("client", "1"))
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("DELETED", services + orders + 1)
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 1") == 0
    assert count(loaded, "SELECT count(*) FROM services WHERE customer_id = 1") == 0
    assert count(loaded, "SELECT count(*) FROM customers") == 4
    # The orders stay, blanked: no IP, no contact email, no link to the customer.
    assert count(loaded, "SELECT count(*) FROM orders WHERE customer_id = 1") == 0
    blanked = "customer_id IS NULL AND ordered_from_ip IS NULL AND contact_email IS NULL"
    assert count(loaded, f"SELECT count(*) FROM orders WHERE {blanked}") == orders
    assert count(loaded, "SELECT count(*) FROM orders") == all_orders


def test_a_repeated_command_gets_the_same_receipt_and_deletes_nothing_more(
    loaded: str, executor: PostgresExecutor
) -> None:
    first = execute(loaded, executor, command("correspondence", "1"))
    tickets = count(loaded, "SELECT count(*) FROM support_tickets")
    again = execute(loaded, executor, command("correspondence", "1"))
    assert again.repeated and again.encoded == first.encoded
    assert count(loaded, "SELECT count(*) FROM support_tickets") == tickets
    assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 1


def test_a_row_already_gone_is_a_success_receipt(loaded: str, executor: PostgresExecutor) -> None:
    done = execute(loaded, executor, command("correspondence", "999999"))
    assert (done.receipt["outcome"], done.receipt["rows"]) == ("NOT_FOUND", 0)


def test_an_unmapped_category_fails_with_a_reason_and_stays_retryable(
    loaded: str, executor: PostgresExecutor
) -> None:
    done = execute(loaded, executor, command("hosted", "1"))
    assert done.receipt["outcome"] == "FAILED"
    assert "no table for category hosted" in done.receipt["reason"]
    assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 0


@pytest.fixture
def running_sink(settings: Settings, loaded: str) -> Iterator[threading.Event]:
    stop = threading.Event()
    worker_signer(settings)  # the worker key whose .pub the sink verifies commands with
    sink = PostgresSink(settings, load_table_map(), loaded, stop=stop)
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def test_the_sink_consumes_commands_and_publishes_receipts(
    settings: Settings, loaded: str, running_sink: threading.Event
) -> None:
    topics = Topics(settings.topic_prefix)
    out = producer(settings)
    codec = codec_for(DELETION_COMMAND)
    rows = client_rows(loaded, 2) + 1
    for cmd in (command("client", "2"), command("correspondence", "3"), command("client", "2")):
        value = codec.encode(signed_command(settings, cmd))
        out.send(topics.commands("customer_db"), key=cmd["subject_id"].encode(), value=value)
    out.send(topics.commands("customer_db"), key=b"cust-00001", value=b"not a command")
    out.flush()
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    dlq = TopicReader(settings, topics.dlq)
    try:
        got = receipts.wait_for(lambda seen: len(seen) >= 3, 60, "three receipts")
        outcomes = sorted((r.value["command_id"], r.value["outcome"]) for r in got if r.value)
        # Receipts land on their subject's partition, as the Java-compatible murmur2 hash puts its events.
        for receipt in got:
            subject = receipt.value["subject_id"].encode()
            assert receipt.partition == (murmur2(subject) & 0x7FFFFFFF) % settings.partitions
        assert outcomes == [
            ("cmd-client-2", "DELETED"),
            ("cmd-client-2", "DELETED"),
            ("cmd-correspondence-3", "DELETED"),
        ]
        (dead,) = dlq.wait_for(lambda seen: len(seen) >= 1, 30, "the bad command in the DLQ")
        assert dead.raw == b"not a command"
        assert b"not Avro single-object encoded" in dead.headers["reason"]
        assert dead.headers["source_topic"] == topics.commands("customer_db").encode()
    finally:
        receipts.close()
        dlq.close()
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 2") == 0
    assert count(loaded, "SELECT sum(rows) FROM ebbtide_sink.applied_commands") == rows


def test_the_sink_refuses_forged_commands_and_executes_the_workers_signed_one(
    settings: Settings, loaded: str, running_sink: threading.Event
) -> None:
    topics = Topics(settings.topic_prefix)
    codec = codec_for(DELETION_COMMAND)
    forger = MessageSigner(keys.generate_key()[0])
    target = command("client", "4", subject="cust-00004")
    forged = {
        "unsigned": target,
        "other_key": forger.sign(COMMAND, target),
        "bad_signature": {
            **signed_command(settings, command("client", "5", subject="cust-00004")),
            "record_key": "4",
        },
    }
    before = {kind: security_events("commands", kind) for kind in forged}
    rows = client_rows(loaded, 4)
    assert rows >= 1
    out = producer(settings)
    for value in forged.values():
        out.send(topics.commands("customer_db"), key=b"cust-00004", value=codec.encode(value))
    out.flush()
    dlq = TopicReader(settings, topics.dlq)
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    try:
        dead = dlq.wait_for(lambda seen: len(seen) >= 3, 60, "the forged commands in the DLQ")
        reasons = [d.headers["reason"].decode() for d in dead]
        assert reasons == [
            "security: deletion_command: not signed",
            "security: deletion_command: signed by another key than the trusted "
            + worker_signer(settings).key_id,
            "security: deletion_command: bad signature (changed after signing?)",
        ]
        assert client_rows(loaded, 4) == rows  # the customer stays
        assert {kind: security_events("commands", kind) - before[kind] for kind in forged} == dict.fromkeys(
            forged, 1
        )
        assert receipts.poll() == []  # a refused command gets no receipt
        out.send(
            topics.commands("customer_db"),
            key=b"cust-00004",
            value=codec.encode(signed_command(settings, target)),
        )
        out.flush()
        (receipt,) = receipts.wait_for(lambda seen: len(seen) >= 1, 60, "the signed command's receipt")
    finally:
        out.close()
        dlq.close()
        receipts.close()
    assert receipt.value is not None and receipt.value["outcome"] == "DELETED"
    assert client_rows(loaded, 4) == 0
    TrustedKeys(settings.trusted_keys_dir).check(receipt.value)  # signed with the sink's own key


def test_a_signed_command_whose_key_is_another_subjects_is_refused_and_the_right_one_deletes(
    settings: Settings, loaded: str, running_sink: threading.Event
) -> None:
    """A command signed by the worker's own key proves who sent it, not that its key is its
    subject's: the sink checks the key's rows against the map's subject column first."""
    topics = Topics(settings.topic_prefix)
    codec = codec_for(DELETION_COMMAND)
    wrong = command("client", "1", command_id="cmd-wrong-subject", subject="cust-00002")  # customer 1's key
    right = command("client", "1", command_id="cmd-right-subject", subject="cust-00001")
    first, second = client_rows(loaded, 1), client_rows(loaded, 2)
    services = count(loaded, "SELECT count(*) FROM services WHERE customer_id = 1")
    assert first >= 1 and second >= 1 and services >= 1
    before = security_events("commands", "wrong_subject")
    out = producer(settings)
    receipts = TopicReader(settings, topics.receipts, codec_for(DELETION_RECEIPT))
    try:
        out.send(
            topics.commands("customer_db"),
            key=b"cust-00002",
            value=codec.encode(signed_command(settings, wrong)),
        )
        out.flush()
        (refused,) = receipts.wait_for(lambda seen: len(seen) >= 1, 60, "the refused command's receipt")
        assert refused.value is not None
        assert (refused.value["outcome"], refused.value["rows"]) == ("FAILED", 0)
        reason = refused.value["reason"]
        assert "customers" in reason and "another subject" in reason
        assert "1" not in reason.replace("customers", "")  # never the key (nor a value)
        assert security_events("commands", "wrong_subject") == before + 1
        # Nothing of it applied: not even the services, which come before the customer row.
        assert (client_rows(loaded, 1), client_rows(loaded, 2)) == (first, second)
        assert count(loaded, "SELECT count(*) FROM services WHERE customer_id = 1") == services
        assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 0  # not tracked

        out.send(
            topics.commands("customer_db"),
            key=b"cust-00001",
            value=codec.encode(signed_command(settings, right)),
        )
        out.flush()
        got = receipts.wait_for(lambda seen: len(seen) >= 2, 60, "the right command's receipt")
    finally:
        out.close()
        receipts.close()
    deleted = got[-1].value
    assert deleted is not None and (deleted["command_id"], deleted["outcome"]) == (
        "cmd-right-subject",
        "DELETED",
    )
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 1") == 0
    assert client_rows(loaded, 2) == second
    assert security_events("commands", "wrong_subject") == before + 1


def test_in_one_batch_the_wrong_subjects_command_is_refused_alone(
    loaded: str, executor: PostgresExecutor
) -> None:
    second, third = client_rows(loaded, 2), client_rows(loaded, 3)
    tickets = count(loaded, "SELECT count(*) FROM support_tickets WHERE ticket_id = 1")
    batch = [
        command("client", "2", command_id="c-wrong", subject="cust-00003"),
        command("client", "3"),
        command("correspondence", "1", command_id="t-wrong", subject="cust-00004"),  # customer 1's ticket
    ]
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur:
        done = executor.execute_batch(cur, batch)
        one = executor.execute(cur, command("client", "2", command_id="c-wrong-alone", subject="cust-00001"))
    conn.close()
    assert [d.receipt["outcome"] for d in done] == ["FAILED", "DELETED", "FAILED"]
    assert "in customers" in done[0].receipt["reason"] and "in support_tickets" in done[2].receipt["reason"]
    assert (one.receipt["outcome"], one.receipt["reason"]) == ("FAILED", done[0].receipt["reason"])
    assert client_rows(loaded, 2) == second
    assert client_rows(loaded, 3) == 0 and third > 0
    assert count(loaded, "SELECT count(*) FROM support_tickets WHERE ticket_id = 1") == tickets == 1
    applied = count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands")
    assert applied == 1  # only the right command is tracked; a refused one may still be re-issued


def test_a_batch_has_the_effect_and_receipts_of_one_command_at_a_time(
    loaded: str, executor: PostgresExecutor
) -> None:
    execute(loaded, executor, command("correspondence", "1", command_id="already-done"))
    client = client_rows(loaded, 3)
    batch = [
        command("client", "3"),
        command("correspondence", "2"),
        command("correspondence", "1", command_id="already-done"),  # applied in an earlier batch
        command("client", "3"),  # the same command twice in one batch
        command("client", "3", command_id="other-id-same-row"),  # another command for a deleted row
        command("correspondence", "999999"),  # no such row
        command("hosted", "1"),  # no table for the category
    ]
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur:
        done = executor.execute_batch(cur, batch)
    conn.close()
    got = [(d.receipt["outcome"], d.receipt["rows"], d.repeated) for d in done]
    assert got == [
        ("DELETED", client, False),
        ("DELETED", 1, False),
        ("DELETED", 1, True),
        ("DELETED", client, True),
        ("NOT_FOUND", 0, False),
        ("NOT_FOUND", 0, False),
        ("FAILED", 0, False),
    ]
    assert done[3].encoded == done[0].encoded
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id = 3") == 0
    assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 5


def test_a_bad_key_in_a_batch_fails_alone_and_the_rest_is_executed(
    loaded: str, executor: PostgresExecutor
) -> None:
    batch = [command("client", "4"), command("client", "not-a-number"), command("client", "5")]
    conn = psycopg2.connect(loaded)
    with conn, conn.cursor() as cur:
        done = executor.execute_batch(cur, batch)
    conn.close()
    assert [d.receipt["outcome"] for d in done] == ["DELETED", "FAILED", "DELETED"]
    # The first statement: whose rows the key matches, checked before anything is deleted.
    assert done[1].receipt["reason"] == "InvalidTextRepresentation checking the subject in customers"
    assert count(loaded, "SELECT count(*) FROM customers WHERE customer_id IN (4, 5)") == 0


def test_two_sinks_racing_on_the_same_commands_give_the_same_receipts(
    loaded: str, executor: PostgresExecutor
) -> None:
    """In a rebalance two sinks can run one batch at once: one wins, the other answers with its receipts."""
    batch = [command("client", "4"), command("correspondence", "5")]
    first = psycopg2.connect(loaded)
    second = psycopg2.connect(loaded)
    first_cur = first.cursor()
    mine = executor.execute_batch(first_cur, batch)  # holds the row locks until commit
    theirs: list[Any] = []
    waiting = threading.Thread(target=lambda: theirs.extend(_run_batch(second, executor, batch)))
    waiting.start()
    first.commit()
    waiting.join(30)
    first.close()
    second.close()
    assert [t.repeated for t in theirs] == [True, True]
    assert [t.encoded for t in theirs] == [m.encoded for m in mine]
    assert count(loaded, "SELECT count(*) FROM ebbtide_sink.applied_commands") == 2


def _run_batch(conn: Any, executor: PostgresExecutor, batch: list[dict[str, Any]]) -> list[Any]:
    with conn, conn.cursor() as cur:
        return executor.execute_batch(cur, batch)
