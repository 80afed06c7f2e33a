"""FlyteAdmin's CloudEvents: decoding, dead-letter reasons, FlyteAdmin-style encoding, routing and enrichment."""

import base64
import json

import pytest
from flyteidl.admin import event_pb2 as admin_event_pb2
from flyteidl.core import artifact_id_pb2, identifier_pb2
from flyteidl.event import cloudevents_pb2
from google.protobuf import json_format

from processor import cloudevents
from processor.cloudevents import (
    FlyteAdminStyleEncoder,
    cloud_event_id,
    decode_cloud_event,
    encode_cloud_event,
    sarama_partition,
)
from processor.config import ConfigError, Settings, Topics
from processor.events import DeadLetterReason, EventKind, UndecodableEventError
from processor.fold import ExecutionFolder, InMemoryStateStore
from processor.fold.enrichment import Enrichment, merge_artifact_ids
from processor.fold.execution import RecordKind
from processor.fold.public import public_view
from processor.publisher import EventPublisher
from processor.routing import (
    CLOUDEVENTS_FORMAT,
    FORMAT_HEADER,
    KIND_HEADER,
    DeadLetter,
    FoldHere,
    InputRecord,
    RecordRouter,
    Repartition,
    header_value,
    partition_for_key,
)
from processor.topics import topic_specs

from .builders import (
    EXECUTION_KEY,
    NAME,
    NodePhase,
    TaskPhase,
    WorkflowPhase,
    execution_id,
    keyed,
    node_event,
    task_event,
    workflow_event,
)

MAX_BYTES = 1024 * 1024
CE_TOPIC = "flyteadmin.cloudevents"
SETTINGS = Settings(topics=Topics(cloudevents=CE_TOPIC))

V1_WORKFLOW_TYPE = "com.flyte.resource.flyteidl.admin.WorkflowExecutionEventRequest"
V1_NODE_TYPE = "com.flyte.resource.flyteidl.admin.NodeExecutionEventRequest"
V1_TASK_TYPE = "com.flyte.resource.flyteidl.admin.TaskExecutionEventRequest"
V2_WORKFLOW_TYPE = "com.flyte.resource.cloudevents.WorkflowExecution"
V2_NODE_TYPE = "com.flyte.resource.cloudevents.NodeExecution"
V2_TASK_TYPE = "com.flyte.resource.cloudevents.TaskExecution"

EXECUTION_ID_JSON = {"project": "flytesnacks", "domain": "development", "name": NAME}
TASK_ID_JSON = {
    "resourceType": "TASK",
    "project": "flytesnacks",
    "domain": "development",
    "name": "wf.train",
    "version": "v1",
}

# Protobuf JSON as FlyteAdmin's jsonpb writes it: camelCase, enum names, int64 as strings.
WORKFLOW_EVENT_JSON = {
    "executionId": EXECUTION_ID_JSON,
    "producerId": "propeller",
    "phase": "SUCCEEDED",
    "occurredAt": "2026-11-03T10:00:05.250Z",
    "outputData": {"literals": {"count": {"scalar": {"primitive": {"integer": "9007199254740993"}}}}},
}
NODE_EVENT_JSON = {
    "id": {"nodeId": "n0", "executionId": EXECUTION_ID_JSON},
    "producerId": "propeller",
    "phase": "RUNNING",
    "occurredAt": "2026-11-03T10:00:02Z",
    "inputUri": "s3://bucket/n0/inputs.pb",
}
TASK_EVENT_JSON = {
    "taskId": TASK_ID_JSON,
    "parentNodeExecutionId": {"nodeId": "n0", "executionId": EXECUTION_ID_JSON},
    "retryAttempt": 1,
    "phase": "RUNNING",
    "phaseVersion": 2,
    "producerId": "propeller",
    "occurredAt": "2026-11-03T10:00:03Z",
    "logs": [{"uri": "https://logs.example/t", "name": "Kubernetes Logs"}],
}

LAUNCH_PLAN_JSON = {
    "resourceType": "LAUNCH_PLAN",
    "project": "flytesnacks",
    "domain": "development",
    "name": "wf.daily",
    "version": "v7",
}
ARTIFACT_JSON = {
    "artifactKey": {"project": "flytesnacks", "domain": "development", "name": "model"},
    "version": "abc123",
}


def binary_headers(ce_type, content_type="application/json", **attributes):
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", attributes.get("id", "some-id").encode()),
        ("ce_source", b"https://github.com/flyteorg/flyte/flyteadmin"),
        ("ce_type", ce_type.encode()),
        ("ce_time", b"2026-11-03T10:00:05.25Z"),
    ]
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    return headers


