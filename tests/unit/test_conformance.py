"""Conformance table of the fold: one row per rule of docs/semantics.md.

Each row is (stored events, new event, expected outcome of the new event,
expected facts of the resulting record), and its id names the rule. The
stored events are folded first, in the order given, with the pure fold
function of the new event's kind. Rules that span records (cluster checks of
node and task events, orphans, inferred workflows, retry attempts) fold with
an ExecutionFolder instead.

Times are whole seconds after BASE_SECONDS, and facts use the same offsets.
A fact named ``workflow.phase`` or ``node:n0.phase`` reads another record of
the same execution from the folder's store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import pytest
from flyteidl.core import catalog_pb2, execution_pb2, identifier_pb2, literals_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from processor.events import EventKind, keyed_event
from processor.fold import ExecutionFolder, InMemoryStateStore, Outcome
from processor.fold.execution import RecordKind
from processor.fold.node import fold_node_event
from processor.fold.phases import node_phase_name, task_phase_name, workflow_phase_name
from processor.fold.task import fold_task_event
from processor.fold.workflow import fold_workflow_event

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution
ErrorKind = execution_pb2.ExecutionError

# 2026-11-03T10:00:00Z.
BASE_SECONDS = 1_793_700_000

EXECUTION_ID = identifier_pb2.WorkflowExecutionIdentifier(project="flytesnacks", domain="development", name="e1")
TASK_ID = identifier_pb2.Identifier(
    resource_type=identifier_pb2.TASK, project="flytesnacks", domain="development", name="wf.train", version="v1"
)
PROPELLER = "propeller"

Event = Union[event_pb2.WorkflowExecutionEvent, event_pb2.NodeExecutionEvent, event_pb2.TaskExecutionEvent]
Phase = Union[str, int]


# Event builders. A phase is given by name, or by number for unknown phases,
# and ``t=None`` leaves occurred_at unset.


def at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=BASE_SECONDS + seconds)


def _phase_number(enum_type, phase: Phase) -> int:
    return enum_type.Value(phase) if isinstance(phase, str) else phase


def wf(phase: Phase, t: Optional[int], *, producer: str = PROPELLER, **fields) -> event_pb2.WorkflowExecutionEvent:
    event = event_pb2.WorkflowExecutionEvent(
        execution_id=EXECUTION_ID, producer_id=producer, phase=_phase_number(WorkflowPhase.Phase, phase), **fields
    )
    if t is not None:
        event.occurred_at.CopyFrom(at(t))
    return event


def node(
    phase: Phase, t: Optional[int], *, node_id: str = "n0", producer: str = PROPELLER, parent: str = "", **fields
) -> event_pb2.NodeExecutionEvent:
    event = event_pb2.NodeExecutionEvent(
        id=identifier_pb2.NodeExecutionIdentifier(node_id=node_id, execution_id=EXECUTION_ID),
        producer_id=producer,
        phase=_phase_number(NodePhase.Phase, phase),
        **fields,
    )
    if parent:
        event.parent_node_metadata.node_id = parent
    if t is not None:
        event.occurred_at.CopyFrom(at(t))
    return event


def task(
    phase: Phase,
    t: Optional[int],
    version: int = 0,
    *,
    attempt: int = 0,
    node_id: str = "n0",
    producer: str = PROPELLER,
    **fields,
) -> event_pb2.TaskExecutionEvent:
    event = event_pb2.TaskExecutionEvent(
        task_id=TASK_ID,
        parent_node_execution_id=identifier_pb2.NodeExecutionIdentifier(node_id=node_id, execution_id=EXECUTION_ID),
        retry_attempt=attempt,
        phase=_phase_number(TaskPhase.Phase, phase),
        phase_version=version,
        producer_id=producer,
        **fields,
    )
    if t is not None:
        event.occurred_at.CopyFrom(at(t))
    return event


def error(code: str, kind: int = ErrorKind.USER) -> execution_pb2.ExecutionError:
    return execution_pb2.ExecutionError(code=code, message=f"{code} happened", kind=kind)


def literals(*names: str) -> literals_pb2.LiteralMap:
    output = literals_pb2.LiteralMap()
    for name in names:
        output.literals[name].scalar.primitive.integer = 1
    return output


def log(name: str, uri: str = "", **flags: bool) -> execution_pb2.TaskLog:
    return execution_pb2.TaskLog(name=name, uri=uri or f"https://logs.example/{name}", **flags)


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def catalog(artifact: str, status: int, **fields) -> event_pb2.TaskNodeMetadata:
    key = catalog_pb2.CatalogMetadata(
        dataset_id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.DATASET, name="flyte_task-wf.train", version="1"
        ),
        artifact_tag=catalog_pb2.CatalogArtifactTag(artifact_id=artifact, name=f"tag-{artifact}"),
    )
    return event_pb2.TaskNodeMetadata(cache_status=status, catalog_key=key, **fields)


def dynamic_workflow(name: str) -> event_pb2.TaskNodeMetadata:
    return event_pb2.TaskNodeMetadata(
        dynamic_workflow=event_pb2.DynamicWorkflowNodeMetadata(
            id=identifier_pb2.Identifier(resource_type=identifier_pb2.WORKFLOW, name=name, version="v1"),
            dynamic_job_spec_uri=f"s3://bucket/{name}/futures.pb",
        )
    )


def child_execution(name: str) -> event_pb2.WorkflowNodeMetadata:
    return event_pb2.WorkflowNodeMetadata(
        execution_id=identifier_pb2.WorkflowExecutionIdentifier(project="flytesnacks", domain="development", name=name)
    )


def subtasks(*reports: tuple, **fields) -> event_pb2.TaskExecutionMetadata:
    """Return task metadata reporting subtasks given as (index, retry_attempt, phase name[, fields])."""
    metadata = event_pb2.TaskExecutionMetadata(**fields)
    for report in reports:
        index, retry_attempt, phase = report[:3]
        extra = report[3] if len(report) > 3 else {}
        metadata.external_resources.add(
            index=index, retry_attempt=retry_attempt, phase=TaskPhase.Phase.Value(phase), **extra
        )
    return metadata


def reason(text: str, t: int) -> event_pb2.EventReason:
    return event_pb2.EventReason(reason=text, occurred_at=at(t))


# Folding a row and reading its facts.


@dataclass
class Folded:
    """The record the new event folded into, and the folder's store for rules across records."""

    kind: RecordKind
    record: Optional[Message]
    outcome: Outcome
    changed: bool
    records: Optional[dict[RecordKind, dict[str, Message]]] = None


_KINDS = {
    event_pb2.WorkflowExecutionEvent: (EventKind.WORKFLOW, RecordKind.WORKFLOW, fold_workflow_event),
    event_pb2.NodeExecutionEvent: (EventKind.NODE, RecordKind.NODE, fold_node_event),
    event_pb2.TaskExecutionEvent: (EventKind.TASK, RecordKind.TASK, fold_task_event),
}


def fold_pure(stored: tuple[Event, ...], new: Event) -> Folded:
    """Fold the stored events and then the new one with the pure fold function of the new event's kind."""
    _, record_kind, fold_event = _KINDS[type(new)]
    state = None
    for event in stored:
        assert type(event) is type(new), "a pure row folds events of one kind"
        state = fold_event(state, event).state

    transition = fold_event(state, new)
    return Folded(record_kind, transition.state, transition.outcome, transition.changed)


def fold_across_records(stored: tuple[Event, ...], new: Event) -> Folded:
    """Fold the stored events and then the new one with an ExecutionFolder over an InMemoryStateStore."""
    folder = ExecutionFolder(InMemoryStateStore())
    for event in stored:
        folder.fold(keyed_event(_KINDS[type(event)][0], event))

    event_kind, record_kind, _ = _KINDS[type(new)]
    keyed = keyed_event(event_kind, new)
    result = folder.fold(keyed)
    records = folder.store.records
    return Folded(
        record_kind, records[record_kind].get(keyed.entity_key), result.outcome, bool(result.changes), records
    )


def closure_of(kind: RecordKind, record: Message):
    if kind is RecordKind.WORKFLOW:
        return record.execution.closure
    if kind is RecordKind.NODE:
        return record.node_execution.closure
    return record.task_execution.closure


