"""A second worker that joins a new consumer group while the first one folds its backlog."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException

from processor import expectations
from processor.lag import consumer_lag
from processor.publisher import EventPublisher
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess
from support import isolated_settings, stream_files, wait_for_facts

pytestmark = pytest.mark.integration

# The second worker starts this long after the first one, so that it joins
# after the first worker folded the streams but before its first offset
# commit (faust commits every 2.8 s by default).
JOIN_DELAY_SECONDS = 2.0

LAG_TIMEOUT_SECONDS = 90.0


def wait_for_zero_lag(settings, workers: list[WorkerProcess]) -> int:
    """Return the group's consumer lag once it is 0, or the last lag seen when the timeout passes.

    While the group's coordinator moves or loads, reading the committed
    offsets fails (NOT_COORDINATOR, for example); such a read is retried.
    """
    deadline = time.monotonic() + LAG_TIMEOUT_SECONDS
    lag = _lag_or_none(settings)
    while lag != 0 and time.monotonic() < deadline and all(worker.exit_code() is None for worker in workers):
        time.sleep(1.0)
        lag = _lag_or_none(settings)
    return lag


def _lag_or_none(settings):
    try:
        return consumer_lag(settings)
    except KafkaException:
        return None


def test_joining_worker_consumes_uncommitted_partitions(kafka_bootstrap, tmp_path):
    # Before the worker's seek fix, the joining worker started the partitions
    # it took over at their end, because they had no committed offset yet,
    # and never committed them.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state")
    ensure_topics(settings)
    streams = stream_files()
    EventPublisher(settings).publish_files([str(stream) for stream in streams])
    expected = {}
    for stream in streams:
        expected.update(expectations.load(stream.with_suffix(".expect.json")))

    first = WorkerProcess(settings.replace(state_dir=tmp_path / "first"), tmp_path / "first.log").start()
    workers = [first]
    try:
        time.sleep(JOIN_DELAY_SECONDS)
        second = WorkerProcess(settings.replace(state_dir=tmp_path / "second"), tmp_path / "second.log").start()
        workers.append(second)

        lag = wait_for_zero_lag(settings, workers)
        failures = wait_for_facts(settings, expected, first)
    finally:
        exit_codes = [worker.stop() for worker in workers]

    assert lag == 0, f"first worker:\n{first.log_tail()}\nsecond worker:\n{workers[-1].log_tail()}"
    assert failures == []
    assert exit_codes == [0, 0]
