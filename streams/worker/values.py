"""How each kind of state table value is stored: bytes, the first byte the state format version.

The table (``streams.worker.app``) holds bytes, written to its changelog as they are. By key:

- ``s:<p>:<subject>``: the subject's state (:mod:`ebbtide.streams.worker.state_format`);
- ``p:<p>``: the partition's progress, ``[now, events done, [[now, events end, offset], ...]]``;
- ``c:<p>``: the head of the partition's decision chain, ``[seq, hash (32 bytes), checkpoint
  seq, checkpoint wall time]``;
- ``u:<p>:<id>``: a certificate held for want of a signature, as a msgpack map.

Each is the version byte (:data:`VERSION`) and msgpack. A value written before (state format 0)
is JSON, so its first byte is ``{``: it is read as such and written back in this format when
next saved. The staged table (``staging``) decodes what the rest of the worker reads (plain dicts
for ``p:``, ``c:`` and ``u:``, as they were; subject states are left to ``staging.Subjects``)
and encodes each value once, when a batch's writes are flushed.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ebbtide.streams.worker import state_format

VERSION = state_format.VERSION


class _Progress(msgspec.Struct, array_like=True):
    now: int | None
    events_done: int
    deferred: list[list[int | None]]


class _Head(msgspec.Struct, array_like=True):
    seq: int
    hash: bytes
    cp_seq: int
    cp_at: float | None


_encoder = msgspec.msgpack.Encoder()
_progress = msgspec.msgpack.Decoder(_Progress)
_head = msgspec.msgpack.Decoder(_Head)
_map = msgspec.msgpack.Decoder(dict[str, Any])
_PREFIX = bytes((VERSION,))


def encode(key: str, value: Any) -> bytes:
    """The stored form of a staged value (a ``state_format.Entry`` for a subject, else a dict)."""
    kind = key[0]
    if kind == "s":
        return state_format.encode(value)
    if kind == "p":
        row: msgspec.Struct = _Progress(value["now"], value["events_done"], value["deferred"])
    elif kind == "c":
        row = _Head(value["seq"], bytes.fromhex(value["hash"]), value["cp_seq"], value["cp_at"])
    else:
        return _PREFIX + _encoder.encode(value)
    return _PREFIX + _encoder.encode(row)


def decode(key: str, raw: bytes) -> Any:
    """What a stored value says: a dict for ``p:``, ``c:`` and ``u:`` keys; a subject's state is
    returned as stored (``staging.Subjects`` decodes it, lazily)."""
    kind = key[0]
    if kind == "s":
        return raw
    if state_format.is_legacy(raw):
        return json.loads(raw)
    if raw[0] != VERSION:
        raise ValueError(f"state format {raw[0]} of table key {key!r} unknown to this worker")
    body = memoryview(raw)[1:]
    if kind == "p":
        progress = _progress.decode(body)
        return {"now": progress.now, "events_done": progress.events_done, "deferred": progress.deferred}
    if kind == "c":
        head = _head.decode(body)
        return {"seq": head.seq, "hash": head.hash.hex(), "cp_seq": head.cp_seq, "cp_at": head.cp_at}
    return _map.decode(body)
