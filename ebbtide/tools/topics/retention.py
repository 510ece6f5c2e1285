"""How long the project's topics keep their messages, derived from the loaded policy.

Two periods, both counted in whole days from a message's time:

- the **log window** (events, clock ticks, dead letters, deletion commands): messages that carry
  personal values, or only bridge an outage, leave the log before an erasure request made after
  them must be answered: the policy's ``erasure_response_months`` counted as the shortest months
  (28 days each);
- the **audit period** of a topic (decisions, erasure answers, receipts, certificates): the
  longest rule of the policy that refers to its messages, counted as its longest possible case
  (years of 366 days, months of 31, the anchor's own delay, the grace days), and never shorter
  than the log window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ebbtide.streams.policy.rules import Policy, Rule

SHORTEST_MONTH_DAYS = 28
# Days an anchor can add after the event that starts a rule's clock.
ANCHOR_DAYS = {"event_time": 0, "until": 0, "end_of_day": 1, "end_of_financial_year": 366}


@dataclass(frozen=True)
class Period:
    """A retention period in days, and the rule it comes from (None: the log window)."""

    days: int
    rule: Rule | None = None

    @property
    def ms(self) -> int:
        return self.days * 86_400_000

    def why(self) -> str:
        if self.rule is None:
            return f"{self.days} days"
        rule = self.rule
        return f"{self.days} days, the longest rule that refers to them: {rule.id} ({rule_words(rule)})"


def rule_days(rule: Rule) -> int:
    """The longest a record can wait under ``rule`` from the event that starts its clock to its
    deletion, in days: its ``keep`` (years of 366 days, months of 31), the anchor's delay (the end
    of the financial year can be a year away) and its grace days. An ``until`` anchor counts from
    the end date its event names."""
    keep = rule.keep
    return keep.years * 366 + keep.months * 31 + keep.days + ANCHOR_DAYS[rule.anchor] + rule.grace_days


def rule_words(rule: Rule) -> str:
    """``5 years from the end of the financial year``, ``90 days from the end of the day`` ..."""
    anchor = {
        "event_time": "",
        "until": " from the end date its event names",
        "end_of_day": " from the end of the day",
        "end_of_financial_year": " from the end of the financial year",
    }[rule.anchor]
    grace = f" + {rule.grace_days} days' grace" if rule.grace_days else ""
    return f"{rule.keep.describe()}{anchor}{grace}"


def log_window(policy: Policy) -> Period:
    """Days a message of the log window stays at most: ``erasure_response_months`` times 28."""
    return Period(policy.duties.erasure_response_months * SHORTEST_MONTH_DAYS)


def longest(policy: Policy, refers: Callable[[Rule], bool]) -> Period:
    """The audit period of the messages the rules ``refers`` accepts: the longest of those rules
    (:func:`rule_days`), at least the log window."""
    floor = log_window(policy)
    chosen = [rule for rule in policy.rules if refers(rule)]
    if not chosen:
        return floor
    rule = max(chosen, key=rule_days)
    return Period(rule_days(rule), rule) if rule_days(rule) > floor.days else floor


def every_rule(rule: Rule) -> bool:
    """Decisions name the rule they apply: every rule refers to them."""
    return True


def held_by_a_store(policy: Policy) -> Callable[[Rule], bool]:
    """Receipts and certificates prove deletions in stores: the rules of categories some store of
    the policy's store map holds (every rule, without a store map)."""
    stores = policy.stores

    def refers(rule: Rule) -> bool:
        if stores is None:
            return True
        return any(stores.holds(store, c) for store in stores.ids for c in rule.categories)

    return refers


def kept_on_erasure(rule: Rule) -> bool:
    """An erasure answer promises each kept record's deletion at its rule's deadline: the rules
    that keep (restrict) a record on erasure."""
    return rule.on_erasure == "restrict"
