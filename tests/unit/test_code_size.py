"""Modules small enough to read in one sitting, functions that fit a screen (STYLE.md 9): no
module over 400 lines, no function over 60 unless its docstring says why it is long."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ebbtide", "streams", "sinks", "schemas", "chaos", "bench")
MAX_MODULE = 400
MAX_FUNCTION = 60
REASON = "long because"  # a long function's docstring says why, in these words (any case)


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE
    }
    assert long == {}


def test_no_function_is_over_60_lines_without_saying_why() -> None:
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION and REASON not in (ast.get_docstring(node) or "").lower():
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