def json_value(document) -> bytes:
    return json.dumps(document).encode()


def decode(headers, value):
    return decode_cloud_event(headers, value, max_bytes=MAX_BYTES)


def dead_letter_reason(headers, value, max_bytes=MAX_BYTES) -> DeadLetterReason:
    with pytest.raises(UndecodableEventError) as raised:
        decode_cloud_event(headers, value, max_bytes=max_bytes)
    return raised.value.reason


# Decoding of FlyteAdmin's binary mode.


@pytest.mark.parametrize(
    "ce_type, event_json, kind, entity_key",
    [
        (V1_WORKFLOW_TYPE, WORKFLOW_EVENT_JSON, EventKind.WORKFLOW, EXECUTION_KEY),
        (V1_NODE_TYPE, NODE_EVENT_JSON, EventKind.NODE, f"{EXECUTION_KEY}/n0"),
        (V1_TASK_TYPE, TASK_EVENT_JSON, EventKind.TASK, f"{EXECUTION_KEY}/n0/wf.train/1"),
    ],
    ids=["workflow", "node", "task"],
)
def test_decode_v1_binary(ce_type, event_json, kind, entity_key):
    value = json_value({"requestId": "request-1", "event": event_json})

    decoded = decode(binary_headers(ce_type, id="event-id"), value)

    assert decoded.version == 1
    assert decoded.cloud_event_id == "event-id"
    assert decoded.enrichment is None
    assert decoded.event.kind is kind
    assert decoded.event.execution_key == EXECUTION_KEY
    assert decoded.event.entity_key == entity_key
    assert json_format.MessageToDict(decoded.event.message) == event_json


def test_decode_v1_int64_as_string():
    value = json_value({"event": WORKFLOW_EVENT_JSON})

    message = decode(binary_headers(V1_WORKFLOW_TYPE), value).event.message

    assert message.output_data.literals["count"].scalar.primitive.integer == 9007199254740993


def test_decode_v1_task_fields():
    message = decode(binary_headers(V1_TASK_TYPE), json_value({"event": TASK_EVENT_JSON})).event.message

    assert message.phase == TaskPhase.RUNNING
    assert message.phase_version == 2
    assert message.retry_attempt == 1
    assert [log.name for log in message.logs] == ["Kubernetes Logs"]


def test_decode_v2_workflow_enrichment():
    value = json_value(
        {
            "rawEvent": WORKFLOW_EVENT_JSON,
            "outputInterface": {"outputs": {"variables": {"count": {"type": {"simple": "INTEGER"}}}}},
            "artifactIds": [ARTIFACT_JSON],
            "referenceExecution": {**EXECUTION_ID_JSON, "name": "original"},
            "principal": "alice@example.com",
            "launchPlanId": LAUNCH_PLAN_JSON,
            "labels": {"team": "ml", "env": "prod"},
        }
    )

    decoded = decode(binary_headers(V2_WORKFLOW_TYPE), value)
    enrichment = decoded.enrichment

    assert decoded.version == 2
    assert decoded.event.kind is EventKind.WORKFLOW
    assert decoded.event.message.phase == WorkflowPhase.SUCCEEDED
    assert enrichment.principal == "alice@example.com"
    assert enrichment.launch_plan_id.name == "wf.daily"
    assert enrichment.launch_plan_id.resource_type == identifier_pb2.LAUNCH_PLAN
    assert enrichment.labels == (("env", "prod"), ("team", "ml"))
    assert enrichment.reference_execution.name == "original"
    assert [artifact.version for artifact in enrichment.artifact_ids] == ["abc123"]


def test_decode_v2_node_enrichment():
    value = json_value(
        {
            "rawEvent": NODE_EVENT_JSON,
            "taskExecId": {
                "taskId": TASK_ID_JSON,
                "nodeExecutionId": {"nodeId": "n0", "executionId": EXECUTION_ID_JSON},
            },
            "artifactIds": [ARTIFACT_JSON],
            "principal": "alice@example.com",
            "launchPlanId": LAUNCH_PLAN_JSON,
            "labels": {"team": "ml"},
        }
    )

    decoded = decode(binary_headers(V2_NODE_TYPE), value)

    assert decoded.event.entity_key == f"{EXECUTION_KEY}/n0"
    assert decoded.enrichment.principal == "alice@example.com"
    assert decoded.enrichment.labels == (("team", "ml"),)
    assert len(decoded.enrichment.artifact_ids) == 1
    assert decoded.enrichment.reference_execution is None


