"""``ebbtide audit export``: read the selection from Kafka and write the export directory.

The files are written to a sibling staging directory and moved into place only when the export
is complete, so DIR never holds half an export; an empty selection leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ebbtide import __version__
from ebbtide.runtime import kafka
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools.export import files, views
from ebbtide.tools.export.decoding import iso_ms
from ebbtide.tools.export.keys import PUBLIC_KEY, STORE_KEYS, ExportKeys, find_keys
from ebbtide.tools.export.reading import Message
from ebbtide.tools.export.report import ReportFacts, render_report
from ebbtide.tools.export.report_subject import place
from ebbtide.tools.export.selection import Selection
from ebbtide.tools.export.sources import FILES, Progress, messages, topics_of

REPORT = "report.html"


class ExportError(RuntimeError):
    """Why an export was not written: one line for the user."""


@dataclass(frozen=True)
class Exported:
    """What an export wrote: its directory, lines per JSONL file, the subjects and the notes."""

    out: Path
    counts: dict[str, int]
    selected: dict[str, int]
    subjects: int
    notes: list[str]


def _staging(out: Path) -> Path:
    """A fresh sibling of ``out``; ExportError if ``out`` is not an empty directory or cannot be made."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} is not an empty directory: give a new or empty one")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ExportError(f"cannot write to {out}: {blocked} is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise ExportError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return staging


def _read_all(
    settings: Settings, selection: Selection, staging: Path, progress: Progress
) -> tuple[dict[str, list[Message]], dict[str, int], list[str]]:
    """Write every file of :data:`FILES`; the selected messages by file, the line counts, notes."""
    topics = Topics(settings.topic_prefix)
    kept: dict[str, list[Message]] = {}
    counts: dict[str, int] = {}
    notes: list[str] = []
    consumer = kafka.consumer(settings, enable_auto_commit=False)
    try:
        existing = set(consumer.topics())
        for name in FILES:
            names = topics_of(name, topics, existing)
            missing = [t for t in names if t not in existing]
            if missing or not names:
                what = ", ".join(missing) or f"{topics.commands('')}*"
                notes.append(f"no topic {what}: {name}.jsonl has nothing from it")
            chains = None  # checkpoints: of the exported chains only (one of another is unverifiable)
            if name == "checkpoints":
                chains = {m.fetched.partition for m in kept.get("decisions", [])}
            found = messages(consumer, name, [t for t in names if t in existing], selection, progress, chains)
            kept[name], counts[name] = [], 0
            for message in files.write_messages(staging, name, found):
                counts[name] += 1
                if message.selected:
                    kept[name].append(message)
    finally:
        consumer.close()
    return kept, counts, notes


def _write_keys(staging: Path, found: ExportKeys) -> None:
    for path, pem in found.files():
        (staging / path).parent.mkdir(parents=True, exist_ok=True)
        (staging / path).write_bytes(pem)


def _manifest(
    settings: Settings,
    selection: Selection,
    found: ExportKeys,
    kept: dict[str, list[Message]],
    facts: ReportFacts,
) -> dict[str, Any]:
    """The manifest's content but ``files`` (:func:`files.write_manifest` adds it)."""
    sources = {files_.split("/")[0]: str(source) for files_, source in _key_sources(found)}
    return {
        "created_at": facts.created_at,
        "ebbtide_version": facts.version,
        "selection": selection.describe(),
        "topic_prefix": settings.topic_prefix,
        "policy_versions": list(facts.policy_versions),
        "decision_partitions": sorted({m.fetched.partition for m in kept["decisions"]}),
        "subjects": sorted(
            {views.subject_of(m) for name, found_ in kept.items() if name != "checkpoints" for m in found_}
            - {"", None}  # the clock's CLOCK_APPLIED entries have no subject
        ),
        "records": dict(facts.counts),
        "selected_records": dict(facts.selected),
        "keys": {path: {"key_id": kid, "source": sources[path.split("/")[0]]} for path, kid in found.ids()},
        "notes": list(facts.notes),
    }


def _key_sources(found: ExportKeys) -> list[tuple[str, Path | None]]:
    return [(PUBLIC_KEY, found.public_source), (STORE_KEYS, found.stores_source)]


def export(
    settings: Settings,
    selection: Selection,
    out: Path,
    keys: tuple[Path | None, Path | None] = (None, None),
    progress: Progress = lambda description, total: lambda n: None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Exported:
    """Export ``selection`` into ``out`` (keys: --public-key and --store-keys, None for the
    settings' own). ExportError for an unusable DIR, key or an empty selection."""
    found = find_keys(settings, *keys)
    staging = _staging(out)
    try:
        kept, counts, notes = _read_all(settings, selection, staging, progress)
        selected = {name: len(found_) for name, found_ in kept.items()}
        if not any(n for name, n in selected.items() if name != "checkpoints"):
            what = f"no message of subject {selection.subject!r}" if selection.subject else "no message"
            raise ExportError(
                f"empty selection: {what} in the topics of {settings.topic_prefix} ({selection.title()})"
            )
        _write_keys(staging, found)
        subject_views = views.group(kept)
        verdicts = {
            place(m): views.verify_certificate(m, found.public, found.stores or None)
            for m in kept["certificates"]
        }
        facts = ReportFacts(
            selection=selection.title(),
            created_at=iso_ms(now()),
            version=__version__,
            topic_prefix=settings.topic_prefix,
            policy_versions=views.policy_versions(kept),
            keys=found.ids(),
            notes=[*found.notes, *notes],
            counts=counts,
            selected=selected,
        )
        (staging / REPORT).write_text(render_report(facts, subject_views, verdicts), encoding="utf-8")
        files.write_manifest(staging, _manifest(settings, selection, found, kept, facts))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, counts, selected, len(subject_views), list(facts.notes))
