"""Kafka not taking a request's events: 503, nothing claimed or remembered, and the same request
once Kafka takes them again is published (here: its topic missing, then made)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ebbtide.runtime.settings import Settings
from tests.ingest_service import IngestService
from tests.support import drop_topics, make_topics, wait_until

EVENT = {
    "event_id": "later-1",
    "type": "AccountClosed",
    "subject_id": "cust-later",
    "event_time": "2024-03-01T12:00:00Z",
}


def test_kafka_not_taking_the_events_is_503_and_the_same_request_later_is_published(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    settings = replace(ingest_settings, topic_prefix=f"{ingest_settings.topic_prefix}-later")
    service = IngestService.start(settings, tmp_path, ingest_timeout=2.0).wait_ready(probe="/healthz")
    try:
        ready = service.get("/readyz")
        assert ready.status == 503 and ready.body["status"] == "not ready"
        answer = service.post([EVENT])
        assert answer.status == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert "not published" in answer.body["title"] and "events" not in answer.body

        make_topics(settings)
        wait_until(lambda: service.get("/readyz").status == 200, 30, "ready once the topic exists")
        again = service.post([EVENT])
        assert again.status == 200, again.body
        assert again.body["events"][0]["repeated"] is False  # the 503 remembered nothing
    finally:
        service.stop()
        drop_topics(settings, changelogs=False)
