"""The bytes every signature covers: ``compact_json`` builds them directly for flat objects of
strings, integers and None, and must give exactly what ``json.dumps`` gives (else signatures made
before, or by the other side, would no longer verify)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ebbtide.runtime.authenticity import COMMAND, RECEIPT, canonical_bytes, signed_content
from ebbtide.runtime.canonical_json import compact_json
from tests.support import deletion_command

VALUES = st.one_of(
    st.text(),  # every code point hypothesis draws: control characters, quotes, non-BMP, ...
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),  # not an int to JSON: the json.dumps path
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
)


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@given(st.dictionaries(st.text(), VALUES, max_size=12))
def test_compact_json_is_json_dumps_byte_for_byte(body: dict[str, Any]) -> None:
    try:
        expected = dumps(body)
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        return
    assert compact_json(body) == expected


def test_a_commands_and_a_receipts_signed_content_are_unchanged() -> None:
    command = deletion_command("customer_db", "client", 'kunde "Ærlig"\n\u2028', command_id="c-1")
    receipt = {
        **command,
        "outcome": "DELETED",
        "rows": 3,
        "reason": None,
        "executed_at": command["issued_at"],
    }
    for what, datum in ((COMMAND, command), (RECEIPT, receipt)):
        assert canonical_bytes(what, datum) == dumps(signed_content(what, datum))
