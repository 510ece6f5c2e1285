"""The Kafka ACL plan (ebbtide.tools.acls): each principal gets what its process uses, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.cli import main
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.acls import PREFIXED, AclError, Grant, Principals, password_for, plan, principal, render

SETTINGS = Settings(topic_prefix="p", app_id="app")
TOPICS = Topics("p")
STORES = ["customer_db", "chat_vendor"]


def allowed(grants: list[Grant], who: str) -> set[tuple[str, str, str]]:
    return {(g.operation, g.resource, g.name) for g in grants if g.principal == who}


def writers(grants: list[Grant], topic: str) -> set[str]:
    return {
        g.principal for g in grants if g.resource == "topic" and g.name == topic and g.operation == "WRITE"
    }


def test_each_topic_has_exactly_the_writers_of_its_process() -> None:
    grants = plan(SETTINGS, STORES)
    assert writers(grants, TOPICS.events) == {"User:producer"}
    assert writers(grants, TOPICS.clock) == {"User:clock"}
    assert writers(grants, TOPICS.receipts) == {"User:sink"}
    for store in STORES:
        assert writers(grants, TOPICS.commands(store)) == {"User:worker"}
    for topic in (TOPICS.decisions, TOPICS.answers, TOPICS.certificates):
        assert writers(grants, topic) == {"User:worker"}
    assert writers(grants, TOPICS.dlq) == {"User:worker", "User:sink"}


def test_producers_and_the_clock_get_nothing_else() -> None:
    grants = plan(SETTINGS, STORES, Principals(producers=("User:billing", "User:crm")))
    for producer in ("User:billing", "User:crm"):
        assert allowed(grants, producer) == {("WRITE", "topic", TOPICS.events)}
    assert allowed(grants, "User:clock") == {
        ("WRITE", "topic", TOPICS.clock),
        ("DESCRIBE", "topic", TOPICS.events),
    }


def test_the_worker_reads_its_inputs_in_its_group_and_owns_its_faust_topics() -> None:
    grants = plan(SETTINGS, STORES)
    worker = allowed(grants, "User:worker")
    assert {("READ", "topic", t) for t in (TOPICS.events, TOPICS.clock, TOPICS.receipts)} <= worker
    assert ("READ", "group", "app") in worker
    own = {(g.operation, g.name) for g in grants if g.principal == "User:worker" and g.pattern == PREFIXED}
    assert own == {("CREATE", "app-"), ("READ", "app-"), ("WRITE", "app-")}
    assert not any(g.operation in ("ALL", "ALTER", "DELETE") for g in grants)


def test_a_store_can_have_its_own_sink_principal() -> None:
    grants = plan(SETTINGS, STORES, Principals(sinks={"chat_vendor": "User:chat-sink"}))
    assert allowed(grants, "User:chat-sink") == {
        ("READ", "topic", TOPICS.commands("chat_vendor")),
        ("READ", "group", "p-sink-chat_vendor"),
        ("WRITE", "topic", TOPICS.receipts),
        ("WRITE", "topic", TOPICS.dlq),
    }
    assert ("READ", "topic", TOPICS.commands("chat_vendor")) not in allowed(grants, "User:sink")


def test_the_plan_has_no_duplicates_and_converts_to_kafka_acls() -> None:
    grants = plan(SETTINGS, STORES)
    assert len(grants) == len(set(grants))
    acl = next(g for g in grants if g.pattern == PREFIXED).acl()
    assert acl.resource_pattern.pattern_type.name == "PREFIXED"
    assert acl.permission_type.name == "ALLOW" and acl.host == "*"
    assert "User:producer  WRITE" in render(grants, SETTINGS, STORES)


def test_principals_and_passwords(tmp_path: Path) -> None:
    assert principal("worker") == "User:worker"
    assert principal("User:w") == "User:w"
    with pytest.raises(AclError):
        principal("a b")
    file = tmp_path / "pw"
    file.write_text("# comment\nadmin=s3cret=x\nworker=w\n")
    assert password_for(file, "admin") == "s3cret=x"
    with pytest.raises(AclError, match="no line clock=PASSWORD"):
        password_for(file, "clock")


def test_plan_command_prints_the_acls_of_the_store_map(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "plan", "--store", "customer_db", "--producer", "billing"]) == 0
    out = capsys.readouterr().out
    assert "User:billing" in out and "User:producer" not in out
    assert main(["acls", "plan", "--store", "customer_db", "--store-sink", "billing_db=x"]) == 1
    assert "not covered: billing_db" in capsys.readouterr().err
