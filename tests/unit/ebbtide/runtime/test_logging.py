"""One log format for every process (ebbtide.runtime.logging): text for terminals, or one JSON
object per line with fixed keys, for our records and those of Faust's worker alike."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from ebbtide.runtime.logging import KEYS, JsonLines, configure, faust_logging_config


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "ebbtide.sinks.base.loop", logging.WARNING, __file__, 1, "dead-lettered %s", ("x",), None
    )
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_fixed_keys_and_only_those() -> None:
    line = JsonLines("sink-postgres").format(
        record(topic="t.commands.customer_db", partition=3, subject_email="kari@example.invalid")
    )
    parsed = json.loads(line)
    assert "\n" not in line
    assert set(parsed) == {"time", "level", "logger", "process", "message", "topic", "partition"}
    assert parsed["level"] == "WARNING" and parsed["logger"] == "ebbtide.sinks.base.loop"
    assert parsed["process"] == "sink-postgres" and parsed["message"] == "dead-lettered x"
    assert (parsed["topic"], parsed["partition"]) == ("t.commands.customer_db", 3)
    assert parsed["time"].endswith("+00:00")  # ISO 8601, UTC
    assert "kari@example.invalid" not in line  # an extra field outside the keys is left out


def test_an_exception_stays_on_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = record(exc_info=sys.exc_info())
    parsed = json.loads(JsonLines("worker").format(failed))
    assert set(parsed) <= set(KEYS) and "RuntimeError: boom" in parsed["exc_info"]


@pytest.mark.usefixtures("root_logging")
def test_configure_writes_text_or_json_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    for log_format in ("text", "json"):
        stream = io.StringIO()
        monkeypatch.setattr("sys.stderr", stream)
        configure("INFO", log_format, "clock")
        logging.getLogger("ebbtide.clock").info("a tick every %d s", 60)
        line = stream.getvalue().strip()
        if log_format == "text":
            assert line.endswith("INFO ebbtide.clock: a tick every 60 s")
        else:
            assert json.loads(line)["process"] == "clock"
            assert json.loads(line)["message"] == "a tick every 60 s"


@pytest.mark.usefixtures("root_logging")
def test_faust_records_take_the_same_format(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faust_logging_config("INFO", "text") is None  # Faust's own colour log, for terminals
    config = faust_logging_config("info", "json")
    assert config is not None
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logging.config.dictConfig(config)  # as mode's setup_logging applies it
    logging.getLogger("faust.worker").info("[^Worker]: Ready")
    parsed = json.loads(stream.getvalue())
    assert (parsed["logger"], parsed["process"], parsed["level"]) == ("faust.worker", "worker", "INFO")
