"""What the golden run costs the worker's processor: ``PYTHONPATH=$PWD python -m tests.golden.measure``.

Replays the recording (``run.py``) and prints the changelog bytes it writes (every value a
batch's flush puts in the state table, as the changelog gets it) per lifecycle event and per
input message, and the processor's CPU time per input (best of ``--repeat`` replays), on a
plain dict and with every value a flush writes encoded as Faust's json codec would (today's
values) or counted as it is (bytes)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from faust.serializers.codecs import get_codec

from tests.golden.run import read, replay


class Counting(dict[str, Any]):
    """A plain table that counts the bytes of each value written (bytes as they are; anything
    else as Faust's json codec encodes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.bytes = 0
        self._json = get_codec("json")

    def __setitem__(self, key: str, value: Any) -> None:
        self.written += 1
        self.bytes += len(value) if isinstance(value, bytes) else len(self._json.dumps(value))
        super().__setitem__(key, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="replays; the CPU time is the best")
    args = parser.parse_args()
    run = read()
    inputs = [i for p in run.phases for b in p.batches for i in b.inputs]
    events = sum(1 for i in inputs if i.source == "events")
    table = Counting()
    replay(run, table)  # the bytes written
    plain, counted = [], []
    for _ in range(args.repeat):  # CPU: on a plain dict, and with each value encoded as Faust would
        for times, made in ((plain, dict[str, Any]), (counted, Counting)):
            start = time.process_time()
            replay(run, made())
            times.append(time.process_time() - start)
    print(f"{events} events, {len(inputs)} inputs; changelog: {table.written} values, {table.bytes:,} bytes")
    print(
        f"changelog bytes per event {table.bytes / events:,.1f}, per input {table.bytes / len(inputs):,.1f}"
    )
    print(f"bytes per changelog value {table.bytes / table.written:,.1f}")
    per = 1e6 / len(inputs)
    print(
        f"processor CPU per input {min(plain) * per:,.1f} us, with the changelog values encoded "
        f"{min(counted) * per:,.1f} us (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
