"""Issue 14, keep the log, not the personal data: after the demo (its erasures and deletions,
``demo_log``), every topic of the run is read with a real consumer, raw bytes (keys, values and
headers; the worker's changelog included), and no plaintext personal value of a subject whose
copies were all deleted is found in any: the values the scenario gave that subject (names,
e-mail and postal addresses, phone numbers, IP addresses, domain names, ticket texts: the scanner
of test_no_personal_data) and the values its events sealed (record keys, domain names, refs).
Those subjects' data keys are shredded (a ``KEY_SHREDDED`` decision each, its receipt certified,
no key left in the key store), so their tokens now read ``shredded``. A positive control plants
one of the values in a topic of the run and the same scan finds it. The worker's changelog holds
subject states compressed (``streams.worker.state_format``): its values are scanned decoded as
well as raw, and a second control plants a value inside a compressed state.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

from ebbtide import bootstrap
from ebbtide.demo import scenario as demo_scenario
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.tokens import SHREDDED
from ebbtide.runtime.topic_spec import changelog_topic
from ebbtide.schemas import DECISION, codec_for
from ebbtide.sinks.keys.store import KeyStore
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.model import RecordState, SubjectState
from ebbtide.streams.worker import state_format, values
from ebbtide.tools.revealing import reveal_record_id
from ebbtide.tools.sealing import ref_is_sealed
from ebbtide.tools.state_reader import read_to_end
from tests.e2e.demo_log import DemoLog
from tests.e2e.test_no_personal_data import MIN_LENGTH, Personal, Scanner, personal_values

POLICY = bootstrap.policy(Settings())


def run_topics(settings: Settings) -> list[str]:
    """Every topic of the run: its prefix's and its worker's (changelog, leader topic)."""
    admin = kafka.admin(settings, client_id=None)
    try:
        return sorted(
            t
            for t in admin.list_topics()
            if t.startswith((f"{settings.topic_prefix}.", f"{settings.app_id}-"))
        )
    finally:
        admin.close()


def decoded_state(key: bytes | None, value: bytes | None) -> bytes:
    """A changelog value of the worker's state table as JSON text (subject states are stored
    compressed, the other values as msgpack)."""
    if not key or not value:
        return b""
    name = json.loads(key)  # the table's keys are JSON strings
    if name.startswith("s:"):
        return json.dumps(snapshot.dump(state_format.decode(value))).encode()
    return json.dumps(values.decode(name, value), default=repr).encode()


def scan_topics(
    settings: Settings, scanner: Scanner, states: frozenset[str] | None = None
) -> tuple[Counter[str], int]:
    """(kinds of value found, per topic and kind; messages read). The values of the topics in
    ``states`` (default: the worker's changelog) are scanned decoded too."""
    found: Counter[str] = Counter()
    read = 0
    states = frozenset({changelog_topic(settings.app_id)}) if states is None else states
    for topic in run_topics(settings):
        for message in read_to_end(settings, topic):
            read += 1
            parts = [message.key or b"", message.value or b""]
            if topic in states:
                parts.append(decoded_state(message.key, message.value))
            parts += [k.encode() + b"=" + (v or b"") for k, v in message.headers or []]
            text = b"\n".join(parts).decode("utf-8", errors="replace")
            for kind, n in scanner.kinds_in(text).items():
                found[f"{topic}: {kind}"] += n
    return found, read


def subject_scenario(sc: demo_scenario.Scenario, customer: dict[str, Any]) -> demo_scenario.Scenario:
    """The scenario's values of one customer only (entries of its customer or subject id)."""

    def own(entries: list[Any]) -> list[Any]:
        return [
            e
            for e in entries
            if isinstance(e, dict)
            and (
                e.get("customer_id") == customer["customer_id"]
                or e.get("subject_id") == customer["subject_id"]
            )
        ]

    lists = {
        f.name: own(getattr(sc, f.name))
        for f in dataclasses.fields(sc)
        if isinstance(getattr(sc, f.name), list)
    }
    return dataclasses.replace(sc, **{**lists, "log_days": []})


def sealed_values(sc: demo_scenario.Scenario, subject: str) -> set[Personal]:
    """The values the subject's events sealed, as long as the scanner can tell them apart."""
    out = set()
    for event in sc.events:
        if event["subject_id"] != subject:
            continue
        payload = event.get("payload", {})
        for name in ("record_key", "domain", "ref"):
            value = payload.get(name)
            if name == "ref" and not ref_is_sealed(POLICY, str(payload.get("category")).lower()):
                continue  # a ref to a clear id (an invoice id, a consent purpose) is clear by design
            if isinstance(value, str) and len(value) >= MIN_LENGTH:
                out.add(Personal(f"sealed {name}", value))
    return out


def shredded_customers(demo: DemoLog) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the customers with a KEY_SHREDDED decision, every decoded decision)."""
    codec = codec_for(DECISION)
    decisions = [
        codec.decode(m.value)
        for m in read_to_end(demo.settings, Topics(demo.settings.topic_prefix).decisions)
    ]
    shredded = {d["subject_id"] for d in decisions if d["kind"] == "KEY_SHREDDED"}
    return [c for c in demo.scenario.customers if c["subject_id"] in shredded], decisions


def test_no_plaintext_value_of_a_shredded_subject_is_left_in_any_topic_of_the_run(demo_log: DemoLog) -> None:
    settings, sc = demo_log.settings, demo_log.scenario
    gone, decisions = shredded_customers(demo_log)
    erased = {e["subject_id"] for e in sc.events if e["type"] == "ErasureRequested"}
    assert gone, "no customer's key was shredded in the demo run"
    assert erased & {c["subject_id"] for c in gone} or len(gone) >= 3, "no erased customer among them"
    values: set[Personal] = set()
    for customer in gone:
        values |= personal_values(subject_scenario(sc, customer)) | sealed_values(sc, customer["subject_id"])
    kinds = {p.kind for p in values}
    assert {"name", "e-mail address", "sealed record_key"} <= kinds, kinds
    scanner = Scanner(values)

    found, read = scan_topics(settings, scanner)
    topics = run_topics(settings)
    assert f"{settings.app_id}-state-changelog" in topics and Topics(settings.topic_prefix).events in topics
    assert read > 1000, f"only {read} messages read from {topics}"
    assert not found, f"plaintext personal values of shredded subjects (kinds, not values): {dict(found)}"

    # Their keys are gone: each KEY_SHREDDED was answered and certified, their tokens read "shredded".
    keys = KeyStore(settings.require_keys_dsn())
    try:
        for customer in gone:
            subject = customer["subject_id"]
            theirs = [d for d in decisions if d["subject_id"] == subject]
            shreds = [d["record"] for d in theirs if d["kind"] == "KEY_SHREDDED"]
            confirmed = {d["record"] for d in theirs if d["kind"] == "DELETION_CONFIRMED"}
            assert set(shreds) <= confirmed, f"{subject}: a key's destruction is not confirmed"
            sealed = [d["record"] for d in theirs if d["kind"] == "STAMPED" and ":enc:" not in d["record"]]
            assert sealed, f"{subject}: no decision names a sealed record"
            assert all(reveal_record_id(subject, r, keys).endswith(f"/{SHREDDED}") for r in sealed)
    finally:
        keys.close()


def test_the_scan_finds_a_value_planted_in_a_topic_of_the_run(demo_log: DemoLog) -> None:
    """The control: the scan above can fail. One customer's e-mail address and domain name,
    written in clear to a topic of the run, are found there (by kind)."""
    settings, sc = demo_log.settings, demo_log.scenario
    customer = next(c for c in sc.customers if any(d["customer_id"] == c["customer_id"] for d in sc.domains))
    domain = next(d["domain"] for d in sc.domains if d["customer_id"] == customer["customer_id"])
    planted = f"{settings.topic_prefix}.planted"
    kafka.create_topics(settings, [planted])
    try:
        out = kafka.producer(settings)
        try:
            value = f"{customer['email']} {domain}".encode()
            out.send(planted, key=customer["subject_id"].encode(), value=value)
            out.flush(timeout=30)
        finally:
            out.close(timeout=5)
        scanner = Scanner(personal_values(subject_scenario(sc, customer)))
        found, _ = scan_topics(settings, scanner)
    finally:  # the other test scans every topic of the run: not this one's plant
        admin = kafka.admin(settings, client_id=None)
        try:
            admin.delete_topics([planted])
        finally:
            admin.close()
    assert found[f"{planted}: e-mail address"] == 1 and found[f"{planted}: domain name"] == 1, dict(found)


def test_the_scan_finds_a_value_planted_inside_a_compressed_state(demo_log: DemoLog) -> None:
    """The control for the changelog: a state whose record key is a customer's e-mail address,
    compressed as the worker stores it, is found once decoded (not in its raw bytes)."""
    settings, sc = demo_log.settings, demo_log.scenario
    customer = sc.customers[0]
    record = RecordState("customer_db", "client", customer["email"], None, "planted", 0)
    state = SubjectState(customer["subject_id"], records={record.record_id: record})
    stored = state_format.encode_state(state)
    assert customer["email"].encode() not in stored  # compressed: a raw scan would miss it
    planted = f"{settings.topic_prefix}.planted-state"
    kafka.create_topics(settings, [planted])
    try:
        out = kafka.producer(settings)
        try:
            out.send(planted, key=json.dumps(f"s:0:{customer['subject_id']}").encode(), value=stored)
            out.flush(timeout=30)
        finally:
            out.close(timeout=5)
        scanner = Scanner(personal_values(subject_scenario(sc, customer)))
        found, _ = scan_topics(settings, scanner, states=frozenset({planted}))
    finally:
        admin = kafka.admin(settings, client_id=None)
        try:
            admin.delete_topics([planted])
        finally:
            admin.close()
    assert found[f"{planted}: e-mail address"] == 1, dict(found)
