"""FlyteAdmin's CloudEvents on Kafka: decoding of its records, and encoding in its style.

FlyteAdmin 1.16 (``flyteadmin/pkg/async/cloudevent`` at tag v1.16.8) sends
one CloudEvent for each event it accepted, through the CloudEvents Go SDK's
Kafka sender, in binary mode. The attributes are the headers ``ce_specversion``,
``ce_id``, ``ce_source``, ``ce_type``, ``ce_time`` and ``ce_jsonschemaurl``, and
``content-type`` is ``application/json``. The value is the protobuf JSON of the
message that ``ce_type`` names (camelCase names, enum names, no default values,
64-bit integers as strings):

- version 1: ``com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest``
  (and ``NodeExecutionEventRequest``, ``TaskExecutionEventRequest``) with the
  request ``{"requestId": ..., "event": {...}}``;
- version 2: ``com.flyte.resource.cloudevents.WorkflowExecution`` (and
  ``NodeExecution``, ``TaskExecution``) with ``flyteidl.event.CloudEvent*``:
  the event in ``rawEvent`` plus fields read from FlyteAdmin's database.

The Kafka key is the CloudEvent id: the text form of the event's identifier
(the task id for task events) and the phase, so an execution's events are
spread over partitions. FlyteAdmin publishes from one goroutine per event,
after its database commit, and not for the event that creates a task attempt.

Besides FlyteAdmin's binary mode, the decoder reads structured mode (content
type ``application/cloudevents+json``, the whole CloudEvent as a JSON object
with ``data`` or ``data_base64``) and binary protobuf data when the data's
content type is ``application/protobuf`` or ``application/x-protobuf``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from flyteidl.admin import event_pb2 as admin_event_pb2
from flyteidl.core import execution_pb2
from flyteidl.event import cloudevents_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from processor.events import (
    DeadLetterReason,
    EventKind,
    ExecutionEvent,
    UndecodableEventError,
    decoded_event,
)
from processor.fold.enrichment import Enrichment

Headers = Sequence[tuple[str, Optional[bytes]]]

CONTENT_TYPE_HEADER = "content-type"
ATTRIBUTE_HEADER_PREFIX = "ce_"

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPES = frozenset({"application/protobuf", "application/x-protobuf"})

# Values that FlyteAdmin 1.16 sets, and the encoder copies.
SPEC_VERSION = "1.0"
V1_SOURCE = "https://github.com/flyteorg/flyte/flyteadmin"
V1_JSON_SCHEMA_URL = "https://github.com/flyteorg/flyteidl/blob/v0.24.14/jsonschema/workflow_execution.json"


@dataclass(frozen=True)
class CloudEventType:
    """A ``ce_type`` that carries a flyteidl event: its kind, version, message and the field holding the event."""

    name: str
    kind: EventKind
    version: int
    message_class: type
    event_field: str


CLOUD_EVENT_TYPES = {
    spec.name: spec
    for spec in [
        CloudEventType(
            "com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest",
            EventKind.WORKFLOW,
            1,
            admin_event_pb2.WorkflowExecutionEventRequest,
            "event",
        ),
        CloudEventType(
            "com.flyte.resource.flyteidl.admin.NodeExecutionEventRequest",
            EventKind.NODE,
            1,
            admin_event_pb2.NodeExecutionEventRequest,
            "event",
        ),
        CloudEventType(
            "com.flyte.resource.flyteidl.admin.TaskExecutionEventRequest",
            EventKind.TASK,
            1,
            admin_event_pb2.TaskExecutionEventRequest,
            "event",
        ),
        CloudEventType(
            "com.flyte.resource.cloudevents.WorkflowExecution",
            EventKind.WORKFLOW,
            2,
            cloudevents_pb2.CloudEventWorkflowExecution,
            "raw_event",
        ),
        CloudEventType(
            "com.flyte.resource.cloudevents.NodeExecution",
            EventKind.NODE,
            2,
            cloudevents_pb2.CloudEventNodeExecution,
            "raw_event",
        ),
        CloudEventType(
            "com.flyte.resource.cloudevents.TaskExecution",
            EventKind.TASK,
            2,
            cloudevents_pb2.CloudEventTaskExecution,
            "raw_event",
        ),
    ]
}


def cloud_event_type(kind: EventKind, version: int) -> CloudEventType:
    for spec in CLOUD_EVENT_TYPES.values():
        if spec.kind is kind and spec.version == version:
            return spec
    raise ValueError(f"no CloudEvent type for {kind.value} events of version {version}: use version 1 or 2")


@dataclass(frozen=True)
class DecodedCloudEvent:
    event: ExecutionEvent
    # Set for version 2 CloudEvents that carry at least one field the state keeps.
    enrichment: Optional[Enrichment]
    cloud_event_id: str
    version: int


def decode_cloud_event(headers: Headers, value: Optional[bytes], *, max_bytes: int) -> DecodedCloudEvent:
    """Decode one record of the CloudEvents topic into its flyteidl event, keys and enrichment.

    Raises UndecodableEventError with the dead-letter reason. It is
    ``unknown-ce-type`` when the record is no CloudEvent of a flyteidl event,
    ``undecodable`` when the envelope or the data cannot be read, and
    ``oversized`` for a value above ``max_bytes``. Missing or invalid event
    ids, a missing occurred_at, an unknown phase or an invalid time raise the
    reasons of ``decoded_event``.
    """
    if value is None:
        raise UndecodableEventError(DeadLetterReason.UNDECODABLE, "record has no value")
    if len(value) > max_bytes:
        raise UndecodableEventError(
            DeadLetterReason.OVERSIZED,
            f"value has {len(value)} bytes, more than the limit of {max_bytes}",
        )

    content_type = _header_text(headers, CONTENT_TYPE_HEADER)
    media_type = _media_type(content_type)
    if media_type == BATCH_CONTENT_TYPE:
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE, "batched CloudEvents (application/cloudevents-batch+json) are not supported"
        )
    if media_type == STRUCTURED_CONTENT_TYPE:
        attributes, data, data_content_type = _read_structured(value)
    else:
        attributes = _binary_attributes(headers)
        data, data_content_type = value, content_type

    type_name = attributes.get("type")
    if not type_name:
        raise UndecodableEventError(
            DeadLetterReason.UNKNOWN_CE_TYPE,
            f"record has no ce_type header and its content-type {content_type!r} is not {STRUCTURED_CONTENT_TYPE}",
        )
    spec = CLOUD_EVENT_TYPES.get(type_name)
    if spec is None:
        raise UndecodableEventError(
            DeadLetterReason.UNKNOWN_CE_TYPE,
            f"unknown ce_type {type_name!r}: expected one of {', '.join(sorted(CLOUD_EVENT_TYPES))}",
        )

    message = spec.message_class()
    _parse_data(message, data, data_content_type)
    flyte_event = spec.kind.message_class()
    flyte_event.CopyFrom(getattr(message, spec.event_field))
    event = decoded_event(spec.kind, flyte_event)

    enrichment = enrichment_of(message) if spec.version == 2 else None
    return DecodedCloudEvent(
        event=event, enrichment=enrichment, cloud_event_id=attributes.get("id", ""), version=spec.version
    )


def enrichment_of(message: Message) -> Optional[Enrichment]:
    """Return what a ``flyteidl.event.CloudEvent*`` message adds to its raw event, or None when it adds nothing.

    The output interface and the node's task execution id are not kept: the
    state records have no field for them.
    """
    fields = message.DESCRIPTOR.fields_by_name

    def optional_copy(name: str):
        if name not in fields or not message.HasField(name):
            return None
        copy = type(getattr(message, name))()
        copy.CopyFrom(getattr(message, name))
        return copy

    enrichment = Enrichment(
        launch_plan_id=optional_copy("launch_plan_id"),
        principal=message.principal if "principal" in fields else "",
        labels=tuple(sorted(message.labels.items())) if "labels" in fields else (),
        reference_execution=optional_copy("reference_execution"),
        artifact_ids=tuple(message.artifact_ids) if "artifact_ids" in fields else (),
    )
    return None if enrichment.is_empty else enrichment


def _header_text(headers: Headers, name: str) -> str:
    """Return the value of the last header called ``name``, compared without case, as text, or "" when absent."""
    found = ""
    for header_name, value in headers:
        if header_name.lower() == name and value is not None:
            found = value.decode("utf-8", errors="replace")
    return found


def _binary_attributes(headers: Headers) -> dict[str, str]:
    """Return the CloudEvent attributes of a binary-mode record: its ``ce_*`` headers without the prefix."""
    attributes = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith(ATTRIBUTE_HEADER_PREFIX) and value is not None:
            attributes[lowered[len(ATTRIBUTE_HEADER_PREFIX) :]] = value.decode("utf-8", errors="replace")
    return attributes


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _read_structured(value: bytes) -> tuple[dict[str, str], Any, str]:
    """Split a structured-mode CloudEvent into its string attributes, its data and the data's content type.

    The data is bytes when the envelope has ``data_base64``, else the JSON
    value of ``data`` (None when the envelope has neither).
    """
    try:
        envelope = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE, f"structured CloudEvent is not valid JSON: {error}"
        ) from None
    if not isinstance(envelope, dict):
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE,
            f"structured CloudEvent must be a JSON object, got {type(envelope).__name__}",
        )

    attributes = {name: value for name, value in envelope.items() if isinstance(value, str)}
    data_content_type = attributes.get("datacontenttype", JSON_CONTENT_TYPE)
    if "data_base64" in envelope:
        try:
            data = base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as error:
            raise UndecodableEventError(
                DeadLetterReason.UNDECODABLE, f"data_base64 of the structured CloudEvent is not base64: {error}"
            ) from None
        return attributes, data, data_content_type
    return attributes, envelope.get("data"), data_content_type


def _parse_data(message: Message, data: Any, content_type: str) -> None:
    """Parse the CloudEvent's data into ``message``, as protobuf or as protobuf JSON by its content type.

    Unknown JSON fields are ignored, so that events of a newer flyteidl still decode.
    NOTE: an enum name that this flyteidl does not know is ignored as well,
    so a phase added in a newer flyteidl reads as the kind's UNDEFINED phase.
    """
    media_type = _media_type(content_type) or JSON_CONTENT_TYPE
    name = message.DESCRIPTOR.full_name

    if media_type in PROTOBUF_CONTENT_TYPES:
        if not isinstance(data, bytes):
            raise UndecodableEventError(
                DeadLetterReason.UNDECODABLE,
                f"{media_type} data of a structured CloudEvent must be in data_base64",
            )
        try:
            message.ParseFromString(data)
        except DecodeError as error:
            raise UndecodableEventError(
                DeadLetterReason.UNDECODABLE, f"data is not a binary {name}: {error}"
            ) from None
        return

    if media_type != JSON_CONTENT_TYPE and not media_type.endswith("+json"):
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE,
            f"unsupported content type {content_type!r}: expected {JSON_CONTENT_TYPE}, "
            f"{' or '.join(sorted(PROTOBUF_CONTENT_TYPES))}",
        )

    document = data
    if isinstance(data, (bytes, str)):
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise UndecodableEventError(DeadLetterReason.UNDECODABLE, f"data is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise UndecodableEventError(
            DeadLetterReason.UNDECODABLE, f"data must be a JSON object of {name}, got {type(document).__name__}"
        )
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as error:
        raise UndecodableEventError(DeadLetterReason.UNDECODABLE, f"data is not valid {name} JSON: {error}") from None


# Encoding in FlyteAdmin's style, for the publish command and the tests.


@dataclass(frozen=True)
class CloudEventRecord:
    """A Kafka record as FlyteAdmin's publisher produces it."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode_cloud_event(
    event: ExecutionEvent,
    version: int,
    *,
    enrichment: Optional[Enrichment] = None,
    structured: bool = False,
    content_type: str = JSON_CONTENT_TYPE,
) -> CloudEventRecord:
    """Encode an event as FlyteAdmin 1.16 publishes it: binary mode, protobuf JSON, keyed by the CloudEvent id.

    ``structured`` writes a structured-mode record instead, and ``content_type``
    ``application/protobuf`` writes binary protobuf data; FlyteAdmin does
    neither, but other producers may. ``enrichment`` fills the version 2
    fields that FlyteAdmin reads from its database.
    """
    spec = cloud_event_type(event.kind, version)
    message = spec.message_class()
    getattr(message, spec.event_field).CopyFrom(event.message)
    if enrichment is not None:
        if version != 2:
            raise ValueError("only version 2 CloudEvents carry an enrichment")
        _write_enrichment(message, enrichment)

    attributes = {
        "specversion": SPEC_VERSION,
        "id": cloud_event_id(event),
        "source": _source(event, version),
        "type": spec.name,
        "time": _rfc3339(event.message.occurred_at),
        "jsonschemaurl": V1_JSON_SCHEMA_URL if version == 1 else "",
    }
    media_type = _media_type(content_type)
    if media_type in PROTOBUF_CONTENT_TYPES:
        data = message.SerializeToString()
    else:
        data = _compact_json(json_format.MessageToDict(message)).encode()

    key = attributes["id"].encode()
    if structured:
        envelope: dict[str, Any] = {**attributes, "datacontenttype": content_type}
        if media_type in PROTOBUF_CONTENT_TYPES:
            envelope["data_base64"] = base64.b64encode(data).decode("ascii")
        else:
            envelope["data"] = json.loads(data)
        headers = [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())]
        return CloudEventRecord(key=key, value=_compact_json(envelope).encode(), headers=headers)

    headers = [(ATTRIBUTE_HEADER_PREFIX + name, text.encode()) for name, text in attributes.items()]
    headers.append((CONTENT_TYPE_HEADER, content_type.encode()))
    return CloudEventRecord(key=key, value=data, headers=headers)