def _offset(closure, name: str) -> Optional[int]:
    """Return a closure timestamp as seconds after BASE_SECONDS, or None when it is absent."""
    if not closure.HasField(name):
        return None
    return getattr(closure, name).seconds - BASE_SECONDS


def _duration(closure) -> Optional[float]:
    return closure.duration.ToNanoseconds() / 1e9 if closure.HasField("duration") else None


def _phase(kind: RecordKind, closure) -> str:
    names = {
        RecordKind.WORKFLOW: workflow_phase_name,
        RecordKind.NODE: node_phase_name,
        RecordKind.TASK: task_phase_name,
    }
    return names[kind](closure.phase)


def _result(closure) -> Optional[tuple]:
    """Return the closure's output_result as (oneof field, content)."""
    field = closure.WhichOneof("output_result")
    if field is None:
        return None
    if field == "outputs":
        return ("outputs.uri", closure.outputs.uri)
    if field == "output_uri":
        return ("output_uri", closure.output_uri)
    if field == "error":
        return ("error", closure.error.code, ErrorKind.ErrorKind.Name(closure.error.kind))
    if field == "output_data":
        return ("output_data", sorted(closure.output_data.literals))
    return (field,)


def _task_node_metadata(record: Message):
    return record.node_execution.closure.task_node_metadata


# Readers of the facts a row can check, called with the record kind and the record.
FACTS: dict[str, Callable[[RecordKind, Message], Any]] = {
    "phase": lambda kind, record: _phase(kind, closure_of(kind, record)),
    "created_at": lambda kind, record: _offset(closure_of(kind, record), "created_at"),
    "updated_at": lambda kind, record: _offset(closure_of(kind, record), "updated_at"),
    "started_at": lambda kind, record: _offset(closure_of(kind, record), "started_at"),
    "duration": lambda kind, record: _duration(closure_of(kind, record)),
    "result": lambda kind, record: _result(closure_of(kind, record)),
    "producer_id": lambda kind, record: record.producer_id,
    # Workflow records.
    "inferred": lambda kind, record: record.inferred,
    "owners": lambda kind, record: [
        (change.producer_id, change.occurred_at.seconds - BASE_SECONDS) for change in record.ownership
    ],
    # Node records.
    "input_uri": lambda kind, record: (
        record.node_execution if kind is RecordKind.NODE else record.task_execution
    ).input_uri,
    "cache_status": lambda kind, record: catalog_pb2.CatalogCacheStatus.Name(_task_node_metadata(record).cache_status),
    "catalog_artifact": lambda kind, record: _task_node_metadata(record).catalog_key.artifact_tag.artifact_id,
    "checkpoint_uri": lambda kind, record: _task_node_metadata(record).checkpoint_uri,
    "reservation_status": lambda kind, record: catalog_pb2.CatalogReservation.Status.Name(record.reservation_status),
    "dynamic_workflow": lambda kind, record: record.dynamic_workflow_id.name,
    "dynamic_job_spec_uri": lambda kind, record: record.node_execution.closure.dynamic_job_spec_uri,
    "is_parent": lambda kind, record: record.node_execution.metadata.is_parent_node,
    "is_dynamic": lambda kind, record: record.node_execution.metadata.is_dynamic,
    "is_array": lambda kind, record: record.node_execution.metadata.is_array,
    "is_eager": lambda kind, record: record.node_execution.metadata.is_eager,
    "is_in_dynamic_chain": lambda kind, record: record.is_in_dynamic_chain,
    "parent_node_id": lambda kind, record: record.parent_node_id,
    "node_name": lambda kind, record: record.node_name,
    "target_entity": lambda kind, record: record.target_entity.name,
    "child_execution": lambda kind, record: record.node_execution.closure.workflow_node_metadata.executionId.name,
    # Task records.
    "phase_version": lambda kind, record: record.phase_version,
    "logs": lambda kind, record: [entry.name for entry in record.task_execution.closure.logs],
    "log_uris": lambda kind, record: [entry.uri for entry in record.task_execution.closure.logs],
    "custom_info": lambda kind, record: json_format.MessageToDict(record.task_execution.closure.custom_info),
    "reason": lambda kind, record: record.task_execution.closure.reason,
    "reasons": lambda kind, record: [entry.message for entry in record.task_execution.closure.reasons],
    "generated_name": lambda kind, record: record.task_execution.closure.metadata.generated_name,
    "plugin_identifier": lambda kind, record: record.task_execution.closure.metadata.plugin_identifier,
    "instance_class": lambda kind, record: event_pb2.TaskExecutionMetadata.InstanceClass.Name(
        record.task_execution.closure.metadata.instance_class
    ),
    "resource_pools": lambda kind, record: [
        pool.namespace for pool in record.task_execution.closure.metadata.resource_pool_info
    ],
    "subtasks": lambda kind, record: {
        (subtask.index, subtask.retry_attempt): TaskPhase.Phase.Name(subtask.phase)
        for subtask in record.task_execution.closure.metadata.external_resources
    },
    "subtask_order": lambda kind, record: [
        (subtask.index, subtask.retry_attempt) for subtask in record.task_execution.closure.metadata.external_resources
    ],
    "subtask_cache_status": lambda kind, record: {
        (subtask.index, subtask.retry_attempt): catalog_pb2.CatalogCacheStatus.Name(subtask.cache_status)
        for subtask in record.task_execution.closure.metadata.external_resources
    },
    "subtask_log_context": lambda kind, record: {
        (subtask.index, subtask.retry_attempt): subtask.HasField("log_context")
        for subtask in record.task_execution.closure.metadata.external_resources
    },
    "event_version": lambda kind, record: record.task_execution.closure.event_version,
}

EXECUTION_KEY = "flytesnacks:development:e1"


def _other_record(folded: Folded, target: str) -> tuple[RecordKind, Optional[Message]]:
    """Find the record named by a fact prefix: ``workflow``, ``node:<node_id>`` or ``task:<node_id>/<attempt>``."""
    assert folded.records is not None, f"fact of {target!r} needs a row folded across records"
    if target == "workflow":
        return RecordKind.WORKFLOW, folded.records[RecordKind.WORKFLOW].get(EXECUTION_KEY)
    kind_name, _, rest = target.partition(":")
    if kind_name == "node":
        return RecordKind.NODE, folded.records[RecordKind.NODE].get(f"{EXECUTION_KEY}/{rest}")
    node_id, _, attempt = rest.partition("/")
    return RecordKind.TASK, folded.records[RecordKind.TASK].get(f"{EXECUTION_KEY}/{node_id}/{TASK_ID.name}/{attempt}")


def read_fact(folded: Folded, name: str) -> Any:
    """Return a fact of the new event's record, or of another record for ``<record>.<fact>``."""
    if name == "changed":
        return folded.changed
    kind, record = folded.kind, folded.record
    if "." in name:
        target, name = name.split(".", 1)
        kind, record = _other_record(folded, target)
    if name == "exists":
        return record is not None
    assert record is not None, f"no record to read {name!r} from"
    return FACTS[name](kind, record)


def rule(
    rule_id: str,
    stored: list[Event],
    new: Event,
    outcome: Outcome,
    facts: dict[str, Any],
    *,
    across_records: bool = False,
    bug: str = "",
):
    """Build one table row. A non-empty ``bug`` marks a row that fails today as a strict xfail with that reason."""
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(tuple(stored), new, outcome, facts, across_records, id=rule_id, marks=marks)


APPLIED = Outcome.APPLIED
STALE = Outcome.STALE
DUPLICATE = Outcome.DUPLICATE
TERMINAL = Outcome.ALREADY_TERMINAL
CLUSTER = Outcome.INCOMPATIBLE_CLUSTER
INVALID = Outcome.INVALID