def test_decode_v2_task_labels():
    value = json_value({"rawEvent": TASK_EVENT_JSON, "labels": {"team": "ml"}})

    decoded = decode(binary_headers(V2_TASK_TYPE), value)

    assert decoded.event.kind is EventKind.TASK
    assert decoded.enrichment == Enrichment(labels=(("team", "ml"),))


def test_decode_v2_without_enrichment():
    """FlyteAdmin enriches only SUCCEEDED workflow and node events; the others carry the raw event alone."""
    value = json_value({"rawEvent": NODE_EVENT_JSON})

    decoded = decode(binary_headers(V2_NODE_TYPE), value)

    assert decoded.enrichment is None
    assert decoded.event.message.input_uri == "s3://bucket/n0/inputs.pb"


def test_decode_ignores_unknown_fields():
    value = json_value({"event": {**NODE_EVENT_JSON, "fieldOfNewerFlyteidl": 1}, "alsoNew": "x"})

    decoded = decode(binary_headers(V1_NODE_TYPE), value)

    assert decoded.event.entity_key == f"{EXECUTION_KEY}/n0"


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "APPLICATION/JSON"])
def test_decode_json_content_type_variants(content_type):
    value = json_value({"event": WORKFLOW_EVENT_JSON})

    decoded = decode(binary_headers(V1_WORKFLOW_TYPE, content_type=content_type), value)

    assert decoded.event.execution_key == EXECUTION_KEY


@pytest.mark.parametrize("content_type", ["application/protobuf", "application/x-protobuf"])
def test_decode_binary_protobuf(content_type):
    message = cloudevents_pb2.CloudEventWorkflowExecution(principal="bob")
    json_format.ParseDict(WORKFLOW_EVENT_JSON, message.raw_event)

    decoded = decode(binary_headers(V2_WORKFLOW_TYPE, content_type=content_type), message.SerializeToString())

    assert decoded.event.message == message.raw_event
    assert decoded.enrichment.principal == "bob"


def test_decode_v1_binary_protobuf():
    request = admin_event_pb2.TaskExecutionEventRequest(request_id="r")
    json_format.ParseDict(TASK_EVENT_JSON, request.event)

    decoded = decode(binary_headers(V1_TASK_TYPE, content_type="application/protobuf"), request.SerializeToString())

    assert decoded.event.message == request.event


# Structured mode.


def structured_headers():
    return [("content-type", b"application/cloudevents+json; charset=utf-8")]


def envelope(ce_type, **fields):
    return {
        "specversion": "1.0",
        "id": "structured-id",
        "source": "https://github.com/flyteorg/flyte/flyteadmin",
        "type": ce_type,
        **fields,
    }


def test_decode_structured_json_data():
    value = json_value(envelope(V1_NODE_TYPE, datacontenttype="application/json", data={"event": NODE_EVENT_JSON}))

    decoded = decode(structured_headers(), value)

    assert decoded.cloud_event_id == "structured-id"
    assert decoded.event.entity_key == f"{EXECUTION_KEY}/n0"


def test_decode_structured_without_datacontenttype():
    value = json_value(envelope(V1_NODE_TYPE, data={"event": NODE_EVENT_JSON}))

    assert decode(structured_headers(), value).event.kind is EventKind.NODE


def test_decode_structured_json_string_data():
    value = json_value(envelope(V1_NODE_TYPE, data=json.dumps({"event": NODE_EVENT_JSON})))

    assert decode(structured_headers(), value).event.kind is EventKind.NODE


def test_decode_structured_data_base64_protobuf():
    message = cloudevents_pb2.CloudEventTaskExecution(labels={"team": "ml"})
    json_format.ParseDict(TASK_EVENT_JSON, message.raw_event)
    data = base64.b64encode(message.SerializeToString()).decode()
    value = json_value(envelope(V2_TASK_TYPE, datacontenttype="application/protobuf", data_base64=data))

    decoded = decode(structured_headers(), value)

    assert decoded.event.message == message.raw_event
    assert decoded.enrichment.labels == (("team", "ml"),)


def test_decode_structured_data_base64_json():
    data = base64.b64encode(json_value({"event": WORKFLOW_EVENT_JSON})).decode()
    value = json_value(envelope(V1_WORKFLOW_TYPE, datacontenttype="application/json", data_base64=data))

    assert decode(structured_headers(), value).event.kind is EventKind.WORKFLOW


# Dead-letter reasons.


