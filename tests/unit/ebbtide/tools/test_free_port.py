"""The ports handed to children: free, outside the ephemeral range, never handed out twice."""

from __future__ import annotations

import pytest

from ebbtide.tools import processes

pytestmark = pytest.mark.unit


def test_a_port_is_not_handed_out_again_before_its_child_binds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_PORTS", (23100, 23400))
    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    ports = [processes.free_port() for _ in range(150)]  # none bound: each is still free
    assert len(set(ports)) == len(ports)
    assert all(23100 <= port < 23400 for port in ports)
