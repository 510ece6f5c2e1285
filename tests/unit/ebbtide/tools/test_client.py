"""The publishing client refuses bad events with a message naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ebbtide.cli import main
from ebbtide.tools.client import InvalidEvent, to_record

GOOD = {
    "event_id": "e1",
    "type": "ServiceOrdered",
    "subject_id": "cust-1",
    "event_time": "2024-03-01T12:00:00Z",
    "producer": "billing",
    "payload": {"service_id": "svc-7", "kind": "HOSTING"},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": None}, "field event_id: missing"),
        ({"type": "ServiceTeleported"}, "unknown event type 'ServiceTeleported'"),
        ({"event_time": "yesterday"}, "field event_time: not an ISO-8601 time"),
        ({"event_time": "2024-03-01T12:00:00"}, "field event_time: must carry a time zone"),
        ({"payload": {"kind": "HOSTING"}}, "ServiceOrdered.service_id: missing"),
        ({"payload": {"service_id": "s", "kind": "SPACESHIP"}}, "ServiceOrdered.kind"),
        ({"colour": "blue"}, "field colour: not part of a lifecycle event"),
    ],
)
def test_bad_events_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    event = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(InvalidEvent, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_record(event)


def test_error_messages_never_echo_the_value() -> None:
    with pytest.raises(InvalidEvent) as err:
        to_record({**GOOD, "payload": {"service_id": 12345678, "kind": "HOSTING"}})
    assert "12345678" not in str(err.value)


def test_publish_refuses_a_file_with_an_invalid_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "event_id": ""}) + "\n{oops\n")
    assert main(["publish", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "line 2: field event_id: must be a non-empty string" in err
    assert "line 3: not JSON" in err
    assert "nothing was published" in err


def test_publish_dry_run_accepts_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "event_id": "e2"}) + "\n")
    assert main(["publish", str(path), "--dry-run"]) == 0
    assert "2 valid event(s)" in capsys.readouterr().out


def test_payload_times_are_iso_8601_like_event_time() -> None:
    record = to_record(
        {
            **GOOD,
            "type": "CertificateIssued",
            "payload": {"certificate_id": "c1", "valid_until": "2025-01-01T00:00:00Z"},
        }
    )
    assert record["payload"][1]["valid_until"].year == 2025
    with pytest.raises(InvalidEvent, match=r"field payload\.valid_until: must carry a time zone"):
        to_record(
            {
                **GOOD,
                "type": "CertificateIssued",
                "payload": {"certificate_id": "c1", "valid_until": "2025-01-01T00:00:00"},
            }
        )