def _write_enrichment(message: Message, enrichment: Enrichment) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    if enrichment.launch_plan_id is not None and "launch_plan_id" in fields:
        message.launch_plan_id.CopyFrom(enrichment.launch_plan_id)
    if enrichment.principal and "principal" in fields:
        message.principal = enrichment.principal
    for name, value in enrichment.labels:
        message.labels[name] = value
    if enrichment.reference_execution is not None and "reference_execution" in fields:
        message.reference_execution.CopyFrom(enrichment.reference_execution)
    if "artifact_ids" in fields:
        message.artifact_ids.extend(enrichment.artifact_ids)


def cloud_event_id(event: ExecutionEvent) -> str:
    """Return FlyteAdmin's CloudEvent id: the identifier's protobuf text form, a dot and the phase name.

    The identifier is the execution id for workflow events, the node
    execution id for node events and the task id (not the attempt) for task
    events. NOTE: Go's protobuf text form inserts a second space between
    fields in some builds to discourage parsing it, so FlyteAdmin's ids may
    differ from these in spacing. Nothing reads the id back.
    """
    message = event.message
    if event.kind is EventKind.WORKFLOW:
        identifier, phases = message.execution_id, execution_pb2.WorkflowExecution.Phase
    elif event.kind is EventKind.NODE:
        identifier, phases = message.id, execution_pb2.NodeExecution.Phase
    else:
        identifier, phases = message.task_id, execution_pb2.TaskExecution.Phase
    phase_name = phases.Name(message.phase) if message.phase in phases.values() else str(message.phase)
    return f"{_text_form(identifier)}.{phase_name}"


