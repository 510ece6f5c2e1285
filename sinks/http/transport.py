"""One HTTP call to a vendor, with the standard library: the status and Retry-After, never the body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPSConnection
from typing import Protocol
from urllib.parse import urlsplit

USER_AGENT = "ebbtide-http-sink/1"


@dataclass(frozen=True)
class Answer:
    """What a vendor answered: the status, and its Retry-After in seconds if it gave one."""

    status: int
    retry_after: float | None = None


class Transport(Protocol):
    """Makes one HTTP call. Raises ``TimeoutError`` on a timeout, ``OSError`` or
    ``http.client.HTTPException`` when there is no (valid) answer."""

    def __call__(self, method: str, url: str, headers: Mapping[str, str], timeout: float) -> Answer: ...


def http_transport(method: str, url: str, headers: Mapping[str, str], timeout: float) -> Answer:
    """One call with the standard library, on a connection of its own; the body is never read."""
    parts = urlsplit(url)
    connection = (HTTPSConnection if parts.scheme == "https" else HTTPConnection)(
        parts.hostname or "", parts.port, timeout=timeout
    )
    try:
        connection.request(method, parts.path or "/", headers={"User-Agent": USER_AGENT, **headers})
        response = connection.getresponse()
        return Answer(response.status, _seconds(response.getheader("Retry-After")))
    finally:
        connection.close()


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds (the delay-seconds form; an HTTP date is ignored)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())
