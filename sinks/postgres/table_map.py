"""Declarative table maps: per category, the ordered table actions a deletion command runs.

A table map (TOML; the shipped ones are in ``sinks/postgres/maps/``) names its store and, per data
category, an ordered list of table actions::

    store = "customer_db"

    [[categories.client]]          # first: a child table (its rows reference customers)
    table = "services"
    key_column = "customer_id"     # the column that equals the command's record_key
    action = "delete"

    [[categories.client]]          # rows stay (bookkeeping); personal columns are blanked
    table = "orders"
    key_column = "customer_id"
    action = "anonymise"
    columns = ["ordered_from_ip", "contact_email"]   # set to NULL ...
    replace = { contact_email = "erased" }           # ... or to this value

    [[categories.client]]          # last: the parent
    table = "customers"
    key_column = "customer_id"
    action = "delete"
    subject_column = "customer_id" # for `ebbtide backfill`: which subject a row belongs to
    subject_format = "cust-{:05d}"

The actions of a category run in the listed order, so children must come before their parents;
:func:`sinks.postgres.check.check_table_map` verifies that against the database's foreign keys
when a sink starts. ``subject_column``/``subject_format`` say whose a row is: the PostgreSQL sink
refuses a command whose record key matches rows of another subject than the command's
(:mod:`sinks.postgres.executor`), and ``ebbtide backfill`` publishes one RecordWritten event per
row of a table with a ``subject_column``. ``ref_column``/``ref_format`` and ``time_column`` only
serve ``ebbtide backfill``.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.sinks.base.errors import SinkConfigError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
MAP_DIR = Path(__file__).parent / "maps"
DEFAULT_MAP = MAP_DIR / "customer_db.toml"
ACTIONS = ("delete", "anonymise")
Value = str | int | float | bool
_KEYS = {
    "table",
    "key_column",
    "action",
    "columns",
    "replace",
    "subject_column",
    "subject_format",
    "ref_column",
    "ref_format",
    "time_column",
    "note",
}


class TableMapError(SinkConfigError):
    """A table map that cannot be used; the message names the file and the field."""


Fail = Callable[[str, str], TableMapError]


@dataclass(frozen=True)
class TableAction:
    """What a command of ``category`` does to ``table``: delete the rows whose ``key_column``
    equals its record key, or blank ``columns`` in them (NULL, or the ``replace`` value)."""

    category: str
    table: str  # optionally schema-qualified
    key_column: str
    action: str = "delete"  # "delete" | "anonymise"
    columns: tuple[str, ...] = ()
    replace: dict[str, Value] = field(default_factory=dict)
    subject_column: str | None = None
    subject_format: str | None = None
    ref_column: str | None = None
    ref_format: str | None = None
    time_column: str | None = None
    note: str = ""

    @property
    def schema(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def name(self) -> str:
        return self.table.split(".")[-1]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def deletes(self) -> bool:
        return self.action == "delete"

    def value_of(self, column: str) -> Value | None:
        """What an anonymised ``column`` is set to (None: NULL)."""
        return self.replace.get(column)

    def read_columns(self) -> tuple[str, ...]:
        """Columns the sink's statements read: the key, and the anonymised columns (a row whose
        columns are already blank is not touched again)."""
        return tuple(dict.fromkeys((self.key_column, *self.columns)))


@dataclass(frozen=True)
class TableMap:
    store: str
    categories: dict[str, tuple[TableAction, ...]]
    source: str = "<store map>"  # the file it came from, for error messages

    def actions(self, category: str) -> tuple[TableAction, ...]:
        """The category's table actions in execution order (empty if it has none)."""
        return self.categories.get(category, ())

    def all_actions(self) -> Iterator[TableAction]:
        for actions in self.categories.values():
            yield from actions

    def tables(self) -> list[str]:
        """Every mapped table once (schema-qualified), in first-mention order."""
        return list(dict.fromkeys(a.qualified for a in self.all_actions()))


def known_categories() -> tuple[str, ...]:
    """The categories a RecordWritten event can carry (lower case), from the event schema."""
    envelope = codec_for(LIFECYCLE_EVENT).current.parsed
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    written = next(b for b in payload["type"] if b["name"].endswith("RecordWritten"))
    category = next(f for f in written["fields"] if f["name"] == "category")
    return tuple(s.lower() for s in category["type"]["symbols"] if s != "UNKNOWN")


def map_path(name_or_path: str) -> Path:
    """A map given as a path, or as a store id shipped in ``sinks/postgres/maps/`` (``billing_db``)."""
    path = Path(name_or_path)
    if not path.exists() and _IDENT.match(name_or_path):
        shipped = MAP_DIR / f"{name_or_path}.toml"
        if shipped.exists():
            return shipped
    return path


def load_table_map(path: Path = DEFAULT_MAP) -> TableMap:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TableMapError(f"{path}: {exc}") from None
    return parse_table_map(doc, str(path))


