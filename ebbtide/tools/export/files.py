"""Writing an export's files: each file's messages as JSONL and CSV, the keys, and the manifest
with each file's SHA-256 and line count."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ebbtide.tools.export import lines
from ebbtide.tools.export.reading import Message

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ebbtide-audit-export/1"


def write_messages(directory: Path, name: str, messages: Iterable[Message]) -> Iterator[Message]:
    """Write ``name``.jsonl (and ``name``.csv, but for checkpoints) while passing each message on."""
    with_csv = name in lines.COLUMNS
    with (directory / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n") as jsonl:
        table = (directory / f"{name}.csv").open("w", encoding="utf-8", newline="") if with_csv else None
        try:
            writer = csv.writer(table, lineterminator="\r\n") if table is not None else None
            if writer is not None:
                writer.writerow(lines.header(name))
            for message in messages:
                jsonl.write(lines.json_line(message))
                if writer is not None:
                    writer.writerow(lines.csv_row(name, message))
                yield message
        finally:
            if table is not None:
                table.close()


def copy_key(source: Path, target: Path) -> None:
    """Copy a public key file into the export (its directory made as needed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def describe_file(path: Path) -> dict[str, Any]:
    """A file's SHA-256, size and number of lines (JSONL: records; CSV: the header and the rows'
    physical lines, so a cell with a line break counts more than one)."""
    digest = hashlib.sha256()
    count = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            count += chunk.count(b"\n")
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size, "lines": count}


def write_manifest(directory: Path, content: dict[str, Any]) -> Path:
    """``manifest.json`` with ``files``: each file of ``directory`` but itself, by relative path."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    described = {p.relative_to(directory).as_posix(): describe_file(p) for p in files}
    manifest = {"format": MANIFEST_FORMAT, **content, "files": described}
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
