"""`ebbtide log` and `ebbtide answer get` on the real broker: the demo's topics (the session's
`demo_log`) read back through the commands match what a raw consumer finds there; a dead letter
and a message that does not decode, on topics of this test's own."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ebbtide.cli import build_parser
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, DELETION_COMMAND, ERASURE_ANSWER, codec_for
from ebbtide.streams import certificates
from ebbtide.tools import processes
from ebbtide.tools.log import json_safe
from ebbtide.tools.state_reader import read_to_end
from tests.e2e.demo_log import DemoLog

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run an ``ebbtide`` command line with ``settings``: its exit code, stdout and stderr."""

    def running(settings: Settings, *argv: str) -> tuple[int, str, str]:
        args = build_parser().parse_args(list(argv))
        code = int(args.func(args, settings))
        out, err = capsys.readouterr()
        return code, out, err

    return running


def raw(settings: Settings, topic: str, decode: Callable[[bytes], dict[str, Any]]) -> list[dict[str, Any]]:
    """What a plain consumer finds on ``topic``: place and decoded value of each message."""
    return [
        {"partition": m.partition, "offset": m.offset, "value": json_safe(decode(m.value))}
        for m in read_to_end(settings, topic)
    ]


def listed(out: str) -> list[dict[str, Any]]:
    return sorted(
        (
            {"partition": o["partition"], "offset": o["offset"], "value": o["value"]}
            for o in map(json.loads, out.splitlines())
        ),
        key=lambda o: (o["partition"], o["offset"]),
    )


