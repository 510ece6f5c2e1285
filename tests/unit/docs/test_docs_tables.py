"""The docs' reference tables list exactly what the code has.

- docs/operations.md, *Settings*: one `EBBTIDE_<FIELD>` per field of the ``Settings`` dataclass;
- docs/operations.md, *Metrics*: every Prometheus metric of the metrics module, with its type and
  labels;
- docs/events.md, *Event types*: every branch of the payload union of the newest
  ``schemas/lifecycle_event.v<N>.avsc``.

And every relative link of README.md and docs/ reaches a file (and heading) that exists, and every
file or folder of the repository they name in backquotes exists.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.metrics import MetricWrapperBase

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _first_module(*names: str) -> ModuleType:
    """The first of ``names`` that exists (the modules move; a broken import still fails)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
    raise AssertionError(f"none of {', '.join(names)} exists")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def table_after(page: Path, heading: str) -> list[list[str]]:
    """The rows (cells, header and rule left out) of the first table under ``heading``."""
    lines = page.read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"{page.name}: no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append(_cells(line))
        elif rows:
            break
    assert len(rows) > 2, f"{page.name}: no table under {heading!r}"
    return rows[2:]


def _compare(where: str, documented: list[str], actual: set[str], what: str) -> None:
    duplicates = sorted({name for name in documented if documented.count(name) > 1})
    missing = sorted(actual - set(documented))
    extra = sorted(set(documented) - actual)
    problems = [
        *([f"missing {missing} ({what})"] if missing else []),
        *([f"lists {extra}, which the code does not have"] if extra else []),
        *([f"lists {duplicates} twice"] if duplicates else []),
    ]
    assert not problems, f"{where}: {'; '.join(problems)}"


def test_settings_table_lists_every_setting() -> None:
    settings = _first_module("ebbtide.runtime.settings", "ebbtide.settings").Settings
    rows = table_after(DOCS / "operations.md", "## Settings")
    documented = [name for row in rows for name in re.findall(r"`(EBBTIDE_[A-Z0-9_]+)`", row[0])]
    actual = {f"EBBTIDE_{field.name.upper()}" for field in dataclasses.fields(settings)}
    _compare("docs/operations.md, Settings", documented, actual, "fields of Settings")


def _metrics() -> dict[str, MetricWrapperBase]:
    module = _first_module("ebbtide.runtime.metrics", "ebbtide.metrics")
    found: dict[str, MetricWrapperBase] = {}
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            found[name] = value
    return found


def test_metrics_table_lists_every_metric_with_its_type_and_labels() -> None:
    declared = _metrics()
    assert all(name.startswith("ebbtide_") for name in declared), sorted(declared)
    rows = table_after(DOCS / "operations.md", "## Metrics")
    documented: list[str] = []
    for row in rows:
        match = re.fullmatch(r"`(ebbtide_[a-z0-9_]+)(?:\{([a-z_,]+)\})?`", row[0])
        assert match, f"docs/operations.md, Metrics: {row[0]!r} is not `name{{labels}}`"
        name, labels = match.group(1), tuple(filter(None, (match.group(2) or "").split(",")))
        documented.append(name)
        if name in declared:
            metric = declared[name]
            declared_labels = tuple(metric._labelnames)
            assert labels == declared_labels, f"{name}: labels {labels}, declared {declared_labels}"
            assert row[1] == metric._type, f"{name}: documented as {row[1]}, declared a {metric._type}"
    _compare("docs/operations.md, Metrics", documented, set(declared), "declared in the metrics module")


def _newest_event_schema() -> Path:
    found = sorted(
        (int(m.group(1)), path)
        for path in (ROOT / "schemas").glob("lifecycle_event.v*.avsc")
        if (m := re.fullmatch(r"lifecycle_event\.v(\d+)\.avsc", path.name))
    )
    assert found, "no schemas/lifecycle_event.v<N>.avsc"
    return found[-1][1]


def test_events_table_lists_every_branch_of_the_payload_union() -> None:
    schema = json.loads(_newest_event_schema().read_text(encoding="utf-8"))
    payload = next(field for field in schema["fields"] if field["name"] == "payload")
    actual = {branch["name"].rsplit(".", 1)[-1] for branch in payload["type"] if isinstance(branch, dict)}
    rows = table_after(DOCS / "events.md", "## Event types")
    documented = [name for row in rows for name in re.findall(r"`([A-Z][A-Za-z]+)`", row[0])]
    _compare("docs/events.md, Event types", documented, actual, f"branches of {_newest_event_schema().name}")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lstrip("#").strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(line) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_reach_pages_and_headings_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


# A repository path in backquotes: starts at a top folder, no placeholders (<store>, *, {…}).
_TOP = "ebbtide|streams|sinks|schemas|deploy|chaos|bench|tests|docs"
_PATH = re.compile(rf"`((?:{_TOP})/[A-Za-z0-9_./-]*)`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_paths_named_in_the_docs_exist(page: Path) -> None:
    missing = sorted({p for p in _PATH.findall(page.read_text(encoding="utf-8")) if not (ROOT / p).exists()})
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def test_the_docs_pages_the_code_names_exist() -> None:
    sources = [
        path
        for top in ("ebbtide", "streams", "sinks", "schemas", "deploy", "chaos", "bench")
        for path in (ROOT / top).rglob("*")
        if path.suffix in (".py", ".toml", ".yml", ".sh") and "__pycache__" not in path.parts
    ]
    named = {
        (path.relative_to(ROOT).as_posix(), page)
        for path in sources
        for page in re.findall(r"docs/[a-z-]+\.md", path.read_text(encoding="utf-8"))
    }
    assert named, "no source file names a page of docs/"
    missing = sorted(f"{source}: {page}" for source, page in named if not (ROOT / page).exists())
    assert not missing, missing
