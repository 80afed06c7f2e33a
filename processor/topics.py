"""Creation and checking of the processor's topics with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from processor.config import ConfigError, Settings
from processor.fold.execution import RecordKind

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


# Names of the worker's faust tables; each has a changelog topic
# "<app id>-<table name>-changelog".
TABLE_NAMES = {
    RecordKind.WORKFLOW: "workflow-executions",
    RecordKind.NODE: "node-executions",
    RecordKind.TASK: "task-executions",
    RecordKind.SUMMARY: "execution-summaries",
}


def changelog_topic(settings: Settings, table_name: str) -> str:
    return f"{settings.app_id}-{table_name}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Return every topic the worker needs, with the settings it creates them with."""
    partitions = settings.partitions
    replication = settings.replication_factor
    topics = settings.topics

    input_config = {"cleanup.policy": "delete"}
    # A task record keeps every subtask of a map task with its logs, so it
    # can outgrow the broker's default of 1 MiB per record. The compacted
    # topics take records up to FLYTE_STATE_MAX_RECORD_BYTES, as the worker's
    # producer does.
    record_size_config = {"max.message.bytes": str(settings.max_record_bytes)}
    state_config = {
        "cleanup.policy": "compact",
        # Keep tombstones long enough for consumers that are a day behind.
        "delete.retention.ms": str(24 * 3600 * 1000),
        **record_size_config,
    }
    dead_letter_config = {
        "cleanup.policy": "delete",
        "retention.ms": str(14 * 24 * 3600 * 1000),
        "max.message.bytes": str(settings.max_record_bytes),
    }

    specs = [TopicSpec(name, partitions, replication, dict(input_config)) for name in topics.all_inputs]
    specs.append(TopicSpec(settings.repartition_topic, partitions, replication, dict(input_config)))
    specs.extend(TopicSpec(name, partitions, replication, dict(state_config)) for name in topics.states)
    specs.append(TopicSpec(topics.dead_letter, partitions, replication, dead_letter_config))

    # faust would create the changelogs itself, but only after the agent has
    # started; a table written before the changelog shows in the metadata
    # raises PartitionsMismatch. Creating them here closes that window.
    changelog_config = {"cleanup.policy": "compact", **record_size_config}
    specs.extend(
        TopicSpec(changelog_topic(settings, name), partitions, replication, dict(changelog_config))
        for name in TABLE_NAMES.values()
    )
    return specs


class _ClientErrors:
    """Errors that librdkafka reports through error_cb, such as a failed SASL login."""

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []

    def __call__(self, error: KafkaError) -> None:
        self.errors.append(error)

    def authentication_error(self) -> KafkaError | None:
        for error in self.errors:
            if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
                return error
        return None


def admin_client(settings: Settings) -> AdminClient:
    from processor.kafka_clients import client_config

    errors = _ClientErrors()
    admin = AdminClient({**client_config(settings), "error_cb": errors})
    admin.client_errors = errors
    return admin


def ensure_topics(settings: Settings, admin: AdminClient | None = None) -> None:
    """Create missing topics and check existing ones; raise ConfigError when one does not fit."""
    admin = admin or admin_client(settings)
    specs = topic_specs(settings)

    metadata = read_metadata(admin, settings)

    missing = [spec for spec in specs if spec.name not in metadata.topics]
    if missing and not settings.create_topics:
        names = ", ".join(spec.name for spec in missing)
        raise ConfigError(
            f"topics missing on {settings.bootstrap_servers}: {names}. Create them with "
            f"{settings.partitions} partitions, or set FLYTE_STATE_CREATE_TOPICS=true."
        )

    created: set[str] = set()
    if missing:
        created = _create(admin, missing)
        metadata = _wait_for_topics(admin, [spec.name for spec in missing])

    # Topics that existed before, or that another client created meanwhile,
    # may have settings of their own.
    existing = [spec for spec in specs if spec.name not in created]
    _check_partitions(settings, existing, metadata)
    _check_compaction(admin, [spec for spec in existing if spec.compacted])


