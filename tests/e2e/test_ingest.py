"""HTTP ingestion end to end: the real `ebbtide ingest serve` and the real worker as processes on
the real stack. A batch for one customer is acknowledged and stamped by the worker; a bad batch is
refused naming field and index, and nothing of it reaches the worker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ebbtide import bootstrap
from ebbtide.runtime.kafka import end_offsets, offsets_reader
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import DECISION, codec_for
from ebbtide.tools import processes
from tests.e2e.test_pipeline import OWN_DATABASES, WORKER_READY
from tests.ingest_service import IngestService
from tests.support import TopicReader, make_topics


def ev(event_id: str, event_type: str, subject: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": event_type,
        "subject_id": subject,
        "event_time": "2023-01-10T10:00:00Z",
        "payload": payload,
    }


def events_in(settings: Settings) -> int:
    reader = offsets_reader(settings, timeout=10)
    try:
        return sum(end_offsets(reader, Topics(settings.topic_prefix).events).values())
    finally:
        reader.close()


def test_an_http_batch_is_stamped_and_a_bad_one_reaches_nothing(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, store_map=OWN_DATABASES)
    make_topics(settings, list(bootstrap.store_map(settings).ids))
    worker = processes.start("worker", ["worker"], settings, tmp_path / "logs")
    service = IngestService.start(settings, tmp_path / "logs").wait_ready()
    decisions = TopicReader(settings, Topics(settings.topic_prefix).decisions, codec_for(DECISION))
    try:
        bad = [
            ev("bad-1", "CustomerRegistered", "cust-bad"),
            ev("bad-2", "RecordWritten", "cust-bad", store="customer_db", category="client"),
        ]
        refused = service.post(bad)
        assert refused.status == 422
        assert [(e["index"], e["field"]) for e in refused.body["errors"]] == [(1, "payload.record_key")]
        assert events_in(settings) == 0

        good = [
            ev("http-1", "CustomerRegistered", "cust-http"),
            ev(
                "http-2", "RecordWritten", "cust-http", store="customer_db", category="client", record_key="7"
            ),
            ev("http-3", "AccountClosed", "cust-http"),
        ]
        answer = service.post(good)
        assert answer.status == 200, answer.body
        assert [a["event_id"] for a in answer.body["events"]] == ["http-1", "http-2", "http-3"]

        def stamped(seen: list[Any]) -> bool:
            assert worker.alive(), f"worker died:\n{worker.tail()}"
            return any(
                r.value and r.value["kind"] == "STAMPED" and r.value["subject_id"] == "cust-http"
                for r in seen
            )

        got = decisions.wait_for(stamped, WORKER_READY, "the HTTP batch's record stamped")
        mine = [r.value for r in got if r.value and r.value["kind"] == "STAMPED"]
        assert {(d["subject_id"], d["category"]) for d in mine} == {
            ("cust-http", "client")
        }  # none of cust-bad
        assert events_in(settings) == 3
    finally:
        decisions.close()
        service.stop()
        worker.stop()
