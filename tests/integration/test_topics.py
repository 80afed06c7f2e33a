"""Topic creation and the errors for topics that do not fit."""

from __future__ import annotations


import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from support import create_topic, isolated_settings, run_cli
from processor.config import ConfigError
from processor.topics import (
    LIBRDKAFKA_BATCH_BYTES,
    StateTopicLimits,
    changelog_topic,
    ensure_topics,
    smallest_topic_limit,
    state_topic_limits,
    topic_specs,
)

pytestmark = pytest.mark.integration


def _admin(settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def test_state_topics_created_compacted(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)

    admin = _admin(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in settings.topics.states]
    configs = {resource.name: future.result() for resource, future in admin.describe_configs(resources).items()}

    for name in settings.topics.states:
        assert configs[name]["cleanup.policy"].value == "compact", name


def test_every_topic_has_configured_partitions(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)

    metadata = _admin(settings).list_topics(timeout=30)

    for spec in topic_specs(settings):
        assert len(metadata.topics[spec.name].partitions) == settings.partitions, spec.name


def test_partition_mismatch_rejected(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    admin = _admin(settings)
    futures = admin.create_topics([NewTopic(settings.topics.node_events, num_partitions=settings.partitions + 2)])
    futures[settings.topics.node_events].result()

    with pytest.raises(ConfigError) as raised:
        ensure_topics(settings)

    assert settings.topics.node_events in str(raised.value)
    assert "FLYTE_STATE_PARTITIONS" in str(raised.value)


def test_uncompacted_state_topic_rejected(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    admin = _admin(settings)
    topic = settings.topics.workflow_state
    admin.create_topics([NewTopic(topic, num_partitions=settings.partitions, config={"cleanup.policy": "delete"})])[
        topic
    ].result()

    with pytest.raises(ConfigError) as raised:
        ensure_topics(settings)

    assert "cleanup.policy" in str(raised.value)


def test_missing_topics_without_creation(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path).replace(create_topics=False)

    with pytest.raises(ConfigError) as raised:
        ensure_topics(settings)

    assert "FLYTE_STATE_CREATE_TOPICS" in str(raised.value)


def test_worker_exits_on_mismatch(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    admin = _admin(settings)
    admin.create_topics([NewTopic(settings.topics.task_events, num_partitions=1)])[settings.topics.task_events].result()

    result = run_cli(settings, "worker")

    assert result.returncode == 2
    assert "has 1 partitions but the processor expects 3" in result.stderr


def test_worker_unreachable_broker_exits(tmp_path):
    # Nothing listens on port 1 of the loopback address.
    settings = isolated_settings("127.0.0.1:1", tmp_path).replace(connect_timeout_seconds=4.0)

    result = run_cli(settings, "worker")

    assert result.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:1 within 4 s" in result.stderr
    assert "FLYTE_STATE_CONNECT_TIMEOUT_SECONDS" in result.stderr


def test_state_limits_default_topics(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)

    limits = state_topic_limits(settings)

    assert limits == StateTopicLimits.of_created_topics(settings)
    assert limits.batch_bytes == LIBRDKAFKA_BATCH_BYTES
    assert limits.topic_bytes == settings.max_record_bytes


def test_compacted_topics_take_max_record_bytes(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    ensure_topics(settings)
    compacted = [spec.name for spec in topic_specs(settings) if spec.compacted]

    smallest = smallest_topic_limit(_admin(settings), compacted)

    assert len(compacted) == 8
    assert smallest == settings.max_record_bytes


def test_state_limits_small_changelog_segments(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    topic = changelog_topic(settings, "task-executions")
    create_topic(settings, topic, {"cleanup.policy": "compact", "segment.bytes": "65536"})
    ensure_topics(settings)

    limits = state_topic_limits(settings)

    assert limits.batch_bytes == 65536
    assert limits.topic_bytes == 65536


def test_state_limits_small_message_size(kafka_bootstrap, tmp_path):
    # A summary topic created before the worker, with the broker's default
    # limit or a smaller one, caps records below FLYTE_STATE_MAX_RECORD_BYTES.
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    topic = settings.topics.summary_state
    create_topic(settings, topic, {"cleanup.policy": "compact", "max.message.bytes": "200000"})
    ensure_topics(settings)

    limits = state_topic_limits(settings)

    assert limits.batch_bytes == 200000
    assert limits.topic_bytes == 200000


def test_state_limits_read_compression_type(kafka_bootstrap, tmp_path):
    # A changelog that compresses every batch again with gzip: the producer's
    # lz4 batches do not reach the disk as they are.
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    config = {"cleanup.policy": "compact", "compression.type": "gzip"}
    create_topic(settings, changelog_topic(settings, "node-executions"), config)
    ensure_topics(settings)

    assert state_topic_limits(settings).topics_keep_lz4 is False


def test_state_limits_keep_lz4_by_default(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topic(settings, settings.topics.task_state, {"cleanup.policy": "compact", "compression.type": "lz4"})
    ensure_topics(settings)

    assert state_topic_limits(settings).topics_keep_lz4 is True