def test_dead_letter_unknown_ce_type():
    value = json_value({"executionId": EXECUTION_ID_JSON})
    headers = binary_headers("com.flyte.resource.cloudevents.ExecutionStart")

    assert dead_letter_reason(headers, value) is DeadLetterReason.UNKNOWN_CE_TYPE


def test_dead_letter_missing_ce_type():
    """A binary flyteidl event on the CloudEvents topic has no CloudEvent attributes."""
    value = workflow_event(WorkflowPhase.RUNNING, 1).SerializeToString()

    assert dead_letter_reason([], value) is DeadLetterReason.UNKNOWN_CE_TYPE


def test_dead_letter_structured_without_type():
    value = json_value({"specversion": "1.0", "id": "x", "data": {"event": NODE_EVENT_JSON}})

    assert dead_letter_reason(structured_headers(), value) is DeadLetterReason.UNKNOWN_CE_TYPE


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b'{"event": {"occurredAt": "yesterday"}}', b'{"event": 5}'],
    ids=["truncated", "not-utf8", "array", "string", "bad-timestamp", "wrong-type"],
)
def test_dead_letter_undecodable_json(value):
    assert dead_letter_reason(binary_headers(V1_WORKFLOW_TYPE), value) is DeadLetterReason.UNDECODABLE


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        b"[]",
        json_value(envelope(V1_NODE_TYPE, data_base64="***")),
        json_value(envelope(V2_NODE_TYPE, datacontenttype="application/protobuf", data={"rawEvent": {}})),
        json_value(envelope(V1_NODE_TYPE, data="{truncated")),
    ],
    ids=["truncated", "not-an-object", "bad-base64", "protobuf-not-base64", "bad-json-string"],
)
def test_dead_letter_undecodable_structured(value):
    assert dead_letter_reason(structured_headers(), value) is DeadLetterReason.UNDECODABLE


def test_dead_letter_batch_mode():
    headers = [("content-type", b"application/cloudevents-batch+json")]

    assert dead_letter_reason(headers, b"[]") is DeadLetterReason.UNDECODABLE


def test_dead_letter_unsupported_content_type():
    headers = binary_headers(V1_WORKFLOW_TYPE, content_type="application/avro")

    assert dead_letter_reason(headers, json_value({"event": WORKFLOW_EVENT_JSON})) is DeadLetterReason.UNDECODABLE


def test_dead_letter_bad_protobuf():
    headers = binary_headers(V1_WORKFLOW_TYPE, content_type="application/protobuf")

    assert dead_letter_reason(headers, b"\xff\xff\xff") is DeadLetterReason.UNDECODABLE


def test_dead_letter_no_value():
    assert dead_letter_reason(binary_headers(V1_WORKFLOW_TYPE), None) is DeadLetterReason.UNDECODABLE


def test_dead_letter_oversized():
    value = json_value({"event": WORKFLOW_EVENT_JSON})

    reason = dead_letter_reason(binary_headers(V1_WORKFLOW_TYPE), value, max_bytes=len(value) - 1)

    assert reason is DeadLetterReason.OVERSIZED


@pytest.mark.parametrize(
    "ce_type, value",
    [
        (V1_WORKFLOW_TYPE, {"requestId": "r"}),
        (V1_WORKFLOW_TYPE, {"event": {"phase": "RUNNING", "occurredAt": "2026-11-03T10:00:00Z"}}),
        (V2_NODE_TYPE, {"rawEvent": {"id": {"nodeId": "n0"}, "phase": "RUNNING"}}),
        (V2_TASK_TYPE, {"labels": {"team": "ml"}}),
    ],
    ids=["v1-no-event", "v1-no-id", "v2-node-no-execution", "v2-no-raw-event"],
)
def test_dead_letter_missing_execution_id(ce_type, value):
    assert dead_letter_reason(binary_headers(ce_type), json_value(value)) is DeadLetterReason.MISSING_EXECUTION_ID


def test_dead_letter_invalid_id():
    event = {**WORKFLOW_EVENT_JSON, "executionId": {**EXECUTION_ID_JSON, "name": "bad/name"}}

    reason = dead_letter_reason(binary_headers(V1_WORKFLOW_TYPE), json_value({"event": event}))

    assert reason is DeadLetterReason.INVALID_ID


# Encoding in FlyteAdmin's style.


def header_dict(record):
    return dict(record.headers)


def test_cloud_event_id_workflow():
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 1))

    assert cloud_event_id(event) == f'project:"flytesnacks" domain:"development" name:"{NAME}".SUCCEEDED'


def test_cloud_event_id_with_org():
    message = workflow_event(WorkflowPhase.RUNNING, 1)
    message.execution_id.org = "acme"

    expected = f'project:"flytesnacks" domain:"development" name:"{NAME}" org:"acme".RUNNING'
    assert cloud_event_id(keyed(message)) == expected


