"""Ordering and arithmetic on google.protobuf Timestamp values."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2


def sort_key(timestamp: timestamp_pb2.Timestamp) -> tuple[int, int]:
    return (timestamp.seconds, timestamp.nanos)


def is_before(left: timestamp_pb2.Timestamp, right: timestamp_pb2.Timestamp) -> bool:
    return sort_key(left) < sort_key(right)


def latest(left: timestamp_pb2.Timestamp, right: timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    return right if is_before(left, right) else left


def duration_between(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp) -> duration_pb2.Duration:
    """Return end - start; negative when the recorded end lies before the start."""
    nanos = (end.seconds - start.seconds) * 1_000_000_000 + (end.nanos - start.nanos)
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(nanos)
    return duration