def _text_form(message: Message) -> str:
    """Return the one-line protobuf text form of an identifier, as Go's ``String()`` writes it.

    Fields are written in declaration order. Fields with default values are
    left out, as proto3 does.
    """
    parts = []
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None:
            if message.HasField(field.name):
                parts.append(f"{field.name}:{{{_text_form(value)}}}")
            continue
        if not value:
            continue
        if field.enum_type is not None:
            enum_value = field.enum_type.values_by_number.get(value)
            text = enum_value.name if enum_value is not None else str(value)
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = str(value)
        parts.append(f"{field.name}:{text}")
    return " ".join(parts)


def _source(event: ExecutionEvent, version: int) -> str:
    """Return ``ce_source``: FlyteAdmin's URL in version 1, the event's execution name and node path in version 2."""
    if version == 1:
        return V1_SOURCE
    message = event.message
    if event.kind is EventKind.WORKFLOW:
        return f"{message.execution_id.name}/end-node"
    if event.kind is EventKind.NODE:
        return f"{message.id.execution_id.name}/{message.id.node_id}"
    parent = message.parent_node_execution_id
    return f"{parent.execution_id.name}/{parent.node_id}/{message.retry_attempt}"


def _rfc3339(timestamp) -> str:
    """Format a protobuf Timestamp as Go's RFC 3339 with nanoseconds in UTC: trailing zeros of the fraction dropped."""
    text = timestamp.ToJsonString()
    if "." in text:
        whole, fraction = text[:-1].split(".")
        fraction = fraction.rstrip("0")
        text = f"{whole}.{fraction}Z" if fraction else f"{whole}Z"
    return text