def read_metadata(admin: AdminClient, settings: Settings):
    """Read cluster metadata, retrying with backoff until ``settings.connect_timeout_seconds`` pass.

    Raises ConfigError naming the bootstrap address when the broker cannot be
    reached in time.
    """
    deadline = time.monotonic() + settings.connect_timeout_seconds
    delay = 1.0
    while True:
        remaining = deadline - time.monotonic()
        try:
            return admin.list_topics(timeout=max(1.0, min(10.0, remaining)))
        except KafkaException as error:
            authentication_error = _authentication_error(admin, error)
            if authentication_error is not None:
                raise ConfigError(
                    f"authentication to Kafka at {settings.bootstrap_servers} failed: {authentication_error}. "
                    "Check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM."
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConfigError(
                    f"cannot reach Kafka at {settings.bootstrap_servers} within "
                    f"{settings.connect_timeout_seconds:.0f} s: {error.args[0].str()}. Check KAFKA_BOOTSTRAP_SERVERS "
                    "and that the broker runs, or raise FLYTE_STATE_CONNECT_TIMEOUT_SECONDS."
                ) from None
            wait = min(delay, remaining)
            log.warning(
                "cannot reach Kafka at %s (%s); retrying in %.0f s",
                settings.bootstrap_servers,
                error.args[0].str(),
                wait,
            )
            time.sleep(wait)
            delay = min(delay * 2, 15.0)


def _authentication_error(admin: AdminClient, error: KafkaException) -> str | None:
    """Return the text of a rejected login, which no retry can fix; None for other failures."""
    kafka_error = error.args[0]
    if kafka_error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return kafka_error.str()

    # librdkafka reports a failed SASL login through error_cb, and the
    # metadata request itself only times out.
    client_errors = getattr(admin, "client_errors", None)
    if client_errors is None:
        return None
    admin.poll(0)
    reported = client_errors.authentication_error()
    return reported.str() if reported is not None else None


def _create(admin: AdminClient, specs: list[TopicSpec]) -> set[str]:
    """Create the topics; return the names this call created (not those that appeared meanwhile)."""
    new_topics = [
        NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=spec.replication_factor, config=spec.config)
        for spec in specs
    ]
    futures = admin.create_topics(new_topics, operation_timeout=ADMIN_TIMEOUT_SECONDS)
    created = set()
    for name, future in futures.items():
        try:
            future.result()
            created.add(name)
            log.info("created topic %s", name)
        except KafkaException as error:
            # Another worker may have created it since the metadata was read.
            if error.args[0].name() == "TOPIC_ALREADY_EXISTS":
                log.info("topic %s was created concurrently", name)
                continue
            raise ConfigError(f"cannot create topic {name}: {error.args[0].str()}") from None
    return created


