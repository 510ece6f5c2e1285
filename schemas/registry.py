"""A schema registry's Confluent-compatible API (Apicurio's /apis/ccompat/v7, Confluent's own):
writer schemas by id for the worker, subjects for ``ebbtide schemas register`` and producers.

The HTTP client is confluent-kafka's ``SchemaRegistryClient``. Its failures are sorted here: the
registry has no such id, or refused a schema (:class:`RegistryRefused`), versus the registry
could not be asked (:class:`RegistryUnavailable`: down, timing out, answering 5xx).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cache, partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import fastavro
import httpx2
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas.codec import (
    CHECKPOINT,
    CLOCK_TICK,
    DECISION,
    DELETION_COMMAND,
    DELETION_RECEIPT,
    ERASURE_ANSWER,
    LIFECYCLE_EVENT,
    Codec,
    InvalidMessage,
    SchemaFile,
    codec_for,
)
from ebbtide.schemas.compat import incompatibilities
from ebbtide.schemas.wire import NotRegistered, RegistryUnavailable, encode_confluent

T = TypeVar("T")
COMPATIBILITY = "BACKWARD"  # a new version must read every older one's data (as compat.py checks)
NOT_FOUND = 404
CONFLICT = 409  # the registry's answer to a schema its compatibility rule refuses
MAX_REFUSED = 1024  # ids remembered as bad (unknown, not resolving): a bound, as any sender picks them
REFUSAL_TTL = (
    60.0  # seconds an id is remembered as bad: one registered moments later (replication lag) is read
)
# Refusals of a lookup that are the worker's or the moment's, not the message's: its credentials
# (401, 403), a timeout (408) or a rate limit (429). The lookup waits; any other 4xx refuses the id.
WAIT_ON = frozenset({401, 403, 408, 429})


def subject(topic: str) -> str:
    """The subject of a topic's values: Confluent's default naming (TopicNameStrategy), the one
    its serializers register and look up under unless told otherwise."""
    return f"{topic}-value"


def subjects(topics: Topics, stores: list[str]) -> dict[str, list[str]]:
    """Each schema's subjects: the one of the topic it is written to (a deletion command: the
    command topic of each of ``stores``)."""
    return {
        LIFECYCLE_EVENT: [subject(topics.events)],
        CLOCK_TICK: [subject(topics.clock)],
        DELETION_RECEIPT: [subject(topics.receipts)],
        DECISION: [subject(topics.decisions)],
        ERASURE_ANSWER: [subject(topics.answers)],
        CHECKPOINT: [subject(topics.checkpoints)],
        DELETION_COMMAND: [subject(topics.commands(store)) for store in stores],
    }


class RegistryRefused(Exception):
    """The registry answered, and said no (no such id, an incompatible schema, a bad request).
    ``status`` is its HTTP status; ``reason`` is safe to print (no schema, no value)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def client(url: str, timeout: float = 5.0) -> SchemaRegistryClient:
    """A client of the registry at ``url`` (its Confluent-compatible API), each call bounded by
    ``timeout`` seconds and tried once (the callers decide when to try again)."""
    return SchemaRegistryClient({"url": url, "timeout": timeout, "max.retries": 0})


