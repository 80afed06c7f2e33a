"""Reading the state topics back into records, with confluent-kafka.

The reader assigns itself every partition of the four state topics from the
beginning (no consumer group membership, no commits) and keeps, per key, the
record with the highest version. A tombstone removes the key.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from processor.config import Settings
from processor.expectations import Records
from processor.fold.execution import RecordKind
from processor.kafka_clients import reader_config


class StateReader:
    def __init__(self, settings: Settings) -> None:
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
        self._assign()
        self._at_end: set[tuple[str, int]] = set()

    def _assign(self) -> None:
        metadata = self.consumer.list_topics(timeout=30)
        assignment = []
        for topic in self.kind_by_topic:
            if topic not in metadata.topics:
                raise KafkaException(f"state topic {topic} does not exist on {self.settings.bootstrap_servers}")
            for partition in metadata.topics[topic].partitions:
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        self.partition_count = len(assignment)
        self.consumer.assign(assignment)

    def poll(self, seconds: float) -> int:
        """Read for up to ``seconds``, stopping early once every partition is at its end; return records read."""
        deadline = time.monotonic() + seconds
        read = 0
        while time.monotonic() < deadline:
            message = self.consumer.poll(min(0.5, max(0.0, deadline - time.monotonic())))
            if message is None:
                if len(self._at_end) == self.partition_count:
                    break
                continue

            position = (message.topic(), message.partition())
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(position)
                    if len(self._at_end) == self.partition_count:
                        break
                    continue
                raise KafkaException(error)

            self._at_end.discard(position)
            self._apply(message)
            read += 1
        return read

    def _apply(self, message) -> None:
        kind = self.kind_by_topic[message.topic()]
        key = message.key().decode()
        value = message.value()
        table = self.records[kind]

        if value is None:
            table.pop(key, None)
            return

        state = kind.message_class()
        state.ParseFromString(value)
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
            self.poll(min(2.0, max(0.1, deadline - time.monotonic())))
            if condition(self.records):
                return True
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "StateReader":
        return self

    def __exit__(self, *exc_info: object) -> Optional[bool]:
        self.close()
        return None
