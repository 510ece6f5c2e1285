"""The metrics' fast ``labels`` (``metrics._KnownLabels``) finds the very series prometheus_client
would, and follows ``remove``/``clear``."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ebbtide.runtime import metrics

pytestmark = pytest.mark.unit


def _gauge() -> metrics.Gauge:
    return metrics.Gauge("t_gauge", "A test gauge.", ["partition"], registry=CollectorRegistry())


def test_a_known_series_is_the_one_prometheus_made() -> None:
    gauge = _gauge()
    made = gauge.labels("3")
    assert gauge.labels("3") is made
    assert gauge.labels(3) is made  # not a string: prometheus_client's own path, same series
    assert gauge.labels(partition="3") is made
    assert gauge.labels("4") is not made


def test_a_removed_or_cleared_series_is_made_again() -> None:
    gauge = _gauge()
    first = gauge.labels("3")
    first.set(7)
    gauge.remove("3")
    again = gauge.labels("3")
    assert again is not first
    assert again._value.get() == 0
    gauge.clear()
    assert gauge.labels("3") is not again


def test_wrong_label_counts_are_still_refused() -> None:
    gauge = _gauge()
    gauge.labels("3")
    with pytest.raises(ValueError, match="label count"):
        gauge.labels("3", "4")
    unlabelled = metrics.Counter("t_plain", "A test counter.", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="No label names"):
        unlabelled.labels("3")


def test_the_export_is_prometheus_clients() -> None:
    registry = CollectorRegistry()
    counter = metrics.Counter("t_events", "Test events.", ["type"], registry=registry)
    counter.labels("A").inc()
    counter.labels("A").inc(2)
    assert 't_events_total{type="A"} 3.0' in generate_latest(registry).decode()