def _wait_for_topics(admin: AdminClient, names: list[str]):
    """Return metadata once every topic in ``names`` shows in it with its partitions.

    A topic the controller created reaches the broker's metadata cache a little
    later; clients that subscribe before then see no partitions.
    """
    deadline = time.monotonic() + ADMIN_TIMEOUT_SECONDS
    while True:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS)
        pending = [name for name in names if name not in metadata.topics or not metadata.topics[name].partitions]
        if not pending:
            return metadata
        if time.monotonic() >= deadline:
            raise ConfigError(f"topics {', '.join(pending)} were created but did not appear in the metadata within {ADMIN_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.1)


# librdkafka's default batch.size: the maximum bytes of records in one record
# batch of a partition.
LIBRDKAFKA_BATCH_BYTES = 1_000_000


@dataclass(frozen=True)
class StateTopicLimits:
    """Sizes that the worker's changelog and state topics accept, as their configs set them."""

    # Largest record batch, in bytes, that the state producer builds per partition.
    batch_bytes: int
    # Smallest max.message.bytes or segment.bytes of the topics: the largest
    # record batch, as stored, that the broker takes.
    topic_bytes: int
    # Whether every topic's compression.type is producer or lz4, so that the
    # broker stores the producer's lz4 batches without compressing them again.
    topics_keep_lz4: bool = True

    @classmethod
    def of_created_topics(cls, settings: Settings) -> "StateTopicLimits":
        """Return the limits of the topics as ``ensure_topics`` creates them, without reading their configs."""
        return cls(LIBRDKAFKA_BATCH_BYTES, settings.max_record_bytes)


# Topic compression types under which the broker keeps the state producer's lz4 batches.
_LZ4_KEEPING_COMPRESSION_TYPES = frozenset({"producer", "lz4"})


def smallest_topic_limit(admin: AdminClient, topics: list[str]) -> int | None:
    """Return the smallest ``segment.bytes`` or ``max.message.bytes`` of ``topics``; None when none is set.

    A broker rejects a record batch larger than either: RECORD_LIST_TOO_LARGE
    for ``segment.bytes``, MESSAGE_TOO_LARGE for ``max.message.bytes``.
    Raises KafkaException when the configs cannot be read.
    """
    return _smallest_size_limit(_topic_configs(admin, topics))


def _smallest_size_limit(configs: dict[str, dict]) -> int | None:
    smallest = None
    for config in configs.values():
        for name in ("segment.bytes", "max.message.bytes"):
            value = _config_value(config, name)
            if value is not None:
                smallest = int(value) if smallest is None else min(smallest, int(value))
    return smallest


def _config_value(config: dict, name: str) -> str | None:
    entry = config.get(name)
    return None if entry is None else entry.value


def state_topic_limits(settings: Settings, admin: AdminClient | None = None) -> StateTopicLimits:
    """Read the batch and record sizes that every changelog and state topic accepts.

    A batch is at most librdkafka's default batch size. Like
    ``ensure_topics``, it needs permission to describe the topics' configs,
    and raises KafkaException without it.
    """
    admin = admin or admin_client(settings)
    compacted = [spec.name for spec in topic_specs(settings) if spec.compacted]
    configs = _topic_configs(admin, compacted)
    keep_lz4 = all(
        _config_value(config, "compression.type") in (None, *_LZ4_KEEPING_COMPRESSION_TYPES)
        for config in configs.values()
    )
    smallest = _smallest_size_limit(configs)
    if smallest is None:
        return StateTopicLimits(LIBRDKAFKA_BATCH_BYTES, settings.max_record_bytes, keep_lz4)
    return StateTopicLimits(min(LIBRDKAFKA_BATCH_BYTES, smallest), smallest, keep_lz4)


def _check_partitions(settings: Settings, specs: list[TopicSpec], metadata) -> None:
    for spec in specs:
        actual = len(metadata.topics[spec.name].partitions)
        if actual != spec.partitions:
            raise ConfigError(
                f"topic {spec.name} has {actual} partitions but the processor expects {spec.partitions}: "
                f"set FLYTE_STATE_PARTITIONS={actual} if every processor topic has {actual} partitions, "
                "or recreate the topic"
            )


def _topic_configs(admin: AdminClient, topics: list[str]) -> dict[str, dict]:
    """Return each topic's config entries by name, in one request; raises KafkaException when it fails."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in topics]
    futures = admin.describe_configs(resources, request_timeout=ADMIN_TIMEOUT_SECONDS)
    return {resource.name: future.result() for resource, future in futures.items()}


def _check_compaction(admin: AdminClient, specs: list[TopicSpec]) -> None:
    for name, config in _topic_configs(admin, [spec.name for spec in specs]).items():
        policy = config["cleanup.policy"].value if "cleanup.policy" in config else ""
        if "compact" not in policy:
            raise ConfigError(
                f"state topic {name} has cleanup.policy={policy!r}; it must be compacted: "
                f"run kafka-configs --alter --entity-type topics --entity-name {name} "
                "--add-config cleanup.policy=compact"
            )
