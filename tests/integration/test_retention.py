"""Finished executions older than the retention leave the tables and get tombstones in the state topics."""

from __future__ import annotations

from typing import Iterator

import pytest

from processor import expectations
from processor.config import Settings
from processor.publisher import EventPublisher
from processor.routing import partition_for_key
from processor.state_reader import StateReader
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from support import isolated_settings, read_topic, stream_files

pytestmark = pytest.mark.integration


@pytest.fixture
def short_retention(kafka_bootstrap, tmp_path) -> Iterator[tuple[Settings, WorkerProcess]]:
    # The sample events occurred weeks ago, so a retention of one second
    # expires them at the first sweep.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state").replace(
        retention_seconds=1.0, retention_sweep_seconds=2.0
    )
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    yield settings, worker
    assert worker.stop() == 0, worker.log_tail()


def test_expired_execution_tombstoned(short_retention):
    settings, worker = short_retention
    stream = next(path for path in stream_files() if path.stem == "happy-path")
    expected = expectations.load(stream.with_suffix(".expect.json"))
    execution_key = next(iter(expected["workflow"]))
    node_keys = set(expected["node"])
    task_keys = set(expected["task"])

    EventPublisher(settings).publish_files([str(stream)])

    with StateReader(settings) as reader:
        removed = reader.wait_until(
            lambda records: _has_tombstone(settings, settings.topics.workflow_state, execution_key),
            timeout_seconds=90,
        )
        workflow_kind = reader.kind_by_topic[settings.topics.workflow_state]
        node_kind = reader.kind_by_topic[settings.topics.node_state]
        task_kind = reader.kind_by_topic[settings.topics.task_state]
        summary_kind = reader.kind_by_topic[settings.topics.summary_state]

        # The tombstones of one sweep go to four topics, which a loaded broker
        # can make readable at different times, so wait for all of them.
        reader.wait_until(
            lambda records: execution_key not in records[workflow_kind]
            and execution_key not in records[summary_kind]
            and not node_keys & set(records[node_kind])
            and not task_keys & set(records[task_kind]),
            timeout_seconds=30,
        )
        records = reader.records
    assert removed, worker.log_tail()

    assert execution_key not in records[workflow_kind]
    assert execution_key not in records[summary_kind]
    assert not node_keys & set(records[node_kind])
    assert not task_keys & set(records[task_kind])

    for topic, keys in [
        (settings.topics.node_state, node_keys),
        (settings.topics.task_state, task_keys),
        (settings.topics.summary_state, {execution_key}),
    ]:
        for key in keys:
            assert _has_tombstone(settings, topic, key), f"no tombstone for {key} in {topic}"


def test_sweep_covers_every_partition(short_retention):
    settings, worker = short_retention
    streams = stream_files()
    execution_keys = set()
    for stream in streams:
        execution_keys |= set(expectations.load(stream.with_suffix(".expect.json"))["workflow"])
    # The sample executions lie on more than one partition, and two share one.
    partitions = {partition_for_key(key.encode(), settings.partitions) for key in execution_keys}
    assert len(partitions) > 1
    assert len(execution_keys) > len(partitions)

    EventPublisher(settings).publish_files([str(stream) for stream in streams])

    with StateReader(settings) as reader:
        workflow_kind = reader.kind_by_topic[settings.topics.workflow_state]
        swept = reader.wait_until(
            lambda records: all(_has_tombstone(settings, settings.topics.workflow_state, key) for key in execution_keys),
            timeout_seconds=90,
        )
        # A sweep can run while a stream is still being folded, and its later
        # events create the execution again until the next sweep.
        removed = reader.wait_until(
            lambda records: not execution_keys & set(records[workflow_kind]),
            timeout_seconds=30,
        )

    assert swept, worker.log_tail()
    assert removed, worker.log_tail()


def _has_tombstone(settings: Settings, topic: str, key: str) -> bool:
    messages = read_topic(settings, topic, minimum=10_000, timeout_seconds=3)
    return any(message.key() == key.encode() and message.value() is None for message in messages)
