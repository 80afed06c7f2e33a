"""Settings of the processor, read from the environment.

Every setting has an environment variable; the CLI's options override them.
Topic names, partition count and replication are explicit because the worker
creates its topics itself and checks that existing ones fit.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from processor.events import EventKind
from processor.security import SecuritySettings
from processor.security import to_env as security_to_env


class ConfigError(ValueError):
    """A setting has a value the processor cannot run with; the message states what to change."""


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum of {minimum}")
    return value


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be above 0")
    return value


def _env_bool(name: str, default: bool) -> bool:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={text!r} is not a boolean: use true or false")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Topics:
    """Names of every topic the processor reads or writes, besides faust's changelogs."""

    workflow_events: str = "flyte.events.workflow"
    node_events: str = "flyte.events.node"
    task_events: str = "flyte.events.task"

    workflow_state: str = "flyte.state.workflow-executions"
    node_state: str = "flyte.state.node-executions"
    task_state: str = "flyte.state.task-executions"
    summary_state: str = "flyte.state.execution-summaries"

    dead_letter: str = "flyte.events.dead-letter"

    # Internal topic that carries events whose producer keyed or partitioned
    # them differently from the execution key; empty means "<app id>-events-by-execution".
    repartition: str = ""

    # Topic of FlyteAdmin's CloudEvents publisher, read beside the binary
    # input topics. An empty name turns the CloudEvents input off.
    cloudevents: str = ""

    def input_topic(self, kind: EventKind) -> str:
        return {
            EventKind.WORKFLOW: self.workflow_events,
            EventKind.NODE: self.node_events,
            EventKind.TASK: self.task_events,
        }[kind]

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.workflow_events, self.node_events, self.task_events)

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """The binary input topics, followed by the CloudEvents topic when one is set."""
        return (*self.inputs, self.cloudevents) if self.cloudevents else self.inputs

    @property
    def states(self) -> tuple[str, str, str, str]:
        return (self.workflow_state, self.node_state, self.task_state, self.summary_state)


# Debug contexts of librdkafka's ``debug`` property; librdkafka 2.16 accepts each of them.
LIBRDKAFKA_DEBUG_CONTEXTS = frozenset(
    {
        "all", "generic", "broker", "topic", "metadata", "feature", "queue", "msg", "protocol", "cgrp",
        "security", "fetch", "interceptor", "plugin", "consumer", "admin", "eos", "mock", "assignor",
        "conf", "telemetry",
    }
)

# Upper bound of FLYTE_STATE_BATCH_LINGER_SECONDS. A batch's events wait this
# long for their state records, and faust's rebalance waits for them too.
MAX_BATCH_LINGER_SECONDS = 60.0

