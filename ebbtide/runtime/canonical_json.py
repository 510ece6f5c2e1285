"""The compact, key-sorted JSON every signature covers (:mod:`ebbtide.runtime.authenticity`)."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Mapping
from typing import Any

_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes a str as


def compact_json(body: Mapping[str, Any]) -> bytes:
    """``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8,
    the same bytes built directly when every value is a string, an integer or None (a command's
    or a receipt's signed content: the worker signs one per command, a sink verifies one and signs
    one); anything else goes through ``json.dumps``."""
    parts = []
    for key in sorted(body):
        value = body[key]
        if type(value) is str:
            text = _json_string(value)
        elif type(value) is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        else:
            return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        parts.append(f"{_json_string(key)}:{text}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")
