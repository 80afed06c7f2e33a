"""Shared helpers of the integration tests: isolated settings, stream files, waiting for state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from processor import expectations
from processor.config import Settings
from processor.kafka_clients import client_config, reader_config
from processor.state_reader import StateReader
from processor.worker_process import WorkerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_STREAMS = REPO_ROOT.parent / "shared" / "streams"
EXAMPLE_STREAMS = REPO_ROOT / "examples" / "streams"

# Three partitions, so that a wrong partitioner shows up as a wrong partition.
TEST_PARTITIONS = 3

STATE_TIMEOUT_SECONDS = 120


def create_topic(settings: Settings, name: str, config: dict[str, str], partitions: Optional[int] = None) -> None:
    """Create a topic with ``config`` before the worker does; ``partitions`` defaults to the settings' count."""
    admin = AdminClient(client_config(settings))
    topic = NewTopic(name, num_partitions=partitions or settings.partitions, config=config)
    admin.create_topics([topic])[name].result()


def streams_dir() -> Path:
    return SHARED_STREAMS if SHARED_STREAMS.is_dir() else EXAMPLE_STREAMS


def stream_files() -> list[Path]:
    return sorted(streams_dir().glob("*.jsonl"))


def isolated_settings(bootstrap: str, state_dir: Path) -> Settings:
    """Settings whose topics and consumer group no other test uses."""
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    # Metrics port 0: workers of parallel tests would compete for the default port.
    base = Settings(bootstrap_servers=bootstrap, partitions=TEST_PARTITIONS, state_dir=state_dir, metrics_port=0)
    return base.with_topic_prefix(prefix)


def wait_for_facts(settings: Settings, expected: dict, worker: WorkerProcess) -> list[str]:
    """Follow the state topics until every expected fact holds; return the facts that still fail."""
    with StateReader(settings) as reader:
        reader.wait_until(lambda records: not expectations.check(expected, records), STATE_TIMEOUT_SECONDS)
        failures = expectations.check(expected, reader.records)
    if failures and worker.exit_code() is not None:
        failures.append(f"worker exited with {worker.exit_code()}:\n{worker.log_tail()}")
    return failures


def read_topic(settings: Settings, topic: str, minimum: int, timeout_seconds: float = 60.0) -> list:
    """Read a topic from the beginning until at least ``minimum`` records arrived or the timeout passes."""
    consumer = Consumer(reader_config(settings, group_id=f"test-reader-{uuid.uuid4()}"))
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = metadata.topics[topic].partitions
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])

        records = []
        deadline = time.monotonic() + timeout_seconds
        while len(records) < minimum and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(message.error().str())
            records.append(message)
        return records
    finally:
        consumer.close()


def run_cli(settings: Settings, *arguments: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``python -m processor.cli ARGUMENTS`` with the environment of ``settings``; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", *arguments],
        env={**os.environ, **settings.to_env()},
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
