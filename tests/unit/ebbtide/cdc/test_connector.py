"""Debezium's configuration and `ebbtide cdc connect` without Kafka Connect (no servers)."""

from __future__ import annotations

import pytest

from ebbtide.cdc.changes import Mapping
from ebbtide.cdc.connector import ConnectError, connector_config, register, slot_name
from ebbtide.cli import main
from ebbtide.sinks.postgres.table_map import load_table_map, map_path
from ebbtide.tools.processes import free_port


def test_the_connector_captures_the_mapped_tables_into_one_topic() -> None:
    mapping = Mapping([load_table_map(map_path("customer_db")), load_table_map(map_path("billing_db"))])
    config = connector_config("test.x-cdc-db", "postgresql://cdc:pw@127.0.0.1:5433/db", mapping, "test.x.cdc")
    assert config["table.include.list"].split(",") == [
        r"billing\.invoices",
        r"billing\.payments",
        r"public\.customers",
        r"public\.domain_contacts",
        r"public\.newsletter_subscriptions",
        r"public\.ssl_contacts",
        r"public\.support_tickets",
    ]
    assert r"public\.customers\.customer_id" in config["column.include.list"].split(",")
    assert not any("email" in c or "name" in c for c in config["column.include.list"].split(","))
    assert config["database.dbname"] == "db" and config["database.user"] == "cdc"
    assert config["slot.name"] == slot_name("test.x-cdc-db") == "test_x_cdc_db"
    assert config["transforms.route.replacement"] == "test.x.cdc"
    assert config["publication.autocreate.mode"] == "disabled"
    with pytest.raises(ConnectError, match="EBBTIDE_CDC_DSN must be"):
        connector_config("n", "postgresql://127.0.0.1/", mapping, "t")


def test_connect_down_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConnectError, match=f"Kafka Connect at {url}/connectors/n/config did not answer"):
        register(url, "n", {})
    monkeypatch.setenv("EBBTIDE_CDC_DSN", "postgresql://cdc:pw@127.0.0.1:1/db")
    monkeypatch.setenv("EBBTIDE_PG_DSN", "postgresql://u:pw@127.0.0.1:1/db")
    monkeypatch.setenv("EBBTIDE_CONNECT_URL", url)
    assert main(["cdc", "connect", "--map", "no_such_store"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebbtide cdc connect: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["cdc", "connect"]) == 1  # the map is fine; Connect is down, checked first
    err = capsys.readouterr().err
    assert err == (
        f"ebbtide cdc connect: Kafka Connect at {url}/ did not answer ([Errno 111] Connection refused); "
        "start it (deploy/local/connect.sh start) or set EBBTIDE_CONNECT_URL\n"
    )