# Outcomes table: one row per outcome and per listed cause of `invalid`.
OUTCOME_ROWS = [
    rule(
        "outcome-applied-newest-event",
        [wf("QUEUED", 1)],
        wf("RUNNING", 2),
        APPLIED,
        {"phase": "RUNNING", "changed": True},
    ),
    rule(
        "outcome-stale-older-event", [wf("RUNNING", 2)], wf("QUEUED", 1), STALE, {"phase": "RUNNING", "created_at": 1}
    ),
    rule("outcome-duplicate-same-fingerprint", [wf("QUEUED", 1)], wf("QUEUED", 1), DUPLICATE, {"changed": False}),
    rule("outcome-duplicate-same-phase", [node("QUEUED", 1)], node("QUEUED", 2), DUPLICATE, {"updated_at": 1}),
    rule(
        "outcome-duplicate-task-version-not-above",
        [task("RUNNING", 1, 2)],
        task("RUNNING", 2, 2),
        DUPLICATE,
        {"phase_version": 2, "updated_at": 1},
    ),
    rule("outcome-already-terminal", [wf("SUCCEEDED", 2)], wf("FAILED", 3), TERMINAL, {"phase": "SUCCEEDED"}),
    rule(
        "outcome-incompatible-cluster",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("RUNNING", 2, producer="cluster-b"),
        CLUSTER,
        {"phase": "QUEUED"},
    ),
    rule(
        "outcome-invalid-workflow-without-occurred-at",
        [wf("QUEUED", 1)],
        wf("RUNNING", None),
        INVALID,
        {"phase": "QUEUED"},
    ),
    rule(
        "outcome-invalid-node-without-occurred-at",
        [node("QUEUED", 1)],
        node("RUNNING", None),
        INVALID,
        {"phase": "QUEUED"},
    ),
    rule(
        "outcome-invalid-task-without-occurred-at",
        [task("QUEUED", 1)],
        task("RUNNING", None),
        INVALID,
        {"phase": "QUEUED"},
    ),
    rule("outcome-invalid-workflow-unknown-phase", [wf("QUEUED", 1)], wf(42, 2), INVALID, {"phase": "QUEUED"}),
    rule("outcome-invalid-node-unknown-phase", [node("QUEUED", 1)], node(42, 2), INVALID, {"phase": "QUEUED"}),
    rule("outcome-invalid-task-unknown-phase", [task("QUEUED", 1)], task(42, 2), INVALID, {"phase": "QUEUED"}),
    rule("outcome-invalid-first-event-creates-nothing", [], node("RUNNING", None), INVALID, {"exists": False}),
]

WORKFLOW_ROWS = [
    # Workflow terminal phases: SUCCEEDED, FAILED, TIMED_OUT and ABORTED end the record.
    *[
        rule(
            f"workflow-{phase.lower().replace('_', '-')}-is-terminal",
            [wf("RUNNING", 1), wf(phase, 2)],
            wf("SUCCEEDING" if phase != "SUCCEEDED" else "FAILING", 3),
            TERMINAL,
            {"phase": phase, "updated_at": 2},
        )
        for phase in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
    ],
    *[
        rule(
            f"workflow-{phase.lower()}-is-not-terminal",
            [wf("RUNNING", 1), wf(phase, 2)],
            wf("FAILED", 3),
            APPLIED,
            {"phase": "FAILED"},
        )
        for phase in ("SUCCEEDING", "FAILING", "ABORTING")
    ],
    rule(
        "workflow-terminal-later-in-occurred-at",
        [wf("RUNNING", 1), wf("SUCCEEDED", 5)],
        wf("RUNNING", 6),
        TERMINAL,
        {"phase": "SUCCEEDED", "started_at": 1},
    ),
    # Repeated workflow phase: QUEUED again is a cluster move, any other repeat a duplicate.
    rule(
        "workflow-repeated-queued-accepted",
        [wf("QUEUED", 1)],
        wf("QUEUED", 2),
        APPLIED,
        {"phase": "QUEUED", "updated_at": 2},
    ),
    rule(
        "workflow-repeated-running-duplicate",
        [wf("QUEUED", 1), wf("RUNNING", 2)],
        wf("RUNNING", 3),
        DUPLICATE,
        {"started_at": 2, "updated_at": 2},
    ),
    rule("workflow-repeated-failing-duplicate", [wf("FAILING", 2)], wf("FAILING", 3), DUPLICATE, {"updated_at": 2}),
    # RUNNING then QUEUED.
    rule(
        "workflow-running-then-queued-invalid",
        [wf("QUEUED", 1), wf("RUNNING", 2)],
        wf("QUEUED", 3),
        INVALID,
        {"phase": "RUNNING", "updated_at": 2},
    ),
    # After ABORTING only terminal phases.
    rule(
        "workflow-aborting-then-running-invalid",
        [wf("RUNNING", 1), wf("ABORTING", 2)],
        wf("RUNNING", 3),
        INVALID,
        {"phase": "ABORTING"},
    ),
    rule(
        "workflow-aborting-then-failing-invalid",
        [wf("RUNNING", 1), wf("ABORTING", 2)],
        wf("FAILING", 3),
        INVALID,
        {"phase": "ABORTING"},
    ),
    rule(
        "workflow-aborting-then-aborted-applied",
        [wf("RUNNING", 1), wf("ABORTING", 2)],
        wf("ABORTED", 3),
        APPLIED,
        {"phase": "ABORTED"},
    ),
    rule(
        "workflow-aborting-then-succeeded-applied",
        [wf("RUNNING", 1), wf("ABORTING", 2)],
        wf("SUCCEEDED", 3),
        APPLIED,
        {"phase": "SUCCEEDED"},
    ),
    # Workflow started_at and duration.
    rule(
        "workflow-running-sets-started-at",
        [wf("QUEUED", 1)],
        wf("RUNNING", 3),
        APPLIED,
        {"started_at": 3, "duration": None, "created_at": 1},
    ),
    rule(
        "workflow-terminal-sets-duration",
        [wf("QUEUED", 1), wf("RUNNING", 3)],
        wf("SUCCEEDED", 10),
        APPLIED,
        {"started_at": 3, "duration": 7.0},
    ),
    rule(
        "workflow-no-duration-without-start",
        [wf("QUEUED", 1)],
        wf("FAILED", 4, error=error("USER:Boom")),
        APPLIED,
        {"started_at": None, "duration": None},
    ),
    # Workflow results: from any accepted event, the last in occurred_at order.
    rule(
        "workflow-result-output-uri",
        [wf("RUNNING", 1)],
        wf("SUCCEEDED", 2, output_uri="s3://bucket/outputs.pb"),
        APPLIED,
        {"result": ("outputs.uri", "s3://bucket/outputs.pb")},
    ),
    rule(
        "workflow-result-output-data",
        [wf("RUNNING", 1)],
        wf("SUCCEEDED", 2, output_data=literals("model", "score")),
        APPLIED,
        {"result": ("output_data", ["model", "score"])},
    ),
    rule(
        "workflow-result-error-keeps-kind-and-code",
        [wf("RUNNING", 1)],
        wf("FAILED", 2, error=error("SYSTEM:Lost", ErrorKind.SYSTEM)),
        APPLIED,
        {"result": ("error", "SYSTEM:Lost", "SYSTEM")},
    ),
    rule(
        "workflow-result-from-non-terminal-event",
        [wf("RUNNING", 1)],
        wf("FAILING", 2, error=error("USER:Boom")),
        APPLIED,
        {"phase": "FAILING", "result": ("error", "USER:Boom", "USER")},
    ),
    rule(
        "workflow-result-last-accepted-replaces",
        [wf("RUNNING", 1), wf("FAILING", 2, error=error("USER:First"))],
        wf("FAILED", 3, error=error("USER:Second")),
        APPLIED,
        {"result": ("error", "USER:Second", "USER")},
    ),
    rule(
        "workflow-result-older-event-does-not-replace",
        [wf("RUNNING", 1), wf("FAILED", 3, error=error("USER:Second"))],
        wf("FAILING", 2, error=error("USER:First")),
        STALE,
        {"phase": "FAILED", "result": ("error", "USER:Second", "USER")},
    ),
    # Cluster ownership of workflow events, judged as of occurred_at.
    rule(
        "workflow-other-producer-incompatible",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("RUNNING", 2, producer="cluster-b"),
        CLUSTER,
        {"phase": "QUEUED", "producer_id": "cluster-a"},
    ),
    rule(
        "workflow-empty-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("RUNNING", 2, producer=""),
        APPLIED,
        {"phase": "RUNNING", "producer_id": "cluster-a"},
    ),
    rule(
        "workflow-propeller-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("RUNNING", 2, producer=PROPELLER),
        APPLIED,
        {"phase": "RUNNING", "producer_id": "cluster-a"},
    ),
    rule(
        "workflow-queued-moves-ownership",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("QUEUED", 2, producer="cluster-b"),
        APPLIED,
        {"producer_id": "cluster-b", "owners": [("cluster-a", 1), ("cluster-b", 2)]},
    ),
    rule(
        "workflow-undefined-moves-ownership",
        [wf("QUEUED", 1, producer="cluster-a")],
        wf("UNDEFINED", 2, producer="cluster-b"),
        APPLIED,
        {"producer_id": "cluster-b", "owners": [("cluster-a", 1), ("cluster-b", 2)]},
    ),
    rule(
        "workflow-new-owner-accepted-after-move",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 2, producer="cluster-b")],
        wf("RUNNING", 3, producer="cluster-b"),
        APPLIED,
        {"phase": "RUNNING"},
    ),
    rule(
        "workflow-old-owner-rejected-after-move",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 2, producer="cluster-b")],
        wf("RUNNING", 3, producer="cluster-a"),
        CLUSTER,
        {"phase": "QUEUED"},
    ),
    rule(
        "workflow-late-move-rejudges-events",
        [wf("QUEUED", 1, producer="cluster-a"), wf("RUNNING", 3, producer="cluster-b")],
        wf("QUEUED", 2, producer="cluster-b"),
        STALE,
        {"phase": "RUNNING", "started_at": 3, "producer_id": "cluster-b"},
    ),
    # Conflicting terminal events: the first to occur wins and its result is kept.
    rule(
        "workflow-earlier-terminal-wins",
        [wf("RUNNING", 1), wf("SUCCEEDED", 5, output_uri="s3://bucket/outputs.pb")],
        wf("FAILED", 3, error=error("USER:Boom")),
        APPLIED,
        {"phase": "FAILED", "duration": 2.0, "updated_at": 3, "result": ("error", "USER:Boom", "USER")},
    ),
    rule(
        "workflow-later-terminal-rejected",
        [wf("RUNNING", 1), wf("FAILED", 3, error=error("USER:Boom"))],
        wf("SUCCEEDED", 5, output_uri="s3://bucket/outputs.pb"),
        TERMINAL,
        {"phase": "FAILED", "result": ("error", "USER:Boom", "USER")},
    ),
    # Out-of-order events fill started_at and then duration without moving the phase.
    rule(
        "workflow-late-running-fills-started-at",
        [wf("QUEUED", 1), wf("SUCCEEDED", 5)],
        wf("RUNNING", 2),
        STALE,
        {"phase": "SUCCEEDED", "started_at": 2, "duration": 3.0},
    ),
    # Ties in occurred_at: the later life-cycle stage wins.
    rule(
        "workflow-tie-later-stage-wins",
        [wf("SUCCEEDED", 2)],
        wf("RUNNING", 2),
        STALE,
        {"phase": "SUCCEEDED", "started_at": 2, "duration": 0.0},
    ),
    rule(
        "workflow-tie-terminal-arriving-last-applied",
        [wf("RUNNING", 2)],
        wf("SUCCEEDED", 2),
        APPLIED,
        {"phase": "SUCCEEDED"},
    ),
    rule(
        "workflow-tie-queued-move-before-running",
        [wf("QUEUED", 1, producer="cluster-a"), wf("RUNNING", 2, producer="cluster-b")],
        wf("QUEUED", 2, producer="cluster-b"),
        STALE,
        {"phase": "RUNNING", "started_at": 2, "producer_id": "cluster-b"},
    ),
    # Replays: a known fingerprint changes nothing, whatever its phase.
    rule(
        "workflow-replayed-queued-after-running",
        [wf("QUEUED", 1), wf("RUNNING", 2)],
        wf("QUEUED", 1),
        DUPLICATE,
        {"phase": "RUNNING", "changed": False},
    ),
    rule(
        "workflow-replayed-terminal-unchanged",
        [wf("RUNNING", 1), wf("SUCCEEDED", 2)],
        wf("SUCCEEDED", 2),
        DUPLICATE,
        {"phase": "SUCCEEDED", "changed": False},
    ),
]