def test_cloud_event_id_node():
    event = keyed(node_event("n0", NodePhase.QUEUED, 1))

    expected = f'node_id:"n0" execution_id:{{project:"flytesnacks" domain:"development" name:"{NAME}"}}.QUEUED'
    assert cloud_event_id(event) == expected


def test_cloud_event_id_task_uses_task_id():
    """FlyteAdmin's task CloudEvent id names the task, not the attempt, so attempts share it."""
    first = keyed(task_event("n0", TaskPhase.RUNNING, 1, retry_attempt=0))
    second = keyed(task_event("n1", TaskPhase.RUNNING, 2, retry_attempt=1))

    expected = 'resource_type:TASK project:"flytesnacks" domain:"development" name:"wf.train" version:"v1".RUNNING'
    assert cloud_event_id(first) == expected
    assert cloud_event_id(second) == expected


def test_encode_v1_headers():
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 5))

    record = encode_cloud_event(event, 1)
    headers = header_dict(record)

    assert record.key == cloud_event_id(event).encode()
    assert headers["ce_id"] == record.key
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == V1_WORKFLOW_TYPE.encode()
    assert headers["ce_source"] == b"https://github.com/flyteorg/flyte/flyteadmin"
    assert headers["ce_time"] == b"2026-11-03T10:00:05Z"
    assert headers["ce_jsonschemaurl"].endswith(b"workflow_execution.json")
    assert headers["content-type"] == b"application/json"


def test_encode_v1_value_is_compact_request_json():
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 5))

    record = encode_cloud_event(event, 1)

    assert record.value.startswith(b'{"event":{"executionId":')
    assert b" " not in record.value
    assert json.loads(record.value)["event"]["phase"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "message, ce_type, source",
    [
        (workflow_event(WorkflowPhase.RUNNING, 1), V2_WORKFLOW_TYPE, f"{NAME}/end-node"),
        (node_event("n0", NodePhase.RUNNING, 1), V2_NODE_TYPE, f"{NAME}/n0"),
        (task_event("n0", TaskPhase.RUNNING, 1, retry_attempt=2), V2_TASK_TYPE, f"{NAME}/n0/2"),
    ],
    ids=["workflow", "node", "task"],
)
def test_encode_v2_type_and_source(message, ce_type, source):
    record = encode_cloud_event(keyed(message), 2)
    headers = header_dict(record)

    assert headers["ce_type"] == ce_type.encode()
    assert headers["ce_source"] == source.encode()
    assert headers["ce_jsonschemaurl"] == b""
    assert "rawEvent" in json.loads(record.value)


def test_encode_time_keeps_significant_fraction():
    message = workflow_event(WorkflowPhase.RUNNING, 1)
    message.occurred_at.nanos = 250_000_000

    headers = header_dict(encode_cloud_event(keyed(message), 1))

    assert headers["ce_time"] == b"2026-11-03T10:00:01.25Z"


def test_encode_v1_rejects_enrichment():
    with pytest.raises(ValueError, match="version 2"):
        encode_cloud_event(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), 1, enrichment=Enrichment(principal="a"))


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
@pytest.mark.parametrize("version", [1, 2])
def test_encode_decode_round_trip(version, content_type, structured):
    event = keyed(task_event("n0", TaskPhase.RUNNING, 3, retry_attempt=1, phase_version=4))

    record = encode_cloud_event(event, version, structured=structured, content_type=content_type)
    decoded = decode(record.headers, record.value)

    assert decoded.event.message == event.message
    assert decoded.event.entity_key == event.entity_key
    assert decoded.cloud_event_id == cloud_event_id(event)


