"""The ingestion service's FastAPI application: ``POST /v1/events``, the probes and ``/metrics``.

Its OpenAPI document (``/openapi.json``, ``ebbtide ingest openapi``) is generated from this module:
the response models below, and the request body's schema from the lifecycle event's Avro schema
(:mod:`.openapi`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ebbtide.ingest.auth import Access, certificate_producer
from ebbtide.ingest.batch import Accepted, Refused, accept, events_of
from ebbtide.ingest.openapi import body_schema
from ebbtide.ingest.publishing import Ack, Unavailable
from ebbtide.runtime.metrics import (
    INGEST_EVENTS,
    INGEST_REGISTRY,
    INGEST_REQUESTS,
    INGEST_SECONDS,
    INGEST_STATUSES,
    ingest_started,
)
from ebbtide.runtime.settings import SettingsError

if TYPE_CHECKING:
    from ebbtide.runtime.authenticity import MessageSigner
    from ebbtide.streams.policy.rules import Policy

log = logging.getLogger("ebbtide.ingest")
PROBLEM = "application/problem+json"
REASONS = {**INGEST_STATUSES, 404: "not_found", 405: "not_found"}


class Publisher(Protocol):
    def publish(self, accepted: list[Accepted]) -> list[Ack]: ...
    def ready(self) -> tuple[bool, str]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """What the application serves with: who may publish, where to, what is valid, how much."""

    access: Access
    publisher: Publisher
    policy: Policy
    hold_signer: MessageSigner | None
    max_body_bytes: int
    max_events: int
    hold_producers: frozenset[str] = frozenset()  # who may publish legal hold events (signed here)


class EventAck(BaseModel):
    event_id: str
    topic: str
    partition: int
    offset: int
    repeated: bool = Field(description="an event id published before: not sent again, its first ack")


class Acknowledged(BaseModel):
    events: list[EventAck] = Field(description="one per event of the request, in its order")


class EventProblem(BaseModel):
    index: int | None = Field(description="the event's place in the batch (0 for one event); null: the body")
    field: str | None = Field(description="the field refused, if one is; never its value")
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    errors: list[EventProblem] = []


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    reason: str


def _problem(status: int, title: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "errors": errors or []}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {code: {"model": Problem, "content": {PROBLEM: ref}} for code in codes}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is over ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length", "")
    too_large = Refused(413, f"the body is over the {limit} bytes allowed")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(service: Service) -> FastAPI:
    """The application serving ``service``."""
    app = FastAPI(
        title="Ebbtide ingestion",
        version="1",
        description="Lifecycle events over HTTP, acknowledged once Kafka has every one (docs/ingest.md).",
        docs_url=None,  # the interactive pages load scripts from a CDN: /openapi.json only
        redoc_url=None,
    )
    app.middleware("http")(_measured)
    body = {"required": True, "content": {"application/json": {"schema": body_schema(service.max_events)}}}

    @app.post(
        "/v1/events",
        response_model=Acknowledged,
        responses=_problems(400, 401, 403, 409, 413, 422, 503),
        openapi_extra={"requestBody": body, "security": [{"bearer": []}]},
        summary="Publish one event or a batch",
    )
    async def post_events(request: Request) -> Response:
        producer = service.access.producer(
            request.headers.get("authorization"), certificate_producer(request.scope)
        )
        if producer is None:
            return _problem(401, "unauthenticated")
        try:
            events = events_of(await read_body(request, service.max_body_bytes), service.max_events)
            acks = await run_in_threadpool(_publish, service, events, producer)
        except Refused as refused:
            return _problem(refused.status, refused.title, [p.as_json() for p in refused.problems])
        except Unavailable as exc:
            return _problem(503, f"not published: {exc}; send the request again")
        except SettingsError as exc:  # a setting the service needs for these events (the key store)
            log.error("ingest: not published: %s", exc)
            return _problem(503, f"not published: the service is not set up for these events: {exc}")
        for ack in acks:
            INGEST_EVENTS.labels("repeated" if ack.repeated else "published").inc()
        return JSONResponse({"events": [ack.as_json() for ack in acks]})

    @app.get("/healthz", response_model=Health, summary="The process answers")
    async def healthz() -> Health:
        return Health(status="alive")

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> Response:
        """Ready when Kafka answers for the events topic."""
        ok, reason = await run_in_threadpool(service.publisher.ready)
        body = {"status": "ready" if ok else "not ready", "reason": reason}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(INGEST_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    _security_scheme(app)
    ingest_started()
    return app


def _publish(service: Service, events: list[Any], producer: str) -> list[Ack]:
    accepted = accept(events, producer, service.policy, service.hold_signer, service.hold_producers)
    return service.publisher.publish(accepted)


async def _measured(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count and time every request by its route's template (``other`` if none matched: a path
    is never a label), status code and reason class."""
    started = time.monotonic()
    response = await call_next(request)
    route = getattr(request.scope.get("route"), "path", "other")
    status = response.status_code
    reason = "ok" if status < 400 else REASONS.get(status, "invalid")
    INGEST_REQUESTS.labels(route, str(status), reason).inc()
    INGEST_SECONDS.labels(route).observe(time.monotonic() - started)
    return response


def _security_scheme(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document (the check itself is :class:`Access`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
