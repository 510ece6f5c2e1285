"""The worker's subject pages (what `ebbtide explain --source worker` reads) answer only a caller
with the worker's web token, which the worker makes at start."""

from __future__ import annotations

import asyncio
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ebbtide import bootstrap
from ebbtide.runtime.authenticity import HoldKeys
from ebbtide.runtime.settings import Settings
from ebbtide.runtime.web_token import ENV, authorised, token_file
from ebbtide.streams.worker.app import create_app
from ebbtide.tools.state_reader import StateUnavailable, subject_from_worker


def worker_settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, topic_prefix="unit.web", app_id="unit-web")


async def serve(settings: Settings, requests: list[dict[str, str]]) -> list[tuple[int, object]]:
    """Build the worker's app on ``settings`` and GET one subject page per header set."""
    app = create_app(settings, bootstrap.policy(settings), HoldKeys())
    client = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    try:
        answers = []
        for headers in requests:
            response = await client.get("/subjects/cust-1/", headers=headers)
            answers.append((response.status, await response.json()))
        return answers
    finally:
        await client.close()


def test_the_worker_makes_a_private_token_and_refuses_requests_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    settings = worker_settings(tmp_path)
    path = tmp_path / "keys" / "worker-web.token"
    assert token_file(settings) == path
    assert not path.exists()
    answers = asyncio.run(
        serve(
            settings,
            [
                {},
                {"Authorization": "Bearer not-the-token"},
                {"Authorization": "Basic " + "x" * 64},
            ],
        )
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) == 64
    assert [status for status, _ in answers[:3]] == [401, 401, 401]
    assert all("state" not in body for _, body in answers[:3])  # type: ignore[operator]
    # With the token (the worker keeps the one it made): the lookup itself.
    (status, body), *_ = asyncio.run(serve(settings, [{"Authorization": f"Bearer {token}"}]))
    assert (status, body) == (200, {"state": None, "now": None})
    assert path.read_text().strip() == token


def test_explain_sends_the_token_from_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_path = tmp_path / "elsewhere" / "web.token"
    monkeypatch.setenv(ENV, str(token_path))
    settings = worker_settings(tmp_path)

    async def run() -> tuple[object, str]:
        app = create_app(settings, bootstrap.policy(settings), HoldKeys())
        server = TestServer(app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
        await server.start_server()
        try:
            assert server.port is not None
            reader = replace(settings, worker_web_port=server.port)
            found = await asyncio.to_thread(subject_from_worker, reader, "cust-1")
            token_path.write_text("a-stale-token\n")
            with pytest.raises(StateUnavailable) as refused:
                await asyncio.to_thread(subject_from_worker, reader, "cust-1")
            return found, str(refused.value)
        finally:
            await server.close()

    found, refused = asyncio.run(run())
    assert found == (None, None)
    assert "refused the web token" in refused and "--source changelog" in refused


def test_explain_without_a_token_file_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(StateUnavailable, match=r"worker-web\.token"):
        subject_from_worker(worker_settings(tmp_path), "cust-1", timeout=1)


def test_authorisation_header_checks() -> None:
    token = "abc123"
    assert authorised("Bearer abc123", token)
    assert authorised("bearer abc123", token)
    assert not authorised(None, token)
    assert not authorised("", token)
    assert not authorised("Bearer abc12", token)
    assert not authorised("Bearer ", token)
    assert not authorised("abc123", token)


def test_faust_serves_no_page_of_its_own_that_would_bypass_the_token(tmp_path: Path) -> None:
    """Faust's table and router pages would serve the state table without the token."""
    app = create_app(worker_settings(tmp_path), bootstrap.policy(Settings()), HoldKeys())
    paths = {r.resource.canonical for r in app.web.web_app.router.routes()}  # type: ignore[attr-defined]
    assert paths == {"/subjects/{subject_id}/"}
