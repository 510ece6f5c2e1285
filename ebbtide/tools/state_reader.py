"""Read the lifecycle worker's state from its changelog topic (no worker needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from kafka import TopicPartition

from ebbtide.runtime import kafka
from ebbtide.runtime.endpoints import client_host
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.runtime.web_token import ENV as TOKEN_ENV
from ebbtide.runtime.web_token import TokenUnavailable, read_token, token_file
from ebbtide.runtime.web_token import header as token_header
from ebbtide.streams.engine import snapshot
from ebbtide.streams.engine.model import SubjectState
from ebbtide.streams.worker import state_format, values

TABLE = "state"


class StateUnavailable(RuntimeError):
    pass


def changelog_topic(settings: Settings) -> str:
    """Faust names a table's changelog ``<app id>-<table>-changelog``."""
    return f"{settings.app_id}-{TABLE}-changelog"


def read_to_end(settings: Settings, topic: str, missing: str | None = None) -> Iterator[Any]:
    """Every message of ``topic``, each partition from its beginning to its end as of now (no
    consumer group). A topic that does not exist raises :class:`StateUnavailable` with the
    ``missing`` explanation, or yields nothing when ``missing`` is None."""
    consumer = kafka.consumer(settings, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            if missing is not None:
                raise StateUnavailable(missing)
            return
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for messages in consumer.poll(timeout_ms=1000).values():
                yield from messages
    finally:
        consumer.close()


def read_changelog(settings: Settings, subject_id: str | None = None) -> Iterator[tuple[str, Any]]:
    """The latest value of each key (or only ``subject_id``'s keys), read to the current end:
    decoded as the worker reads them (``streams.worker.values``), a subject's state as stored
    (bytes, for :func:`ebbtide.streams.worker.state_format.decode`)."""
    topic = changelog_topic(settings)
    missing = f"no changelog topic {topic}: has a worker with app id {settings.app_id} run?"
    latest: dict[str, bytes | None] = {}
    suffix = f":{subject_id}" if subject_id else None
    for message in read_to_end(settings, topic, missing):
        key = json.loads(message.key)
        if suffix and not (key.startswith("s:") and key.endswith(suffix)):
            continue
        latest[key] = message.value
    for key, value in latest.items():
        if value is not None:
            yield key, values.decode(key, value)


def read_certificates(settings: Settings, subject_id: str) -> list[bytes]:
    """Every certificate published for ``subject_id``, oldest first (the topic read to its end)."""
    topic = Topics(settings.topic_prefix).certificates
    missing = f"no topic {topic}: create the pipeline's topics (ebbtide topics create)"
    key = subject_id.encode()
    messages = read_to_end(settings, topic, missing)
    found = [(m.timestamp, m.offset, m.value) for m in messages if m.key == key and m.value]
    return [value for _, _, value in sorted(found)]


def subjects_from_changelog(settings: Settings, subject_id: str | None = None) -> Iterator[SubjectState]:
    for key, value in read_changelog(settings, subject_id):
        if key.startswith("s:"):
            state = state_format.decode(value)
            if subject_id is None or state.subject_id == subject_id:
                yield state


def clock_from_changelog(settings: Settings) -> int | None:
    clocks = [v.get("now") for k, v in read_changelog(settings) if k.startswith("p:")]
    known = [c for c in clocks if isinstance(c, int)]
    return min(known) if known else None


def subject_from_worker(
    settings: Settings, subject_id: str, timeout: float = 5.0
) -> tuple[SubjectState | None, int | None]:
    """Ask the running worker (fast: one table lookup), with its web token (the file the worker
    made at start, see :mod:`ebbtide.runtime.web_token`). Raises StateUnavailable if there is no token or
    the worker does not answer or refuses."""
    path = token_file(settings)
    try:
        token = read_token(path)
    except TokenUnavailable as exc:
        raise StateUnavailable(
            f"{exc} (the worker makes it at start; set {TOKEN_ENV} to the worker's token file); "
            "use --source changelog to read its state from Kafka"
        ) from None
    where = f"{client_host(settings.worker_web_host)}:{settings.worker_web_port}"  # EBBTIDE_WORKER_WEB_HOST
    url = f"http://{where}/subjects/{urllib.parse.quote(subject_id, safe='')}/"
    request = urllib.request.Request(url, headers=token_header(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        why = "refused the web token in " + str(path) if exc.code == 401 else f"answered HTTP {exc.code}"
        raise StateUnavailable(
            f"the worker on {where} {why}; use --source changelog to read its state from Kafka"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise StateUnavailable(
            f"the worker does not answer on {where} ({exc}); "
            "use --source changelog to read its state from Kafka"
        ) from None
    state = snapshot.load(body["state"]) if body.get("state") else None
    return state, body.get("now")
