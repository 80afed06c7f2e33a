"""Decoding of binary flyteidl events by processor.events."""

import pytest
from flyteidl.event import event_pb2

from processor.events import DeadLetterReason, EventKind, UndecodableEventError, decode_event, parse_kind

from .builders import (
    EXECUTION_KEY,
    TASK_NAME,
    NodePhase,
    TaskPhase,
    WorkflowPhase,
    error,
    node_event,
    task_event,
    task_log,
    timestamp,
    workflow_event,
)

LIMIT = 1024 * 1024


def decode(kind, message, max_bytes=LIMIT):
    return decode_event(kind, message.SerializeToString(), max_bytes=max_bytes)


def decode_reason(kind, value, max_bytes=LIMIT):
    with pytest.raises(UndecodableEventError) as caught:
        decode_event(kind, value, max_bytes=max_bytes)
    return caught.value.reason


def test_decode_workflow_event():
    event = decode(EventKind.WORKFLOW, workflow_event(WorkflowPhase.RUNNING, 1))

    assert event.kind is EventKind.WORKFLOW
    assert event.execution_key == EXECUTION_KEY
    assert event.entity_key == EXECUTION_KEY
    assert event.message.phase == WorkflowPhase.RUNNING


def test_decode_node_event():
    event = decode(EventKind.NODE, node_event("n0", NodePhase.QUEUED, 1, input_uri="s3://bucket/inputs.pb"))

    assert event.kind is EventKind.NODE
    assert event.execution_key == EXECUTION_KEY
    assert event.entity_key == f"{EXECUTION_KEY}/n0"
    assert event.message.input_uri == "s3://bucket/inputs.pb"


def test_decode_task_event():
    message = task_event("n0", TaskPhase.RUNNING, 1, retry_attempt=2, logs=[task_log("stdout")])

    event = decode(EventKind.TASK, message)

    assert event.kind is EventKind.TASK
    assert event.execution_key == EXECUTION_KEY
    assert event.entity_key == f"{EXECUTION_KEY}/n0/{TASK_NAME}/2"
    assert event.message == message


def test_decode_event_with_org():
    message = workflow_event(WorkflowPhase.QUEUED, 1)
    message.execution_id.org = "acme"

    event = decode(EventKind.WORKFLOW, message)

    assert event.execution_key == f"acme/{EXECUTION_KEY}"


def test_decode_workflow_error_result():
    message = workflow_event(WorkflowPhase.FAILED, 3, error=error("USER:Boom"))

    event = decode(EventKind.WORKFLOW, message)

    assert event.message.error.code == "USER:Boom"


def test_decode_older_node_fields():
    """A node event from an older propeller has no spec_node_id, node_name or event_version."""
    message = event_pb2.NodeExecutionEvent()
    message.id.node_id = "n0"
    message.id.execution_id.project = "flytesnacks"
    message.id.execution_id.domain = "development"
    message.id.execution_id.name = "exec1"
    message.phase = NodePhase.RUNNING
    message.occurred_at.CopyFrom(timestamp(1))

    event = decode(EventKind.NODE, message)

    assert event.entity_key == f"{EXECUTION_KEY}/n0"
    assert event.message.spec_node_id == ""
    assert event.message.event_version == 0


def test_decode_older_task_fields():
    """A task event without reasons, metadata, event_version or phase_version."""
    message = event_pb2.TaskExecutionEvent(phase=TaskPhase.SUCCEEDED, output_uri="s3://bucket/outputs.pb")
    message.task_id.name = "wf.train"
    message.parent_node_execution_id.node_id = "n0"
    message.parent_node_execution_id.execution_id.project = "flytesnacks"
    message.parent_node_execution_id.execution_id.domain = "development"
    message.parent_node_execution_id.execution_id.name = "exec1"
    message.occurred_at.CopyFrom(timestamp(1))

    event = decode(EventKind.TASK, message)

    assert event.entity_key == f"{EXECUTION_KEY}/n0/wf.train/0"


@pytest.mark.parametrize("kind", list(EventKind))
def test_decode_none_value(kind):
    assert decode_reason(kind, None) is DeadLetterReason.UNDECODABLE


@pytest.mark.parametrize("value", [b"\xff\xff\xff\xff", b"not a protobuf at all \xff", b"\x0a\x05ab"])
def test_decode_garbage_bytes(value):
    assert decode_reason(EventKind.WORKFLOW, value) is DeadLetterReason.UNDECODABLE


@pytest.mark.parametrize("kind", list(EventKind))
def test_decode_empty_value(kind):
    """Zero bytes are a valid empty message, which has no execution id."""
    assert decode_reason(kind, b"") is DeadLetterReason.MISSING_EXECUTION_ID


@pytest.mark.parametrize(
    "kind, message",
    [
        (EventKind.WORKFLOW, event_pb2.WorkflowExecutionEvent(phase=WorkflowPhase.RUNNING)),
        (EventKind.NODE, event_pb2.NodeExecutionEvent(phase=NodePhase.RUNNING)),
        (EventKind.TASK, event_pb2.TaskExecutionEvent(phase=TaskPhase.RUNNING)),
    ],
    ids=["workflow", "node", "task"],
)
def test_decode_without_execution_id(kind, message):
    message.occurred_at.CopyFrom(timestamp(1))

    assert decode_reason(kind, message.SerializeToString()) is DeadLetterReason.MISSING_EXECUTION_ID


