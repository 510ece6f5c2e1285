"""The worker's gauges of what is open, by label: records waiting for their deadline and records a
legal hold keeps, by category; duties not done, by duty (issue 13's dashboard)."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from ebbtide.schemas import LIFECYCLE_EVENT, codec_for
from ebbtide.tools.client import sign_hold, to_record
from tests.support import unit_hold_keys, unit_hold_signer
from tests.unit.streams.worker.harness import CLIENT_RECORD, Harness, event


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def publish_signed(h: Harness, raw: dict[str, Any]) -> None:
    record = sign_hold(to_record(raw), unit_hold_signer())
    h.publish_bytes(raw["subject_id"].encode(), codec_for(LIFECYCLE_EVENT).encode(record))


def test_waiting_held_and_open_duties_follow_the_subjects_and_leave_with_a_lost_partition() -> None:
    """Each gauge says what this processor's partitions hold (a processor of another test that
    set the same series is gone), so the values are absolute."""
    h = Harness()
    h.processor.hold_keys = unit_hold_keys()
    h.publish(CLIENT_RECORD)
    h.publish(event("c1", "AccountClosed", "2021-03-15T00:00:00Z"))  # a deadline: waiting
    assert gauge("ebbtide_records_waiting", category="client") == 1

    publish_signed(h, event("h1", "LegalHoldPlaced", "2022-01-01T00:00:00Z", hold_id="court-7"))
    assert gauge("ebbtide_records_held", category="client") == 1
    assert gauge("ebbtide_records_waiting", category="client") == 0  # suspended by the hold

    asked = event("r1", "ErasureRequested", "2022-02-01T00:00:00Z", request_id="req-1", verified=False)
    h.publish(asked)
    assert gauge("ebbtide_duties_open", duty="erasure") == 1
    h.tick("2022-03-02T00:00:00Z")  # overdue, and still open
    assert gauge("ebbtide_duties_open", duty="erasure") == 1
    h.publish(
        event(
            "v1", "ErasureRefused", "2022-03-03T00:00:00Z", request_id="req-1", reason="IDENTITY_NOT_VERIFIED"
        )
    )
    assert gauge("ebbtide_duties_open", duty="erasure") == 0

    publish_signed(h, event("h2", "LegalHoldReleased", "2022-04-01T00:00:00Z", hold_id="court-7"))
    assert gauge("ebbtide_records_held", category="client") == 0
    assert gauge("ebbtide_records_waiting", category="client") == 1
    h.processor.forget({0})  # the partition went to another worker: its share goes with it
    assert gauge("ebbtide_records_waiting", category="client") == 0