def _compact_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def sarama_partition(key: bytes, partitions: int) -> int:
    """Return the partition of Sarama's default hash partitioner, which FlyteAdmin's Kafka sender uses.

    Sarama hashes the key with 32-bit FNV-1a, takes the hash as a signed
    32-bit integer modulo the partition count, and drops the sign.
    """
    hash_value = 0x811C9DC5
    for byte in key:
        hash_value ^= byte
        hash_value = (hash_value * 0x01000193) & 0xFFFFFFFF
    signed = hash_value - (1 << 32) if hash_value & 0x80000000 else hash_value
    return abs(signed) % partitions


class FlyteAdminStyleEncoder:
    """Encode a stream of events as FlyteAdmin's CloudEvents publisher would send them.

    FlyteAdmin creates a task attempt's record from the attempt's first
    event and publishes no CloudEvent for it, so the encoder leaves out the
    first event of each task attempt that it is given.
    """

    def __init__(self, version: int) -> None:
        if version not in (1, 2):
            raise ValueError(f"CloudEvents version {version} is not supported: use 1 or 2")
        self.version = version
        self.seen_task_attempts: set[str] = set()

    def encode(self, event: ExecutionEvent) -> Optional[CloudEventRecord]:
        """Return the record of ``event``, or None when FlyteAdmin would not publish it."""
        if event.kind is EventKind.TASK and event.entity_key not in self.seen_task_attempts:
            self.seen_task_attempts.add(event.entity_key)
            return None
        return encode_cloud_event(event, self.version)
