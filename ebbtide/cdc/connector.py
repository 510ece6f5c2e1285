"""``ebbtide cdc connect``: the publication of the captured tables and Debezium's connector.

The publication (``ebbtide_cdc``, pgoutput) is made, or set to the mapped tables, by their owner
(``EBBTIDE_PG_DSN``); Debezium logs in as a role that may only replicate and read
(``EBBTIDE_CDC_DSN``; locally ``ebbtide_cdc``, made by deploy/local/postgres.sh) and makes its
replication slot. The connector's configuration is PUT to Kafka Connect
(``/connectors/<name>/config``): registering it again changes nothing, or only what changed.
Its initial snapshot announces the rows the tables already hold (``snapshot.mode=initial``),
then it streams every change from the slot.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlparse

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from ebbtide.cdc.changes import Mapping
from ebbtide.runtime.settings import Settings
from ebbtide.sinks.postgres.table_map import TableMapError

PUBLICATION = "ebbtide_cdc"
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


class ConnectError(RuntimeError):
    """Kafka Connect is down or refused the connector; the message says which and what to do."""


def connector_name(settings: Settings, dbname: str) -> str:
    return f"{settings.topic_prefix}-cdc-{dbname}"


def slot_name(name: str) -> str:
    """A replication slot name for the connector: a-z, 0-9 and _ only, at most 63."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())[:63]


def connector_config(name: str, cdc_dsn: str, mapping: Mapping, topic: str) -> dict[str, str]:
    """Debezium's configuration: the database of ``cdc_dsn`` (its role replicates), the mapped
    tables and only their mapped columns, every change routed to ``topic`` as plain JSON, no
    tombstones."""
    dsn = urlparse(cdc_dsn)
    if not dsn.hostname or not dsn.username or not dsn.path.strip("/"):
        raise ConnectError("EBBTIDE_CDC_DSN must be postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    return {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": dsn.hostname,
        "database.port": str(dsn.port or 5432),
        "database.user": dsn.username,
        "database.password": dsn.password or "",
        "database.dbname": dsn.path.strip("/"),
        "topic.prefix": name,
        "slot.name": slot_name(name),
        "publication.name": PUBLICATION,
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(re.escape(t) for t in mapping.tables),
        # Only the columns a record needs: no other value of a row (a name, an e-mail) reaches Kafka.
        "column.include.list": ",".join(
            re.escape(f"{t}.{c}") for t in mapping.tables for c in mapping.columns(t)
        ),
        "snapshot.mode": "initial",
        "tombstones.on.delete": "false",
        "decimal.handling.mode": "string",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": ".*",
        "transforms.route.replacement": topic,
    }


def prepare_database(conn: Connection, mapping: Mapping) -> None:
    """Check that every mapped table exists and that a delete names its key (the key column is in
    the primary key, or the table's replica identity is FULL), then make the publication or set it
    to the mapped tables. A one-line TableMapError naming the table and the column."""
    with conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        level = cur.fetchone()
        if level is None or level[0] != "logical":
            raise ConnectError(
                f"PostgreSQL runs with wal_level={level[0] if level else '?'}; change data capture needs "
                "wal_level=logical (deploy/local/postgres.sh sets it: restart the server to take it)"
            )
        for table in mapping.tables:
            schema, name = table.split(".", 1)
            cur.execute(
                "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = %s) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (mapping.key_column(table), schema, name),
            )
            row = cur.fetchone()
            if row is None:
                raise TableMapError(f"table {table}: no such table in the database to capture")
            if row[0] != "f" and not row[1]:
                raise TableMapError(
                    f"table {table}: key column {mapping.key_column(table)} is not in its primary key, so "
                    f"a delete does not carry it: ALTER TABLE {table} REPLICA IDENTITY FULL"
                )
        tables = sql.SQL(", ").join(sql.Identifier(*t.split(".", 1)) for t in mapping.tables)
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (PUBLICATION,))
        verb = "ALTER PUBLICATION {} SET TABLE {}" if cur.fetchone() else "CREATE PUBLICATION {} FOR TABLE {}"
        cur.execute(sql.SQL(verb).format(sql.Identifier(PUBLICATION), tables))


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", "")
        except ValueError:
            message = ""
        raise ConnectError(f"Kafka Connect answered {exc.code} to {method} {url}: {message[:300]}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectError(
            f"Kafka Connect at {url} did not answer ({reason}); start it (deploy/local/connect.sh start) "
            "or set EBBTIDE_CONNECT_URL"
        ) from None
    return json.loads(raw) if raw else None


def check_up(connect_url: str) -> None:
    """ConnectError (one line, what to do) unless Kafka Connect answers at ``connect_url``."""
    _request(f"{connect_url.rstrip('/')}/")


def register(connect_url: str, name: str, config: dict[str, str]) -> None:
    """PUT the configuration (creates the connector, or updates it: idempotent)."""
    _request(f"{connect_url.rstrip('/')}/connectors/{quote(name, safe='')}/config", "PUT", config)


def wait_running(connect_url: str, name: str, timeout: float = 60.0) -> None:
    """Until the connector and its task run; ConnectError with the task's first trace line if one
    failed, or after ``timeout`` seconds."""
    url = f"{connect_url.rstrip('/')}/connectors/{quote(name, safe='')}/status"
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            status = _request(url)
        except ConnectError:
            status = None  # 404 until the herder has taken the new configuration in
        if status is not None:
            states = [status["connector"]["state"], *(t["state"] for t in status.get("tasks", []))]
            for task in status.get("tasks", []):
                if task["state"] == "FAILED":
                    first = str(task.get("trace", "")).splitlines()[:1]
                    raise ConnectError(f"connector {name}: its task failed: {first[0] if first else '?'}")
            state = "/".join(states)
            if status.get("tasks") and all(s == "RUNNING" for s in states):
                return
        time.sleep(0.5)  # polling interval of a bounded wait
    raise ConnectError(f"connector {name} not running after {timeout:.0f}s (state {state})")


def unregister(connect_url: str, name: str) -> None:
    """Delete the connector (its replication slot stays: drop it with pg_drop_replication_slot)."""
    try:
        _request(f"{connect_url.rstrip('/')}/connectors/{quote(name, safe='')}", "DELETE")
    except ConnectError as exc:
        if " 404 " not in str(exc):
            raise
