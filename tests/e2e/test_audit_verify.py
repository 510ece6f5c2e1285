"""``ebbtide audit verify`` on a real demo log: it passes, and a copy of one partition with one
byte of one decision changed (or one decision removed) is named at its partition and offset; an
export on disk (the documented JSONL format) verifies offline the same way."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ebbtide.cli import build_parser
from ebbtide.runtime.kafka import await_delivery, close_producer, create_topics, producer
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, codec_for
from ebbtide.tools.audit.chain import Message
from ebbtide.tools.audit.reading import TopicRead
from tests.e2e.demo_log import DemoLog
from tests.support import drop_topics

pytestmark = pytest.mark.e2e


def audit_verify(settings: Settings, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, Any]:
    """Run ``ebbtide audit verify --json [options]`` with ``settings``: its exit code and verdict."""
    args = build_parser().parse_args(["audit", "verify", "--json", *options])
    code = int(args.func(args, settings))
    return code, json.loads(capsys.readouterr().out)


def one_partition(settings: Settings) -> tuple[int, list[Message], list[Message]]:
    """The demo's busiest decisions partition: its decisions and its checkpoints."""
    topics = Topics(settings.topic_prefix)
    decisions = list(TopicRead(settings, topics.decisions))
    busiest = max({m.partition for m in decisions}, key=lambda p: sum(m.partition == p for m in decisions))
    checkpoints = [m for m in TopicRead(settings, topics.checkpoints) if m.partition == busiest]
    return busiest, [m for m in decisions if m.partition == busiest], checkpoints


def changed_byte(value: bytes) -> bytes:
    """``value`` with one byte of its decision's reason text changed."""
    at = value.index(codec_for(DECISION).decode(value)["reason"].encode())
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1 :]


def copy(
    settings: Settings, suffix: str, partition: int, decisions: list[bytes], checkpoints: list[bytes]
) -> Settings:
    """The messages copied to partition ``partition`` of fresh topics; the settings that read them."""
    copied = replace(settings, topic_prefix=f"{settings.topic_prefix}-{suffix}")
    topics = Topics(copied.topic_prefix)
    create_topics(copied, [topics.decisions, topics.checkpoints])
    out = producer(copied)
    try:
        sent = [out.send(topics.decisions, value=v, partition=partition) for v in decisions]
        sent += [out.send(topics.checkpoints, value=v, partition=partition) for v in checkpoints]
        assert await_delivery(out, sent) is None
    finally:
        close_producer(out)
    return copied


def test_audit_verify_passes_on_the_demo_log_and_names_a_changed_byte_or_a_removed_decision(
    demo_log: DemoLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, verdict = audit_verify(demo_log.settings, capsys)
    assert code == 0, verdict["findings"]
    assert sum(p["checkpoints_verified"] for p in verdict["partitions"]) >= 1
    assert sum(p["decisions"] for p in verdict["partitions"]) > 100
    code, later = audit_verify(demo_log.settings, capsys, "--from", "5")  # anchored mid-chain
    assert code == 0 and sum(p["decisions"] for p in later["partitions"]) == sum(
        p["decisions"] - 5 for p in verdict["partitions"]
    )
    code, dated = audit_verify(demo_log.settings, capsys, "--from", "2000-01-01")  # Kafka timestamps
    assert code == 0 and dated["partitions"] == verdict["partitions"]

    partition, decisions, checkpoints = one_partition(demo_log.settings)
    values = [m.value or b"" for m in decisions]
    marks = [m.value or b"" for m in checkpoints]
    k = len(values) // 2
    changed = copy(
        demo_log.settings,
        "changed",
        partition,
        [*values[:k], changed_byte(values[k]), *values[k + 1 :]],
        marks,
    )
    removed = copy(demo_log.settings, "removed", partition, values[:k] + values[k + 1 :], marks)
    try:
        code, verdict = audit_verify(changed, capsys)
        assert code == 1
        first = verdict["findings"][0]
        assert (first["partition"], first["offset"], first["kind"]) == (partition, k, "changed")
        code, verdict = audit_verify(removed, capsys)
        assert code == 1
        first = verdict["findings"][0]
        assert (first["partition"], first["offset"], first["kind"]) == (partition, k, "removed")
    finally:
        drop_topics(changed, changelogs=False)
        drop_topics(removed, changelogs=False)


def test_an_export_on_disk_verifies_offline(
    demo_log: DemoLog,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    partition, decisions, checkpoints = one_partition(demo_log.settings)
    write_export(tmp_path, decisions, checkpoints, demo_log.settings.command_public_key.read_bytes())
    code, verdict = audit_verify(demo_log.settings, capsys, "--export", str(tmp_path))
    assert code == 0 and verdict["partitions"][0]["decisions"] == len(decisions), verdict
    k = len(decisions) // 3
    decisions[k] = replace(decisions[k], value=changed_byte(decisions[k].value or b""))
    write_export(tmp_path, decisions, checkpoints, demo_log.settings.command_public_key.read_bytes())
    code, verdict = audit_verify(demo_log.settings, capsys, "--export", str(tmp_path))
    assert code == 1
    first = verdict["findings"][0]
    assert (first["partition"], first["offset"], first["kind"]) == (partition, decisions[k].offset, "changed")


def write_export(
    directory: Path, decisions: list[Message], checkpoints: list[Message], public_pem: bytes
) -> None:
    """An export in the documented format: one JSON object per message, ``raw`` its value in base64."""
    for name, messages in (("decisions", decisions), ("checkpoints", checkpoints)):
        lines = [
            json.dumps(
                {
                    "topic": name,
                    "partition": m.partition,
                    "offset": m.offset,
                    "timestamp": m.timestamp,
                    "key": None,
                    "raw": base64.b64encode(m.value or b"").decode(),
                    "value": None,
                }
            )
            for m in messages
        ]
        (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "public-key.pem").write_bytes(public_pem)
