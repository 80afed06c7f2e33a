"""State records near the topics' size limits on the real broker: too large ones are dead-lettered, large ones recover."""

from __future__ import annotations

import asyncio
import base64
import os
import random

import pytest
from confluent_kafka import Producer

from processor.fold.execution import RecordKind
from processor.kafka_clients import producer_config
from processor.messages import TaskExecutionState
from processor.record_size import RecordSizeLimit
from processor.routing import DEAD_LETTER_REASON
from processor.state_reader import StateReader
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from topologies.state_producer import Delivery, StateRecordProducer
from support import create_topic, isolated_settings, read_topic
from unit.builders import (
    EXECUTION_KEY,
    TaskPhase,
    WorkflowPhase,
    keyed,
    task_event,
    task_log,
    workflow_event,
)

pytestmark = pytest.mark.integration

TASK_KEY = f"{EXECUTION_KEY}/n0/wf.train/0"
STATE_TIMEOUT_SECONDS = 120.0


def map_task_event(at: int, first_index: int, subtasks: int, phase: int = TaskPhase.RUNNING):
    """A map task event reporting ``subtasks`` subtasks from ``first_index`` on, each with a log of about 250 bytes.

    The log paths are random, so that lz4 barely compresses the records.
    """
    event = task_event("n0", phase, at, phase_version=at)
    for index in range(first_index, first_index + subtasks):
        resource = event.metadata.external_resources.add(external_id=f"job-{index}", index=index, phase=phase)
        path = base64.urlsafe_b64encode(os.urandom(150)).decode()
        resource.logs.append(task_log(f"log-{index}", uri=f"https://logs.example/{path}"))
    return event


def publish(settings, messages) -> list[bytes]:
    """Publish events keyed by execution, in order; return their values."""
    producer = Producer(producer_config(settings))
    values = []
    for message in messages:
        event = keyed(message)
        value = message.SerializeToString()
        producer.produce(settings.topics.input_topic(event.kind), key=event.execution_key.encode(), value=value)
        values.append(value)
    assert producer.flush(30) == 0
    return values


def wait_for_task(settings, worker: WorkerProcess, predicate):
    """Read the state topics until the task record satisfies ``predicate``; return it, or None after the timeout."""
    with StateReader(settings) as reader:
        reader.wait_until(
            lambda records: (task := records[RecordKind.TASK].get(TASK_KEY)) is not None and predicate(task),
            STATE_TIMEOUT_SECONDS,
        )
        task = reader.records[RecordKind.TASK].get(TASK_KEY)
    assert worker.exit_code() is None, worker.log_tail()
    return task if task is not None and predicate(task) else None


def subtask_count(task) -> int:
    return len(task.task_execution.closure.metadata.external_resources)


def test_oversized_record_dead_letters_event(kafka_bootstrap, tmp_path):
    # A task changelog that takes records of at most 100,000 bytes, as a
    # topic created before the worker might.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state")
    changelog = f"{settings.app_id}-task-executions-changelog"
    create_topic(settings, changelog, {"cleanup.policy": "compact", "max.message.bytes": "100000"})
    ensure_topics(settings)

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        growing = [map_task_event(2 + number, number * 150, 150) for number in range(4)]
        values = publish(settings, [workflow_event(WorkflowPhase.RUNNING, 1), *growing])
        publish(settings, [task_event("n0", TaskPhase.SUCCEEDED, 10, phase_version=10)])

        task = wait_for_task(settings, worker, lambda task: task.task_execution.closure.phase == TaskPhase.SUCCEEDED)
        dead_letters = read_topic(settings, settings.topics.dead_letter, minimum=2)
    finally:
        exit_code = worker.stop()

    # Each event adds about 43,000 bytes of subtasks, so the third and the
    # fourth would take the record past the limit.
    assert exit_code == 0, worker.log_tail()
    assert task is not None
    assert subtask_count(task) == 300
    assert [dict(letter.headers())[DEAD_LETTER_REASON] for letter in dead_letters] == [b"record-too-large"] * 2
    assert sorted(letter.value() for letter in dead_letters) == sorted(values[3:])
    assert "record-too-large" in worker.log_path.read_text()


