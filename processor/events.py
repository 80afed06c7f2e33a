"""Decoding of the binary flyteidl events read from the input topics.

Contract: ``decode_event`` either returns an ``ExecutionEvent`` whose ids are
valid key parts, or raises ``UndecodableEventError`` with a reason that goes
to the dead-letter topic. It never folds and never touches Kafka.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from flyteidl.core import execution_pb2
from flyteidl.event import event_pb2
from google.protobuf.message import DecodeError

from processor import ids

FlyteEvent = Union[
    event_pb2.WorkflowExecutionEvent,
    event_pb2.NodeExecutionEvent,
    event_pb2.TaskExecutionEvent,
]


class EventKind(str, enum.Enum):
    """Kind of a flyteidl event; the value is the name used in stream files and headers."""

    WORKFLOW = "workflow"
    NODE = "node"
    TASK = "task"

    @property
    def message_class(self) -> type:
        return _MESSAGE_CLASSES[self]


_MESSAGE_CLASSES = {
    EventKind.WORKFLOW: event_pb2.WorkflowExecutionEvent,
    EventKind.NODE: event_pb2.NodeExecutionEvent,
    EventKind.TASK: event_pb2.TaskExecutionEvent,
}


class DeadLetterReason(str, enum.Enum):
    """Reason an input record could not be read, written to the dead-letter topic."""

    UNDECODABLE = "undecodable"
    MISSING_EXECUTION_ID = "missing-execution-id"
    INVALID_ID = "invalid-id"
    UNKNOWN_KIND = "unknown-kind"
    OVERSIZED = "oversized"
    FOLD_FAILED = "fold-failed"
    # A record of the CloudEvents topic without a ce_type that names a flyteidl event.
    UNKNOWN_CE_TYPE = "unknown-ce-type"
    # A timestamp outside the range that protobuf's Timestamp allows, which
    # no reader of the state topics could parse.
    INVALID_TIMESTAMP = "invalid-timestamp"
    # An event without occurred_at, which orders every event of a record.
    MISSING_OCCURRED_AT = "missing-occurred-at"
    # A phase value that the installed flyteidl does not define.
    UNKNOWN_PHASE = "unknown-phase"
    # A record of the repartition topic on another partition than its key's,
    # which happens when the topic's partition count changed.
    WRONG_PARTITION = "wrong-partition"
    # An event whose fold would make a state record larger than the state and
    # changelog topics accept; the record keeps its value from before.
    RECORD_TOO_LARGE = "record-too-large"


class UndecodableEventError(ValueError):
    """An input record that is not a readable flyteidl event of the expected kind."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ExecutionEvent:
    """One decoded event and the keys it folds under."""

    kind: EventKind
    message: FlyteEvent
    execution_key: str

    # Key of the node or task record the event changes; the execution key for
    # workflow events.
    entity_key: str


def parse_kind(text: str) -> EventKind:
    try:
        return EventKind(text)
    except ValueError:
        raise UndecodableEventError(
            DeadLetterReason.UNKNOWN_KIND,
            f"unknown event kind {text!r}: expected workflow, node or task",
        ) from None


def workflow_execution_id(kind: EventKind, message: FlyteEvent):
    """Return the workflow execution id an event belongs to, by its kind's id field."""
    if kind is EventKind.WORKFLOW:
        return message.execution_id if message.HasField("execution_id") else None
    if kind is EventKind.NODE:
        if message.HasField("id") and message.id.HasField("execution_id"):
            return message.id.execution_id
        return None
    if message.HasField("parent_node_execution_id") and message.parent_node_execution_id.HasField("execution_id"):
        return message.parent_node_execution_id.execution_id
    return None


# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to
# 9999-12-31T23:59:59.999999999Z, with nanos in [0, 10^9).
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
NANOS_PER_SECOND = 1_000_000_000


_KNOWN_PHASES = {
    EventKind.WORKFLOW: frozenset(execution_pb2.WorkflowExecution.Phase.values()),
    EventKind.NODE: frozenset(execution_pb2.NodeExecution.Phase.values()),
    EventKind.TASK: frozenset(execution_pb2.TaskExecution.Phase.values()),
}


