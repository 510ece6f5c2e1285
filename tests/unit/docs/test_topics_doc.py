"""docs/topics.md's table of topics is the one the code's spec gives for the shipped policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.streams.policy.rules import default_policy
from ebbtide.tools.topics.doc import markdown_table

pytestmark = pytest.mark.unit

PAGE = Path(__file__).resolve().parents[3] / "docs" / "topics.md"


def test_the_docs_table_of_topics_is_the_specs() -> None:
    table = markdown_table(default_policy())
    assert table.count("\n| `") >= 10  # every topic, one row each
    assert table in PAGE.read_text(encoding="utf-8"), (
        "docs/topics.md: run `python -m ebbtide.tools.topics.doc`"
    )