def test_large_record_recovers_from_changelog(kafka_bootstrap, tmp_path):
    # A task record of about 1.5 MB: above the broker's default of 1 MiB per
    # record, below the FLYTE_STATE_MAX_RECORD_BYTES that the worker creates
    # its topics with.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state")
    ensure_topics(settings)
    growing = [map_task_event(2 + number, number * 2000, 2000) for number in range(3)]
    assert all(event.ByteSize() < settings.max_event_bytes for event in growing)

    first = WorkerProcess(settings, tmp_path / "first.log").start()
    try:
        publish(settings, [workflow_event(WorkflowPhase.RUNNING, 1), *growing])
        task = wait_for_task(settings, first, lambda task: subtask_count(task) == 6000)
    finally:
        first_exit = first.stop()
    assert first_exit == 0, first.log_tail()
    assert task is not None
    assert task.ByteSize() > 1024 * 1024

    # An empty state directory makes the next worker recover the record
    # from the changelog; the final event then keeps every subtask.
    recovered_settings = settings.replace(state_dir=tmp_path / "recovered")
    second = WorkerProcess(recovered_settings, tmp_path / "second.log").start()
    try:
        publish(settings, [task_event("n0", TaskPhase.SUCCEEDED, 10, phase_version=10)])
        task = wait_for_task(
            settings, second, lambda task: task.task_execution.closure.phase == TaskPhase.SUCCEEDED
        )
    finally:
        second_exit = second.stop()
    assert second_exit == 0, second.log_tail()
    assert task is not None
    assert subtask_count(task) == 6000


def map_task_record(subtasks: int, style: str) -> TaskExecutionState:
    """A task record of ``subtasks`` subtasks whose log URIs compress well, half well or barely with lz4."""
    numbers = random.Random(subtasks)
    state = TaskExecutionState()
    for index in range(subtasks):
        resource = state.task_execution.closure.metadata.external_resources.add(index=index, external_id=f"job-{index}")
        if style == "compressible":
            uri = (
                "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group=/aws/batch/job;"
                f"stream=flytesnacks-development-exec1-n0-{index}/{numbers.getrandbits(64):016x}"
            )
        elif style == "half-random":
            uri = f"https://logs.example/{numbers.randbytes(60).hex()}/" + "k8s/pod/container" * 3
        else:
            uri = "https://logs.example/" + base64.urlsafe_b64encode(numbers.randbytes(150)).decode()
        resource.logs.add(name=f"Cloudwatch Logs (User) {index}", uri=uri)
    return state


def smallest_accepted_topic_bytes(limit_of, key: str, state) -> int:
    """Return the smallest topic limit for which the size check accepts the record."""
    low, high = 1_000, 50_000_000
    while low < high:
        middle = (low + high) // 2
        if limit_of(middle).violation(key, state) is None:
            high = middle
        else:
            low = middle + 1
    return low


@pytest.mark.parametrize("style", ["compressible", "half-random", "random"])
@pytest.mark.parametrize("subtasks", [300, 3000])
def test_broker_takes_what_size_check_accepts(kafka_bootstrap, tmp_path, style, subtasks):
    # A record at the smallest limit the check accepts, sent by the state
    # producer to a topic with exactly that max.message.bytes.
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    state = map_task_record(subtasks, style)
    limit_bytes = smallest_accepted_topic_bytes(
        lambda topic_bytes: RecordSizeLimit(settings.max_record_bytes, topic_bytes), TASK_KEY, state
    )
    topic = f"{settings.app_id}.size-check"
    create_topic(settings, topic, {"max.message.bytes": str(limit_bytes)}, partitions=1)

    producer = StateRecordProducer(settings, batch_bytes=min(limit_bytes, 1_000_000))
    delivery = Delivery()
    producer.send(topic, TASK_KEY.encode(), state.SerializeToString(), delivery, partition=0)
    asyncio.run(producer.confirm(delivery))

    assert delivery.failures == []
    assert delivery.pending == 0


def test_broker_takes_recompressed_record(kafka_bootstrap, tmp_path):
    # A topic that stores batches uncompressed: the check must count the
    # record's full size, however well lz4 compresses it.
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    state = map_task_record(3000, "compressible")
    limit_bytes = smallest_accepted_topic_bytes(
        lambda topic_bytes: RecordSizeLimit(settings.max_record_bytes, topic_bytes, topics_keep_lz4=False),
        TASK_KEY,
        state,
    )
    topic = f"{settings.app_id}.size-check"
    config = {"max.message.bytes": str(limit_bytes), "compression.type": "uncompressed"}
    create_topic(settings, topic, config, partitions=1)

    producer = StateRecordProducer(settings, batch_bytes=min(limit_bytes, 1_000_000))
    delivery = Delivery()
    producer.send(topic, TASK_KEY.encode(), state.SerializeToString(), delivery, partition=0)
    asyncio.run(producer.confirm(delivery))

    assert limit_bytes > state.ByteSize()
    assert delivery.failures == []
