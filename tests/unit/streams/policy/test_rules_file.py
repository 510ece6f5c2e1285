"""Policy files are checked before they are enforced."""

from __future__ import annotations

import pytest

from ebbtide.streams.policy.rules import (
    CATEGORIES,
    DEFAULT_POLICY,
    PolicyError,
    PolicyWithoutSource,
    UncoveredCategory,
    UnknownCategory,
    parse_policy,
    rules_policy,
)

SHIPPED = DEFAULT_POLICY.read_text()


def test_the_shipped_policy_covers_every_category_with_a_cited_rule() -> None:
    policy = rules_policy()
    assert {c for r in policy.rules for c in r.categories} == set(CATEGORIES)
    for rule in policy.rules:
        assert rule.source.startswith("seed ")
        assert "GDPR" in rule.basis


def test_the_content_hash_changes_with_any_rule_change() -> None:
    changed = parse_policy(SHIPPED.replace("keep = { years = 3 }", "keep = { years = 4 }", 1))
    assert changed.content_hash != rules_policy().content_hash
    assert changed.label != rules_policy().label


def test_a_rule_without_source_is_refused() -> None:
    with pytest.raises(PolicyWithoutSource, match="rule account: every rule must name its source"):
        parse_policy(SHIPPED.replace('source = "seed 001', 'sauce = "seed 001', 1))


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(UnknownCategory, match="unknown category 'clients'"):
        parse_policy(SHIPPED.replace('categories = ["client"]', 'categories = ["clients"]'))


def test_a_category_no_rule_covers_is_refused() -> None:
    start = SHIPPED.index('[[rules]]\nid = "marketing"')
    end = SHIPPED.index("[[rules]]", start + 1)
    without_marketing = SHIPPED[:start] + SHIPPED[end:]
    with pytest.raises(UncoveredCategory, match="no rule covers category marketing"):
        parse_policy(without_marketing)
    assert parse_policy(without_marketing, require_all_categories=False).rule_for("marketing") is None


@pytest.mark.parametrize(
    "keep", ["{ years = -1 }", "{ years = 1000 }", '{ years = "three" }', "{ weeks = 2 }", "3"]
)
def test_an_impossible_duration_is_refused(keep: str) -> None:
    with pytest.raises(PolicyError, match="keep"):
        parse_policy(SHIPPED.replace("keep = { years = 3 }", f"keep = {keep}", 1))


def test_a_category_under_two_rules_is_refused() -> None:
    with pytest.raises(PolicyError, match="covered by both"):
        parse_policy(SHIPPED.replace('categories = ["correspondence"]', 'categories = ["client"]'))


def test_a_clock_event_that_does_not_exist_is_refused() -> None:
    with pytest.raises(PolicyError, match="unknown event 'DomainExpired'"):
        parse_policy(SHIPPED.replace('starts = ["DomainReleased"]', 'starts = ["DomainExpired"]'))


def test_the_account_clock_must_list_its_real_events() -> None:
    with pytest.raises(PolicyError, match="account clock starts on"):
        parse_policy(SHIPPED.replace('stops = ["ServiceOrdered"]', "stops = []", 1))


def test_duties_must_name_their_source() -> None:
    with pytest.raises(PolicyWithoutSource, match="breach_authority_source"):
        parse_policy(
            SHIPPED.replace('breach_authority_source = "seed 000', 'breach_authority_source = " "\nx = "')
        )
