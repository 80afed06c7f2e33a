"""The producer's and the topics' record limits, with lz4 compression for records above the topics' limit."""

from __future__ import annotations

import base64
import os

import cramjam

from processor.messages import TaskExecutionState
from processor.record_size import RECORD_OVERHEAD_BYTES, STATE_LZ4_LEVEL, RecordSizeLimit

KEY = "flytesnacks:development:exec1/n0/wf.train/0"


def task_record(uri: str, subtasks: int = 200, *, random_paths: bool = False) -> TaskExecutionState:
    """A task record whose map task subtasks each have one log under ``uri``, with random paths if asked."""
    state = TaskExecutionState()
    for index in range(subtasks):
        resource = state.task_execution.closure.metadata.external_resources.add(index=index)
        path = base64.urlsafe_b64encode(os.urandom(300)).decode() if random_paths else str(index)
        resource.logs.add(name=f"log-{index}", uri=f"{uri}/{path}")
    return state


def test_small_record_fits():
    state = task_record("https://logs.example/a", subtasks=2)

    assert RecordSizeLimit(producer_bytes=1_000_000, topic_bytes=100_000).violation(KEY, state) is None


def test_producer_limit_is_uncompressed():
    # Compresses to almost nothing, but librdkafka checks the size before compression.
    state = task_record("https://logs.example/" + "x" * 500)
    size = len(KEY) + state.ByteSize()

    violation = RecordSizeLimit(producer_bytes=size, topic_bytes=10 * size).violation(KEY, state)

    assert violation is not None
    assert "FLYTE_STATE_MAX_RECORD_BYTES" in violation
    assert RecordSizeLimit(size + RECORD_OVERHEAD_BYTES, 10 * size).violation(KEY, state) is None


def test_compressible_record_fits_topic():
    state = task_record("https://logs.example/" + "x" * 500)
    size = len(KEY) + state.ByteSize()

    assert RecordSizeLimit(producer_bytes=10 * size, topic_bytes=size // 4).violation(KEY, state) is None


def test_incompressible_record_exceeds_topic():
    state = task_record("https://logs.example", random_paths=True)
    size = len(KEY) + state.ByteSize()

    violation = RecordSizeLimit(producer_bytes=10 * size, topic_bytes=size // 2).violation(KEY, state)

    assert violation is not None
    assert "compressed with lz4" in violation
    assert f"{size // 2} bytes" in violation


def test_topic_limit_counts_key_and_overhead():
    state = task_record("https://logs.example", random_paths=True)
    compressed = len(KEY) + len(cramjam.lz4.compress(state.SerializeToString(), level=STATE_LZ4_LEVEL))
    enough = compressed + compressed // 32 + RECORD_OVERHEAD_BYTES
    limit = RecordSizeLimit(producer_bytes=10 * enough, topic_bytes=enough)

    assert len(KEY) + state.ByteSize() > enough
    assert limit.violation(KEY, state) is None
    assert limit.violation(KEY + "-longer", state) is not None


def test_recompressing_topic_counts_uncompressed_size():
    # A topic with another compression.type compresses each batch again, so
    # the producer's lz4 size does not bound what the broker stores.
    state = task_record("https://logs.example/" + "x" * 500)
    size = len(KEY) + state.ByteSize()
    bound = size + size // 6 + 32 + RECORD_OVERHEAD_BYTES

    rejected = RecordSizeLimit(10 * size, size // 4, topics_keep_lz4=False).violation(KEY, state)

    assert rejected is not None
    assert "compress it again" in rejected
    assert RecordSizeLimit(10 * size, bound, topics_keep_lz4=False).violation(KEY, state) is None
    assert RecordSizeLimit(10 * size, bound - 1, topics_keep_lz4=False).violation(KEY, state) is not None
