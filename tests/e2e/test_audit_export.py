"""``ebbtide audit export`` on the demo's log (the ``demo_log`` run), as an auditor runs it: the
files against what a plain consumer reads from the broker, the manifest's hashes, and the report
in headless Chromium (it renders, its links resolve, it loads nothing, its totals are the JSONL's)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.processes import settings_env
from ebbtide.tools.state_reader import read_to_end
from tests.e2e.demo_log import DemoLog
from tests.report_check import Page, chromium_dom

FILES = ("events", "decisions", "commands", "receipts", "certificates", "answers", "checkpoints")
Place = tuple[str, int, int]


@dataclass(frozen=True)
class Raw:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: bytes | None


@pytest.fixture(scope="module")
def broker(demo_log: DemoLog) -> dict[str, list[Raw]]:
    """Every message of the demo's topics, by export file, as a plain consumer reads them."""
    settings = demo_log.settings
    topics = Topics(settings.topic_prefix)
    from ebbtide.runtime import kafka

    consumer = kafka.consumer(settings)
    try:
        existing = consumer.topics()
    finally:
        consumer.close()
    sources = {name: [getattr(topics, name)] for name in FILES if name != "commands"}
    sources["commands"] = sorted(t for t in existing if t.startswith(topics.commands("")))
    return {
        name: [
            Raw(m.topic, m.partition, m.offset, m.timestamp, m.key.decode() if m.key else None, m.value)
            for topic in names
            for m in read_to_end(settings, topic)
        ]
        for name, names in sources.items()
    }


def export(settings: Settings, out: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ebbtide", "audit", "export", *selection, "--out", str(out)]
    return subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=300)


def exported(out: Path, name: str) -> dict[Place, dict[str, Any]]:
    found = {}
    for text in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        found[(line["topic"], line["partition"], line["offset"])] = line
    return found


def expect(raws: list[Raw], keep: Callable[[Raw], bool]) -> dict[Place, bytes | None]:
    return {(r.topic, r.partition, r.offset): r.value for r in raws if keep(r)}


def check_files(out: Path, expected: dict[str, dict[Place, bytes | None]]) -> None:
    """Each JSONL file holds exactly the expected messages with their bytes; the manifest's
    hashes and line counts are the files'."""
    for name in FILES:
        lines = exported(out, name)
        raw = {place: None if v["raw"] is None else base64.b64decode(v["raw"]) for place, v in lines.items()}
        assert raw == expected[name], f"{name}.jsonl: not the broker's messages"
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for path, described in manifest["files"].items():
        content = (out / path).read_bytes()
        assert described["sha256"] == hashlib.sha256(content).hexdigest(), path
        assert described["lines"] == content.count(b"\n"), path
    assert {f"{name}.jsonl" for name in FILES} | {f"{n}.csv" for n in FILES[:-1]} <= on_disk


def check_report(out: Path) -> Page:
    """The report as Chromium builds it: rendered, self-contained, its totals the JSONL's."""
    dom = chromium_dom(out / "report.html")
    page = Page(dom)
    assert "report" in page.ids and "main" in page.tags, "Chromium did not render the report's body"
    assert "default-src 'none'" in dom
    assert page.problems() == []
    for name in FILES:
        count = len((out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines())
        assert page.counts[f"total-{name}"] == count, f"the report's total of {name} is not the JSONL's"
    return page


def test_a_subject_with_a_certificate_exports_its_log_verifiably(
    demo_log: DemoLog,
    broker: dict[str, list[Raw]],
    tmp_path: Path,
) -> None:
    subject = sorted({r.key for r in broker["certificates"] if r.key})[0]
    out = tmp_path / "export"
    done = export(demo_log.settings, out, "--subject", subject)
    assert done.returncode == 0, done.stderr
    mine = [r.partition for r in broker["decisions"] if r.key == subject]
    chain = {name: expect(raws, lambda r: r.key == subject) for name, raws in broker.items()}
    chain["decisions"] = expect(broker["decisions"], lambda r: r.partition in mine)
    chain["checkpoints"] = expect(broker["checkpoints"], lambda r: r.partition in mine)
    check_files(out, chain)
    verify = [sys.executable, "-m", "ebbtide", "audit", "verify", "--export", str(out), "--json"]
    verified = subprocess.run(verify, env=settings_env(demo_log.settings), capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verdict = json.loads(verified.stdout)
    assert sum(p["decisions"] for p in verdict["partitions"]) == len(chain["decisions"]), verdict
    selected = {p for p, line in exported(out, "decisions").items() if line["selected"]}
    assert selected == set(expect(broker["decisions"], lambda r: r.key == subject)) != set()
    assert len(chain["decisions"]) > len(selected), "the chain holds other subjects' decisions too"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["subject"] == subject and manifest["subjects"] == [subject]
    assert manifest["policy_versions"] and manifest["keys"]["public-key.pem"]["key_id"]
    page = check_report(out)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.count('class="verdict valid"') == len(chain["certificates"]) > 0
    assert "store-keys/sink-customer_db.pub" in manifest["keys"] and page.counts["subject-count"] == 1


def period_of(raws: list[Raw]) -> tuple[int, int]:
    stamps = sorted(r.timestamp for r in raws)
    return stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]


def in_period(raws: list[Raw], start: int, end: int) -> dict[Place, bytes | None]:
    """The documented rule, by a scan: per partition, from the first message at or after start
    to the first at or after end (excluded)."""
    found: dict[Place, bytes | None] = {}
    partitions = sorted({(r.topic, r.partition) for r in raws})
    for topic, partition in partitions:
        ordered = sorted(
            (r for r in raws if (r.topic, r.partition) == (topic, partition)), key=lambda r: r.offset
        )
        first = next((i for i, r in enumerate(ordered) if r.timestamp >= start), len(ordered))
        stop = next((i for i, r in enumerate(ordered) if r.timestamp >= end), len(ordered))
        found.update({(r.topic, r.partition, r.offset): r.value for r in ordered[first:stop]})
    return found


def test_a_period_exports_every_message_in_it_and_nothing_else(
    demo_log: DemoLog,
    broker: dict[str, list[Raw]],
    tmp_path: Path,
) -> None:
    from ebbtide.tools.export.decoding import ms_text

    start, end = period_of(broker["decisions"])
    out = tmp_path / "period"
    done = export(demo_log.settings, out, "--period", f"{ms_text(start)}..{ms_text(end)}")
    assert done.returncode == 0, done.stderr
    expected = {name: in_period(raws, start, end) for name, raws in broker.items()}
    chains = {partition for _, partition, _ in expected["decisions"]}  # a checkpoint of another: unverifiable
    expected["checkpoints"] = {p: v for p, v in expected["checkpoints"].items() if p[1] in chains}
    assert 0 < len(expected["decisions"]) < len(broker["decisions"])
    check_files(out, expected)
    verify = [sys.executable, "-m", "ebbtide", "audit", "verify", "--export", str(out)]
    verified = subprocess.run(verify, env=settings_env(demo_log.settings), capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr  # a period's chains verify offline
    page = check_report(out)
    subjects = {r.key for name, raws in broker.items() if name != "checkpoints" for r in raws}
    assert 1 < page.counts["subject-count"] <= len(subjects)


def test_an_unknown_subject_is_one_line_and_writes_nothing(
    demo_log: DemoLog,
    tmp_path: Path,
) -> None:
    out = tmp_path / "none"
    done = export(demo_log.settings, out, "--subject", "nobody-at-all")
    assert done.returncode == 1 and list(tmp_path.iterdir()) == []
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("ebbtide audit export: empty selection: no message of subject 'nobody-at-all'")
    )