NODE_ROWS = [
    # Node creation by any phase, terminal ones included.
    *[
        rule(
            f"node-created-by-{phase.lower().replace('_', '-')}",
            [],
            node(phase, 1),
            APPLIED,
            {"phase": phase, "created_at": 1},
        )
        for phase in ("QUEUED", "RUNNING", "DYNAMIC_RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "RECOVERED")
    ],
    # Node terminal phases: SUCCEEDED, FAILED, TIMED_OUT, ABORTED, SKIPPED and RECOVERED.
    *[
        rule(
            f"node-{phase.lower().replace('_', '-')}-is-terminal",
            [node("QUEUED", 1), node(phase, 2)],
            node("RUNNING", 3),
            TERMINAL,
            {"phase": phase, "updated_at": 2},
        )
        for phase in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "SKIPPED", "RECOVERED")
    ],
    rule(
        "node-failing-is-not-terminal",
        [node("RUNNING", 1), node("FAILING", 2)],
        node("FAILED", 3),
        APPLIED,
        {"phase": "FAILED"},
    ),
    # Node duplicate: the same phase as the entry before it in occurred_at order.
    rule(
        "node-repeated-running-duplicate",
        [node("QUEUED", 1), node("RUNNING", 2)],
        node("RUNNING", 3),
        DUPLICATE,
        {"started_at": 2, "updated_at": 2},
    ),
    rule(
        "node-earlier-running-displaces-later",
        [node("QUEUED", 1), node("RUNNING", 3)],
        node("RUNNING", 2),
        APPLIED,
        {"started_at": 2, "updated_at": 2},
    ),
    # Node started_at: every RUNNING sets it, DYNAMIC_RUNNING does not.
    rule(
        "node-dynamic-running-keeps-started-at",
        [node("QUEUED", 1), node("RUNNING", 2)],
        node("DYNAMIC_RUNNING", 5),
        APPLIED,
        {"phase": "DYNAMIC_RUNNING", "started_at": 2},
    ),
    rule(
        "node-dynamic-running-sets-no-start",
        [node("QUEUED", 1)],
        node("DYNAMIC_RUNNING", 2),
        APPLIED,
        {"started_at": None},
    ),
    rule(
        "node-running-after-dynamic-sets-started-at",
        [node("RUNNING", 1), node("DYNAMIC_RUNNING", 2)],
        node("RUNNING", 4),
        APPLIED,
        {"started_at": 4},
    ),
    rule(
        "node-terminal-sets-duration",
        [node("QUEUED", 1), node("RUNNING", 2)],
        node("SUCCEEDED", 6),
        APPLIED,
        {"started_at": 2, "duration": 4.0},
    ),
    rule("node-no-duration-without-start", [], node("SUCCEEDED", 3), APPLIED, {"started_at": None, "duration": None}),
    # Node results only on terminal events.
    rule(
        "node-result-output-uri",
        [node("RUNNING", 1)],
        node("SUCCEEDED", 2, output_uri="s3://bucket/n0/outputs.pb"),
        APPLIED,
        {"result": ("output_uri", "s3://bucket/n0/outputs.pb")},
    ),
    rule(
        "node-result-error",
        [node("RUNNING", 1)],
        node("FAILED", 2, error=error("USER:Boom")),
        APPLIED,
        {"result": ("error", "USER:Boom", "USER")},
    ),
    rule(
        "node-result-output-data",
        [node("RUNNING", 1)],
        node("SUCCEEDED", 2, output_data=literals("o0")),
        APPLIED,
        {"result": ("output_data", ["o0"])},
    ),
    rule(
        "node-result-ignored-before-terminal",
        [node("QUEUED", 1)],
        node("RUNNING", 2, error=error("USER:Early")),
        APPLIED,
        {"result": None},
    ),
    rule(
        "node-earlier-terminal-wins",
        [node("RUNNING", 1), node("SUCCEEDED", 5, output_uri="s3://bucket/n0/outputs.pb")],
        node("FAILED", 3, error=error("USER:Boom")),
        APPLIED,
        {"phase": "FAILED", "duration": 2.0, "result": ("error", "USER:Boom", "USER")},
    ),
    # Node input: written once, by the first accepted event that carries it.
    rule(
        "node-input-written-once",
        [node("QUEUED", 1, input_uri="s3://bucket/first.pb")],
        node("RUNNING", 2, input_uri="s3://bucket/second.pb"),
        APPLIED,
        {"input_uri": "s3://bucket/first.pb"},
    ),
    rule(
        "node-late-event-fills-input",
        [node("RUNNING", 2)],
        node("QUEUED", 1, input_uri="s3://bucket/inputs.pb"),
        STALE,
        {"phase": "RUNNING", "input_uri": "s3://bucket/inputs.pb"},
    ),
    rule(
        "node-rejected-event-writes-no-input",
        [node("QUEUED", 1), node("SUCCEEDED", 2)],
        node("RUNNING", 3, input_uri="s3://bucket/inputs.pb"),
        TERMINAL,
        {"input_uri": ""},
    ),
    rule(
        "node-late-running-fills-started-at",
        [node("SUCCEEDED", 5)],
        node("RUNNING", 2),
        STALE,
        {"phase": "SUCCEEDED", "started_at": 2, "duration": 3.0},
    ),
    # Node target metadata: cache status and catalog key only with a catalog key.
    rule(
        "node-catalog-key-sets-cache-status",
        [],
        node("SUCCEEDED", 1, task_node_metadata=catalog("a1", catalog_pb2.CACHE_HIT)),
        APPLIED,
        {"cache_status": "CACHE_HIT", "catalog_artifact": "a1", "started_at": None},
    ),
    rule(
        "node-cache-status-without-catalog-key-ignored",
        [node("QUEUED", 1)],
        node("RUNNING", 2, task_node_metadata=event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_HIT)),
        APPLIED,
        {"cache_status": "CACHE_DISABLED", "catalog_artifact": ""},
    ),
    rule(
        "node-catalog-key-carries-reservation-status",
        [],
        node(
            "RUNNING",
            1,
            task_node_metadata=catalog(
                "a1", catalog_pb2.CACHE_MISS, reservation_status=catalog_pb2.CatalogReservation.RESERVATION_ACQUIRED
            ),
        ),
        APPLIED,
        {"reservation_status": "RESERVATION_ACQUIRED"},
    ),
    rule(
        "node-newer-catalog-key-replaces",
        [node("RUNNING", 1, task_node_metadata=catalog("a1", catalog_pb2.CACHE_MISS))],
        node("SUCCEEDED", 2, task_node_metadata=catalog("a2", catalog_pb2.CACHE_POPULATED)),
        APPLIED,
        {"cache_status": "CACHE_POPULATED", "catalog_artifact": "a2"},
    ),
    rule(
        "node-stored-catalog-key-and-checkpoint-survive",
        [
            node(
                "RUNNING",
                1,
                task_node_metadata=catalog("a1", catalog_pb2.CACHE_MISS, checkpoint_uri="s3://bucket/ckpt"),
            )
        ],
        node("SUCCEEDED", 2, task_node_metadata=event_pb2.TaskNodeMetadata()),
        APPLIED,
        {"cache_status": "CACHE_MISS", "catalog_artifact": "a1", "checkpoint_uri": "s3://bucket/ckpt"},
    ),
    rule(
        "node-older-catalog-key-fills-only",
        [node("SUCCEEDED", 2, task_node_metadata=catalog("a2", catalog_pb2.CACHE_POPULATED))],
        node("RUNNING", 1, task_node_metadata=catalog("a1", catalog_pb2.CACHE_MISS)),
        STALE,
        {"cache_status": "CACHE_POPULATED", "catalog_artifact": "a2"},
    ),
    # Dynamic workflow: id and dynamic job spec URI kept.
    rule(
        "node-dynamic-workflow-id-kept",
        [node("RUNNING", 1), node("DYNAMIC_RUNNING", 2, task_node_metadata=dynamic_workflow("wf.dynamic"))],
        node("SUCCEEDED", 3, task_node_metadata=event_pb2.TaskNodeMetadata()),
        APPLIED,
        {"dynamic_workflow": "wf.dynamic", "dynamic_job_spec_uri": "s3://bucket/wf.dynamic/futures.pb"},
    ),
    rule(
        "node-first-dynamic-workflow-kept",
        [node("DYNAMIC_RUNNING", 2, task_node_metadata=dynamic_workflow("wf.first"))],
        node("SUCCEEDED", 3, task_node_metadata=dynamic_workflow("wf.second")),
        APPLIED,
        {"dynamic_workflow": "wf.first", "dynamic_job_spec_uri": "s3://bucket/wf.first/futures.pb"},
    ),
    # Node flags stay true once set.
    rule(
        "node-parent-and-dynamic-flags-sticky",
        [node("DYNAMIC_RUNNING", 2, is_parent=True, is_dynamic=True)],
        node("SUCCEEDED", 3),
        APPLIED,
        {"is_parent": True, "is_dynamic": True},
    ),
    rule(
        "node-array-and-eager-flags-sticky",
        [node("QUEUED", 1, is_array=True, is_eager=True)],
        node("RUNNING", 2),
        APPLIED,
        {"is_array": True, "is_eager": True},
    ),
    rule(
        "node-flags-set-by-older-event",
        [node("SUCCEEDED", 3)],
        node("DYNAMIC_RUNNING", 2, is_parent=True, is_dynamic=True),
        STALE,
        {"is_parent": True, "is_dynamic": True},
    ),
    # Parent link.
    rule(
        "node-parent-link-kept",
        [node("QUEUED", 1, parent="n0", node_id="n0-0-dn0")],
        node("RUNNING", 2, node_id="n0-0-dn0"),
        APPLIED,
        {"parent_node_id": "n0"},
    ),
    # Fields FlyteAdmin drops are kept.
    rule(
        "node-dropped-fields-kept",
        [node("QUEUED", 1, node_name="train", target_entity=TASK_ID, is_in_dynamic_chain=True, is_eager=True)],
        node("RUNNING", 2),
        APPLIED,
        {"node_name": "train", "target_entity": "wf.train", "is_in_dynamic_chain": True, "is_eager": True},
    ),
    # Launch plan node: the child execution is linked once.
    rule(
        "node-launch-plan-links-child-once",
        [node("RUNNING", 1, workflow_node_metadata=child_execution("child1"))],
        node("SUCCEEDED", 2, workflow_node_metadata=child_execution("child2")),
        APPLIED,
        {"child_execution": "child1"},
    ),
    rule(
        "node-tie-terminal-beats-running",
        [node("SUCCEEDED", 2)],
        node("RUNNING", 2),
        STALE,
        {"phase": "SUCCEEDED", "started_at": 2, "duration": 0.0},
    ),
    rule(
        "node-replay-unchanged",
        [node("QUEUED", 1), node("RUNNING", 2)],
        node("QUEUED", 1),
        DUPLICATE,
        {"phase": "RUNNING", "changed": False},
    ),
]

