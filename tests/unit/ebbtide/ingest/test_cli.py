"""`ebbtide ingest`: the OpenAPI document without a server; one line, no traceback, when it cannot run."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebbtide.cli import main


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """`ingest serve` configures logging onto this test's captured stderr: put it back after, so
    no later test logs into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_openapi_writes_the_document_of_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBBTIDE_INGEST_MAX_EVENTS", "7")
    out = tmp_path / "openapi.json"
    assert main(["ingest", "openapi", "--output", str(out)]) == 0
    document = json.loads(out.read_text())
    post = document["paths"]["/v1/events"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][1]["maxItems"] == 7
    kinds = {variant["properties"]["type"]["const"] for variant in body["oneOf"][0]["oneOf"]}
    assert {"RecordWritten", "AccountClosed", "LegalHoldPlaced"} <= kinds
    assert set(post["responses"]) == {"200", "400", "401", "403", "409", "413", "422", "503"}
    assert document["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert "/metrics" not in document["paths"] and "/healthz" in document["paths"]


def test_serve_without_anyone_allowed_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EBBTIDE_INGEST_TOKENS", raising=False)
    monkeypatch.delenv("EBBTIDE_INGEST_TLS_CLIENT_CA", raising=False)
    assert main(["ingest", "serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "never runs open" in err and "Traceback" not in err


def test_without_the_extra_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("ebbtide.ingest")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["ingest", "openapi"]) == 2
    assert "needs fastapi: pip install 'ebbtide[ingest]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({}, "EBBTIDE_KEYS_DSN (or EBBTIDE_PG_DSN) is not set"),
        (
            {"EBBTIDE_KEYS_DSN": "dbname=k", "EBBTIDE_INGEST_HOLD_PRODUCERS": "legal,le gal"},
            "EBBTIDE_INGEST_HOLD_PRODUCERS",
        ),
    ],
)
def test_serve_without_a_key_store_or_with_bad_hold_producers_is_one_line_at_start(
    changes: dict[str, str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("billing unit-billing-token-0123456789\n")
    monkeypatch.setenv("EBBTIDE_INGEST_TOKENS", str(tokens))
    monkeypatch.setenv("EBBTIDE_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached: refused before
    for name in ("EBBTIDE_KEYS_DSN", "EBBTIDE_PG_DSN", "EBBTIDE_INGEST_HOLD_PRODUCERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    assert main(["ingest", "serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Traceback" not in err
