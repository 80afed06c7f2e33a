"""Batched writes on the real broker: one record per changed key per batch, and a clean stop."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processor import expectations
from processor.kafka_clients import client_config
from processor.lag import consumer_lag
from processor.publisher import EventPublisher
from processor.topics import TABLE_NAMES, ensure_topics
from processor.worker_process import WorkerProcess
from support import isolated_settings, streams_dir, wait_for_facts

pytestmark = pytest.mark.integration

STREAM = "dynamic"


def end_offset_total(settings, topics: list[str]) -> int:
    admin = AdminClient(client_config(settings))
    partitions = [TopicPartition(topic, partition) for topic in topics for partition in range(settings.partitions)]
    ends = admin.list_offsets({partition: OffsetSpec.latest() for partition in partitions}, request_timeout=30)
    return sum(future.result().offset for future in ends.values())


def test_sigterm_acknowledges_open_batches(kafka_bootstrap, tmp_path):
    # A long linger keeps the batch open when the facts already hold, because
    # records are published when a batch is written, before its events are
    # acknowledged.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state").replace(batch_linger_seconds=2.0)
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    stream = streams_dir() / f"{STREAM}.jsonl"
    try:
        EventPublisher(settings).publish_files([str(stream)])
        failures = wait_for_facts(settings, expectations.load(stream.with_suffix(".expect.json")), worker)
        assert failures == []
    finally:
        exit_code = worker.stop()

    assert exit_code == 0, worker.log_tail()
    assert consumer_lag(settings) == 0


def test_replayed_stream_writes_each_record_once_per_batch(kafka_bootstrap, tmp_path):
    # The stream published three times in one go folds into one batch per
    # partition at most twice the linger long, so each changed record is
    # written about once, where per-event writes would write it for every
    # event that touched it.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state").replace(
        batch_linger_seconds=1.0, batch_max_events=100_000
    )
    ensure_topics(settings)
    stream = streams_dir() / f"{STREAM}.jsonl"
    publisher = EventPublisher(settings)
    for _ in range(3):
        publisher.publish_files([str(stream)])
    events = end_offset_total(settings, list(settings.topics.inputs))

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        failures = wait_for_facts(settings, expectations.load(stream.with_suffix(".expect.json")), worker)
        assert failures == []
    finally:
        exit_code = worker.stop()
    assert exit_code == 0, worker.log_tail()

    changelogs = [f"{settings.app_id}-{name}-changelog" for name in TABLE_NAMES.values()]
    changelog_records = end_offset_total(settings, changelogs)
    state_records = end_offset_total(settings, list(settings.topics.states))

    assert 0 < changelog_records < events
    assert 0 < state_records < events
