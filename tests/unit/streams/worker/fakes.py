"""A stand-in for the lifecycle processor, for tests of what drives it (the batch step, the
schema wait)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ebbtide.streams.worker.routing import Out


@dataclass
class FakeProcessor:
    """Answers each message with the outputs scripted for its offset; logs every call."""

    outputs: dict[int, list[Out]] = field(default_factory=dict)
    fail_at: int | None = None
    log: list[str] = field(default_factory=list)

    def on_message(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> list[Out]:
        if offset == self.fail_at:
            raise RuntimeError("the processor failed")
        self.log.append(f"process {offset}")
        return self.outputs.get(offset, [])

    def end_batch(self) -> list[Out]:
        return []

    def flush(self) -> int:
        self.log.append("flush")
        return 0

    def discard(self) -> None:
        self.log.append("discard")
