"""Policy files are checked before they are enforced."""

from __future__ import annotations

import pytest

from streams.policy.rules import (
    DEFAULT_POLICY,
    PolicyError,
    PolicyWithoutSource,
    UnknownCategory,
    default_policy,
    parse_policy,
)

SHIPPED = DEFAULT_POLICY.read_text()


def test_the_shipped_policy_names_a_source_and_basis_for_every_rule() -> None:
    policy = default_policy()
    assert policy.rules
    for rule in policy.rules:
        assert rule.source.startswith("seed ")
        assert "GDPR" in rule.basis


def test_the_content_hash_changes_with_any_rule_change() -> None:
    changed = parse_policy(SHIPPED.replace("keep_years = 3", "keep_years = 4", 1))
    assert changed.content_hash != default_policy().content_hash
    assert changed.label != default_policy().label


def test_a_rule_without_source_is_refused() -> None:
    with pytest.raises(PolicyWithoutSource, match="rule account: every rule must name its source"):
        parse_policy(SHIPPED.replace('source = "seed 001', 'sauce = "seed 001', 1))


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(UnknownCategory, match="unknown category 'clients'"):
        parse_policy(SHIPPED.replace('categories = ["client"]', 'categories = ["clients"]'))


@pytest.mark.parametrize("years", ["-1", "1000", '"three"'])
def test_an_impossible_duration_is_refused(years: str) -> None:
    with pytest.raises(PolicyError, match="keep_years"):
        parse_policy(SHIPPED.replace("keep_years = 3", f"keep_years = {years}", 1))


def test_a_category_under_two_rules_is_refused() -> None:
    with pytest.raises(PolicyError, match="covered by both"):
        parse_policy(SHIPPED.replace('categories = ["correspondence"]', 'categories = ["client"]'))
