"""Builders of flyteidl events and timestamps for the unit tests.

Times are given as whole seconds after ``BASE_SECONDS`` so that tests can
order events with small integers. ``at=None`` builds an event without
occurred_at.
"""

from __future__ import annotations

from typing import Optional

from flyteidl.core import catalog_pb2, execution_pb2, identifier_pb2
from flyteidl.event import event_pb2
from google.protobuf import timestamp_pb2

from processor.events import EventKind, ExecutionEvent, keyed_event

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution

# 2026-11-03T10:00:00Z.
BASE_SECONDS = 1793700000

PROJECT = "flytesnacks"
DOMAIN = "development"
NAME = "exec1"
EXECUTION_KEY = f"{PROJECT}:{DOMAIN}:{NAME}"
TASK_NAME = "wf.train"


def timestamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=BASE_SECONDS + seconds, nanos=nanos)


def execution_id(
    name: str = NAME, project: str = PROJECT, domain: str = DOMAIN, org: str = ""
) -> identifier_pb2.WorkflowExecutionIdentifier:
    return identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name, org=org)


def node_execution_id(node_id: str = "n0", name: str = NAME) -> identifier_pb2.NodeExecutionIdentifier:
    return identifier_pb2.NodeExecutionIdentifier(node_id=node_id, execution_id=execution_id(name))


def task_id(task_name: str = TASK_NAME) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(
        resource_type=identifier_pb2.TASK, project=PROJECT, domain=DOMAIN, name=task_name, version="v1"
    )


def error(code: str = "USER:Exception", kind: int = execution_pb2.ExecutionError.USER) -> execution_pb2.ExecutionError:
    return execution_pb2.ExecutionError(code=code, message="task failed", kind=kind)


def task_log(
    name: str, uri: str = "", *, show_while_pending: bool = False, hide_once_finished: bool = False
) -> execution_pb2.TaskLog:
    return execution_pb2.TaskLog(
        name=name,
        uri=uri or f"https://logs.example/{name}",
        ShowWhilePending=show_while_pending,
        HideOnceFinished=hide_once_finished,
    )


def catalog_metadata(artifact: str = "artifact-1") -> catalog_pb2.CatalogMetadata:
    dataset = identifier_pb2.Identifier(
        resource_type=identifier_pb2.DATASET, project=PROJECT, domain=DOMAIN, name="flyte_task-wf.train", version="1"
    )
    return catalog_pb2.CatalogMetadata(
        dataset_id=dataset, artifact_tag=catalog_pb2.CatalogArtifactTag(artifact_id=artifact, name="tag")
    )


def _set_time(message, at: Optional[int]) -> None:
    if at is not None:
        message.occurred_at.CopyFrom(timestamp(at))


def workflow_event(
    phase: int, at: Optional[int], *, name: str = NAME, producer_id: str = "propeller", **fields
) -> event_pb2.WorkflowExecutionEvent:
    event = event_pb2.WorkflowExecutionEvent(
        execution_id=execution_id(name), producer_id=producer_id, phase=phase, **fields
    )
    _set_time(event, at)
    return event


def node_event(
    node_id: str,
    phase: int,
    at: Optional[int],
    *,
    name: str = NAME,
    parent: str = "",
    producer_id: str = "propeller",
    **fields,
) -> event_pb2.NodeExecutionEvent:
    """Build a NodeExecutionEvent whose ``parent`` sets parent_node_metadata.node_id."""
    event = event_pb2.NodeExecutionEvent(
        id=node_execution_id(node_id, name), producer_id=producer_id, phase=phase, **fields
    )
    if parent:
        event.parent_node_metadata.node_id = parent
    _set_time(event, at)
    return event


def task_event(
    node_id: str,
    phase: int,
    at: Optional[int],
    *,
    task_name: str = TASK_NAME,
    retry_attempt: int = 0,
    phase_version: int = 0,
    name: str = NAME,
    producer_id: str = "propeller",
    **fields,
) -> event_pb2.TaskExecutionEvent:
    event = event_pb2.TaskExecutionEvent(
        task_id=task_id(task_name),
        parent_node_execution_id=node_execution_id(node_id, name),
        retry_attempt=retry_attempt,
        phase=phase,
        phase_version=phase_version,
        producer_id=producer_id,
        **fields,
    )
    _set_time(event, at)
    return event


def keyed(message) -> ExecutionEvent:
    """Attach the keys to a built message, choosing the kind by its type."""
    kinds = {
        event_pb2.WorkflowExecutionEvent: EventKind.WORKFLOW,
        event_pb2.NodeExecutionEvent: EventKind.NODE,
        event_pb2.TaskExecutionEvent: EventKind.TASK,
    }
    return keyed_event(kinds[type(message)], message)


def copy_of(message):
    """Return a deep copy, for checking later that a fold left its input unchanged."""
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def progress_fields(closure) -> dict:
    """Return the fields of a closure that show progress: phase, started_at, duration and updated_at.

    created_at is left out, because a fold may move it to an older event's time.
    """
    return {
        "phase": closure.phase,
        "started_at": closure.started_at if closure.HasField("started_at") else None,
        "duration": closure.duration if closure.HasField("duration") else None,
        "updated_at": closure.updated_at,
    }
