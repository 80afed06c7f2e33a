"""The worker's Prometheus endpoint after it folded a shared stream on the real broker."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections import Counter
from typing import Callable

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from processor import expectations
from processor.events import EventKind
from processor.fold import ExecutionFolder, InMemoryStateStore
from processor.fold.execution import RecordKind
from processor.kafka_clients import client_config
from processor.publisher import EventPublisher
from processor.streamfile import read_stream_lenient
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from support import TEST_PARTITIONS, isolated_settings, streams_dir, wait_for_facts

pytestmark = pytest.mark.integration

STREAM = "happy-path"

# The table size gauges are updated every 15 s, so a scrape may wait that long.
SCRAPE_TIMEOUT_SECONDS = 60

Samples = dict[tuple[str, frozenset], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(url: str) -> Samples:
    """Return every sample of the endpoint by name and label set."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def values(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Return the samples called ``name`` by the value of one label."""
    return {dict(labels)[label]: value for (sample_name, labels), value in samples.items() if sample_name == name}


def scrape_until(url: str, condition: Callable[[Samples], bool]) -> Samples:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_SECONDS
    while True:
        samples = scrape(url)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1)


def end_offset_total(settings, topic: str) -> int:
    """Return the sum of the end offsets of a topic's partitions: every record ever written to it."""
    admin = AdminClient(client_config(settings))
    request = {TopicPartition(topic, partition): OffsetSpec.latest() for partition in range(TEST_PARTITIONS)}
    futures = admin.list_offsets(request, request_timeout=30)
    return sum(future.result().offset for future in futures.values())


@pytest.fixture(scope="module")
def metrics_run(kafka_bootstrap, tmp_path_factory):
    """Run a worker with its metrics endpoint, publish the stream, wait for its state; yield settings and URL."""
    port = free_port()
    settings = isolated_settings(kafka_bootstrap, tmp_path_factory.mktemp("state")).replace(
        metrics_port=port, metrics_address="127.0.0.1"
    )
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("logs") / "worker.log").start()
    stream = streams_dir() / f"{STREAM}.jsonl"
    try:
        EventPublisher(settings).publish_files([str(stream)])
        failures = wait_for_facts(settings, expectations.load(stream.with_suffix(".expect.json")), worker)
        assert failures == []
        yield settings, f"http://127.0.0.1:{port}/metrics"
    finally:
        exit_code = worker.stop()
    assert exit_code == 0, f"worker exited with {exit_code}:\n{worker.log_tail()}"


def stream_events():
    return [item.event for item in read_stream_lenient(str(streams_dir() / f"{STREAM}.jsonl"))]


def test_events_consumed_by_topic(metrics_run):
    settings, url = metrics_run
    events = stream_events()
    expected = {settings.topics.input_topic(kind): count for kind, count in Counter(e.kind for e in events).items()}

    samples = scrape_until(
        url, lambda samples: values(samples, "flyte_state_events_consumed_total", "topic") == expected
    )

    assert values(samples, "flyte_state_events_consumed_total", "topic") == expected


def test_events_folded_by_outcome(metrics_run):
    _, url = metrics_run
    folder = ExecutionFolder(InMemoryStateStore())
    expected = Counter((event.kind.value, folder.fold(event).outcome.value) for event in stream_events())

    samples = scrape(url)
    folded = {
        (dict(labels)["kind"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "flyte_state_events_folded_total"
    }

    assert folded == expected


def test_fold_time_counts_events(metrics_run):
    _, url = metrics_run
    expected = {kind.value: count for kind, count in Counter(event.kind for event in stream_events()).items()}

    counts = values(scrape(url), "flyte_state_fold_seconds_count", "kind")

    assert counts == expected
    assert set(expected) == {kind.value for kind in EventKind}


def test_state_records_published(metrics_run):
    settings, url = metrics_run
    topics = {
        RecordKind.WORKFLOW: settings.topics.workflow_state,
        RecordKind.NODE: settings.topics.node_state,
        RecordKind.TASK: settings.topics.task_state,
        RecordKind.SUMMARY: settings.topics.summary_state,
    }
    # The counter grows when a record is handed to the producer, a moment
    # before the broker has it, so compare until both agree or time runs out.
    deadline = time.monotonic() + SCRAPE_TIMEOUT_SECONDS
    while True:
        published = values(scrape(url), "flyte_state_state_records_published_total", "kind")
        expected = {kind.value: float(end_offset_total(settings, topic)) for kind, topic in topics.items()}
        if published == expected or time.monotonic() > deadline:
            break
        time.sleep(1)

    assert published == expected
    assert all(count > 0 for count in published.values())


def test_gauges_settle(metrics_run):
    settings, url = metrics_run
    folder = ExecutionFolder(InMemoryStateStore())
    for event in stream_events():
        folder.fold(event)
    expected_keys = {
        "workflow-executions": len(folder.store.records[RecordKind.WORKFLOW]),
        "node-executions": len(folder.store.records[RecordKind.NODE]),
        "task-executions": len(folder.store.records[RecordKind.TASK]),
        "execution-summaries": len(folder.store.records[RecordKind.SUMMARY]),
    }
    consumed_topics = [*settings.topics.inputs, settings.repartition_topic]

    def settled(samples: Samples) -> bool:
        lag = [value for (name, _), value in samples.items() if name == "flyte_state_consumer_lag"]
        return (
            len(lag) == len(consumed_topics) * TEST_PARTITIONS
            and not any(lag)
            and values(samples, "flyte_state_table_keys", "table") == expected_keys
        )

    samples = scrape_until(url, settled)
    lag_partitions = {
        (dict(labels)["topic"], dict(labels)["partition"]): value
        for (name, labels), value in samples.items()
        if name == "flyte_state_consumer_lag"
    }

    assert set(lag_partitions) == {(topic, str(p)) for topic in consumed_topics for p in range(TEST_PARTITIONS)}
    assert set(lag_partitions.values()) == {0.0}
    assert values(samples, "flyte_state_table_keys", "table") == expected_keys
    assert samples[("flyte_state_recovery_in_progress", frozenset())] == 0.0
