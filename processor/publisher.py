"""Publishing of stream files to the input topics as binary protobuf, keyed by execution id.

The cloudevents formats write to the CloudEvents topic instead, as FlyteAdmin's
CloudEvents publisher does (see processor/cloudevents.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from confluent_kafka import KafkaError, Producer

from processor.cloudevents import FlyteAdminStyleEncoder, sarama_partition
from processor.config import ConfigError, Settings
from processor.events import ExecutionEvent
from processor.kafka_clients import producer_config
from processor.streamfile import StreamFileError, read_stream_lenient

log = logging.getLogger(__name__)


# Values of the publish command's --format option, with the CloudEvents version of each cloudevents format.
PUBLISH_FORMATS = {"binary": None, "cloudevents-v1": 1, "cloudevents-v2": 2}


class PublishError(RuntimeError):
    """The broker did not acknowledge every record."""


@dataclass
class PublishReport:
    published: int = 0
    # Events that FlyteAdmin would not publish: the first of each task attempt.
    left_out: int = 0
    bad_lines: list[str] = field(default_factory=list)
    delivery_errors: list[str] = field(default_factory=list)


class EventPublisher:
    """Produce events with the murmur2 partitioner, so each lands on its execution's partition."""

    def __init__(self, settings: Settings, event_format: str = "binary") -> None:
        if event_format not in PUBLISH_FORMATS:
            raise ValueError(f"unknown event format {event_format!r}: use one of {', '.join(PUBLISH_FORMATS)}")
        version = PUBLISH_FORMATS[event_format]
        if version is not None and not settings.topics.cloudevents:
            raise ConfigError(
                f"format {event_format} writes to the CloudEvents topic: set FLYTE_STATE_TOPIC_CLOUDEVENTS"
            )
        self.settings = settings
        self.cloud_events = FlyteAdminStyleEncoder(version) if version is not None else None
        self.producer = Producer(producer_config(settings))
        self.report = PublishReport()

    def _on_delivery(self, error: KafkaError | None, message) -> None:
        if error is not None:
            self.report.delivery_errors.append(f"{message.topic()}: {error.str()}")

    def publish_event(self, event: ExecutionEvent) -> None:
        if self.cloud_events is not None:
            self._publish_cloud_event(event)
            return
        topic = self.settings.topics.input_topic(event.kind)
        self._produce(topic, key=event.execution_key.encode(), value=event.message.SerializeToString())

    def _publish_cloud_event(self, event: ExecutionEvent) -> None:
        """Produce the event as FlyteAdmin would: keyed by its CloudEvent id, on Sarama's partition for that key."""
        record = self.cloud_events.encode(event)
        if record is None:
            self.report.left_out += 1
            return
        topic = self.settings.topics.cloudevents
        partition = sarama_partition(record.key, self.settings.partitions)
        self._produce(topic, key=record.key, value=record.value, headers=record.headers, partition=partition)

    def _produce(self, topic: str, **record) -> None:
        while True:
            try:
                self.producer.produce(topic, **record, on_delivery=self._on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                self.producer.poll(0.1)
        self.producer.poll(0)
        self.report.published += 1

    def publish_files(self, paths: Iterable[str], on_line: Optional[Callable[[], object]] = None) -> PublishReport:
        """Publish every valid line of every file; bad lines are logged with file and line, and skipped.

        ``on_line`` is called after each non-blank line, valid or not, so
        that the publish command's progress bar can count lines.
        """
        for path in paths:
            for item in read_stream_lenient(path):
                if isinstance(item, StreamFileError):
                    self.report.bad_lines.append(str(item))
                    log.error("skipped bad line: %s", item)
                else:
                    self.publish_event(item.event)
                if on_line is not None:
                    on_line()
        self.flush()
        return self.report

    def flush(self, timeout_seconds: float = 60.0) -> None:
        remaining = self.producer.flush(timeout_seconds)
        if remaining:
            raise PublishError(
                f"{remaining} records were not acknowledged by {self.settings.bootstrap_servers} "
                f"within {timeout_seconds:.0f} s"
            )
        if self.report.delivery_errors:
            raise PublishError(
                f"{len(self.report.delivery_errors)} records failed: {self.report.delivery_errors[0]}"
            )

