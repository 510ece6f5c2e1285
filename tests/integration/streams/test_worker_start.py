"""The worker refuses to start when its input topics' partitions differ from EBBTIDE_PARTITIONS:
its routing check would otherwise dead-letter valid events (a subject's partition is counted with
the setting)."""

from __future__ import annotations

from dataclasses import replace

from ebbtide.bootstrap import partition_mismatch
from ebbtide.runtime.settings import Settings
from tests.support import make_topics


def test_the_worker_refuses_topics_with_another_partition_count(settings: Settings) -> None:
    make_topics(settings)  # EBBTIDE_PARTITIONS (4) each
    assert partition_mismatch(settings) is None
    problem = partition_mismatch(replace(settings, partitions=6))
    assert problem is not None and "has 4 partitions but EBBTIDE_PARTITIONS is 6" in problem
