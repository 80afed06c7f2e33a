"""Reading the state topics back into records, with confluent-kafka.

The reader assigns itself every partition of the four state topics from the
beginning (no consumer group membership, no commits) and keeps, per key, the
record with the highest version. A tombstone removes the key.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from processor.config import Settings
from processor.expectations import Records
from processor.fold.execution import RecordKind
from processor.kafka_clients import client_config, reader_config

log = logging.getLogger(__name__)


# Shortest time a request to the brokers may take. A shorter one can time out
# while the client is still connecting, which looks like a broker that is down.
MIN_REQUEST_TIMEOUT_SECONDS = 2.0

# How long wait_until pauses after a poll that read nothing.
IDLE_WAIT_SECONDS = 0.2


class StateTopicsMissing(LookupError):
    """The broker responded, but some state topics do not exist: no worker has started against it with these topic names."""

    def __init__(self, topics: list[str], bootstrap_servers: str) -> None:
        self.topics = topics
        super().__init__(
            f"state topics {', '.join(topics)} do not exist on {bootstrap_servers}. A worker creates them when it "
            "starts: run `flyte-state worker` first, or set FLYTE_STATE_TOPIC_*_STATE to the topics your worker uses"
        )


class StateReader:
    """Read the four state topics from the beginning and keep each key's latest record.

    Raises StateTopicsMissing when the broker lacks a state topic, and
    KafkaException when the broker cannot be reached.
    """

    def __init__(self, settings: Settings, metadata_timeout_seconds: float = 30.0) -> None:
        self.settings = settings
        topics = settings.topics
        self.kind_by_topic = {
            topics.workflow_state: RecordKind.WORKFLOW,
            topics.node_state: RecordKind.NODE,
            topics.task_state: RecordKind.TASK,
            topics.summary_state: RecordKind.SUMMARY,
        }
        self.records: dict[RecordKind, dict] = {kind: {} for kind in RecordKind}
        self.consumer = Consumer(reader_config(settings, group_id=f"{settings.app_id}-state-reader-{uuid.uuid4()}"))
        self.admin = AdminClient(client_config(settings))
        # Whether the last poll read every partition up to the end it had on entry.
        self.caught_up = False
        self._assign(metadata_timeout_seconds)

    def _assign(self, timeout_seconds: float) -> None:
        metadata = self.consumer.list_topics(timeout=max(MIN_REQUEST_TIMEOUT_SECONDS, timeout_seconds))
        missing = [topic for topic in self.kind_by_topic if topic not in metadata.topics]
        if missing:
            raise StateTopicsMissing(missing, self.settings.bootstrap_servers)

        assignment = []
        for topic in self.kind_by_topic:
            for partition in metadata.topics[topic].partitions:
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        self.partition_count = len(assignment)
        self.consumer.assign(assignment)

    def _end_offsets(self, timeout_seconds: float) -> dict[tuple[str, int], int]:
        """Return the current end offset of every assigned partition, in one request to the brokers."""
        request = {
            TopicPartition(partition.topic, partition.partition): OffsetSpec.latest()
            for partition in self.consumer.assignment()
        }
        futures = self.admin.list_offsets(request, request_timeout=max(MIN_REQUEST_TIMEOUT_SECONDS, timeout_seconds))
        return {(partition.topic, partition.partition): future.result().offset for partition, future in futures.items()}

    def poll(self, seconds: float) -> int:
        """Read for up to ``seconds``, stopping early once every partition reached the end it had on entry.

        Returns the number of records read.
        """
        targets = self._end_offsets(seconds)
        deadline = time.monotonic() + seconds
        positions = dict.fromkeys(targets, -1)
        for partition in self.consumer.position(self.consumer.assignment()):
            positions[(partition.topic, partition.partition)] = partition.offset

        def caught_up() -> bool:
            return all(positions[key] >= target or target == 0 for key, target in targets.items())

        read = 0
        while time.monotonic() < deadline and not caught_up():
            message = self.consumer.poll(min(0.5, max(0.0, deadline - time.monotonic())))
            if message is None:
                continue

            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    positions[(message.topic(), message.partition())] = message.offset()
                    continue
                raise KafkaException(error)

            positions[(message.topic(), message.partition())] = message.offset() + 1
            self._apply(message)
            read += 1
        self.caught_up = caught_up()
        return read

    def _apply(self, message) -> None:
        kind = self.kind_by_topic[message.topic()]
        key = message.key().decode()
        value = message.value()
        table = self.records[kind]

        if value is None:
            table.pop(key, None)
            return

        state = kind.parse(value)
        current = table.get(key)
        if current is None or state.version >= current.version:
            table[key] = state

    def read_all(self, timeout_seconds: float = 30.0) -> Records:
        self.poll(timeout_seconds)
        return self.records

    def wait_until(self, condition: Callable[[Records], bool], timeout_seconds: float) -> bool:
        """Follow the state topics until ``condition(records)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                read = self.poll(min(2.0, max(0.1, deadline - time.monotonic())))
            except KafkaException as error:
                # A broker that has just started or lost a partition leader
                # can fail a request, the end-offset request with a timeout
                # for example. The loop polls again until the deadline and
                # then raises the last error.
                if time.monotonic() >= deadline:
                    raise
                log.debug("cannot read the state topics' end offsets, retrying: %s", error)
                read = 0
            if condition(self.records):
                return True
            if time.monotonic() >= deadline:
                return False
            if read == 0:
                # Nothing new: wait before asking the brokers for the end offsets again.
                time.sleep(min(IDLE_WAIT_SECONDS, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "StateReader":
        return self

    def __exit__(self, *exc_info: object) -> Optional[bool]:
        self.close()
        return None
