"""The Ebbtide client: typed lifecycle events and the publishers a backend service uses.

    from ebbtide.client import EventPublisher, ServiceOrdered

    with EventPublisher(Settings.from_env()) as publisher:
        publisher.publish(ServiceOrdered(event_id=..., subject_id=..., event_time=..., ...))

:mod:`ebbtide.client.events` holds one class per event type, generated from the lifecycle event
schema (``python -m ebbtide.tools.generate_events``); :class:`EventPublisher` sends them with
kafka-python, :class:`AsyncEventPublisher` with aiokafka. ``pip install ebbtide`` is enough: the
client imports none of the worker's or the sinks' dependencies (their extra is ``server``).
"""

from ebbtide.client import events
from ebbtide.client.aio import AsyncEventPublisher
from ebbtide.client.events import *  # noqa: F403 (every event class, generated)
from ebbtide.client.outgoing import PublishFailed
from ebbtide.client.publisher import EventPublisher
from ebbtide.client.records import InvalidEvent
from ebbtide.client.typed import as_json, from_record
from ebbtide.runtime.settings import Settings

__all__ = [
    "AsyncEventPublisher",
    "EventPublisher",
    "InvalidEvent",
    "PublishFailed",
    "Settings",
    "as_json",
    "from_record",
]
__all__ += events.__all__
