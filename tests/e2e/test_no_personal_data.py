"""Issue 11, data protection: the demo runs on the real stack (a small world, the same code as
`make demo`), then every log line its processes wrote (PostgreSQL's server log included), every
dead letter's headers, every metric label and every error text is scanned for every personal
value the demo put into its stores; none may be there.

What counts as personal here (values of the synthetic world, :mod:`ebbtide.demo.scenario`):
  - names: a customer's full name (also as billing and payer name, domain and SSL contact name),
    and each word of it of at least MIN_WORD characters (shorter ones, like 'Kano', are too
    likely to occur by chance);
  - e-mail addresses (customer, order contact, domain and SSL contacts, newsletter);
  - phone numbers, as written (+47 9xxxxxxx) and compact (+479xxxxxxx, 9xxxxxxx);
  - postal addresses: the whole address and its street and number (the street alone, or the
    town, is shared by many people and is not);
  - IP addresses: the one an order was placed from, and the clients in the log store's lines;
  - domain names of the customers' domains: a private person's domain can name them. They are
    the refs of domain contacts and so, by design, in the worker's state, its decisions and its
    certificates (what this scan does not cover); they must not be in logs, dead-letter reasons,
    metric labels or error texts all the same;
  - the support tickets' texts, and national ids (the scenario has none today; any it gets is
    included).
Not personal values here: subject ids (``cust-00042``) and record keys (row numbers, order and
site ids), which are the pipeline's pseudonymous identifiers and appear in decisions and
receipts by design; certificate, agreement and service ids; amounts and times; values shorter
than MIN_LENGTH characters.

The sources: the log file of each child process (worker, the sinks of every store), PostgreSQL's
server log (only what was written during the test), the log records and stdout/stderr of this
process (the demo's own output and the vendor stand-in, which runs in it), the headers of every
dead letter (not their key or value: a dead letter keeps the original message so it can be
replayed, and a poison event's payload may name its person), each process's /metrics text (names,
label names and values), and the ``reason`` of every receipt (the stores' error texts).

So that the dead-letter scan is not of an empty topic, the demo's events get two poison events
carrying a customer's personal values: one dated outside the accepted years, one with a record
key over the size limit. Both must reach the DLQ, and their reasons must not quote them.
"""

from __future__ import annotations

import logging
import re
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from ebbtide.demo import database
from ebbtide.demo import run as demo_run
from ebbtide.demo import scenario as demo_scenario
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DELETION_RECEIPT, LIFECYCLE_EVENT, codec_for
from ebbtide.tools import dlq
from ebbtide.tools.state_reader import read_to_end
from tests.support import drop_topics, state_dir

CUSTOMERS = 30
SEED = 20261127  # not the demo's default, so other runs' values are not ours
UNTIL = datetime(2032, 1, 1, tzinfo=UTC)
STEP_DAYS = 28
MIN_LENGTH = 5  # shorter values are too generic to be told from other text
MIN_WORD = 6  # a single name word, e.g. a surname alone

# How a value is matched: not inside a longer word, number, address or domain (so 192.0.2.1 does
# not match inside 192.0.2.15, nor a phone number inside a longer run of digits).
_BEFORE = r"(?<![\w.@+-])"
_AFTER = r"(?![\w@-])"


@dataclass(frozen=True)
class Personal:
    kind: str
    value: str