def test_decode_node_id_without_execution_id():
    message = event_pb2.NodeExecutionEvent(phase=NodePhase.RUNNING)
    message.id.node_id = "n0"

    assert decode_reason(EventKind.NODE, message.SerializeToString()) is DeadLetterReason.MISSING_EXECUTION_ID


def test_decode_empty_execution_name():
    message = workflow_event(WorkflowPhase.RUNNING, 1, name="")

    assert decode_reason(EventKind.WORKFLOW, message.SerializeToString()) is DeadLetterReason.MISSING_EXECUTION_ID


@pytest.mark.parametrize(
    "kind, message",
    [
        (EventKind.WORKFLOW, workflow_event(WorkflowPhase.RUNNING, 1, name="bad:name")),
        (EventKind.NODE, node_event("n/0", NodePhase.RUNNING, 1)),
        (EventKind.NODE, node_event("", NodePhase.RUNNING, 1)),
        (EventKind.TASK, task_event("n0", TaskPhase.RUNNING, 1, task_name="wf\x00train")),
    ],
    ids=["workflow-name", "node-id-slash", "node-id-empty", "task-name-control"],
)
def test_decode_invalid_id(kind, message):
    assert decode_reason(kind, message.SerializeToString()) is DeadLetterReason.INVALID_ID


def test_decode_node_bytes_as_workflow():
    """Node event bytes read as a workflow event give a garbled execution id, because both keep their id in field 1."""
    value = node_event("n0", NodePhase.RUNNING, 1).SerializeToString()

    reason = decode_reason(EventKind.WORKFLOW, value)

    assert reason in {DeadLetterReason.INVALID_ID, DeadLetterReason.MISSING_EXECUTION_ID}


def test_decode_oversized():
    value = workflow_event(WorkflowPhase.RUNNING, 1).SerializeToString()

    assert decode_reason(EventKind.WORKFLOW, value, max_bytes=len(value) - 1) is DeadLetterReason.OVERSIZED


def test_decode_at_size_limit():
    value = workflow_event(WorkflowPhase.RUNNING, 1).SerializeToString()

    event = decode_event(EventKind.WORKFLOW, value, max_bytes=len(value))

    assert event.execution_key == EXECUTION_KEY


def test_oversized_checked_before_parse():
    assert decode_reason(EventKind.WORKFLOW, b"\xff" * 11, max_bytes=10) is DeadLetterReason.OVERSIZED


def test_error_message_has_reason():
    with pytest.raises(UndecodableEventError) as caught:
        decode_event(EventKind.WORKFLOW, None, max_bytes=LIMIT)

    assert str(caught.value).startswith("undecodable: ")


@pytest.mark.parametrize("text", ["workflow", "node", "task"])
def test_parse_kind_known(text):
    assert parse_kind(text).value == text


@pytest.mark.parametrize("text", ["", "Workflow", "launch_plan"])
def test_parse_kind_unknown(text):
    with pytest.raises(UndecodableEventError) as caught:
        parse_kind(text)

    assert caught.value.reason is DeadLetterReason.UNKNOWN_KIND


@pytest.mark.parametrize(
    "seconds, nanos",
    [(253_402_300_800, 0), (-62_135_596_801, 0), (0, -5), (0, 1_000_000_000)],
)
def test_out_of_range_occurred_at_rejected(seconds, nanos):
    event = workflow_event(WorkflowPhase.RUNNING, 1)
    event.occurred_at.seconds = seconds
    event.occurred_at.nanos = nanos

    assert decode_reason(EventKind.WORKFLOW, event.SerializeToString()) is DeadLetterReason.INVALID_TIMESTAMP


def test_out_of_range_reason_time_rejected():
    event = task_event("n0", TaskPhase.RUNNING, 1)
    reason = event.reasons.add(reason="pod pending")
    reason.occurred_at.seconds = 253_402_300_800

    assert decode_reason(EventKind.TASK, event.SerializeToString()) is DeadLetterReason.INVALID_TIMESTAMP


def test_timestamps_at_range_ends_accepted():
    event = workflow_event(WorkflowPhase.RUNNING, 1)
    event.occurred_at.seconds = 253_402_300_799
    event.occurred_at.nanos = 999_999_999

    assert decode(EventKind.WORKFLOW, event).kind is EventKind.WORKFLOW


def test_event_without_occurred_at_rejected():
    event = workflow_event(WorkflowPhase.RUNNING, 1)
    event.ClearField("occurred_at")

    assert decode_reason(EventKind.WORKFLOW, event.SerializeToString()) is DeadLetterReason.MISSING_OCCURRED_AT


def test_event_with_unknown_phase_rejected():
    event = node_event("n0", NodePhase.RUNNING, 1)
    event.phase = 99

    assert decode_reason(EventKind.NODE, event.SerializeToString()) is DeadLetterReason.UNKNOWN_PHASE