def test_encode_decode_enrichment_round_trip():
    enrichment = Enrichment(
        launch_plan_id=identifier_pb2.Identifier(resource_type=identifier_pb2.LAUNCH_PLAN, name="lp", version="1"),
        principal="alice",
        labels=(("team", "ml"),),
        reference_execution=execution_id("original"),
        artifact_ids=(artifact_id_pb2.ArtifactID(version="a1"),),
    )
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 9))

    record = encode_cloud_event(event, 2, enrichment=enrichment)

    assert decode(record.headers, record.value).enrichment == enrichment


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bits, from its definition: offset basis 2166136261, prime 16777619."""
    value = 2166136261
    for byte in data:
        value = ((value ^ byte) * 16777619) % 2**32
    return value


@pytest.mark.parametrize("data, expected", [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)])
def test_fnv1a_reference_vectors(data, expected):
    assert fnv1a_32(data) == expected


@pytest.mark.parametrize("key", [b"", b"a", b"foobar", b'project:"p" domain:"d" name:"n".RUNNING'])
@pytest.mark.parametrize("partitions", [1, 3, 6, 7])
def test_sarama_partition(key, partitions):
    signed = fnv1a_32(key) - 2**32 if fnv1a_32(key) >= 2**31 else fnv1a_32(key)
    go_remainder = abs(signed) % partitions * (1 if signed >= 0 else -1)

    assert sarama_partition(key, partitions) == abs(go_remainder)


def test_sarama_partition_negative_hash():
    """FNV-1a of "a" is negative as a signed 32-bit integer; Sarama drops the remainder's sign."""
    assert fnv1a_32(b"a") >= 2**31
    assert sarama_partition(b"a", 7) == (2**32 - 0xE40C292C) % 7


def test_encoder_omits_first_task_events():
    events = [
        keyed(workflow_event(WorkflowPhase.RUNNING, 1)),
        keyed(node_event("n0", NodePhase.QUEUED, 2)),
        keyed(task_event("n0", TaskPhase.QUEUED, 3)),
        keyed(task_event("n0", TaskPhase.RUNNING, 4)),
        keyed(task_event("n0", TaskPhase.FAILED, 5)),
        keyed(task_event("n0", TaskPhase.QUEUED, 6, retry_attempt=1)),
        keyed(task_event("n0", TaskPhase.SUCCEEDED, 7, retry_attempt=1)),
        keyed(task_event("n1", TaskPhase.RUNNING, 8)),
    ]
    encoder = FlyteAdminStyleEncoder(2)

    records = [encoder.encode(event) for event in events]

    left_out = [index for index, record in enumerate(records) if record is None]
    assert left_out == [2, 5, 7]


def test_encoder_rejects_unknown_version():
    with pytest.raises(ValueError, match="version 3"):
        FlyteAdminStyleEncoder(3)


def test_publisher_cloudevents_format_needs_topic():
    with pytest.raises(ConfigError, match="FLYTE_STATE_TOPIC_CLOUDEVENTS"):
        EventPublisher(Settings(), "cloudevents-v1")


def test_publisher_rejects_unknown_format():
    with pytest.raises(ValueError, match="avro"):
        EventPublisher(SETTINGS, "avro")


# Settings and topics.


def test_cloudevents_topic_off_by_default():
    settings = Settings()

    assert settings.topics.cloudevents == ""
    assert settings.topics.all_inputs == settings.topics.inputs
    assert all(spec.name != "" for spec in topic_specs(settings))


def test_cloudevents_topic_from_env(monkeypatch):
    monkeypatch.setenv("FLYTE_STATE_TOPIC_CLOUDEVENTS", "admin.events")

    settings = Settings.from_env()

    assert settings.topics.cloudevents == "admin.events"
    assert settings.topics.all_inputs[-1] == "admin.events"


def test_cloudevents_topic_to_env_round_trip(monkeypatch):
    for name, value in SETTINGS.to_env().items():
        monkeypatch.setenv(name, value)

    assert Settings.from_env().topics.cloudevents == CE_TOPIC


def test_cloudevents_topic_spec_like_inputs():
    specs = {spec.name: spec for spec in topic_specs(SETTINGS)}

    assert specs[CE_TOPIC].partitions == SETTINGS.partitions
    assert specs[CE_TOPIC].config == specs[SETTINGS.topics.workflow_events].config


def test_cloudevents_topic_must_differ():
    with pytest.raises(ConfigError, match="must differ"):
        Settings(topics=Topics(cloudevents="flyte.events.node")).validate()


def test_cloudevents_topic_prefix_keeps_empty():
    assert Settings().with_topic_prefix("t1-").topics.cloudevents == ""


# Routing.


def ce_record(cloud_record, *, topic=CE_TOPIC, partition=0, headers=None):
    return InputRecord(
        topic=topic,
        partition=partition,
        offset=11,
        key=cloud_record.key,
        value=cloud_record.value,
        headers=cloud_record.headers if headers is None else headers,
    )


def test_route_cloud_event_repartitioned():
    event = keyed(node_event("n0", NodePhase.RUNNING, 1))
    cloud_record = encode_cloud_event(event, 1)

    route = RecordRouter(SETTINGS).route(ce_record(cloud_record))

    assert isinstance(route, Repartition)
    assert route.key == EXECUTION_KEY.encode()
    assert list(route.headers[: len(cloud_record.headers)]) == cloud_record.headers
    assert header_value(route.headers, KIND_HEADER) == b"node"
    assert header_value(route.headers, FORMAT_HEADER) == CLOUDEVENTS_FORMAT


