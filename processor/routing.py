"""Decide, for each input record, whether to fold it, move it to its execution's partition, or dead-letter it.

The decision is pure: the topology carries it out. A record is folded where
it is only when its key is the execution key and it sits on the partition
that murmur2 gives for that key, because the table state of an execution
lives on that partition. Otherwise it is sent, unchanged, to the repartition
topic under the execution key.

Records of the CloudEvents topic are keyed by their CloudEvent id, so they
are always forwarded. Their value and headers go unchanged, with the kind
header and ``flyte-event-format: cloudevents`` added, and the record is
decoded again as a CloudEvent on the repartition topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

from aiokafka.partitioner import murmur2

from processor.cloudevents import decode_cloud_event
from processor.config import Settings
from processor.events import DeadLetterReason, EventKind, ExecutionEvent, UndecodableEventError, decode_event, parse_kind
from processor.fold.enrichment import Enrichment

# Header that names the event kind on records of the repartition topic.
KIND_HEADER = "flyte-event-kind"

# Header that marks records of the repartition topic whose value is a
# CloudEvent. Records without it contain a binary flyteidl event.
FORMAT_HEADER = "flyte-event-format"
CLOUDEVENTS_FORMAT = b"cloudevents"

# Headers added to dead-letter records, beside the original headers.
DEAD_LETTER_REASON = "flyte.dead-letter.reason"
DEAD_LETTER_DETAIL = "flyte.dead-letter.detail"
DEAD_LETTER_TOPIC = "flyte.dead-letter.topic"
DEAD_LETTER_PARTITION = "flyte.dead-letter.partition"
DEAD_LETTER_OFFSET = "flyte.dead-letter.offset"

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Headers = ()


@dataclass(frozen=True)
class FoldHere:
    event: ExecutionEvent
    # What the event's version 2 CloudEvent added to it, for ExecutionFolder.fold.
    enrichment: Optional[Enrichment] = None


@dataclass(frozen=True)
class Repartition:
    """Send the record's value to the repartition topic under the execution key."""

    event: ExecutionEvent
    key: bytes
    headers: Headers


@dataclass(frozen=True)
class DeadLetter:
    reason: DeadLetterReason
    detail: str


Route = Union[FoldHere, Repartition, DeadLetter]


# Execution keys whose partition RecordRouter keeps; about 100 bytes each.
PARTITION_CACHE_KEYS = 100_000


def partition_for_key(key: bytes, partitions: int) -> int:
    """Return the partition Java clients, faust and librdkafka's murmur2 partitioners pick for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def header_value(headers: Headers, name: str) -> Optional[bytes]:
    for header_name, value in headers:
        if header_name == name:
            return value
    return None


class RecordRouter:
    """Route records of the input topics and of the repartition topic."""

    def __init__(self, settings: Settings) -> None:
        self.partitions = settings.partitions
        self.max_event_bytes = settings.max_event_bytes
        self.repartition_topic = settings.repartition_topic
        self.cloudevents_topic = settings.topics.cloudevents
        self.kind_by_topic = {settings.topics.input_topic(kind): kind for kind in EventKind}

        # murmur2 runs in Python and an execution sends tens of events, so the
        # partitions of recent execution keys are kept.
        self._partition_of_key: dict[bytes, int] = {}

    def partition_of(self, key: bytes) -> int:
        """Return partition_for_key(key, partitions), from a bounded cache when possible."""
        partition = self._partition_of_key.get(key)
        if partition is None:
            if len(self._partition_of_key) >= PARTITION_CACHE_KEYS:
                self._partition_of_key.clear()
            partition = self._partition_of_key[key] = partition_for_key(key, self.partitions)
        return partition

    def route(self, record: InputRecord) -> Route:
        is_cloud_event = self._is_cloud_event(record)
        enrichment = None
        try:
            if is_cloud_event:
                decoded = decode_cloud_event(record.headers, record.value, max_bytes=self.max_event_bytes)
                event, enrichment = decoded.event, decoded.enrichment
            else:
                event = decode_event(self._kind_of(record), record.value, max_bytes=self.max_event_bytes)
        except UndecodableEventError as error:
            return DeadLetter(error.reason, error.detail)
        except Exception as error:
            # Decoding reads only the record, so any other error is a defect of
            # the record or of a decoder, never of Kafka or the tables. Stopping
            # the worker would stop it again on the same record after a restart.
            return DeadLetter(DeadLetterReason.UNDECODABLE, f"decoding failed: {type(error).__name__}: {error}")

        key = event.execution_key.encode()
        if record.key == key and record.partition == self.partition_of(key):
            return FoldHere(event, enrichment)

        if record.topic == self.repartition_topic:
            # The repartition topic is written only by this processor, keyed by
            # the execution key; a mismatch means its partition count changed.
            return DeadLetter(
                DeadLetterReason.WRONG_PARTITION,
                f"record on partition {record.partition} of {record.topic} belongs to partition "
                f"{partition_for_key(key, self.partitions)}",
            )

        headers = [(name, value) for name, value in record.headers if name not in (KIND_HEADER, FORMAT_HEADER)]
        headers.append((KIND_HEADER, event.kind.value.encode()))
        if is_cloud_event:
            headers.append((FORMAT_HEADER, CLOUDEVENTS_FORMAT))
        return Repartition(event, key, headers)

    def _is_cloud_event(self, record: InputRecord) -> bool:
        if self.cloudevents_topic and record.topic == self.cloudevents_topic:
            return True
        if record.topic != self.repartition_topic:
            return False
        return header_value(record.headers, FORMAT_HEADER) == CLOUDEVENTS_FORMAT

    def _kind_of(self, record: InputRecord) -> EventKind:
        kind = self.kind_by_topic.get(record.topic)
        if kind is not None:
            return kind

        header = header_value(record.headers, KIND_HEADER)
        if header is None:
            raise UndecodableEventError(
                DeadLetterReason.UNKNOWN_KIND, f"record of {record.topic} has no {KIND_HEADER} header"
            )
        return parse_kind(header.decode("utf-8", errors="replace"))


def dead_letter_headers(record: InputRecord, reason: DeadLetterReason, detail: str) -> list[tuple[str, bytes]]:
    """Return the original headers followed by the reason and the record's source position."""
    headers = list(record.headers)
    headers.extend(
        [
            (DEAD_LETTER_REASON, reason.value.encode()),
            (DEAD_LETTER_DETAIL, detail.encode("utf-8", errors="replace")),
            (DEAD_LETTER_TOPIC, record.topic.encode()),
            (DEAD_LETTER_PARTITION, str(record.partition).encode()),
            (DEAD_LETTER_OFFSET, str(record.offset).encode()),
        ]
    )
    return headers
