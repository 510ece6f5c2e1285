"""Every alert of the shipped rules has its runbook section in docs/alerts.md, which its
runbook_url points at, and every section there is an alert (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "ebbtide.rules.yml"
DOC = ROOT / "docs" / "alerts.md"
PARTS = ("**What it means.**", "**Likely causes.**", "**What to check.**", "**How to resolve.**")


def alerts() -> dict[str, dict[str, str]]:
    """Each alert's name -> its annotations."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["annotations"] for g in groups for r in g["rules"] if "alert" in r}


def sections() -> dict[str, str]:
    """Each second-level section of the doc: its anchor (GitHub's: the heading in lower case) ->
    its text."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return {heading.strip().lower(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_alert_links_its_own_runbook_section_and_every_section_is_an_alert() -> None:
    rules, doc = alerts(), sections()
    assert len(rules) >= 13
    assert set(doc) == {name.lower() for name in rules}
    for name, annotated in rules.items():
        assert annotated.get("runbook_url") == f"docs/alerts.md#{name.lower()}", name


def test_every_runbook_section_says_what_it_means_why_what_to_check_and_how_to_resolve() -> None:
    for anchor, text in sections().items():
        missing = [part for part in PARTS if part not in text]
        assert not missing, f"{anchor}: no {missing}"