def parse_table_map(doc: dict[str, Any], source: str = "<store map>") -> TableMap:
    """Check a parsed table map document and build the :class:`TableMap`."""

    def fail(where: str, problem: str) -> TableMapError:
        return TableMapError(f"{source}: {where}: {problem}")

    store = doc.get("store")
    if not isinstance(store, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", store):
        raise fail("store", 'must be a lower-case identifier, e.g. store = "customer_db"')
    if "tables" in doc:
        raise fail(
            "tables",
            "the old one-table-per-category format; write each category's actions as "
            "[[categories.<category>]] entries with table, key_column and action",
        )
    unknown = set(doc) - {"store", "categories", "note"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown top-level key (expected store, categories)")
    raw = doc.get("categories")
    if not isinstance(raw, dict) or not raw:
        raise fail("categories", "no [[categories.<category>]] entries")
    known = known_categories()
    categories: dict[str, tuple[TableAction, ...]] = {}
    for category, entries in raw.items():
        if category not in known:
            raise fail(f"categories.{category}", f"unknown category (known: {', '.join(known)})")
        if not isinstance(entries, list) or not entries:
            raise fail(f"categories.{category}", "must be a list of [[categories.<category>]] tables")
        actions: list[TableAction] = []
        for i, entry in enumerate(entries):
            action = _action(category, entry, fail, i)
            if any(a.qualified == action.qualified for a in actions):
                raise fail(f"categories.{category}[{i}].table", f"{action.table} is listed twice")
            actions.append(action)
        categories[category] = tuple(actions)
    return TableMap(store, categories, source)


def _action(category: str, entry: Any, fail: Fail, index: int) -> TableAction:
    where = f"categories.{category}[{index}]"
    if not isinstance(entry, dict):
        raise fail(where, "must be a table with table, key_column and action")
    unknown = set(entry) - _KEYS
    if unknown:
        raise fail(
            f"{where}.{sorted(unknown)[0]}", f"unknown key (expected one of {', '.join(sorted(_KEYS))})"
        )

    def ident(key: str, pattern: re.Pattern[str] = _IDENT, required: bool = False) -> str | None:
        value = entry.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not pattern.match(value):
            raise fail(f"{where}.{key}", f"{value!r} is not a plain lower-case SQL identifier")
        return value

    table = ident("table", _TABLE, required=True)
    key_column = ident("key_column", required=True)
    assert table is not None and key_column is not None
    action = entry.get("action")
    if action not in ACTIONS:
        raise fail(f"{where}.action", f"{action!r}: must be one of {', '.join(ACTIONS)}")
    columns, replace = _blanked(entry, action, where, fail)
    subject_format = _format(entry, "subject_format", where, fail)
    ref_format = _format(entry, "ref_format", where, fail)
    subject_column = ident("subject_column")
    ref_column = ident("ref_column")
    if subject_format is not None and subject_column is None:
        raise fail(f"{where}.subject_format", "needs a subject_column")
    if ref_format is not None and ref_column is None:
        raise fail(f"{where}.ref_format", "needs a ref_column")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise fail(f"{where}.note", "must be a string")
    return TableAction(
        category=category,
        table=table,
        key_column=key_column,
        action=action,
        columns=tuple(columns),
        replace=dict(replace),
        subject_column=subject_column,
        subject_format=subject_format,
        ref_column=ref_column,
        ref_format=ref_format,
        time_column=ident("time_column"),
        note=note,
    )


def _blanked(
    entry: dict[str, Any], action: str, where: str, fail: Fail
) -> tuple[list[str], dict[str, Value]]:
    """An action's ``columns`` and their ``replace`` values: listed for an anonymise action (each
    once, a value only for a listed column), absent for a delete."""
    columns = entry.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and _IDENT.match(c) for c in columns):
        raise fail(f"{where}.columns", "must be a list of plain lower-case column names")
    if len(set(columns)) != len(columns):
        raise fail(f"{where}.columns", "a column is listed twice")
    replace = entry.get("replace", {})
    if not isinstance(replace, dict):
        raise fail(f"{where}.replace", "must be a table of column = value")
    if action == "anonymise" and not columns:
        raise fail(f"{where}.columns", "an anonymise action must list the columns it blanks")
    if action == "delete" and (columns or replace):
        raise fail(f"{where}.columns", "a delete action removes whole rows; columns/replace do not apply")
    for column, value in replace.items():
        if column not in columns:
            raise fail(f"{where}.replace.{column}", "not one of the action's columns")
        if not isinstance(value, str | int | float | bool):
            raise fail(f"{where}.replace.{column}", "must be a string, number or boolean")
    return columns, replace


def _format(entry: dict[str, Any], key: str, where: str, fail: Fail) -> str | None:
    """A Python format string with exactly one positional field, e.g. ``cust-{:05d}``."""
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"{where}.{key}", "must be a string")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise fail(f"{where}.{key}", f"{value!r}: {exc}") from None
    if fields != [""]:
        raise fail(f"{where}.{key}", f'{value!r}: must have exactly one {{}} field, e.g. "cust-{{:05d}}"')
    return str(value)


def format_value(template: str | None, value: Any, what: str) -> str:
    """``value`` through a map's ``*_format`` (or as text); ValueError naming ``what`` if it does not fit."""
    if template is None:
        return str(value)
    try:
        return template.format(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {template!r} cannot format {type(value).__name__} ({exc})") from None
