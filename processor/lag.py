"""Consumer lag of the worker's group: records on its input partitions that it has not committed yet."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processor.config import Settings
from processor.kafka_clients import client_config

# A partition at most this far behind is checked record by record, because
# transaction markers take offsets without being records.
TRAILING_MARKER_CHECK = 3

# Maximum wait for the end offsets, after which future.result raises TimeoutError.
RESULT_TIMEOUT_SECONDS = 60.0


def consumer_lag(settings: Settings) -> int:
    """Return how many records of the worker's input and repartition partitions lie past its committed offsets."""
    admin = AdminClient(client_config(settings))
    topics = [*settings.topics.inputs, settings.repartition_topic]
    partitions = [TopicPartition(topic, partition) for topic in topics for partition in range(settings.partitions)]
    ends = admin.list_offsets({partition: OffsetSpec.latest() for partition in partitions}, request_timeout=30)
    # librdkafka's request timeout did not always end the wait (an admin
    # request hung for minutes on a loaded machine), so the wait has its own.
    end_offsets = {
        (tp.topic, tp.partition): future.result(timeout=RESULT_TIMEOUT_SECONDS).offset for tp, future in ends.items()
    }

    # A consumer that only reads the group's committed offsets, without
    # joining the group. librdkafka 2.x crashed in its admin
    # ListConsumerGroupOffsets response parser here, so this avoids it.
    reader = Consumer({**client_config(settings), "group.id": settings.app_id, "enable.auto.commit": False})
    try:
        committed = {
            (tp.topic, tp.partition): max(tp.offset, 0) for tp in reader.committed(partitions, timeout=30)
        }
    finally:
        reader.close()
    lag = 0
    for position, end in end_offsets.items():
        behind = end - committed.get(position, 0)
        if 0 < behind <= TRAILING_MARKER_CHECK:
            behind = _records_between(settings, position, committed.get(position, 0), end)
        lag += behind
    return lag


def _records_between(settings: Settings, position: tuple[str, int], start: int, end: int) -> int:
    """Count data records in [start, end) of a partition; transaction markers occupy offsets but are not records.

    The worker commits the offset after the last record it handled, so a
    partition that ends with a transaction's commit marker stays one
    offset behind its end until another record arrives.
    """
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"{settings.app_id}-lag-check-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(position[0], position[1], start)])
        count = 0
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                break
            if message.offset() >= end:
                break
            count += 1
        return count
    finally:
        consumer.close()
