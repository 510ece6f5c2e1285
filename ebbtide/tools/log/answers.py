"""Finding an erasure answer on ``<prefix>.answers`` by its request id."""

from __future__ import annotations

from typing import Any

from ebbtide.runtime.settings import Settings, Topics
from ebbtide.schemas import ERASURE_ANSWER, InvalidMessage, codec_for
from ebbtide.tools.log.reading import read


def find_answer(settings: Settings, request_id: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """The decoded answer to ``request_id`` (the last one published, if the worker published it
    again), or None. The topic is keyed by subject, not by request: every partition is read to
    its end. A message that does not decode is passed over. Raises
    :class:`~ebbtide.tools.log.reading.LogUnavailable`."""
    codec = codec_for(ERASURE_ANSWER)
    found: list[tuple[int, int, dict[str, Any]]] = []
    for message in read(settings, [Topics(settings.topic_prefix).answers], timeout):
        try:
            answer = codec.decode(message.value)
        except InvalidMessage:
            continue
        if answer["request_id"] == request_id:
            found.append((message.timestamp, message.offset, answer))
    return max(found, key=lambda f: (f[0], f[1]))[2] if found else None