TASK_ROWS = [
    # Task terminal phases: SUCCEEDED, FAILED and ABORTED, but not RETRYABLE_FAILED.
    *[
        rule(
            f"task-{phase.lower()}-is-terminal",
            [task("RUNNING", 1), task(phase, 2)],
            task("RUNNING", 3, 1),
            TERMINAL,
            {"phase": phase, "updated_at": 2},
        )
        for phase in ("SUCCEEDED", "FAILED", "ABORTED")
    ],
    rule(
        "task-retryable-failed-not-terminal",
        [task("RUNNING", 1), task("RETRYABLE_FAILED", 2)],
        task("FAILED", 3),
        APPLIED,
        {"phase": "FAILED"},
    ),
    rule("task-created-by-any-phase", [], task("RUNNING", 1, 3), APPLIED, {"phase": "RUNNING", "phase_version": 3}),
    # Task duplicate: the same phase with a phase_version not above the stored one.
    rule(
        "task-same-version-duplicate", [task("RUNNING", 1, 1)], task("RUNNING", 2, 1), DUPLICATE, {"phase_version": 1}
    ),
    rule(
        "task-lower-version-duplicate", [task("RUNNING", 1, 1)], task("RUNNING", 2, 0), DUPLICATE, {"phase_version": 1}
    ),
    rule(
        "task-higher-version-applied",
        [task("RUNNING", 1, 1)],
        task("RUNNING", 2, 2),
        APPLIED,
        {"phase_version": 2, "updated_at": 2},
    ),
    # Task phase_version on a phase change: the event's version.
    rule(
        "task-phase-change-takes-version", [task("QUEUED", 1, 2)], task("RUNNING", 2, 0), APPLIED, {"phase_version": 0}
    ),
    rule(
        "task-update-after-phase-change-applied",
        [task("QUEUED", 1, 2), task("RUNNING", 2, 0)],
        task("RUNNING", 3, 1),
        APPLIED,
        {"phase_version": 1},
    ),
    # Task started_at and duration.
    rule(
        "task-first-running-sets-started-at",
        [task("QUEUED", 1), task("RUNNING", 2)],
        task("RUNNING", 4, 1),
        APPLIED,
        {"started_at": 2},
    ),
    rule(
        "task-terminal-sets-duration",
        [task("QUEUED", 1), task("RUNNING", 2)],
        task("SUCCEEDED", 7),
        APPLIED,
        {"started_at": 2, "duration": 5.0},
    ),
    rule(
        "task-no-duration-without-start",
        [task("QUEUED", 1)],
        task("ABORTED", 3),
        APPLIED,
        {"started_at": None, "duration": None},
    ),
    rule(
        "task-late-running-fills-started-at",
        [task("RUNNING", 4, 1)],
        task("RUNNING", 2, 0),
        STALE,
        {"started_at": 2, "phase_version": 1},
    ),
    # Task results.
    rule(
        "task-result-output-uri",
        [task("RUNNING", 1)],
        task("SUCCEEDED", 2, output_uri="s3://bucket/0/outputs.pb"),
        APPLIED,
        {"result": ("output_uri", "s3://bucket/0/outputs.pb")},
    ),
    rule(
        "task-result-error",
        [task("RUNNING", 1)],
        task("RETRYABLE_FAILED", 2, error=error("OOMKilled", ErrorKind.USER)),
        APPLIED,
        {"result": ("error", "OOMKilled", "USER")},
    ),
    rule(
        "task-result-output-data",
        [task("RUNNING", 1)],
        task("SUCCEEDED", 2, output_data=literals("o0")),
        APPLIED,
        {"result": ("output_data", ["o0"])},
    ),
    rule(
        "task-earlier-terminal-wins",
        [task("RUNNING", 1), task("RUNNING", 5, 2), task("SUCCEEDED", 6, output_uri="s3://bucket/0/outputs.pb")],
        task("ABORTED", 3, error=error("Task Aborted")),
        APPLIED,
        {
            "phase": "ABORTED",
            "phase_version": 0,
            "updated_at": 3,
            "duration": 2.0,
            "result": ("error", "Task Aborted", "USER"),
        },
    ),
    # Task logs.
    rule(
        "task-logs-merge-by-uri-and-name",
        [task("RUNNING", 1, logs=[log("K8s")])],
        task("RUNNING", 2, 1, logs=[log("Cloudwatch")]),
        APPLIED,
        {"logs": ["Cloudwatch", "K8s"]},
    ),
    rule(
        "task-log-same-name-replaced",
        [task("RUNNING", 1, logs=[log("K8s", "https://logs.example/old")])],
        task("RUNNING", 2, 1, logs=[log("K8s", "https://logs.example/new")]),
        APPLIED,
        {"log_uris": ["https://logs.example/new"]},
    ),
    rule(
        "task-log-same-uri-replaced",
        [task("RUNNING", 1, logs=[log("K8s (pending)", "https://logs.example/pod")])],
        task("RUNNING", 2, 1, logs=[log("K8s", "https://logs.example/pod")]),
        APPLIED,
        {"logs": ["K8s"]},
    ),
    rule(
        "task-queued-shows-only-pending-logs",
        [],
        task("QUEUED", 1, logs=[log("Scheduling", ShowWhilePending=True), log("K8s")]),
        APPLIED,
        {"logs": ["Scheduling"]},
    ),
    rule(
        "task-initializing-shows-only-pending-logs",
        [task("QUEUED", 1)],
        task("INITIALIZING", 2, logs=[log("Scheduling", ShowWhilePending=True), log("K8s")]),
        APPLIED,
        {"logs": ["Scheduling"]},
    ),
    rule(
        "task-running-shows-all-logs",
        [task("QUEUED", 1, logs=[log("Scheduling", ShowWhilePending=True)])],
        task("RUNNING", 2, logs=[log("K8s")]),
        APPLIED,
        {"logs": ["K8s", "Scheduling"]},
    ),
    rule(
        "task-terminal-hides-finished-logs",
        [task("RUNNING", 1, logs=[log("K8s"), log("Dashboard", HideOnceFinished=True)])],
        task("SUCCEEDED", 2, logs=[log("K8s"), log("Dashboard", HideOnceFinished=True)]),
        APPLIED,
        {"logs": ["K8s"]},
    ),
    rule(
        "task-event-without-logs-keeps-logs-filtered",
        [task("RUNNING", 1, logs=[log("K8s"), log("Dashboard", HideOnceFinished=True)])],
        task("SUCCEEDED", 2),
        APPLIED,
        {"logs": ["K8s"]},
    ),
    rule(
        "task-older-event-logs-fill",
        [task("RUNNING", 3, 1, logs=[log("K8s", "https://logs.example/new")])],
        task("RUNNING", 2, 0, logs=[log("K8s", "https://logs.example/old"), log("Cloudwatch")]),
        STALE,
        {"log_uris": ["https://logs.example/new", "https://logs.example/Cloudwatch"]},
    ),
    # Task custom_info: RFC 7386 JSON merge patch.
    rule(
        "task-custom-info-merge-patch",
        [task("RUNNING", 1, custom_info=struct({"a": 1, "b": {"c": 2, "keep": 1}}))],
        task("RUNNING", 2, 1, custom_info=struct({"b": {"c": None, "d": 3}, "e": [1, 2]})),
        APPLIED,
        {"custom_info": {"a": 1.0, "b": {"keep": 1.0, "d": 3.0}, "e": [1.0, 2.0]}},
    ),
    rule(
        "task-custom-info-older-patch-under-stored",
        [task("RUNNING", 2, 1, custom_info=struct({"a": 2}))],
        task("RUNNING", 1, 0, custom_info=struct({"a": 1, "z": 0})),
        STALE,
        {"custom_info": {"a": 2.0, "z": 0.0}},
    ),
    rule(
        "task-custom-info-older-patch-after-deletion",
        [task("RUNNING", 2, 1, custom_info=struct({"x": None}))],
        task("RUNNING", 1, 0, custom_info=struct({"x": 1, "y": 1})),
        STALE,
        {"custom_info": {"y": 1.0}},
    ),
    rule(
        "task-custom-info-older-patch-with-null",
        [task("RUNNING", 2, 1, custom_info=struct({"y": 2}))],
        task("RUNNING", 1, 0, custom_info=struct({"x": None, "y": 1})),
        STALE,
        {"custom_info": {"y": 2.0}},
    ),
    rule(
        "task-custom-info-of-event-after-earlier-terminal-dropped",
        [task("RUNNING", 1, custom_info=struct({"a": 1})), task("RUNNING", 5, 1, custom_info=struct({"b": 2}))],
        task("FAILED", 3),
        APPLIED,
        {"phase": "FAILED", "custom_info": {"a": 1.0}},
    ),
    # Task reasons.
    rule(
        "task-reasons-appended",
        [task("QUEUED", 1, reasons=[reason("submitted", 1)])],
        task("QUEUED", 2, 1, reasons=[reason("ContainerCreating", 2)]),
        APPLIED,
        {"reasons": ["submitted", "ContainerCreating"], "reason": "ContainerCreating"},
    ),
    rule(
        "task-legacy-reason-when-different",
        [task("QUEUED", 1, reason="submitted")],
        task("QUEUED", 2, 1, reason="ContainerCreating"),
        APPLIED,
        {"reasons": ["submitted", "ContainerCreating"], "reason": "ContainerCreating"},
    ),
    rule(
        "task-legacy-reason-repeated-skipped",
        [task("QUEUED", 1, reason="submitted")],
        task("QUEUED", 2, 1, reason="submitted"),
        APPLIED,
        {"reasons": ["submitted"], "reason": "submitted"},
    ),
    rule(
        "task-reasons-kept-in-occurred-at-order",
        [task("QUEUED", 3, 1, reasons=[reason("ContainerCreating", 3)])],
        task("QUEUED", 1, 0, reasons=[reason("submitted", 1)]),
        STALE,
        {"reasons": ["submitted", "ContainerCreating"], "reason": "ContainerCreating"},
    ),
    rule(
        "task-legacy-reason-older-event-equal-to-current",
        [task("QUEUED", 2, 1, reason="ContainerCreating"), task("QUEUED", 3, 2, reason="submitted")],
        task("QUEUED", 1, 0, reason="submitted"),
        STALE,
        {"reasons": ["submitted", "ContainerCreating", "submitted"], "reason": "submitted"},
    ),
    rule(
        "task-legacy-reason-older-event-differs-from-predecessor",
        [task("QUEUED", 1, 0, reason="submitted"), task("QUEUED", 3, 2, reason="ContainerCreating")],
        task("QUEUED", 2, 1, reason="ContainerCreating"),
        STALE,
        {"reasons": ["submitted", "ContainerCreating"], "reason": "ContainerCreating"},
    ),
    rule(
        "task-reasons-of-event-after-earlier-terminal-dropped",
        [
            task("QUEUED", 1, reasons=[reason("submitted", 1)]),
            task("RUNNING", 5, reasons=[reason("running", 5)]),
        ],
        task("ABORTED", 3),
        APPLIED,
        {"reasons": ["submitted"], "reason": "submitted"},
    ),
    rule(
        "task-reasons-of-displaced-event-dropped",
        [task("RUNNING", 3, 1, reasons=[reason("late copy", 3)])],
        task("RUNNING", 2, 1, reasons=[reason("first", 2)]),
        APPLIED,
        {"reasons": ["first"], "reason": "first", "updated_at": 2},
    ),
    # Task metadata.
    rule(
        "task-metadata-keeps-non-default-values",
        [
            task(
                "QUEUED",
                1,
                metadata=event_pb2.TaskExecutionMetadata(
                    generated_name="e1-n0-0",
                    plugin_identifier="container",
                    instance_class=event_pb2.TaskExecutionMetadata.INTERRUPTIBLE,
                ),
            )
        ],
        task("RUNNING", 2, metadata=event_pb2.TaskExecutionMetadata()),
        APPLIED,
        {"generated_name": "e1-n0-0", "plugin_identifier": "container", "instance_class": "INTERRUPTIBLE"},
    ),
    rule(
        "task-metadata-takes-new-values",
        [
            task(
                "QUEUED",
                1,
                metadata=event_pb2.TaskExecutionMetadata(generated_name="old", plugin_identifier="container"),
            )
        ],
        task(
            "RUNNING", 2, metadata=event_pb2.TaskExecutionMetadata(generated_name="new", plugin_identifier="k8s-array")
        ),
        APPLIED,
        {"generated_name": "new", "plugin_identifier": "k8s-array"},
    ),
    rule(
        "task-resource-pool-replaced",
        [
            task(
                "QUEUED",
                1,
                metadata=event_pb2.TaskExecutionMetadata(
                    resource_pool_info=[
                        event_pb2.ResourcePoolInfo(namespace="a"),
                        event_pb2.ResourcePoolInfo(namespace="b"),
                    ]
                ),
            )
        ],
        task(
            "RUNNING",
            2,
            metadata=event_pb2.TaskExecutionMetadata(resource_pool_info=[event_pb2.ResourcePoolInfo(namespace="c")]),
        ),
        APPLIED,
        {"resource_pools": ["c"]},
    ),
    rule(
        "task-external-resources-merged-and-sorted",
        [task("RUNNING", 1, metadata=subtasks((2, 0, "RUNNING"), (0, 0, "RUNNING")))],
        task("RUNNING", 2, 1, metadata=subtasks((1, 0, "QUEUED"), (0, 0, "SUCCEEDED"))),
        APPLIED,
        {
            "subtask_order": [(0, 0), (1, 0), (2, 0)],
            "subtasks": {(0, 0): "SUCCEEDED", (1, 0): "QUEUED", (2, 0): "RUNNING"},
        },
    ),
    rule(
        "task-event-version-maximum",
        [task("QUEUED", 1, event_version=2)],
        task("RUNNING", 2, event_version=1),
        APPLIED,
        {"event_version": 2},
    ),
    # Map task subtasks: the newest report by task phase rank, phase_version, occurred_at.
    rule(
        "map-subtask-newer-report-overwrites",
        [task("RUNNING", 1, 0, metadata=subtasks((0, 0, "RUNNING")))],
        task("RUNNING", 2, 1, metadata=subtasks((0, 0, "SUCCEEDED"))),
        APPLIED,
        {"subtasks": {(0, 0): "SUCCEEDED"}},
    ),
    rule(
        "map-subtask-late-report-ignored",
        [task("RUNNING", 3, 2, metadata=subtasks((0, 0, "SUCCEEDED")))],
        task("RUNNING", 2, 1, metadata=subtasks((0, 0, "RUNNING"), (1, 0, "RUNNING"))),
        STALE,
        {"subtasks": {(0, 0): "SUCCEEDED", (1, 0): "RUNNING"}},
    ),
    rule(
        "map-subtask-phase-rank-beats-occurred-at",
        [task("RUNNING", 1), task("RETRYABLE_FAILED", 2, metadata=subtasks((0, 0, "FAILED")))],
        task("RUNNING", 3, 1, metadata=subtasks((0, 0, "RUNNING"))),
        APPLIED,
        {"subtasks": {(0, 0): "FAILED"}},
    ),
    rule(
        "map-subtask-retries-kept-apart",
        [task("RUNNING", 1, 0, metadata=subtasks((0, 0, "RETRYABLE_FAILED")))],
        task("RUNNING", 2, 1, metadata=subtasks((0, 1, "RUNNING"))),
        APPLIED,
        {"subtasks": {(0, 0): "RETRYABLE_FAILED", (0, 1): "RUNNING"}},
    ),
    rule(
        "map-subtask-older-report-fills-cache-status",
        [task("RUNNING", 2, 1, metadata=subtasks((0, 0, "SUCCEEDED")))],
        task("RUNNING", 1, 0, metadata=subtasks((0, 0, "RUNNING", {"cache_status": catalog_pb2.CACHE_MISS}))),
        STALE,
        {"subtasks": {(0, 0): "SUCCEEDED"}, "subtask_cache_status": {(0, 0): "CACHE_MISS"}},
    ),
    rule(
        "map-subtask-older-report-fills-log-context",
        [task("RUNNING", 2, 1, metadata=subtasks((0, 0, "SUCCEEDED")))],
        task("RUNNING", 1, 0, metadata=subtasks((0, 0, "RUNNING", {"log_context": {"primary_pod_name": "pod-0"}}))),
        STALE,
        {"subtasks": {(0, 0): "SUCCEEDED"}, "subtask_log_context": {(0, 0): True}},
    ),
    rule(
        "map-subtask-field-from-newest-report-carrying-it",
        [
            task("RUNNING", 3, 2, metadata=subtasks((0, 0, "SUCCEEDED"))),
            task("RUNNING", 1, 0, metadata=subtasks((0, 0, "RUNNING", {"cache_status": catalog_pb2.CACHE_MISS}))),
        ],
        task("RUNNING", 2, 1, metadata=subtasks((0, 0, "RUNNING", {"cache_status": catalog_pb2.CACHE_POPULATED}))),
        STALE,
        {"subtasks": {(0, 0): "SUCCEEDED"}, "subtask_cache_status": {(0, 0): "CACHE_POPULATED"}},
    ),
    # Out-of-order: an older event fills input, logs and metadata without moving the phase.
    rule(
        "task-late-queued-fills-input-logs-metadata",
        [task("RUNNING", 3)],
        task(
            "QUEUED",
            1,
            input_uri="s3://bucket/inputs.pb",
            logs=[log("Scheduling", ShowWhilePending=True)],
            metadata=event_pb2.TaskExecutionMetadata(generated_name="e1-n0-0"),
        ),
        STALE,
        {"phase": "RUNNING", "input_uri": "s3://bucket/inputs.pb", "logs": ["Scheduling"], "generated_name": "e1-n0-0"},
    ),
    # Ties in occurred_at: phase order, then phase_version.
    rule(
        "task-tie-later-stage-wins",
        [task("SUCCEEDED", 2)],
        task("RUNNING", 2),
        STALE,
        {"phase": "SUCCEEDED", "started_at": 2},
    ),
    rule("task-tie-higher-version-wins", [task("RUNNING", 2, 2)], task("RUNNING", 2, 1), STALE, {"phase_version": 2}),
    rule(
        "task-replay-unchanged",
        [task("RUNNING", 1, 0), task("RUNNING", 2, 1)],
        task("RUNNING", 1, 0),
        DUPLICATE,
        {"phase_version": 1, "changed": False},
    ),
]

