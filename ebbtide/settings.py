"""One typed settings object, read from ``EBBTIDE_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "ebbtide"
    partitions: int = 4
    app_id: str = "ebbtide-lifecycle"
    state_dir: Path = Path(".state")
    worker_metrics_port: int = 9308
    sink_metrics_port: int = 9309
    worker_web_port: int = 9310  # the worker's state lookups (ebbtide explain), on 127.0.0.1
    session_timeout: float = 30.0  # seconds before a dead worker's partitions move on
    # Static group membership: a restarted worker with the same id takes its partitions back at
    # once. Give each worker process its own stable id (e.g. its host name); never share one.
    worker_instance_id: str | None = None
    pg_dsn: str | None = None  # no default: there is no default password
    stores: str = "customer_db"  # comma-separated ids of the stores that have a command topic and a sink

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"EBBTIDE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.type in ("float", float):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise SettingsError(f"EBBTIDE_{f.name.upper()} must be a number") from None
            elif f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise SettingsError(f"EBBTIDE_{f.name.upper()} must be a whole number") from None
            elif f.type in ("Path", Path):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.partitions < 1:
            raise SettingsError("EBBTIDE_PARTITIONS must be at least 1")
        return settings

    @property
    def store_ids(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.stores.split(",") if s.strip())

    def require_pg_dsn(self) -> str:
        if not self.pg_dsn:
            raise SettingsError(
                "EBBTIDE_PG_DSN is not set: give the PostgreSQL DSN of the store "
                "(make stack-up writes one to .state/env)"
            )
        return self.pg_dsn


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix (tests use a unique prefix each)."""

    prefix: str = "ebbtide"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def clock(self) -> str:
        return f"{self.prefix}.clock"

    @property
    def receipts(self) -> str:
        return f"{self.prefix}.receipts"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def answers(self) -> str:
        return f"{self.prefix}.answers"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    def commands(self, store: str) -> str:
        return f"{self.prefix}.commands.{store}"