def shown(url: str) -> str:
    """``url`` as messages name it: without a user or password it may carry."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def call(url: str, what: Callable[[], T]) -> T:
    """Run one client call, sorting its failures into :class:`RegistryRefused` and
    :class:`RegistryUnavailable` (both naming ``url``'s registry, never a schema or value). Any
    other exception of the call (an answer the client cannot read) is unavailability too."""
    try:
        return what()
    except SchemaRegistryError as exc:
        status = int(exc.http_status_code or 0)
        if 400 <= status < 500:
            message = (str(exc.error_message or "").splitlines() or [""])[0][:300]
            raise RegistryRefused(status, f"HTTP {status}: {message}") from None
        raise RegistryUnavailable(f"the schema registry at {shown(url)} answered HTTP {status}") from None
    except (httpx2.HTTPError, OSError) as exc:
        raise RegistryUnavailable(
            f"the schema registry at {shown(url)} cannot be reached ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # e.g. a 2xx answer that is not JSON (a proxy's page), or no body
        raise RegistryUnavailable(
            f"the schema registry at {shown(url)} gave an unreadable answer ({type(exc).__name__})"
        ) from None


@cache
def _shared(url: str) -> SchemaRegistryClient:
    """One client per registry for the calls of a command (its connections are reused)."""
    return client(url)


class RegistrySchemas:
    """Writer schemas by id from the registry at ``url``, each checked once to resolve against
    ``codec``'s current schema and then cached (a schema id's content never changes). An id the
    registry does not have, or whose schema does not resolve, is remembered as refused for
    :data:`REFUSAL_TTL` seconds of ``clock`` (at most :data:`MAX_REFUSED` of them, oldest
    forgotten first), then asked again."""

    def __init__(
        self,
        url: str,
        codec: Codec,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.codec = codec
        self.clock = clock
        self._client = client(url, timeout)
        self._known: dict[int, Any] = {}
        self._refused: OrderedDict[int, tuple[str, float]] = OrderedDict()  # id -> (reason, until)
        self._lock = threading.Lock()  # fetched from a thread, read by the worker's loop

    def cached(self, schema_id: int) -> bool:
        """Whether ``schema_id`` is decided (known, or refused less than the TTL ago): no request needed."""
        with self._lock:
            return schema_id in self._known or self._refusal(schema_id) is not None

    def _refusal(self, schema_id: int) -> str | None:
        """The reason ``schema_id`` is refused, if it is and its refusal has not expired (then
        it is forgotten). Called with the lock held."""
        refused = self._refused.get(schema_id)
        if refused is None:
            return None
        if self.clock() >= refused[1]:
            del self._refused[schema_id]
            return None
        return refused[0]

    def writer(self, schema_id: int) -> Any:
        with self._lock:
            if schema_id in self._known:
                return self._known[schema_id]
            reason = self._refusal(schema_id)
            if reason is not None:
                raise InvalidMessage(reason)
        try:
            parsed = self._fetch(schema_id)
        except InvalidMessage as exc:
            with self._lock:
                self._refused.pop(schema_id, None)
                self._refused[schema_id] = (exc.reason, self.clock() + REFUSAL_TTL)
                while len(self._refused) > MAX_REFUSED:
                    self._refused.popitem(last=False)
            raise
        with self._lock:
            self._known[schema_id] = parsed
        return parsed

    def _fetch(self, schema_id: int) -> Any:
        name = self.codec.name
        try:
            schema = call(self.url, lambda: self._client.get_schema(schema_id))
        except RegistryRefused as exc:
            if exc.status == NOT_FOUND:
                raise InvalidMessage(
                    f"{name}: unknown schema id {schema_id} (the registry has none)"
                ) from None
            if exc.status not in WAIT_ON:  # the registry refuses this id: the message is at fault
                raise InvalidMessage(
                    f"{name}: the registry refused schema id {schema_id} (HTTP {exc.status})"
                ) from None
            raise RegistryUnavailable(  # the worker's access, a timeout or a rate limit
                f"the schema registry at {shown(self.url)} refused the lookup of schema id "
                f"{schema_id} ({exc.reason})"
            ) from None
        if (schema.schema_type or "AVRO") != "AVRO":
            raise InvalidMessage(f"{name}: schema id {schema_id} is a {schema.schema_type} schema, not Avro")
        text = schema.schema_str or ""
        try:
            raw = json.loads(text)
            problems = incompatibilities(self.codec.current.path, text)
            parsed = fastavro.parse_schema(raw)
        except Exception as exc:  # a schema our Avro libraries cannot parse
            raise InvalidMessage(
                f"{name}: schema id {schema_id} is not a usable Avro schema ({type(exc).__name__})"
            ) from None
        if problems:
            raise InvalidMessage(
                f"{name}: schema id {schema_id} does not resolve against "
                f"{name} v{self.codec.current.version}: {problems[0]}"
            )
        return parsed


def register(url: str, subject: str, schema: SchemaFile, set_compatibility: bool) -> int:
    """Register ``schema`` under ``subject`` (first setting the subject's compatibility to
    :data:`COMPATIBILITY` if ``set_compatibility``); its id. Registering a schema the subject
    already holds changes nothing and returns its id. Raises :class:`RegistryRefused` (409: the
    compatibility rule refused it) or :class:`RegistryUnavailable`."""
    registry = _shared(url)
    if set_compatibility:
        call(url, lambda: registry.set_compatibility(subject, COMPATIBILITY))
    return call(url, lambda: registry.register_schema(subject, Schema(schema.path.read_text(), "AVRO")))


def schema_id(url: str, subject: str, schema: SchemaFile) -> int:
    """The id under which ``subject`` holds ``schema``; :class:`RegistryRefused` (404) if it
    does not hold it."""
    registry = _shared(url)
    found = call(url, lambda: registry.lookup_schema(subject, Schema(schema.path.read_text(), "AVRO")))
    return int(found.schema_id or 0)


def lifecycle_encoder(settings: Settings) -> Callable[[dict[str, Any]], bytes]:
    """How a producer with ``settings`` encodes lifecycle events (EBBTIDE_WIRE_FORMAT): Avro
    single-object (the default), or the Confluent wire format with the id under which the events
    topic's subject holds the newest lifecycle_event version, asked once, here. Raises
    :class:`NotRegistered` when the registry does not hold it or cannot be reached."""
    codec = codec_for(LIFECYCLE_EVENT)
    if settings.wire_format != "confluent":
        return codec.encode
    url = settings.schema_registry_url or ""
    name = subject(Topics(settings.topic_prefix).events)
    try:
        found = schema_id(url, name, codec.current)
    except RegistryUnavailable as exc:
        raise NotRegistered(f"{exc.reason} (EBBTIDE_WIRE_FORMAT=confluent needs it)") from None
    except RegistryRefused as exc:
        raise NotRegistered(
            f"the schema registry at {shown(url)} does not hold {codec.current.path.name} under {name} "
            f"({exc.reason}); run `ebbtide schemas register` first"
        ) from None
    return partial(encode_confluent, codec, found)