def test_decisions_of_a_subject_are_exactly_those_a_raw_consumer_finds_and_kind_selects_among_them(
    demo_log: DemoLog,
    run: Run,
) -> None:
    settings, topics = demo_log.settings, Topics(demo_log.settings.topic_prefix)
    everything = raw(settings, topics.decisions, codec_for(DECISION).decode)
    answered = [d["value"]["subject_id"] for d in everything if d["value"]["kind"] == "ERASURE_ANSWERED"]
    assert answered, "the demo answered no erasure request"
    subject = answered[0]
    expected = sorted(
        (d for d in everything if d["value"]["subject_id"] == subject),
        key=lambda d: (d["partition"], d["offset"]),
    )
    assert len(expected) > 10

    code, out, err = run(settings, "log", "decisions", "--subject", subject, "--json")
    assert (code, err) == (0, "")
    assert listed(out) == expected

    stamps = sorted(m.timestamp for m in read_to_end(settings, topics.decisions) if m.key == subject.encode())
    middle = datetime.fromtimestamp(stamps[len(stamps) // 2] / 1000, UTC)  # a decision's time is the broker's
    code, out, _ = run(
        settings, "log", "decisions", "--subject", subject, "--since", middle.isoformat(), "--json"
    )
    since = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(since) == sum(s >= stamps[len(stamps) // 2] for s in stamps) < len(expected)
    assert all(datetime.fromisoformat(o["time"].replace("Z", "+00:00")) >= middle for o in since)

    code, out, _ = run(settings, "log", "decisions", "--subject", subject, "--kind", "ERASURE_ANSWERED")
    lines = out.splitlines()
    assert code == 0 and len(lines) == sum(d["value"]["kind"] == "ERASURE_ANSWERED" for d in expected) > 0
    assert f"  {subject}  ERASURE_ANSWERED  duty/erasure/" in lines[0]

    code, _, err = run(settings, "log", "decisions", "--kind", "DELETED")
    assert code == 2 and "is not a decision kind (valid: STAMPED," in err


def test_commands_of_one_store_between_two_times_and_the_certificates(
    demo_log: DemoLog,
    run: Run,
) -> None:
    settings, topics = demo_log.settings, Topics(demo_log.settings.topic_prefix)
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)
    commands = raw(settings, topics.commands("billing_db"), codec_for(DELETION_COMMAND).decode)
    window = [
        c
        for c in commands
        if since <= datetime.fromisoformat(c["value"]["issued_at"].replace("Z", "+00:00")) < until
    ]
    assert 0 < len(window) < len(commands)  # the window selects some, not all
    code, out, _ = run(
        settings,
        "log",
        "commands",
        "--store",
        "billing_db",
        "--since",
        "2026-01-01",
        "--until",
        "2029-01-01",
        "--json",
    )
    assert code == 0 and listed(out) == sorted(window, key=lambda c: (c["partition"], c["offset"]))
    assert {o["topic"] for o in map(json.loads, out.splitlines())} == {topics.commands("billing_db")}

    found = raw(settings, topics.certificates, lambda v: dict(certificates.loads(v)))
    code, out, _ = run(settings, "log", "certificates", "--json")
    assert code == 0 and listed(out) == sorted(found, key=lambda c: (c["partition"], c["offset"]))
    code, out, _ = run(settings, "log", "certificates")
    assert len(out.splitlines()) == len(found) and all("  CERTIFICATE  " in line for line in out.splitlines())


def test_the_answer_to_an_erasure_request_as_json_and_as_pages_in_both_languages(
    demo_log: DemoLog,
    run: Run,
    tmp_path: Path,
) -> None:
    settings = demo_log.settings
    answers = raw(settings, Topics(settings.topic_prefix).answers, codec_for(ERASURE_ANSWER).decode)
    assert answers, "the demo answered no erasure request"
    answer = answers[0]["value"]
    request = answer["request_id"]

    code, out, err = run(settings, "answer", "get", request, "--json")
    assert (code, err) == (0, "") and json.loads(out) == answer

    kept = next(i for i in answer["items"] if i["action"] == "KEEP")
    for lang, title, keep in (
        ("nb", "Svar på kravet ditt om sletting", "Dette beholder vi"),
        ("en", "Answer to your erasure request", "What we keep"),
    ):
        page = tmp_path / f"answer-{lang}.html"
        code, out, _ = run(settings, "answer", "get", request, "--lang", lang, "--html", str(page))
        assert code == 0 and out.startswith(title) and f": {request}" in out and keep in out
        assert kept["record"] in out
        html = page.read_text(encoding="utf-8")
        assert f'<html lang="{lang}">' in html and kept["record"] in html and keep in html

    # --reveal opens the record keys with the person's key (or says it is shredded): no token left
    code, out, err = run(settings, "answer", "get", request, "--reveal", "--json")
    opened = json.loads(out)["items"]
    assert (
        code == 0
        and len(opened) == len(answer["items"])
        and any("enc:v1:" in i["record"] for i in answer["items"])
    )
    for sealed, plain in zip(answer["items"], opened, strict=True):
        assert "enc:v1:" not in plain["record"]
        assert plain["record"].rsplit("/", 1)[0] == sealed["record"].rsplit("/", 1)[0]  # store/category

    code, out, err = run(settings, "answer", "get", "no-such-request")
    assert code == 1 and out == "" and err.count("\n") == 1 and "no answer to that request id" in err


def test_dead_letters_and_a_message_that_does_not_decode(settings: Settings, run: Run) -> None:
    topics = Topics(settings.topic_prefix)
    security = [
        ("reason", b"security: receipt signature does not verify"),
        ("source_topic", topics.receipts.encode()),
        ("source_partition", b"0"),
        ("source_offset", b"4"),
    ]
    out = kafka.producer(settings)
    try:
        sent = [
            out.send(topics.dlq, key=b"cust-1", value=b"alice@example.invalid", headers=security),
            out.send(
                topics.dlq, key=b"cust-2", value=b"x", headers=[("reason", b"lifecycle_event: x: missing")]
            ),
            out.send(topics.decisions, key=b"cust-1", value=b"not avro at all"),
        ]
        assert kafka.await_delivery(out, sent) is None
    finally:
        kafka.close_producer(out)

    code, text, err = run(settings, "log", "dlq", "--kind", "security")
    assert (code, err) == (0, "") and len(text.splitlines()) == 1
    assert (
        f"security  from {topics.receipts}[0]@4: security: receipt signature" in text and "alice" not in text
    )
    code, text, _ = run(settings, "log", "dlq", "--json", "--subject", "cust-2")
    assert [json.loads(line)["value"]["reason_kind"] for line in text.splitlines()] == ["invalid"]
    code, text, err = run(settings, "log", "decisions")
    assert (
        code == 0 and err == "" and "  cust-1  UNDECODABLE  decision: not Avro single-object encoded" in text
    )


def test_follow_shows_what_arrives_until_interrupted(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    out = kafka.producer(settings)

    def dead_letter(reason: bytes) -> None:
        sent = out.send(topics.dlq, key=b"cust-3", value=b"", headers=[("reason", reason)])
        assert kafka.await_delivery(out, [sent]) is None

    dead_letter(b"clock_tick: late")  # before the reader starts: the end it reads to is after this
    command = [sys.executable, "-m", "ebbtide", "log", "dlq", "--follow"]
    follow = subprocess.Popen(
        command, env=processes.settings_env(settings), stdout=subprocess.PIPE, text=True
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in follow.stdout or ()], daemon=True
        ).start()
        assert "  invalid  from -: clock_tick: late" in lines.get(timeout=60)
        dead_letter(b"security: forged tick")  # past that end: shown only when following
        assert "  security  from -: security: forged tick" in lines.get(timeout=60)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=30) == 130
    finally:
        kafka.close_producer(out)
        if follow.poll() is None:
            follow.kill()
            follow.wait()
