"""The registry of sink kinds: what the CLI, the coverage check, the demo and the docs iterate."""

from __future__ import annotations

from pathlib import Path

from ebbtide.sinks import registry
from ebbtide.sinks.coverage import coverage_problems
from ebbtide.streams.policy.stores import load_store_map, parse_store_map

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = load_store_map()


def test_every_kind_of_the_shipped_store_map_has_a_sink_and_an_unknown_kind_is_reported() -> None:
    assert {store.kind for store in SHIPPED.stores} <= set(registry.names())
    assert [kind.name for kind in registry.kinds()] == list(registry.names())
    odd = parse_store_map(
        'version = "1"\n[[stores]]\nid = "odd_store"\nname = "Odd"\nkind = "carrier_pigeon"\n'
        'service_level = { hours = 1 }\nsource = "test"\n[[stores.holds]]\ncategory = "client"\n'
        'fields = ["name"]\n'
    )
    (problem,) = coverage_problems(odd)
    assert problem.startswith("odd_store: no sink of kind carrier_pigeon (known: ")


def test_the_kinds_options_do_not_collide_on_the_one_sink_command() -> None:
    flags = [option.flag for kind in registry.kinds() for option in kind.options]
    assert len(flags) == len(set(flags)) and "--loglevel" not in flags


def test_the_shipped_store_map_is_served_by_the_demos_five_sink_processes() -> None:
    assert registry.sink_processes(SHIPPED.stores) == {
        "customer_db sink": ["postgres", "--map", "customer_db"],
        "billing_db sink": ["postgres", "--map", "billing_db"],
        "vendor sinks": ["http"],
        "log store sink": ["logstore"],
        "backups sink": ["backups"],
    }


def test_each_kind_names_its_package() -> None:
    for kind in registry.kinds():
        assert (ROOT / kind.code / "kind.py").is_file(), kind.name


def test_the_docs_table_of_kinds_is_the_registrys() -> None:
    table = registry.markdown_table(SHIPPED)
    header = "| kind | command | stores of the shipped map"
    pages = [p for p in (ROOT / "docs").glob("*.md") if header in p.read_text(encoding="utf-8")]
    assert pages, "no page of docs/ has the table of sink kinds"
    for page in pages:
        hint = f"{page.name}: run `python -m ebbtide.sinks.registry`"
        assert table in page.read_text(encoding="utf-8"), hint
