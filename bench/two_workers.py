"""One worker against two, on the same events: do two processes (two cores) stamp faster?

Both runs go the same way: the workers are started (one consumer group, each its own static
member id, metrics port and state directory) on an empty events topic, and the events are
published only once every worker reports its partitions assigned and recovered (/readyz) and
together they hold every partition, so no rebalance falls inside the measured time. The rate is
the events over the time from the start of publishing to the moment the workers together have
taken them all (applied or dead-lettered). The publisher runs in the bench's process on the
same two cores, in both runs.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace

from bench.common import Context
from bench.harness import (
    SLOW_POLL,
    STALL,
    Message,
    Run,
    WorkerRun,
    cpu_seconds,
    publish,
    running,
    scratch,
    wait_taken,
)
from bench.outputs import record
from ebbtide.runtime.settings import Settings, Topics
from ebbtide.tools import processes
from ebbtide.tools.processes import free_port

READY = "assigned and recovered: "  # how the worker's /readyz check ``partitions`` says it holds


def held(port: int) -> set[int] | None:
    """The partitions a worker holds and has recovered, by its /readyz; None while not ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return None  # 503 (not ready) is an HTTPError, an OSError
    detail = str(body.get("checks", {}).get("partitions", ""))
    if not detail.startswith(READY):
        return None
    listed = detail[len(READY) :]
    return set() if listed == "none" else {int(p) for p in listed.split(",")}


def wait_assigned(
    workers: list[tuple[processes.Child, int]], partitions: int, timeout: float = STALL
) -> None:
    """Until each worker is ready and together they hold each of ``partitions`` exactly once."""
    deadline = time.monotonic() + timeout
    while True:
        holdings = [held(port) for _, port in workers]
        ready = [h for h in holdings if h]
        if len(ready) == len(workers) and sorted(p for h in ready for p in h) == list(range(partitions)):
            return
        for child, _ in workers:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(workers)} workers did not share the {partitions} partitions within {timeout:.0f}s "
                f"(each holds {holdings})"
            )
        time.sleep(0.2)


def time_live(ctx: Context, messages: list[Message], workers: int) -> WorkerRun:
    """``workers`` worker processes, started before the events arrive; see the module docstring."""
    with scratch(ctx, f"stamping-{workers}w") as settings, ExitStack() as stack:
        started: list[tuple[processes.Child, int]] = []
        for n in range(workers):
            mine = _worker_settings(settings, n)
            child = stack.enter_context(running(f"worker-{n}", mine))
            started.append((child, mine.worker_metrics_port))
        wait_assigned(started, settings.partitions)
        children = [child for child, _ in started]
        cpu, begun = cpu_seconds(children), time.perf_counter()
        with ThreadPoolExecutor(1) as pool:
            published = pool.submit(publish, settings, Topics(settings.topic_prefix).events, messages)
            last, _ = wait_taken(started, len(messages), poll=SLOW_POLL)
            after = cpu_seconds(children)
            published.result()  # raises what the publisher raised
        used = None if cpu is None or after is None else after - cpu
        stack.close()  # the workers stopped cleanly: everything they wrote is on the broker
        return WorkerRun(
            Run(0.0, last - begun, len(messages), used), record(settings, len(messages), keep=False)
        )


def _worker_settings(settings: Settings, n: int) -> Settings:
    """Worker ``n`` of the group: its own static member id, ports and state directory."""
    return replace(
        settings,
        worker_instance_id=f"{settings.app_id}-{n}",
        worker_metrics_port=free_port(),
        worker_web_port=free_port(),
        state_dir=settings.state_dir / f"worker-{n}",
    )
