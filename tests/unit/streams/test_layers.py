"""The pure core stays pure: ``streams/policy`` imports nothing but itself and the standard
library, ``streams/engine`` nothing but itself, the policy and the standard library (no Faust,
Kafka, database driver or ``ebbtide``), and neither imports the worker."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[3] / "streams"
ALLOWED = {
    "policy": ("ebbtide.streams.policy",),
    "engine": ("ebbtide.streams.engine", "ebbtide.streams.policy"),
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_the_pure_packages_import_only_the_standard_library_and_the_layers_below(package: str) -> None:
    modules = sorted((STREAMS / package).rglob("*.py"))
    assert modules
    outside = {
        f"{path.relative_to(STREAMS.parent)}: {name}"
        for path in modules
        for name in imports_of(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and not any(name == allowed or name.startswith(f"{allowed}.") for allowed in ALLOWED[package])
    }
    assert not outside, sorted(outside)