def check_event_fields(kind: EventKind, message: FlyteEvent) -> None:
    """Raise UndecodableEventError for an event without occurred_at, with an unknown phase or an invalid time.

    Every decoder of input records calls it through ``decoded_event``, so
    that such events reach the dead-letter topic with their bytes instead of
    only a fold outcome.
    Times outside Timestamp's range (occurred_at, a task event's reason
    times) would reach the state records, whose readers (JSON output, the
    dashboard) reject them.
    """
    if not message.HasField("occurred_at"):
        raise UndecodableEventError(DeadLetterReason.MISSING_OCCURRED_AT, f"{kind.value} event has no occurred_at")
    if message.phase not in _KNOWN_PHASES[kind]:
        raise UndecodableEventError(
            DeadLetterReason.UNKNOWN_PHASE, f"{kind.value} event has phase {message.phase}, which flyteidl does not define"
        )

    timestamps = [("occurred_at", message.occurred_at)]
    if kind is EventKind.TASK:
        timestamps += [
            (f"reasons[{index}].occurred_at", reason.occurred_at)
            for index, reason in enumerate(message.reasons)
            if reason.HasField("occurred_at")
        ]
    for name, timestamp in timestamps:
        if not MIN_TIMESTAMP_SECONDS <= timestamp.seconds <= MAX_TIMESTAMP_SECONDS:
            raise UndecodableEventError(
                DeadLetterReason.INVALID_TIMESTAMP,
                f"{kind.value} event {name} has seconds {timestamp.seconds}, outside the years 1 to 9999",
            )
        if not 0 <= timestamp.nanos < NANOS_PER_SECOND:
            raise UndecodableEventError(
                DeadLetterReason.INVALID_TIMESTAMP,
                f"{kind.value} event {name} has nanos {timestamp.nanos}, outside [0, 999999999]",
            )


def keyed_event(kind: EventKind, message: FlyteEvent) -> ExecutionEvent:
    """Attach the execution and entity keys to a decoded message.

    Raises UndecodableEventError when the ids are missing or invalid.
    """
    execution_id = workflow_execution_id(kind, message)
    if execution_id is None:
        raise UndecodableEventError(
            DeadLetterReason.MISSING_EXECUTION_ID,
            f"{kind.value} event has no workflow execution id",
        )

    try:
        execution = ids.execution_key(execution_id)
        if kind is EventKind.WORKFLOW:
            entity = execution
        elif kind is EventKind.NODE:
            entity = ids.node_key(execution, message.id.node_id)
        else:
            entity = ids.task_key(
                execution,
                message.parent_node_execution_id.node_id,
                message.task_id.name,
                message.retry_attempt,
            )
    except ids.InvalidIdError as error:
        reason = DeadLetterReason.MISSING_EXECUTION_ID if str(error).startswith("missing execution_id") else DeadLetterReason.INVALID_ID
        raise UndecodableEventError(reason, f"{kind.value} event: {error}") from None

    return ExecutionEvent(kind=kind, message=message, execution_key=execution, entity_key=entity)


def decoded_event(kind: EventKind, message: FlyteEvent) -> ExecutionEvent:
    """Attach the keys to a message that a decoder read from an input record, and check its fields.

    Raises UndecodableEventError with the reason of ``keyed_event`` or of
    ``check_event_fields``, in that order.
    """
    event = keyed_event(kind, message)
    check_event_fields(kind, message)
    return event


def decode_event(kind: EventKind, value: bytes | None, *, max_bytes: int) -> ExecutionEvent:
    """Parse the binary protobuf of one event of ``kind`` and derive its keys."""
    if value is None:
        raise UndecodableEventError(DeadLetterReason.UNDECODABLE, "record has no value")

    if len(value) > max_bytes:
        raise UndecodableEventError(
            DeadLetterReason.OVERSIZED,
            f"value has {len(value)} bytes, more than the limit of {max_bytes}",
        )

    message = kind.message_class()
    try:
        message.ParseFromString(value)
    except DecodeError as error:
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE,
            f"value is not a binary {message.DESCRIPTOR.full_name}: {error}",
        ) from None

    return decoded_event(kind, message)
