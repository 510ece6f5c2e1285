"""Every store of the store map has a sink that can act on every category it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.cli import main
from ebbtide.sinks.coverage import coverage_problems
from ebbtide.sinks.postgres import kind as postgres_kind
from ebbtide.sinks.postgres.table_map import TableMapError
from ebbtide.streams.policy.stores import load_store_map, parse_store_map

SHIPPED = load_store_map()


def one_store(store_id: str, kind: str, category: str) -> str:
    return (
        f'version = "t"\n[[stores]]\nid = "{store_id}"\nname = "x"\nkind = "{kind}"\n'
        f'service_level = {{ hours = 1 }}\nsource = "test"\n[[stores.holds]]\ncategory = "{category}"\n'
        'fields = ["name"]\n'
    )


def test_the_shipped_sinks_cover_the_shipped_store_map() -> None:
    assert coverage_problems(SHIPPED) == []


def test_a_category_the_table_map_lacks_is_named() -> None:
    stores = parse_store_map(one_store("billing_db", "postgres", "client"))
    assert coverage_problems(stores) == ["billing_db: its table map has no tables for client"]


def test_a_postgres_store_without_a_table_map_is_named() -> None:
    stores = parse_store_map(one_store("crm_db", "postgres", "client"))
    (problem,) = coverage_problems(stores)
    assert problem.startswith("crm_db: no usable table map")


def test_a_vendor_missing_from_the_vendors_config_or_not_holding_the_category_is_named() -> None:
    assert coverage_problems(parse_store_map(one_store("newsletter_tool", "http", "marketing"))) == [
        "newsletter_tool: no vendor of that store in the vendors config"
    ]
    assert coverage_problems(parse_store_map(one_store("chat_vendor", "http", "marketing"))) == [
        "chat_vendor: the vendors config does not let it delete marketing"
    ]


def test_the_log_store_and_backups_sinks_answer_their_one_store_and_category() -> None:
    stores = parse_store_map(one_store("web_logs", "logstore", "auto_collected"))
    assert coverage_problems(stores) == [
        "web_logs: the logstore sink answers store log_store, category auto_collected only"
    ]


def test_a_table_map_of_another_store_does_not_count() -> None:
    def wrong(store_id: str) -> object:
        raise TableMapError("sinks/x.toml is the map of store other")

    (store,) = parse_store_map(one_store("customer_db", "postgres", "client")).stores
    assert postgres_kind.covers(store, table_map=wrong) == [  # type: ignore[arg-type]
        "customer_db: no usable table map (sinks/x.toml is the map of store other)"
    ]


def test_policy_check_fails_on_a_gap_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stores = tmp_path / "stores.toml"
    stores.write_text(one_store("newsletter_tool", "http", "marketing"))
    monkeypatch.setenv("EBBTIDE_STORE_MAP", str(stores))
    assert main(["policy", "check", "streams/policy/retention.v1.toml"]) == 1
    assert "newsletter_tool: no vendor of that store in the vendors config" in capsys.readouterr().err