def test_route_forwarded_cloud_event_folds_with_enrichment():
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 1))
    cloud_record = encode_cloud_event(event, 2, enrichment=Enrichment(principal="alice"))
    forwarded = RecordRouter(SETTINGS).route(ce_record(cloud_record))
    key = forwarded.key
    on_repartition_topic = InputRecord(
        topic=SETTINGS.repartition_topic,
        partition=partition_for_key(key, SETTINGS.partitions),
        offset=3,
        key=key,
        value=cloud_record.value,
        headers=forwarded.headers,
    )

    route = RecordRouter(SETTINGS).route(on_repartition_topic)

    assert isinstance(route, FoldHere)
    assert route.event.message == event.message
    assert route.enrichment == Enrichment(principal="alice")


def test_route_cloud_event_keyed_by_execution_folds_here():
    """A producer that keys CloudEvents by the execution key on its murmur2 partition saves the forwarding."""
    cloud_record = encode_cloud_event(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), 1)
    key = EXECUTION_KEY.encode()
    record = InputRecord(
        CE_TOPIC, partition_for_key(key, SETTINGS.partitions), 0, key, cloud_record.value, cloud_record.headers
    )

    assert isinstance(RecordRouter(SETTINGS).route(record), FoldHere)


def test_route_cloud_event_unknown_type_dead_lettered():
    cloud_record = encode_cloud_event(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), 1)
    headers = [(name, b"com.example.Other" if name == "ce_type" else value) for name, value in cloud_record.headers]

    route = RecordRouter(SETTINGS).route(ce_record(cloud_record, headers=headers))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNKNOWN_CE_TYPE


def test_route_binary_record_drops_format_header():
    """A binary event that arrives with a format header must not be read as a CloudEvent after forwarding."""
    value = workflow_event(WorkflowPhase.RUNNING, 1).SerializeToString()
    record = InputRecord(SETTINGS.topics.workflow_events, 0, 0, None, value, [(FORMAT_HEADER, CLOUDEVENTS_FORMAT)])

    route = RecordRouter(SETTINGS).route(record)

    assert isinstance(route, Repartition)
    assert header_value(route.headers, FORMAT_HEADER) is None


def test_route_cloud_event_topic_ignored_when_off():
    """Without the setting, a record of that topic name is read like any unknown topic's record."""
    cloud_record = encode_cloud_event(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), 1)

    route = RecordRouter(Settings()).route(ce_record(cloud_record))

    assert isinstance(route, DeadLetter)
    assert route.reason is DeadLetterReason.UNKNOWN_KIND


# Enrichment through the ExecutionFolder.

LAUNCH_PLAN = identifier_pb2.Identifier(resource_type=identifier_pb2.LAUNCH_PLAN, name="wf.daily", version="v7")
ARTIFACT_A = artifact_id_pb2.ArtifactID(artifact_key=artifact_id_pb2.ArtifactKey(name="a"), version="1")
ARTIFACT_B = artifact_id_pb2.ArtifactID(artifact_key=artifact_id_pb2.ArtifactKey(name="b"), version="1")
FULL_ENRICHMENT = Enrichment(
    launch_plan_id=LAUNCH_PLAN,
    principal="alice",
    labels=(("team", "ml"),),
    reference_execution=execution_id("original"),
    artifact_ids=(ARTIFACT_B, ARTIFACT_A),
)


def test_enrichment_sets_workflow_spec():
    folder = ExecutionFolder(InMemoryStateStore())

    folder.fold(keyed(workflow_event(WorkflowPhase.SUCCEEDED, 1)), enrichment=FULL_ENRICHMENT)
    spec = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY).execution.spec

    assert spec.launch_plan == LAUNCH_PLAN
    assert spec.metadata.principal == "alice"
    assert dict(spec.labels.values) == {"team": "ml"}
    assert spec.metadata.reference_execution.name == "original"
    assert list(spec.metadata.artifact_ids) == [ARTIFACT_A, ARTIFACT_B]


def test_enrichment_published_in_same_version():
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), enrichment=FULL_ENRICHMENT)
    workflow_changes = [change for change in result.changes if change.kind is RecordKind.WORKFLOW]

    assert len(workflow_changes) == 1
    assert workflow_changes[0].state.version == 1
    assert workflow_changes[0].state.execution.spec.metadata.principal == "alice"
    stored = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert workflow_changes[0].state == public_view(stored, keep_version=True)