@dataclass
class Scanner:
    """Finds the personal values of a scenario in texts; tells the kind, never the value."""

    values: set[Personal] = field(repr=False)  # a failing test must not print them
    _patterns: list[tuple[str, re.Pattern[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, list[str]] = {}
        for p in self.values:
            by_kind.setdefault(p.kind, []).append(p.value)
        self._patterns = []
        for kind, values in sorted(by_kind.items()):
            # Longest first, so an alternative is not cut short by a prefix of it.
            alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
            flags = 0 if kind == "name word" else re.IGNORECASE  # a word as names are written
            self._patterns.append((kind, re.compile(f"{_BEFORE}(?:{alternatives}){_AFTER}", flags)))

    def kinds_in(self, text: str) -> Counter[str]:
        """How many personal values of each kind ``text`` holds (whitespace runs read as one
        space, so a value wrapped across lines is found too)."""
        found: Counter[str] = Counter()
        for candidate in {text, re.sub(r"\s+", " ", text)}:
            for kind, pattern in self._patterns:
                n = len(pattern.findall(candidate))
                found[kind] = max(found[kind], n)
        return +found


def personal_values(sc: demo_scenario.Scenario) -> set[Personal]:
    """Every personal value the scenario puts into the stores (see the module's docstring)."""
    out: set[Personal] = set()

    def add(kind: str, value: Any) -> None:
        if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH:
            out.add(Personal(kind, value.strip()))

    def name(value: str) -> None:
        add("name", value)
        for word in value.split():
            if len(word) >= MIN_WORD:
                add("name word", word)

    for c in sc.customers:
        name(c["name"])
        add("e-mail address", c["email"])
        phone = c["phone"]
        add("phone number", phone)
        add("phone number", phone.replace(" ", ""))
        add("phone number", phone.split()[-1])
        address = c["address"]
        add("postal address", address)
        add("postal address", address.split(",")[0])  # street and number
    for d in sc.domains:
        name(d["name"])
        add("e-mail address", d["email"])
        add("domain name", d["domain"])
        add("national id", d["national_id"])
    for s in sc.certificates:
        name(s["name"])
        add("e-mail address", s["email"])
    for o in sc.orders:
        add("IP address", o["ordered_from_ip"])
        add("e-mail address", o["contact_email"])
    for n in sc.subscriptions:
        add("e-mail address", n["email"])
    for i in sc.invoices:
        name(i["billing_name"])
        add("postal address", i["billing_address"])
    for p in sc.payments:
        name(p["payer_name"])
    for t in sc.tickets:
        add("support ticket text", t["body"])
    for day in sc.log_days:
        for _, _, client_ip, _ in database.log_lines(day):
            add("IP address", client_ip)
    return out


def poison_events(sc: demo_scenario.Scenario) -> list[dict[str, Any]]:
    """Two events the worker must dead-letter, carrying a customer's personal values: an
    announcement dated before the accepted years (1990-2100) whose record key is the customer's
    e-mail address, and one whose record key (name, address, phone) is over the 512 characters
    allowed. The first passes the client's checks and goes in the demo's scenario; the client
    refuses the second (its text limit), so it is sent past the client (:func:`send_past_client`)."""
    c = sc.customers[0]

    def written(event_id: str, when: str, key: str) -> dict[str, Any]:
        return {
            "event_id": f"poison-{event_id}",
            "type": "RecordWritten",
            "subject_id": c["subject_id"],
            "event_time": when,
            "producer": demo_scenario.PRODUCER,
            "payload": {"store": demo_scenario.STORE, "category": "client", "record_key": key},
        }

    long_key = f"{c['name']}, {c['address']}, {c['phone']} " + "x" * 600
    return [
        written("too-early", "1985-06-01T12:00:00Z", c["email"]),
        written("too-long", "2019-06-01T12:00:00Z", long_key),
    ]


PAST_CLIENT = {"poison-too-long"}  # what the client refuses: a producer not using it sends it


def send_past_client(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Encode and send ``events`` as a producer that does not use Ebbtide's client would, keyed
    by subject (the record key is checked by the worker alone)."""
    from ebbtide.runtime.kafka import producer
    from ebbtide.tools.client import to_record

    out = producer(settings)
    try:
        for event in events:
            key = event["payload"]["record_key"]
            record = to_record({**event, "payload": {**event["payload"], "record_key": "k"}})
            record["payload"] = (record["payload"][0], {**record["payload"][1], "record_key": key})
            value = codec_for(LIFECYCLE_EVENT).encode(record)
            out.send(Topics(settings.topic_prefix).events, key=event["subject_id"].encode(), value=value)
        out.flush(timeout=30)
    finally:
        out.close(timeout=5)


@dataclass
class Captured:
    """What the test takes from inside the demo (by wrapping three of its functions)."""

    # Not in the repr: pytest prints a failing test's fixtures, and these hold personal values.
    scenario: demo_scenario.Scenario | None = field(default=None, repr=False)
    running: demo_run.Running | None = None
    metrics: dict[str, str] = field(default_factory=dict, repr=False)  # process -> /metrics text


def raw_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """Wraps the demo's scenario (adds the poison events, keeps the scenario), its start (keeps
    the running processes: their settings, logs and metrics ports) and its last scrape (keeps
    each process's /metrics text, while they still run). Afterwards, deletes the demo's topics
    (its own prefix and app id, derived from the test's settings)."""
    got = Captured()
    build = demo_scenario.build
    start = demo_run._start

    def building(customers: int, seed: int) -> demo_scenario.Scenario:
        sc = build(customers, seed)
        sc.events.extend(p for p in poison_events(sc) if p["event_id"] not in PAST_CLIENT)
        sc.events.sort(key=lambda e: (datetime.fromisoformat(e["event_time"]), e["event_id"]))
        got.scenario = sc
        return sc

    def starting(*args: Any) -> demo_run.Running:
        running = start(*args)
        got.running = running
        assert got.scenario is not None
        send_past_client(
            running.settings, [p for p in poison_events(got.scenario) if p["event_id"] in PAST_CLIENT]
        )
        scrape = running.scrape

        def scraping() -> dict[str, Any]:
            got.metrics = {name: raw_metrics(port) for name, port in running.ports.items()}
            return scrape()

        monkeypatch.setattr(running, "scrape", scraping)
        return running

    monkeypatch.setattr(demo_scenario, "build", building)
    monkeypatch.setattr(demo_run, "_start", starting)
    monkeypatch.setenv("COLUMNS", "400")  # the demo's console: no wrapped or cut lines
    yield got
    if got.running is not None:
        drop_topics(got.running.settings)


def fail_a_statement(dsn: str, customer: dict[str, Any]) -> None:
    """A statement that fails quoting a customer's e-mail address and postal address, as a sink's
    failed batch would quote its keys: PostgreSQL's log must keep neither the error text nor the
    statement."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.DataError):
            cur.execute("SELECT %s::integer, %s::text", (customer["email"], customer["address"]))
    finally:
        conn.close()


def postgres_log() -> Path:
    return state_dir() / "postgres" / "postgres.log"


def read_from(path: Path, offset: int) -> str:
    """``path`` from ``offset`` on (from its start if it is now shorter: rotated)."""
    with path.open("rb") as f:
        if path.stat().st_size >= offset:
            f.seek(offset)
        return f.read().decode("utf-8", errors="replace")


@dataclass
class Findings:
    scanner: Scanner = field(repr=False)
    sources: Counter[str] = field(default_factory=Counter)  # source -> texts scanned
    leaks: list[str] = field(default_factory=list)

    def scan(self, source: str, text: str, where: str = "") -> None:
        self.sources[source] += 1
        for kind, n in sorted(self.scanner.kinds_in(text).items()):
            self.leaks.append(f"{source}{where}: {n} {kind}(s)")

    def scan_lines(self, source: str, text: str) -> None:
        """Scan the whole text (for values wrapped across lines); where it holds any, name the
        lines that do."""
        before = len(self.leaks)
        self.scan(source, text)
        if len(self.leaks) > before:
            for number, line in enumerate(text.splitlines(), 1):
                for kind in sorted(self.scanner.kinds_in(line)):
                    self.leaks.append(f"  {source} line {number}: {kind}")


def headers_text(headers: Iterable[tuple[str, bytes]]) -> str:
    return "\n".join(f"{k}: {v.decode('utf-8', errors='replace')}" for k, v in headers)


def test_the_demo_writes_no_personal_value_to_logs_dlq_metrics_or_error_texts(
    settings: Settings,
    captured: Captured,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    for ours in ("ebbtide", "sinks", "streams", "schemas"):
        caplog.set_level(logging.DEBUG, logger=ours)
    pg_log = postgres_log()
    assert pg_log.exists(), f"PostgreSQL's server log is not at {pg_log} (EBBTIDE_STATE_DIR?)"
    pg_offset = pg_log.stat().st_size

    code = demo_run.run_demo(settings, customers=CUSTOMERS, seed=SEED, until=UNTIL, step_days=STEP_DAYS)
    out, err = capfd.readouterr()
    assert captured.scenario is not None and captured.running is not None, out + err
    assert code == 0, f"the demo's own checks failed:\n{out}\n{err}"
    running, sc = captured.running, captured.scenario
    fail_a_statement(settings.require_pg_dsn(), sc.customers[0])

    scanner = Scanner(personal_values(sc))
    kinds = {p.kind for p in scanner.values}
    assert {"name", "e-mail address", "phone number", "postal address", "IP address", "domain name"} <= kinds
    findings = Findings(scanner)

    # The logs of the worker and of every sink process.
    for child in running.children.values():
        text = child.log.read_text(encoding="utf-8", errors="replace")
        assert text.strip(), f"the {child.name} wrote no log at {child.log}"
        findings.scan_lines(f"log of the {child.name} ({child.log.name})", text)
    # PostgreSQL's server log, what it wrote during the demo.
    findings.scan_lines(f"PostgreSQL's server log ({pg_log.name})", read_from(pg_log, pg_offset))
    # This process: the demo's output, and the log records of what ran in it (the vendor stand-in).
    findings.scan_lines("the demo's stdout", out)
    findings.scan_lines("the demo's stderr", err)
    records = "\n".join(r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "") for r in caplog.records)
    findings.scan_lines("log records of the demo process (vendor stand-in included)", records)

    # The dead letters: headers only (their key and value are the original message, kept to replay).
    letters = list(dlq.read(running.settings))
    events = codec_for(LIFECYCLE_EVENT)
    dead = {
        events.decode(letter.value)["event_id"]
        for letter in letters
        if letter.source_topic == Topics(running.settings.topic_prefix).events and letter.value
    }
    poisons = {p["event_id"] for p in poison_events(sc)}
    assert poisons <= dead, f"poison events not dead-lettered: {[letter.reason for letter in letters]}"
    for letter in letters:
        findings.scan(
            "a dead letter's headers", headers_text(letter.headers), f" ({letter.partition}@{letter.offset})"
        )

    # The metrics of every process: names, label names and values.
    assert set(captured.metrics) == set(running.ports), "the demo's last scrape did not run"
    for name, text in captured.metrics.items():
        assert "ebbtide_" in text, f"no metrics from the {name}"
        findings.scan_lines(f"/metrics of the {name}", text)

    # The stores' error texts: the reason of every receipt (and the receipts' headers).
    codec = codec_for(DELETION_RECEIPT)
    receipts = list(read_to_end(running.settings, Topics(running.settings.topic_prefix).receipts))
    assert receipts, "the demo's stores sent no receipt"
    for message in receipts:
        receipt = codec.decode(message.value)
        findings.scan("a receipt's reason", str(receipt.get("reason") or ""), f" ({receipt['store']})")
        findings.scan("a receipt's headers", headers_text(message.headers or []), f" ({receipt['store']})")

    leaks = findings.leaks
    assert not leaks, (
        "personal values of the demo's customers found (kinds, not values) in:\n"
        + "\n".join(leaks)
        + f"\n(scanned: {dict(findings.sources)})"
    )


def test_the_scanner_finds_a_planted_value_and_tells_its_kind_not_the_value() -> None:
    """The check above can fail: each kind of value planted in a copy of a real log line is found."""
    sc = demo_scenario.build(customers=8, seed=SEED)
    scanner = Scanner(personal_values(sc))
    line = "2026-11-27 18:33:52,265 ERROR sinks.base.loop: batch not completed (VendorUnavailable); retrying"
    assert not scanner.kinds_in(line)
    c, order = sc.customers[0], sc.orders[-1]
    words = [w for p in scanner.values if p.kind == "name word" for w in [p.value]]
    planted = {
        "e-mail address": c["email"].upper(),
        "phone number": c["phone"].replace(" ", ""),
        "postal address": c["address"].split(",")[0],
        "IP address": order["ordered_from_ip"],
        "name": c["name"].replace(" ", "\n    "),  # wrapped across lines
    }
    if sc.domains:
        planted["domain name"] = sc.domains[0]["domain"]
    for kind, value in planted.items():
        found = scanner.kinds_in(line.replace("(VendorUnavailable)", f"({value})"))
        assert kind in found, (kind, found)
    assert words, "no name word to plant"
    assert "name word" in scanner.kinds_in(f"{line} {words[0]}")
    # Not inside a longer value: another address of the range, a longer number.
    assert "IP address" not in scanner.kinds_in(f"{line} {order['ordered_from_ip']}99")
    assert "phone number" not in scanner.kinds_in(f"{line} 1{c['phone'].split()[-1]}")

    findings = Findings(scanner)
    findings.scan_lines("a planted log", f"{line}\n{line} {c['email']}\n")
    assert findings.leaks == ["a planted log: 1 e-mail address(s)", "  a planted log line 2: e-mail address"]
    assert c["email"] not in "\n".join(findings.leaks)