# Rules that span the records of an execution, folded with an ExecutionFolder.
ACROSS_RECORD_ROWS = [
    # Node and task cluster checks against the owner as of occurred_at.
    rule(
        "node-other-producer-incompatible",
        [wf("QUEUED", 1, producer="cluster-a")],
        node("QUEUED", 2, producer="cluster-b"),
        CLUSTER,
        {"exists": False},
        across_records=True,
    ),
    rule(
        "node-empty-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        node("QUEUED", 2, producer=""),
        APPLIED,
        {"phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "node-propeller-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        node("QUEUED", 2, producer=PROPELLER),
        APPLIED,
        {"phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "node-owner-as-of-occurred-at",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 5, producer="cluster-b")],
        node("RUNNING", 3, producer="cluster-a"),
        APPLIED,
        {"phase": "RUNNING"},
        across_records=True,
    ),
    rule(
        "node-old-owner-after-move-incompatible",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 5, producer="cluster-b")],
        node("RUNNING", 6, producer="cluster-a"),
        CLUSTER,
        {"exists": False},
        across_records=True,
    ),
    rule(
        "node-before-first-owner-accepted",
        [wf("QUEUED", 5, producer="cluster-a")],
        node("QUEUED", 2, producer="cluster-b"),
        APPLIED,
        {"phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "node-rejected-before-late-move-stays-rejected",
        [wf("QUEUED", 1, producer="cluster-a"), node("QUEUED", 3, producer="cluster-b")],
        wf("QUEUED", 2, producer="cluster-b"),
        APPLIED,
        {"node:n0.exists": False, "producer_id": "cluster-b"},
        across_records=True,
    ),
    rule(
        "node-rejected-event-judged-again-when-resent",
        [
            wf("QUEUED", 1, producer="cluster-a"),
            node("QUEUED", 3, producer="cluster-b"),
            wf("QUEUED", 2, producer="cluster-b"),
        ],
        node("QUEUED", 3, producer="cluster-b"),
        APPLIED,
        {"phase": "QUEUED", "changed": True},
        across_records=True,
    ),
    rule(
        "task-rejected-event-judged-again-when-resent",
        [
            wf("QUEUED", 1, producer="cluster-a"),
            task("QUEUED", 3, producer="cluster-b"),
            wf("QUEUED", 2, producer="cluster-b"),
        ],
        task("QUEUED", 3, producer="cluster-b"),
        APPLIED,
        {"phase": "QUEUED", "changed": True},
        across_records=True,
    ),
    rule(
        "task-other-producer-incompatible",
        [wf("QUEUED", 1, producer="cluster-a")],
        task("QUEUED", 2, producer="cluster-b"),
        CLUSTER,
        {"exists": False},
        across_records=True,
    ),
    rule(
        "task-empty-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        task("QUEUED", 2, producer=""),
        APPLIED,
        {"phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "task-propeller-producer-neutral",
        [wf("QUEUED", 1, producer="cluster-a")],
        task("QUEUED", 2, producer=PROPELLER),
        APPLIED,
        {"phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "task-owner-as-of-occurred-at",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 5, producer="cluster-b")],
        task("RUNNING", 3, producer="cluster-a"),
        APPLIED,
        {"phase": "RUNNING"},
        across_records=True,
    ),
    rule(
        "task-new-owner-after-move-accepted",
        [wf("QUEUED", 1, producer="cluster-a"), wf("QUEUED", 2, producer="cluster-b")],
        task("RUNNING", 3, producer="cluster-b"),
        APPLIED,
        {"phase": "RUNNING"},
        across_records=True,
    ),
    # Task attempts: one record per retry attempt, and an attempt's FAILED does not fail its node.
    rule(
        "task-retry-attempt-own-record",
        [node("RUNNING", 1), task("RUNNING", 2), task("FAILED", 3, error=error("USER:Boom"))],
        task("QUEUED", 4, attempt=1),
        APPLIED,
        {"phase": "QUEUED", "task:n0/0.phase": "FAILED", "node:n0.phase": "RUNNING"},
        across_records=True,
    ),
    rule(
        "task-failed-attempt-keeps-node-running",
        [wf("RUNNING", 1), node("RUNNING", 2), task("RUNNING", 3)],
        task("FAILED", 4, error=error("USER:Boom")),
        APPLIED,
        {"phase": "FAILED", "node:n0.phase": "RUNNING", "workflow.phase": "RUNNING"},
        across_records=True,
    ),
    # Orphan node and task events and the inferred workflow.
    rule(
        "orphan-node-infers-workflow",
        [],
        node("QUEUED", 3),
        APPLIED,
        {"phase": "QUEUED", "workflow.inferred": True, "workflow.created_at": 3, "workflow.phase": "UNDEFINED"},
        across_records=True,
    ),
    rule(
        "orphan-task-infers-workflow",
        [],
        task("QUEUED", 3),
        APPLIED,
        {"phase": "QUEUED", "workflow.inferred": True, "node:n0.exists": False},
        across_records=True,
    ),
    rule(
        "orphan-task-kept-until-node-arrives",
        [task("RUNNING", 3)],
        node("RUNNING", 2),
        APPLIED,
        {"phase": "RUNNING", "task:n0/0.phase": "RUNNING", "workflow.inferred": True},
        across_records=True,
    ),
    rule(
        "orphan-child-links-parent-later",
        [node("QUEUED", 3, node_id="n0-0-dn0", parent="n0")],
        node("DYNAMIC_RUNNING", 2, is_parent=True),
        APPLIED,
        {"is_parent": True, "node:n0-0-dn0.parent_node_id": "n0"},
        across_records=True,
    ),
    rule(
        "inferred-workflow-cleared-by-workflow-event",
        [node("QUEUED", 3)],
        wf("RUNNING", 1),
        APPLIED,
        {"inferred": False, "phase": "RUNNING", "created_at": 1, "started_at": 1},
        across_records=True,
    ),
    rule(
        "inferred-workflow-not-cleared-by-rejected-event",
        [node("QUEUED", 3)],
        wf("RUNNING", None),
        INVALID,
        {"inferred": True},
        across_records=True,
    ),
    # Replays across records: no record changes, the summary included.
    rule(
        "node-replay-changes-no-record",
        [wf("QUEUED", 1), node("QUEUED", 2)],
        node("QUEUED", 2),
        DUPLICATE,
        {"changed": False, "phase": "QUEUED"},
        across_records=True,
    ),
    rule(
        "task-replay-changes-no-record",
        [wf("QUEUED", 1), task("RUNNING", 2), task("SUCCEEDED", 3)],
        task("RUNNING", 2),
        DUPLICATE,
        {"changed": False, "phase": "SUCCEEDED"},
        across_records=True,
    ),
]

ROWS = [*OUTCOME_ROWS, *WORKFLOW_ROWS, *NODE_ROWS, *TASK_ROWS, *ACROSS_RECORD_ROWS]


@pytest.mark.parametrize(("stored", "new", "outcome", "facts", "across_records"), ROWS)
def test_rule(stored, new, outcome, facts, across_records):
    folded = fold_across_records(stored, new) if across_records else fold_pure(stored, new)

    assert folded.outcome is outcome
    for name, expected in facts.items():
        assert read_fact(folded, name) == expected, name


def test_row_ids_are_unique():
    ids = [row.id for row in ROWS]

    assert len(ids) == len(set(ids))