def test_enrichment_of_duplicate_event_changes_version_once():
    folder = ExecutionFolder(InMemoryStateStore())
    event = keyed(workflow_event(WorkflowPhase.RUNNING, 1))
    folder.fold(event)

    result = folder.fold(event, enrichment=FULL_ENRICHMENT)

    workflow_changes = [change for change in result.changes if change.kind is RecordKind.WORKFLOW]
    assert [change.state.version for change in workflow_changes] == [2]
    assert all(change.kind is not RecordKind.WORKFLOW for change in result.republish)


def test_enrichment_idempotent():
    folder = ExecutionFolder(InMemoryStateStore())
    event = keyed(workflow_event(WorkflowPhase.SUCCEEDED, 1))
    folder.fold(event, enrichment=FULL_ENRICHMENT)
    stored = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)

    result = folder.fold(keyed(node_event("n0", NodePhase.RUNNING, 1)), enrichment=FULL_ENRICHMENT)

    assert all(change.kind is not RecordKind.WORKFLOW for change in result.changes)
    assert folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY).version == stored.version


def test_enrichment_order_independent():
    events = [
        (keyed(workflow_event(WorkflowPhase.RUNNING, 1)), None),
        (keyed(node_event("n0", NodePhase.SUCCEEDED, 2)), Enrichment(principal="alice", artifact_ids=(ARTIFACT_A,))),
        (keyed(task_event("n0", TaskPhase.RUNNING, 2)), Enrichment(labels=(("team", "ml"),))),
        (
            keyed(workflow_event(WorkflowPhase.SUCCEEDED, 3)),
            Enrichment(launch_plan_id=LAUNCH_PLAN, artifact_ids=(ARTIFACT_B,)),
        ),
    ]

    def final_records(ordered):
        folder = ExecutionFolder(InMemoryStateStore())
        for event, enrichment in ordered:
            folder.fold(event, enrichment=enrichment)
        return {
            kind: public_view(folder.store.get(kind, key))
            for kind, key in [(RecordKind.WORKFLOW, EXECUTION_KEY), (RecordKind.NODE, f"{EXECUTION_KEY}/n0")]
        }

    in_order = final_records(events)

    assert final_records(list(reversed(events))) == in_order
    assert final_records([events[2], events[0], events[3], events[1]]) == in_order
    assert in_order[RecordKind.WORKFLOW].execution.spec.metadata.principal == "alice"
    assert list(in_order[RecordKind.WORKFLOW].execution.spec.metadata.artifact_ids) == [ARTIFACT_A, ARTIFACT_B]
    assert list(in_order[RecordKind.NODE].artifact_ids) == [ARTIFACT_A]


def test_enrichment_of_node_on_inferred_workflow():
    folder = ExecutionFolder(InMemoryStateStore())

    folder.fold(keyed(node_event("n0", NodePhase.SUCCEEDED, 2)), enrichment=Enrichment(principal="alice"))
    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)

    assert workflow.inferred
    assert workflow.execution.spec.metadata.principal == "alice"


def test_enrichment_creates_no_record():
    """An event that creates no record (here one without occurred_at) leaves the enrichment unused."""
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, None)), enrichment=FULL_ENRICHMENT)

    assert result.changes == []
    assert folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY) is None


def test_enrichment_kept_after_later_events():
    folder = ExecutionFolder(InMemoryStateStore())
    folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 1)), enrichment=Enrichment(principal="alice"))

    folder.fold(keyed(workflow_event(WorkflowPhase.SUCCEEDED, 5)))

    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert workflow.execution.spec.metadata.principal == "alice"
    assert workflow.execution.closure.phase == WorkflowPhase.SUCCEEDED


def test_merge_artifact_ids_union_sorted():
    merged = merge_artifact_ids([ARTIFACT_B], [ARTIFACT_A, ARTIFACT_B])

    assert merged == [ARTIFACT_A, ARTIFACT_B]


def test_module_lists_every_kind_and_version():
    pairs = {(spec.kind, spec.version) for spec in cloudevents.CLOUD_EVENT_TYPES.values()}

    assert pairs == {(kind, version) for kind in EventKind for version in (1, 2)}


@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_deeply_nested_structured_data_is_undecodable(depth):
    value = b'{"specversion": "1.0", "type": "' + V1_NODE_TYPE.encode() + b'", "data": '
    value += b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(UndecodableEventError) as caught:
        decode(structured_headers(), value)

    assert caught.value.reason is DeadLetterReason.UNDECODABLE