# Upper bounds of the consumer's fetch settings. aiokafka requests at most 50
# MiB per fetch from the broker, so a larger minimum could never be reached,
# and a wait of seconds would hold every event that long before its fold.
# NOTE: faust requests at most 1 MiB per partition, so a minimum above 1 MiB
# times the partitions in a fetch is never reached either, and every fetch then
# waits the full time. The partitions are known only after assignment.
MAX_FETCH_MIN_BYTES = 50 * 1024 * 1024
MAX_FETCH_MAX_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"

    # faust app id: the consumer group and the prefix of the table changelog topics.
    app_id: str = "flyte-state-processor"

    topics: Topics = field(default_factory=Topics)

    # Partition count of every input, internal and state topic. Input topics
    # must have exactly this many partitions because each table partition is
    # the partition of the events it folds.
    partitions: int = 6
    replication_factor: int = 1

    # Create missing topics at start-up; when false, a missing topic is an error.
    create_topics: bool = True

    # Table store: "memory" or "rocksdb" (faust's rocksdict store).
    store: str = "rocksdb"
    state_dir: Path = Path("state-data")

    # Largest event value the worker folds; larger ones are dead-lettered.
    max_event_bytes: int = 1024 * 1024

    # Largest record the worker's producer sends, dead letters included. The
    # dead-letter topic is created with a max.message.bytes this large.
    max_record_bytes: int = 8 * 1024 * 1024

    # Consumer group session timeout in seconds. Short, so that a restarted
    # worker gets its partitions back quickly.
    session_timeout_seconds: float = 10.0

    # Finished executions whose updated_at is older than this are removed from
    # the tables and tombstoned in the state topics.
    retention_seconds: float = 7 * 24 * 3600.0

    # How often each worker sweeps its partitions for expired executions.
    retention_sweep_seconds: float = 600.0

    # The worker folds events in batches and then writes each changed record
    # once to its table and state topic and acknowledges the events. A batch
    # ends at this many events or when its first event is this old.
    batch_max_events: int = 2000
    batch_linger_seconds: float = 0.25

    # Workers that keep a standby copy of each table partition by reading its
    # changelog. 1 is faust's default. Two workers at 5,000 events/s had a p99
    # of 1.04 s with 1 and 0.62 and 0.92 s with 0 (docs/benchmarks.md).
    standby_replicas: int = 1

    # The broker responds to a fetch of the worker's faust consumer once it has
    # this many bytes for it, or after the wait. With faust's settings (1 byte,
    # 1.5 s) it responded once it had any record, and two workers at 2,500
    # events/s each made about 220 fetches a second of 11 events each and kept
    # both CPUs busy (docs/benchmarks.md, "Fetches of at least 64 KiB").
    fetch_min_bytes: int = 64 * 1024
    fetch_max_wait_seconds: float = 0.04

    # How long the worker keeps retrying an unreachable broker at start-up.
    connect_timeout_seconds: float = 120.0

    log_level: str = "INFO"

    # librdkafka debug contexts of the confluent-kafka clients, for example
    # "eos,broker". Empty turns librdkafka's debug log off.
    librdkafka_debug: str = ""

    # TCP port of the worker's Prometheus endpoint, or 0 to turn the endpoint off.
    metrics_port: int = 9108
    # Address the endpoint listens on: all interfaces, so that Prometheus on another host can scrape it.
    metrics_address: str = "0.0.0.0"

    # SASL and TLS settings of every Kafka client; see docs/security.md.
    security: SecuritySettings = field(default_factory=SecuritySettings)

    @property
    def repartition_topic(self) -> str:
        return self.topics.repartition or f"{self.app_id}-events-by-execution"

    @classmethod
    def from_env(cls) -> "Settings":
        defaults = Topics()
        topics = Topics(
            workflow_events=_env("FLYTE_STATE_TOPIC_WORKFLOW_EVENTS", defaults.workflow_events),
            node_events=_env("FLYTE_STATE_TOPIC_NODE_EVENTS", defaults.node_events),
            task_events=_env("FLYTE_STATE_TOPIC_TASK_EVENTS", defaults.task_events),
            workflow_state=_env("FLYTE_STATE_TOPIC_WORKFLOW_STATE", defaults.workflow_state),
            node_state=_env("FLYTE_STATE_TOPIC_NODE_STATE", defaults.node_state),
            task_state=_env("FLYTE_STATE_TOPIC_TASK_STATE", defaults.task_state),
            summary_state=_env("FLYTE_STATE_TOPIC_SUMMARY_STATE", defaults.summary_state),
            dead_letter=_env("FLYTE_STATE_TOPIC_DEAD_LETTER", defaults.dead_letter),
            repartition=_env("FLYTE_STATE_TOPIC_REPARTITION", ""),
            cloudevents=_env("FLYTE_STATE_TOPIC_CLOUDEVENTS", ""),
        )
        settings = cls(
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            app_id=_env("FLYTE_STATE_APP_ID", cls.app_id),
            topics=topics,
            partitions=_env_int("FLYTE_STATE_PARTITIONS", cls.partitions),
            replication_factor=_env_int("FLYTE_STATE_REPLICATION_FACTOR", cls.replication_factor),
            create_topics=_env_bool("FLYTE_STATE_CREATE_TOPICS", cls.create_topics),
            store=_env("FLYTE_STATE_STORE", cls.store),
            state_dir=Path(_env("FLYTE_STATE_DIR", str(cls.state_dir))),
            max_event_bytes=_env_int("FLYTE_STATE_MAX_EVENT_BYTES", cls.max_event_bytes),
            max_record_bytes=_env_int("FLYTE_STATE_MAX_RECORD_BYTES", cls.max_record_bytes),
            retention_seconds=_env_float("FLYTE_STATE_RETENTION_SECONDS", cls.retention_seconds),
            retention_sweep_seconds=_env_float("FLYTE_STATE_RETENTION_SWEEP_SECONDS", cls.retention_sweep_seconds),
            batch_max_events=_env_int("FLYTE_STATE_BATCH_MAX_EVENTS", cls.batch_max_events, minimum=1),
            batch_linger_seconds=_env_float("FLYTE_STATE_BATCH_LINGER_SECONDS", cls.batch_linger_seconds),
            standby_replicas=_env_int("FLYTE_STATE_STANDBY_REPLICAS", cls.standby_replicas, minimum=0),
            fetch_min_bytes=_env_int("FLYTE_STATE_FETCH_MIN_BYTES", cls.fetch_min_bytes),
            fetch_max_wait_seconds=_env_float("FLYTE_STATE_FETCH_MAX_WAIT_SECONDS", cls.fetch_max_wait_seconds),
            connect_timeout_seconds=_env_float("FLYTE_STATE_CONNECT_TIMEOUT_SECONDS", cls.connect_timeout_seconds),
            log_level=_env("FLYTE_STATE_LOG_LEVEL", cls.log_level).upper(),
            librdkafka_debug=_env("FLYTE_STATE_LIBRDKAFKA_DEBUG", cls.librdkafka_debug).strip(),
            metrics_port=_env_int("FLYTE_STATE_METRICS_PORT", cls.metrics_port, minimum=0),
            metrics_address=_env("FLYTE_STATE_METRICS_ADDRESS", cls.metrics_address),
            security=SecuritySettings.from_env(),
        )
        settings.validate()
        return settings

    def replace(self, **changes) -> "Settings":
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def with_topic_prefix(self, prefix: str) -> "Settings":
        """Return settings whose topic names and app id all start with ``prefix``; used to isolate tests."""
        topics = Topics(**{name: f"{prefix}{value}" for name, value in dataclasses.asdict(self.topics).items() if value})
        return self.replace(topics=topics, app_id=f"{prefix}{self.app_id}")

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that make ``from_env`` rebuild these settings."""
        topics = self.topics
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "FLYTE_STATE_APP_ID": self.app_id,
            "FLYTE_STATE_TOPIC_WORKFLOW_EVENTS": topics.workflow_events,
            "FLYTE_STATE_TOPIC_NODE_EVENTS": topics.node_events,
            "FLYTE_STATE_TOPIC_TASK_EVENTS": topics.task_events,
            "FLYTE_STATE_TOPIC_WORKFLOW_STATE": topics.workflow_state,
            "FLYTE_STATE_TOPIC_NODE_STATE": topics.node_state,
            "FLYTE_STATE_TOPIC_TASK_STATE": topics.task_state,
            "FLYTE_STATE_TOPIC_SUMMARY_STATE": topics.summary_state,
            "FLYTE_STATE_TOPIC_DEAD_LETTER": topics.dead_letter,
            "FLYTE_STATE_TOPIC_REPARTITION": self.repartition_topic,
            "FLYTE_STATE_TOPIC_CLOUDEVENTS": topics.cloudevents,
            "FLYTE_STATE_PARTITIONS": str(self.partitions),
            "FLYTE_STATE_REPLICATION_FACTOR": str(self.replication_factor),
            "FLYTE_STATE_CREATE_TOPICS": "true" if self.create_topics else "false",
            "FLYTE_STATE_STORE": self.store,
            "FLYTE_STATE_DIR": str(self.state_dir),
            "FLYTE_STATE_MAX_EVENT_BYTES": str(self.max_event_bytes),
            "FLYTE_STATE_MAX_RECORD_BYTES": str(self.max_record_bytes),
            "FLYTE_STATE_RETENTION_SECONDS": str(self.retention_seconds),
            "FLYTE_STATE_RETENTION_SWEEP_SECONDS": str(self.retention_sweep_seconds),
            "FLYTE_STATE_BATCH_MAX_EVENTS": str(self.batch_max_events),
            "FLYTE_STATE_BATCH_LINGER_SECONDS": str(self.batch_linger_seconds),
            "FLYTE_STATE_STANDBY_REPLICAS": str(self.standby_replicas),
            "FLYTE_STATE_FETCH_MIN_BYTES": str(self.fetch_min_bytes),
            "FLYTE_STATE_FETCH_MAX_WAIT_SECONDS": str(self.fetch_max_wait_seconds),
            "FLYTE_STATE_CONNECT_TIMEOUT_SECONDS": str(self.connect_timeout_seconds),
            "FLYTE_STATE_LOG_LEVEL": self.log_level,
            "FLYTE_STATE_LIBRDKAFKA_DEBUG": self.librdkafka_debug,
            "FLYTE_STATE_METRICS_PORT": str(self.metrics_port),
            "FLYTE_STATE_METRICS_ADDRESS": self.metrics_address,
            **security_to_env(self.security),
        }

    def validate(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is empty: set it to host:port[,host:port...]")
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"invalid bootstrap server {server.strip()!r} in KAFKA_BOOTSTRAP_SERVERS: expected host:port"
                )
        if self.metrics_port > 65535:
            raise ConfigError(
                f"FLYTE_STATE_METRICS_PORT={self.metrics_port} is not a TCP port: use 1-65535, or 0 to turn it off"
            )
        if self.store not in {"memory", "rocksdb"}:
            raise ConfigError(f"FLYTE_STATE_STORE={self.store!r} is not supported: use memory or rocksdb")
        if self.max_event_bytes > self.max_record_bytes:
            raise ConfigError(
                f"FLYTE_STATE_MAX_EVENT_BYTES ({self.max_event_bytes}) exceeds FLYTE_STATE_MAX_RECORD_BYTES "
                f"({self.max_record_bytes}): oversized events could not be dead-lettered"
            )
        if self.standby_replicas < 0:
            raise ConfigError(f"FLYTE_STATE_STANDBY_REPLICAS={self.standby_replicas} must be 0 or more")
        if self.batch_max_events < 1:
            raise ConfigError(f"FLYTE_STATE_BATCH_MAX_EVENTS={self.batch_max_events} must be at least 1")
        if not 0 < self.batch_linger_seconds <= MAX_BATCH_LINGER_SECONDS:
            raise ConfigError(
                f"FLYTE_STATE_BATCH_LINGER_SECONDS={self.batch_linger_seconds} must lie above 0 and at most "
                f"{MAX_BATCH_LINGER_SECONDS:.0f}, because state records wait that long before they are published"
            )
        if not 1 <= self.fetch_min_bytes <= MAX_FETCH_MIN_BYTES:
            raise ConfigError(
                f"FLYTE_STATE_FETCH_MIN_BYTES={self.fetch_min_bytes} must lie between 1 and {MAX_FETCH_MIN_BYTES}, "
                "the maximum that one fetch requests"
            )
        if not 0 < self.fetch_max_wait_seconds <= MAX_FETCH_MAX_WAIT_SECONDS:
            raise ConfigError(
                f"FLYTE_STATE_FETCH_MAX_WAIT_SECONDS={self.fetch_max_wait_seconds} must lie above 0 and at most "
                f"{MAX_FETCH_MAX_WAIT_SECONDS:.0f}, because fetched events wait that long before they are folded"
            )
        unknown_contexts = sorted(
            {context.strip() for context in self.librdkafka_debug.split(",") if context.strip()}
            - LIBRDKAFKA_DEBUG_CONTEXTS
        )
        if unknown_contexts:
            raise ConfigError(
                f"FLYTE_STATE_LIBRDKAFKA_DEBUG names unknown librdkafka debug contexts {', '.join(unknown_contexts)}: "
                f"use a comma-separated list of {', '.join(sorted(LIBRDKAFKA_DEBUG_CONTEXTS))}"
            )
        names = [*self.topics.all_inputs, *self.topics.states, self.topics.dead_letter, self.repartition_topic]
        if len(set(names)) != len(names):
            raise ConfigError(f"topic names must differ from each other, got {names}")
