"""Schema evolution check: every version of a schema must stay readable both ways.

Backward: a new reader reads data written with any older version. Forward: readers already
deployed (older versions) read data written with the new version. The check itself is
Apache Avro's ``ReaderWriterCompatibilityChecker``.
"""

from __future__ import annotations

from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from ebbtide.schemas.codec import SCHEMA_DIR, SchemaFile, schema_files


def _avro(path: Path) -> avro.schema.Schema:
    return avro.schema.parse(path.read_text())


def incompatibilities(reader: Path | str, writer: Path | str) -> list[str]:
    """Why ``reader`` cannot read what ``writer`` wrote (empty when it can)."""
    r = _avro(reader) if isinstance(reader, Path) else avro.schema.parse(reader)
    w = _avro(writer) if isinstance(writer, Path) else avro.schema.parse(writer)
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(r, w)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = [k.name for k in result.incompatibilities]
    found = zip(kinds, result.messages, result.locations, strict=False)
    return sorted({f"{kind} ({message}) at {where}" for kind, message, where in found} or {"incompatible"})


# Schemas whose older readers need not read newer data (BACKWARD, as a schema registry calls it),
# with the reason; every other schema must stay readable both ways (FULL).
BACKWARD_ONLY = {
    "lifecycle_event": (
        "a new event type is a new branch of the payload union, which no older reader can read; "
        "the worker (the events' only reader) is upgraded before the producers that send it"
    ),
}


def check_directory(directory: Path = SCHEMA_DIR) -> list[str]:
    """Problems across every pair of versions of each schema in ``directory``: a new version
    must read all older data, and older readers must read newer data unless the schema is
    :data:`BACKWARD_ONLY`."""
    problems = []
    by_name: dict[str, list[SchemaFile]] = {}
    for schema in schema_files(directory):
        by_name.setdefault(schema.name, []).append(schema)
    for name, versions in by_name.items():
        for old in versions:
            for new in versions:
                if old.version >= new.version:
                    continue
                for why in incompatibilities(new.path, old.path):
                    problems.append(f"{name}: v{new.version} cannot read v{old.version} data: {why}")
                if name in BACKWARD_ONLY:
                    continue
                for why in incompatibilities(old.path, new.path):
                    problems.append(f"{name}: v{old.version} readers cannot read v{new.version} data: {why}")
    return problems
