"""One typed settings object, read from ``EBBTIDE_*`` environment variables."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Kafka security, for every Kafka client of every process (ebbtide.runtime.kafka_security,
    # docs/security.md): PLAINTEXT, SSL, SASL_SSL (or SASL_PLAINTEXT); SASL as a user whose
    # password is in a file or in EBBTIDE_KAFKA_SASL_PASSWORD (never a default, never shown);
    # TLS trusting the CA file (default: the system's CAs), with a client certificate if given.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # SCRAM-SHA-512 (default with SASL), SCRAM-SHA-256, PLAIN
    kafka_sasl_username: str | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = "ebbtide"
    partitions: int = 4
    app_id: str = "ebbtide-lifecycle"
    state_dir: Path = Path(".state")
    # Where the worker keeps its state table: rocksdb (on local disk under <state dir>/faust, one
    # database per partition; a restart replays only the changelog written since) or memory (all
    # of it in RAM, read again from the changelog on every start).
    state_store: str = "rocksdb"
    # Every HTTP endpoint (/metrics, /healthz, /readyz of each process, the worker's web) listens on
    # http_host (0.0.0.0: every interface); each process kind on its own port.
    http_host: str = "127.0.0.1"
    worker_metrics_port: int = 9308
    # The PostgreSQL, log-store and backups sinks; unset: each kind's own (9309, 9314, 9315)
    sink_metrics_port: int | None = None
    worker_web_port: int = 9310  # the worker's state lookups (ebbtide explain)
    # Where the worker's state lookups listen: loopback unless set, also when EBBTIDE_HTTP_HOST
    # opens the metrics and probes to other hosts (its pages hold a subject's state).
    worker_web_host: str = "127.0.0.1"
    http_sink_metrics_port: int = 9311  # `ebbtide sink http` (--metrics-port overrides)
    log_format: str = "text"  # text (for terminals) or json (one object per line)
    session_timeout: float = 30.0  # seconds before a dead worker's partitions move on
    # Static group membership: a restarted worker with the same id takes its partitions back at
    # once. Default: the host or pod name (worker_member_id); two workers on one host must each
    # set their own, never share one.
    worker_instance_id: str | None = None
    # Static group membership of a sink's consumer (group.instance.id): a sink restarted after a
    # crash takes its partitions back at once. Default ``<store>-<host name>``; two sinks of the
    # same store on one host must each set their own (one id fences the other).
    sink_instance_id: str | None = None
    clock_metrics_port: int = 9312  # `ebbtide clock wall` serves /metrics here
    pg_dsn: str | None = field(default=None, repr=False)  # no default: there is no default password
    # The key store's database (each subject's data key, sinks/keys/store.py), as its own
    # least-privilege role; unset: pg_dsn. Publishers seal personal values with the keys, sinks
    # and tools open them.
    keys_dsn: str | None = field(default=None, repr=False)
    # Change data capture (docs/cdc.md): Kafka Connect's REST API (`ebbtide cdc connect` registers
    # Debezium there), the role Debezium logs in as (REPLICATION, read only; its database is the one
    # captured), and where `ebbtide cdc run` serves /metrics.
    connect_url: str = "http://127.0.0.1:8083"
    cdc_dsn: str | None = field(default=None, repr=False)
    cdc_metrics_port: int = 9318
    # How long <prefix>.cdc keeps Debezium's change events (record keys, subjects, refs in clear):
    # days, at least 2 (docs/topics.md).
    cdc_retention_days: int = 7
    # The store map (which stores hold which categories); default: the one shipped with the policy
    # (read by ebbtide.bootstrap.store_map).
    store_map: Path | None = None
    # The worker's Ed25519 key for deletion certificates; made on first start if missing.
    certificate_key: Path | None = None
    certificate_issuer: str = "Ebbtide deletion pipeline"  # who signs, as the certificate names it
    # The worker's public key, with which a sink verifies every deletion command (default: the
    # .pub beside the worker's signing key). A sink without it refuses to start.
    worker_public_key: Path | None = None
    # A sink's Ed25519 key for its receipts; "{store}" in the path is replaced by the store id.
    # Default <state dir>/keys/sink-<store>.key, made on first start with its .pub beside it.
    sink_key: Path | None = None
    # The directory of the sinks' public keys the worker verifies receipts with: sink-<store>.pub
    # for each store (default <state dir>/keys, where the sinks of one host write theirs).
    trusted_keys: Path | None = None
    # The clock's Ed25519 key for its ticks (default <state dir>/keys/clock.key, made on first
    # start with clock.pub beside it; the worker trusts <trusted keys>/clock.pub).
    clock_key: Path | None = None
    # The public keys of the legal hold signers (e.g. the legal team's tool) the worker trusts: a
    # LegalHoldPlaced or LegalHoldReleased not signed by one of them is dead-lettered. Comma-separated
    # PEM files or directories (every *.pub in one is trusted), read at the worker's start. Default
    # <state dir>/keys/holds.pub, made on the worker's first start with holds.key beside it (one host).
    hold_keys: str | None = None
    # The private key `ebbtide publish` and EventPublisher sign legal hold events with. No default:
    # without it, a hold event is refused before anything is sent.
    hold_signing_key: Path | None = None
    # Event times the worker accepts, FROM-UNTIL in years ([1 January FROM, 1 January UNTIL), UTC);
    # an event outside is dead-lettered (a placeholder date must not stop or skew deletions).
    event_years: str = "1990-2100"
    # wall: the worker refuses a clock tick more than clock_tolerance seconds ahead of its own wall
    # clock (a forged tick from 2099 would delete years early, irreversibly); replay: any tick
    # goes (accelerated and scripted clocks: the demo, tests, replays, benchmarks).
    clock_mode: str = "wall"
    clock_tolerance: float = 300.0
    # Copies of every partition of the project's topics (`ebbtide topics apply`, the worker's
    # changelog): 3 in production, so one broker can be lost; 1 only on a one-broker development
    # stack (the local stack's env file says 1).
    topic_replication_factor: int = 3
    # Replicas that must have a write before the broker acknowledges it (acks=all): 2 of 3 in
    # production, so an acknowledged write survives one broker's loss; at most the replication factor.
    topic_min_insync_replicas: int = 2
    # The worker signs a checkpoint of each partition's decision chain every checkpoint_every
    # decisions or checkpoint_seconds seconds (at the end of a batch, if the chain moved).
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0
    # `ebbtide ingest serve`, the HTTP ingestion service (docs/ingest.md): its address; who may
    # publish (a file of bearer tokens, "PRODUCER TOKEN" per line, and/or TLS client certificates
    # signed by ingest_tls_client_ca, over TLS with ingest_tls_certfile and ingest_tls_keyfile); how
    # much one request may carry; how many event ids it remembers to answer a repeated request; how
    # long it waits for Kafka to acknowledge a request's events before it answers 503; which
    # producers (comma-separated names) may publish legal hold events, which it signs with
    # hold_signing_key (none by default: anyone else is answered 403).
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 9317
    ingest_tokens: Path | None = None
    ingest_tls_certfile: Path | None = None
    ingest_tls_keyfile: Path | None = None
    ingest_tls_client_ca: Path | None = None
    ingest_max_body_bytes: int = 5_000_000
    ingest_max_events: int = 500
    ingest_remembered_events: int = 100_000
    ingest_timeout: float = 30.0
    ingest_hold_producers: str = ""
    # A schema registry's Confluent-compatible API (Apicurio: http://HOST:PORT/apis/ccompat/v7):
    # where the worker finds the writer schema of a Confluent-framed event by its id, and where
    # `ebbtide schemas register` and producers on the confluent wire format register or look up
    # theirs. Unset: a Confluent-framed event is dead-lettered, naming this setting. Not in the
    # settings' repr: the URL may carry a user and password (messages name it through `shown`).
    schema_registry_url: str | None = field(default=None, repr=False)
    # How `ebbtide publish` and EventPublisher frame lifecycle events: single-object (Avro's own
    # framing, no registry needed) or confluent (a zero byte and the registry's schema id).
    wire_format: str = "single-object"

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
            elif f.type in ("int", int, "int | None"):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise SettingsError(f"EBBTIDE_{f.name.upper()} must be a whole number") from None
            elif f.type in ("Path", Path, "Path | None"):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        if "store_map" in values and not Path(str(values["store_map"])).is_file():
            raise SettingsError(f"EBBTIDE_STORE_MAP: no such file: {values['store_map']}")
        settings = cls(**values)  # type: ignore[arg-type]
        from ebbtide.runtime.kafka_security import security  # it imports this module

        security(settings)  # refused at start, naming the setting
        if settings.partitions < 1:
            raise SettingsError("EBBTIDE_PARTITIONS must be at least 1")
        settings.event_window  # noqa: B018  # refused at start, not at the first event
        if settings.clock_mode not in ("wall", "replay"):
            raise SettingsError("EBBTIDE_CLOCK_MODE must be wall or replay")
        _check_topic_durability(settings)
        if settings.state_store not in ("rocksdb", "memory"):
            raise SettingsError("EBBTIDE_STATE_STORE must be rocksdb or memory")
        if settings.log_format not in ("text", "json"):
            raise SettingsError("EBBTIDE_LOG_FORMAT must be text or json")
        if settings.cdc_retention_days < 2:
            raise SettingsError("EBBTIDE_CDC_RETENTION_DAYS must be at least 2")
        if settings.checkpoint_every < 1:
            raise SettingsError("EBBTIDE_CHECKPOINT_EVERY must be at least 1")
        if not settings.checkpoint_seconds > 0:
            raise SettingsError("EBBTIDE_CHECKPOINT_SECONDS must be more than 0")
        if settings.wire_format not in ("single-object", "confluent"):
            raise SettingsError("EBBTIDE_WIRE_FORMAT must be single-object or confluent")
        if settings.wire_format == "confluent" and not settings.schema_registry_url:
            raise SettingsError("EBBTIDE_WIRE_FORMAT=confluent needs EBBTIDE_SCHEMA_REGISTRY_URL")
        if settings.schema_registry_url and not settings.schema_registry_url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError("EBBTIDE_SCHEMA_REGISTRY_URL must be an http:// or https:// URL")
        if settings.hold_keys is not None and not settings.hold_public_keys:
            raise SettingsError(
                "EBBTIDE_HOLD_KEYS must name public key files or directories (comma-separated)"
            )
        return settings

    @property
    def event_window(self) -> tuple[int, int]:
        """[from, until) in epoch ms of the event times the worker accepts (``event_years``)."""
        first, _, last = self.event_years.partition("-")
        if not (first.isdigit() and last.isdigit() and 1970 <= int(first) < int(last) <= 9000):
            raise SettingsError("EBBTIDE_EVENT_YEARS must be FROM-UNTIL in years, e.g. 1990-2100")
        return (
            int(datetime(int(first), 1, 1, tzinfo=UTC).timestamp()) * 1000,
            int(datetime(int(last), 1, 1, tzinfo=UTC).timestamp()) * 1000,
        )

    @property
    def worker_member_id(self) -> str:
        """The worker's static member id (Kafka group.instance.id): EBBTIDE_WORKER_INSTANCE_ID, else
        the host or pod name (HOSTNAME, else the system's host name)."""
        return self.worker_instance_id or os.environ.get("HOSTNAME") or socket.gethostname()

    @property
    def signing_key(self) -> Path:
        return self.certificate_key or self.state_dir / "keys" / "certificate-signing.key"

    @property
    def command_public_key(self) -> Path:
        """The worker's public key a sink verifies commands with (EBBTIDE_WORKER_PUBLIC_KEY)."""
        return self.worker_public_key or self.signing_key.with_suffix(".pub")

    def sink_key_for(self, store: str) -> Path:
        """The private key a store's sink signs its receipts with (EBBTIDE_SINK_KEY)."""
        if self.sink_key is None:
            return self.state_dir / "keys" / f"sink-{store}.key"
        return Path(str(self.sink_key).replace("{store}", store))

    @property
    def clock_signing_key(self) -> Path:
        return self.clock_key or self.state_dir / "keys" / "clock.key"

    @property
    def local_hold_signing_key(self) -> Path:
        """The private key of the default hold key pair, ``<state dir>/keys/holds.key`` (one host)."""
        return self.state_dir / "keys" / "holds.key"

    @property
    def hold_public_keys(self) -> tuple[Path, ...]:
        """The files or directories of the hold signers' public keys (EBBTIDE_HOLD_KEYS)."""
        if self.hold_keys is None:
            return (self.local_hold_signing_key.with_suffix(".pub"),)
        return tuple(Path(part.strip()) for part in self.hold_keys.split(",") if part.strip())

    @property
    def ingest_hold_producer_names(self) -> frozenset[str]:
        """The producers the ingestion service lets publish legal hold events
        (EBBTIDE_INGEST_HOLD_PRODUCERS, comma-separated)."""
        return frozenset(part.strip() for part in self.ingest_hold_producers.split(",") if part.strip())

    @property
    def trusted_keys_dir(self) -> Path:
        """Where the worker finds sink-<store>.pub for each store (EBBTIDE_TRUSTED_KEYS)."""
        return self.trusted_keys or self.state_dir / "keys"

    def require_keys_dsn(self) -> str:
        dsn = self.keys_dsn or self.pg_dsn
        if not dsn:
            raise SettingsError(
                "EBBTIDE_KEYS_DSN (or EBBTIDE_PG_DSN) is not set: personal values are sealed with "
                "their subject's key from the key store"
            )
        return dsn

    def require_pg_dsn(self) -> str:
        if not self.pg_dsn:
            raise SettingsError(
                "EBBTIDE_PG_DSN is not set: give the PostgreSQL DSN of the store "
                "(make stack-up writes one to .state/env)"
            )
        return self.pg_dsn


def _check_topic_durability(settings: Settings) -> None:
    """A replication factor of at least 1, and a min.insync.replicas the replicas can meet."""
    factor, least = settings.topic_replication_factor, settings.topic_min_insync_replicas
    if factor < 1:
        raise SettingsError("EBBTIDE_TOPIC_REPLICATION_FACTOR must be at least 1")
    if not 1 <= least <= factor:
        raise SettingsError(
            f"EBBTIDE_TOPIC_MIN_INSYNC_REPLICAS must be from 1 to EBBTIDE_TOPIC_REPLICATION_FACTOR "
            f"({factor}); it is {least}"
        )


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

    @property
    def certificates(self) -> str:
        return f"{self.prefix}.certificates"

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}.checkpoints"

    def commands(self, store: str) -> str:
        return f"{self.prefix}.commands.{store}"
