"""Deterministic synthetic streams of Flyte execution events.

``generate_executions(count, seed)`` builds executions whose events are
modelled on flytepropeller's: sequential and parallel task nodes, task
retries, failing and aborted workflows, cache hits, dynamic nodes with
children, map tasks with subtasks, launch plan nodes, log updates and
reasons. The same arguments give the same events in every process, because
all randomness comes from ``random.Random`` instances seeded with strings
(string seeds do not depend on PYTHONHASHSEED).

Within one execution the events are in emission order and occurred_at never
decreases. Each entity (workflow, node, task attempt) gets strictly
increasing occurred_at values in 1 s steps, and events of different entities
sometimes share a timestamp.

The property tests, the chaos runner and the benchmark use this module, so it
builds protobuf messages directly and avoids per-event JSON.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Optional

from flyteidl.core import catalog_pb2, execution_pb2, identifier_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from processor.events import EventKind, ExecutionEvent, keyed_event

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution

# producer_id of every event of an execution that does not move. The fold
# treats "propeller" as a producer that any cluster may send.
PRODUCER_ID = "propeller"

# producer_id of the cluster that takes over an execution when cluster_moves is on.
MOVED_PRODUCER_ID = "cluster-b"

DEFAULT_START = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)

# Share of executions that move to MOVED_PRODUCER_ID when cluster_moves is on.
CLUSTER_MOVE_RATE = 0.3

# Probability that an event reuses the previous event's timestamp (only for
# another entity, whose own last event is older).
TIE_RATE = 0.15

# Relative weights of the node shapes in a workflow.
_NODE_SHAPE_WEIGHTS = {
    "task": 40,
    "retry": 15,
    "cache-hit": 10,
    "dynamic": 15,
    "map": 15,
    "launch-plan": 5,
}

_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_BUCKET = "s3://flyte-data/metadata/propeller"
_CONSOLE = "https://console.example.internal"
_TASK_VERSION = "v3"

_RETRYABLE_ERRORS = (
    ("OOMKilled", "Pod failed: container was OOM killed", execution_pb2.ExecutionError.USER),
    ("Interrupted", "The node was low on resources and the pod was evicted", execution_pb2.ExecutionError.SYSTEM),
    ("USER:ConnectionError", "ConnectionError: connection reset by peer", execution_pb2.ExecutionError.USER),
)
_FATAL_ERROR = ("USER:ValueError", "ValueError: bad shard 7", execution_pb2.ExecutionError.USER)

# Terminal phases of a finished task attempt.
_SUCCEEDED = TaskPhase.SUCCEEDED
_RETRYABLE = TaskPhase.RETRYABLE_FAILED
_FAILED = TaskPhase.FAILED

Step = Iterator[None]


@dataclass(frozen=True)
class SyntheticExecution:
    """One generated execution and its events in emission order.

    ``final_phase`` is the terminal WorkflowExecution.Phase of its last
    workflow event. ``moved_cluster`` is True when a second QUEUED workflow
    event from MOVED_PRODUCER_ID hands the execution over. Every later event
    of the execution then carries that producer_id.
    """

    execution_id: identifier_pb2.WorkflowExecutionIdentifier
    key: str
    final_phase: int
    moved_cluster: bool
    events: list[ExecutionEvent]


@dataclass(frozen=True)
class _Node:
    """Ids of one node execution and of the task it runs."""

    node_id: str
    spec_node_id: str
    id: identifier_pb2.NodeExecutionIdentifier
    task_id: identifier_pb2.Identifier
    parent_node_id: str = ""
    retry_group: str = ""


class _ExecutionWriter:
    """Builds the events of one execution and stamps each with the execution's clock."""

    def __init__(self, rng: random.Random, execution_id: identifier_pb2.WorkflowExecutionIdentifier, start: int):
        self.rng = rng
        self.execution_id = execution_id
        self.producer_id = PRODUCER_ID
        self.events: list[ExecutionEvent] = []
        self.prefix = f"{_BUCKET}/{execution_id.project}-{execution_id.domain}-{execution_id.name}"
        self._now = start - 1
        self._last_by_entity: dict[tuple, int] = {}

    def _occurred_at(self, entity: tuple) -> timestamp_pb2.Timestamp:
        last = self._last_by_entity.get(entity, self._now - 1)
        if not self.events or last >= self._now or self.rng.random() >= TIE_RATE:
            self._now += 1
        self._last_by_entity[entity] = self._now
        return timestamp_pb2.Timestamp(seconds=self._now)

    def node(self, node_id: str) -> _Node:
        """Return the ids of a top-level node and of its task, which is named after the node."""
        return self.child_node(node_id, node_id, parent_node_id="")

    def child_node(self, node_id: str, spec_node_id: str, *, parent_node_id: str) -> _Node:
        task_name = f"wf.{spec_node_id.replace('-', '_')}"
        return _Node(
            node_id=node_id,
            spec_node_id=spec_node_id,
            id=identifier_pb2.NodeExecutionIdentifier(node_id=node_id, execution_id=self.execution_id),
            task_id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.TASK,
                project=self.execution_id.project,
                domain=self.execution_id.domain,
                name=task_name,
                version=_TASK_VERSION,
            ),
            parent_node_id=parent_node_id,
            retry_group="0" if parent_node_id else "",
        )

    def workflow_event(
        self, phase: int, *, output_uri: str = "", error: Optional[execution_pb2.ExecutionError] = None
    ) -> None:
        message = event_pb2.WorkflowExecutionEvent(
            execution_id=self.execution_id,
            producer_id=self.producer_id,
            phase=phase,
            occurred_at=self._occurred_at(("workflow",)),
        )
        if output_uri:
            message.output_uri = output_uri
        elif error is not None:
            message.error.CopyFrom(error)
        self.events.append(keyed_event(EventKind.WORKFLOW, message))

    def node_event(
        self,
        node: _Node,
        phase: int,
        *,
        first: bool = False,
        output: bool = False,
        error: Optional[execution_pb2.ExecutionError] = None,
        **fields,
    ) -> None:
        """Append a node event. ``first`` adds the input URI and the fields sent only at the start."""
        message = event_pb2.NodeExecutionEvent(
            id=node.id,
            producer_id=self.producer_id,
            phase=phase,
            occurred_at=self._occurred_at(("node", node.node_id)),
            spec_node_id=node.spec_node_id,
            node_name=node.spec_node_id,
            event_version=1,
            **fields,
        )
        if node.parent_node_id:
            message.parent_node_metadata.node_id = node.parent_node_id
            message.retry_group = node.retry_group
        if first:
            message.input_uri = f"{self.prefix}/{node.node_id}/data/inputs.pb"
            if node.parent_node_id:
                message.is_in_dynamic_chain = True
        if output:
            message.output_uri = f"{self.prefix}/{node.node_id}/data/0/outputs.pb"
        elif error is not None:
            message.error.CopyFrom(error)
        self.events.append(keyed_event(EventKind.NODE, message))

    def task_event(
        self,
        node: _Node,
        attempt: int,
        phase: int,
        phase_version: int = 0,
        *,
        reason: str = "",
        logs: Iterable[execution_pb2.TaskLog] = (),
        output: bool = False,
        error: Optional[execution_pb2.ExecutionError] = None,
        plugin_identifier: str = "container",
        task_type: str = "python-task",
        external_resources: Iterable[event_pb2.ExternalResourceInfo] = (),
        custom_info: Optional[struct_pb2.Struct] = None,
    ) -> None:
        occurred_at = self._occurred_at(("task", node.node_id, attempt))
        message = event_pb2.TaskExecutionEvent(
            task_id=node.task_id,
            parent_node_execution_id=node.id,
            retry_attempt=attempt,
            phase=phase,
            phase_version=phase_version,
            producer_id=self.producer_id,
            occurred_at=occurred_at,
            logs=logs,
            task_type=task_type,
            event_version=1,
            metadata=event_pb2.TaskExecutionMetadata(
                generated_name=f"{self.execution_id.name}-{node.node_id}-{attempt}",
                plugin_identifier=plugin_identifier,
                external_resources=external_resources,
            ),
        )
        if reason:
            message.reason = reason
            message.reasons.add(reason=reason, occurred_at=occurred_at)
        if phase == TaskPhase.QUEUED and phase_version == 0:
            message.input_uri = f"{self.prefix}/{node.node_id}/data/inputs.pb"
        if output:
            message.output_uri = f"{self.prefix}/{node.node_id}/data/{attempt}/outputs.pb"
        elif error is not None:
            message.error.CopyFrom(error)
        if custom_info is not None:
            message.custom_info.CopyFrom(custom_info)
        self.events.append(keyed_event(EventKind.TASK, message))

    def log(self, node: _Node, attempt: int, name: str, **flags: bool) -> execution_pb2.TaskLog:
        """Return a task log link of one attempt, for the log system called ``name``."""
        pod = f"{self.execution_id.name}-{node.node_id}-{attempt}"
        uri = f"{_CONSOLE}/{name.lower().replace(' ', '-')}/{self.execution_id.project}/{pod}"
        return execution_pb2.TaskLog(uri=uri, name=name, message_format=execution_pb2.TaskLog.CSV, **flags)

    def random_name(self) -> str:
        """Return a Flyte-style execution name: a letter and 19 lowercase letters or digits."""
        return "a" + "".join(self.rng.choices(_NAME_ALPHABET, k=19))


def _error(code_message_kind: tuple[str, str, int]) -> execution_pb2.ExecutionError:
    code, message, kind = code_message_kind
    return execution_pb2.ExecutionError(code=code, message=message, kind=kind)


def _interleave(rng: random.Random, branches: list[Step]) -> Step:
    """Run branches as parallel nodes: each step comes from a randomly chosen unfinished branch."""
    active = list(branches)
    while active:
        index = rng.randrange(len(active))
        try:
            next(active[index])
        except StopIteration:
            active.pop(index)
            continue
        yield


def _drain(steps: Step) -> None:
    for _ in steps:
        pass


# Shapes of task attempts and nodes. Each is a generator that appends events
# through the writer and yields after each one, so that _interleave can run
# several nodes in parallel.


def _start_attempt(writer: _ExecutionWriter, node: _Node, attempt: int, logs: list[execution_pb2.TaskLog]) -> Step:
    """Emit an attempt from QUEUED up to RUNNING, with log updates, and append its current logs to ``logs``."""
    rng = writer.rng
    writer.task_event(node, attempt, TaskPhase.QUEUED, 0, reason="task submitted to K8s")
    yield

    if rng.random() < 0.5:
        writer.task_event(node, attempt, TaskPhase.INITIALIZING, 0, reason="ContainerCreating")
    else:
        pending = []
        if rng.random() < 0.3:
            pending.append(writer.log(node, attempt, "Scheduling Events", ShowWhilePending=True))
        writer.task_event(node, attempt, TaskPhase.QUEUED, 1, reason="ContainerCreating", logs=pending)
    yield

    logs.append(writer.log(node, attempt, "Kubernetes Logs (User)"))
    custom_info = None
    if rng.random() < 0.2:
        custom_info = struct_pb2.Struct()
        custom_info.update({"pod": {"node": f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}", "restarts": 0}})
    writer.task_event(node, attempt, TaskPhase.RUNNING, 0, logs=logs, custom_info=custom_info)
    yield

    # Log updates: the same phase reported again with a higher phase_version.
    updates = rng.choice((0, 0, 1, 2))
    extra_logs = (
        writer.log(node, attempt, "Cloudwatch Logs"),
        writer.log(node, attempt, "Live Dashboard", HideOnceFinished=True),
    )
    for version in range(1, updates + 1):
        logs.append(extra_logs[version - 1])
        writer.task_event(node, attempt, TaskPhase.RUNNING, version, logs=logs)
        yield


def _finish_attempt(writer: _ExecutionWriter, node: _Node, attempt: int, phase: int, logs: list) -> None:
    if phase == _SUCCEEDED:
        writer.task_event(node, attempt, phase, logs=logs, output=True)
    elif phase == _RETRYABLE:
        writer.task_event(node, attempt, phase, logs=logs, error=_error(writer.rng.choice(_RETRYABLE_ERRORS)))
    else:
        writer.task_event(node, attempt, phase, logs=logs, error=_error(_FATAL_ERROR))


def _catalog_key(writer: _ExecutionWriter, node: _Node) -> catalog_pb2.CatalogMetadata:
    execution_id = writer.execution_id
    digest = "".join(writer.rng.choices(_NAME_ALPHABET, k=8))
    return catalog_pb2.CatalogMetadata(
        dataset_id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.DATASET,
            project=execution_id.project,
            domain=execution_id.domain,
            name=f"flyte_task-{node.task_id.name}",
            version=f"1.0-{digest}",
        ),
        artifact_tag=catalog_pb2.CatalogArtifactTag(artifact_id=digest, name=f"flyte_cached-{digest}"),
    )


def _start_task_node(
    writer: _ExecutionWriter, node: _Node, failed_attempts: int, logs: list, *, cached: bool = False
) -> Step:
    """Emit a task node up to its last attempt RUNNING, after ``failed_attempts`` failed attempts.

    When ``cached`` the node reports a cache miss with its catalog key.
    """
    writer.node_event(node, NodePhase.QUEUED, first=True, target_entity=node.task_id)
    yield
    if cached:
        metadata = event_pb2.TaskNodeMetadata(
            cache_status=catalog_pb2.CACHE_MISS, catalog_key=_catalog_key(writer, node)
        )
        writer.node_event(node, NodePhase.RUNNING, task_node_metadata=metadata)
    else:
        writer.node_event(node, NodePhase.RUNNING)
    yield

    for attempt in range(failed_attempts):
        attempt_logs: list = []
        yield from _start_attempt(writer, node, attempt, attempt_logs)
        failure = _RETRYABLE if writer.rng.random() < 0.6 else _FAILED
        _finish_attempt(writer, node, attempt, failure, attempt_logs)
        yield

    yield from _start_attempt(writer, node, failed_attempts, logs)


def _task_node(writer: _ExecutionWriter, node: _Node, failed_attempts: int = 0) -> Step:
    """Emit a task node that succeeds after ``failed_attempts`` failed attempts."""
    logs: list = []
    cached = writer.rng.random() < 0.25
    yield from _start_task_node(writer, node, failed_attempts, logs, cached=cached)
    _finish_attempt(writer, node, failed_attempts, _SUCCEEDED, logs)
    yield

    if cached:
        metadata = event_pb2.TaskNodeMetadata(
            cache_status=catalog_pb2.CACHE_POPULATED, catalog_key=_catalog_key(writer, node)
        )
        writer.node_event(node, NodePhase.SUCCEEDED, output=True, task_node_metadata=metadata)
    else:
        writer.node_event(node, NodePhase.SUCCEEDED, output=True)
    yield


def _cache_hit_node(writer: _ExecutionWriter, node: _Node) -> Step:
    """Emit a node served from the cache: one SUCCEEDED event and no task events."""
    metadata = event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_HIT, catalog_key=_catalog_key(writer, node))
    writer.node_event(
        node, NodePhase.SUCCEEDED, first=True, output=True, task_node_metadata=metadata, target_entity=node.task_id
    )
    yield


def _dynamic_node(writer: _ExecutionWriter, node: _Node) -> Step:
    """Emit a dynamic node, whose task yields a workflow whose child nodes run in parallel."""
    rng = writer.rng
    writer.node_event(node, NodePhase.QUEUED, first=True, target_entity=node.task_id)
    yield
    writer.node_event(node, NodePhase.RUNNING)
    yield

    logs: list = []
    yield from _start_attempt(writer, node, 0, logs)
    _finish_attempt(writer, node, 0, _SUCCEEDED, logs)
    yield

    dynamic_workflow = event_pb2.DynamicWorkflowNodeMetadata(
        id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.WORKFLOW,
            project=node.task_id.project,
            domain=node.task_id.domain,
            name=f"{node.task_id.name}_dynamic",
            version=_TASK_VERSION,
        ),
        dynamic_job_spec_uri=f"{writer.prefix}/{node.node_id}/data/0/futures.pb",
    )
    writer.node_event(
        node,
        NodePhase.DYNAMIC_RUNNING,
        task_node_metadata=event_pb2.TaskNodeMetadata(dynamic_workflow=dynamic_workflow),
        is_parent=True,
        is_dynamic=True,
    )
    yield

    children = []
    for index in range(rng.randint(2, 5)):
        child = writer.child_node(f"{node.node_id}-0-dn{index}", f"dn{index}", parent_node_id=node.node_id)
        children.append(_task_node(writer, child, failed_attempts=1 if rng.random() < 0.15 else 0))
    yield from _interleave(rng, children)

    writer.node_event(node, NodePhase.SUCCEEDED, output=True)
    yield


def _subtask(
    writer: _ExecutionWriter, node: _Node, index: int, retry_attempt: int, phase: int
) -> event_pb2.ExternalResourceInfo:
    subtask = event_pb2.ExternalResourceInfo(
        external_id=f"{writer.execution_id.name}-{node.node_id}-0-{index}-{retry_attempt}",
        index=index,
        retry_attempt=retry_attempt,
        phase=phase,
    )
    if phase != TaskPhase.QUEUED:
        subtask.logs.append(writer.log(node, 0, f"Kubernetes Logs #{index}-{retry_attempt}"))
    return subtask


def _map_node(writer: _ExecutionWriter, node: _Node) -> Step:
    """Emit a map task: one task attempt whose RUNNING updates report subtask progress.

    Each report lists every subtask's current attempt. A subtask that fails is
    reported once as RETRYABLE_FAILED and then as its next retry_attempt.
    """
    rng = writer.rng
    writer.node_event(node, NodePhase.QUEUED, first=True, is_array=True, target_entity=node.task_id)
    yield
    writer.node_event(node, NodePhase.RUNNING, is_array=True)
    yield

    map_task = {"plugin_identifier": "k8s-array", "task_type": "container_array"}
    writer.task_event(node, 0, TaskPhase.QUEUED, 0, reason="task submitted to K8s", **map_task)
    yield

    size = rng.randint(3, 6)
    # Current (retry_attempt, phase) of each subtask.
    subtasks = [(0, TaskPhase.QUEUED if rng.random() < 0.5 else TaskPhase.RUNNING) for _ in range(size)]
    version = 0
    report = [_subtask(writer, node, index, *subtasks[index]) for index in range(size)]
    writer.task_event(node, 0, TaskPhase.RUNNING, version, external_resources=report, **map_task)
    yield

    while any(phase != _SUCCEEDED for _, phase in subtasks) and version < 6:
        version += 1
        report = []
        for index, (retry_attempt, phase) in enumerate(subtasks):
            if phase == TaskPhase.QUEUED and rng.random() < 0.7:
                phase = TaskPhase.RUNNING
            elif phase == TaskPhase.RUNNING and rng.random() < 0.5:
                if retry_attempt == 0 and rng.random() < 0.15:
                    report.append(_subtask(writer, node, index, retry_attempt, _RETRYABLE))
                    retry_attempt, phase = 1, TaskPhase.QUEUED
                else:
                    phase = _SUCCEEDED
            subtasks[index] = (retry_attempt, phase)
            report.append(_subtask(writer, node, index, retry_attempt, phase))
        writer.task_event(node, 0, TaskPhase.RUNNING, version, external_resources=report, **map_task)
        yield

    report = [
        _subtask(writer, node, index, retry_attempt, _SUCCEEDED) for index, (retry_attempt, _) in enumerate(subtasks)
    ]
    writer.task_event(node, 0, _SUCCEEDED, output=True, external_resources=report, **map_task)
    yield
    writer.node_event(node, NodePhase.SUCCEEDED, output=True, is_array=True)
    yield


def _launch_plan_node(writer: _ExecutionWriter, node: _Node) -> Step:
    """Emit a node that launches another execution, whose own events are not generated."""
    execution_id = writer.execution_id
    launch_plan = identifier_pb2.Identifier(
        resource_type=identifier_pb2.LAUNCH_PLAN,
        project=execution_id.project,
        domain=execution_id.domain,
        name=f"{node.task_id.name}_lp",
        version=_TASK_VERSION,
    )
    writer.node_event(node, NodePhase.QUEUED, first=True, target_entity=launch_plan)
    yield
    child = identifier_pb2.WorkflowExecutionIdentifier(
        project=execution_id.project, domain=execution_id.domain, name=writer.random_name()
    )
    writer.node_event(
        node, NodePhase.RUNNING, workflow_node_metadata=event_pb2.WorkflowNodeMetadata(execution_id=child)
    )
    yield
    writer.node_event(node, NodePhase.SUCCEEDED, output=True)
    yield


def _node_shape(writer: _ExecutionWriter, node: _Node) -> Step:
    """Pick a successful node shape by _NODE_SHAPE_WEIGHTS."""
    shape = writer.rng.choices(list(_NODE_SHAPE_WEIGHTS), weights=list(_NODE_SHAPE_WEIGHTS.values()))[0]
    if shape == "task":
        return _task_node(writer, node)
    if shape == "retry":
        return _task_node(writer, node, failed_attempts=writer.rng.randint(1, 2))
    if shape == "cache-hit":
        return _cache_hit_node(writer, node)
    if shape == "dynamic":
        return _dynamic_node(writer, node)
    if shape == "map":
        return _map_node(writer, node)
    return _launch_plan_node(writer, node)


def _abort_task_node(writer: _ExecutionWriter, node: _Node, attempt: int, logs: list, reason: str) -> None:
    writer.task_event(
        node,
        attempt,
        TaskPhase.ABORTED,
        logs=logs,
        error=execution_pb2.ExecutionError(code="Task Aborted", message=reason),
    )
    writer.node_event(node, NodePhase.ABORTED, error=execution_pb2.ExecutionError(code="NodeAborted", message=reason))


def _write_execution(writer: _ExecutionWriter, node_count: int, ending: int, moved_cluster: bool) -> None:
    """Emit a whole execution that ends in the terminal workflow phase ``ending``."""
    rng = writer.rng
    writer.workflow_event(WorkflowPhase.QUEUED)
    if moved_cluster:
        writer.producer_id = MOVED_PRODUCER_ID
        writer.workflow_event(WorkflowPhase.QUEUED)
    writer.workflow_event(WorkflowPhase.RUNNING)
    writer.node_event(writer.node("start-node"), NodePhase.SUCCEEDED)

    # A failing or aborted execution stops at one node of its sequence.
    stop_at = rng.randrange(node_count) if ending != WorkflowPhase.SUCCEEDED else node_count
    index = 0
    while index < stop_at:
        # Now and then two neighbouring nodes run in parallel.
        if index + 1 < stop_at and rng.random() < 0.25:
            branches = [
                _node_shape(writer, writer.node(f"n{index}")),
                _node_shape(writer, writer.node(f"n{index + 1}")),
            ]
            _drain(_interleave(rng, branches))
            index += 2
        else:
            _drain(_node_shape(writer, writer.node(f"n{index}")))
            index += 1

    if ending == WorkflowPhase.FAILED:
        _write_failure(writer, writer.node(f"n{stop_at}"), writer.node(f"n{stop_at + 1}"))
    elif ending == WorkflowPhase.ABORTED:
        node = writer.node(f"n{stop_at}")
        logs: list = []
        _drain(_start_task_node(writer, node, 0, logs))
        writer.workflow_event(WorkflowPhase.ABORTING)
        _abort_task_node(writer, node, 0, logs, "execution aborted by user")
        writer.workflow_event(WorkflowPhase.ABORTED)
    else:
        writer.node_event(writer.node("end-node"), NodePhase.SUCCEEDED)
        if rng.random() < 0.3:
            writer.workflow_event(WorkflowPhase.SUCCEEDING)
        writer.workflow_event(WorkflowPhase.SUCCEEDED, output_uri=f"{writer.prefix}/end-node/data/0/outputs.pb")


def _write_failure(writer: _ExecutionWriter, failing: _Node, sibling: _Node) -> None:
    """Emit a node whose every attempt fails while ``sibling`` runs, then fail the workflow and abort the sibling."""
    rng = writer.rng
    failed_attempts = rng.randint(0, 2)
    failing_logs: list = []
    sibling_logs: list = []
    _drain(
        _interleave(
            rng,
            [
                _start_task_node(writer, failing, failed_attempts, failing_logs),
                _start_task_node(writer, sibling, 0, sibling_logs),
            ],
        )
    )
    _finish_attempt(writer, failing, failed_attempts, _FAILED, failing_logs)
    error = _error(_FATAL_ERROR)
    writer.node_event(failing, NodePhase.FAILED, error=error)
    writer.workflow_event(WorkflowPhase.FAILING, error=error)
    _abort_task_node(writer, sibling, 0, sibling_logs, "workflow failing")
    writer.workflow_event(WorkflowPhase.FAILED, error=error)


def _epoch_seconds(start: datetime) -> int:
    if start.tzinfo is None:
        raise ValueError(f"start {start.isoformat()} has no time zone: pass an aware datetime such as one in UTC")
    return int(start.timestamp())


def generate_executions(
    count: int,
    seed: int,
    *,
    start: datetime = DEFAULT_START,
    cluster_moves: bool = False,
    project: str = "flytesnacks",
    domain: str = "development",
    min_nodes: int = 2,
    max_nodes: int = 6,
    failure_rate: float = 0.15,
    abort_rate: float = 0.05,
) -> list[SyntheticExecution]:
    """Generate ``count`` executions. Equal arguments give equal events.

    Execution ``i`` depends only on ``seed``, ``i`` and the options, so a
    larger ``count`` extends the list without changing its first executions.
    Executions start 0-3 s apart from ``start`` on, so they overlap in time.
    Each has ``min_nodes`` to ``max_nodes`` top-level nodes between start-node
    and end-node. A share ``failure_rate`` fails: FAILING, then FAILED with the
    error, and a node running in parallel ABORTED. A share ``abort_rate`` is
    aborted by the user: ABORTING, then ABORTED. With ``cluster_moves`` a
    share CLUSTER_MOVE_RATE of the executions moves to MOVED_PRODUCER_ID after
    its first QUEUED event.

    Raises ValueError for a negative count, rates outside [0, 1] or summing
    above 1, node bounds below 1 or in the wrong order, and a naive ``start``.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if not (0 <= failure_rate <= 1 and 0 <= abort_rate <= 1 and failure_rate + abort_rate <= 1):
        raise ValueError(
            f"failure_rate {failure_rate} and abort_rate {abort_rate} must lie in [0, 1] and sum to at most 1"
        )
    if not 1 <= min_nodes <= max_nodes:
        raise ValueError(f"expected 1 <= min_nodes <= max_nodes, got min_nodes={min_nodes}, max_nodes={max_nodes}")

    offsets = random.Random(f"synthetic-offsets:{seed}")
    start_seconds = _epoch_seconds(start)
    names: set[str] = set()
    executions = []
    for index in range(count):
        rng = random.Random(f"synthetic:{seed}:{index}")
        name = "a" + "".join(rng.choices(_NAME_ALPHABET, k=19))
        while name in names:
            name = "a" + "".join(rng.choices(_NAME_ALPHABET, k=19))
        names.add(name)
        execution_id = identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)

        draw = rng.random()
        if draw < failure_rate:
            ending = WorkflowPhase.FAILED
        elif draw < failure_rate + abort_rate:
            ending = WorkflowPhase.ABORTED
        else:
            ending = WorkflowPhase.SUCCEEDED
        moved_cluster = cluster_moves and rng.random() < CLUSTER_MOVE_RATE

        writer = _ExecutionWriter(rng, execution_id, start_seconds)
        _write_execution(writer, rng.randint(min_nodes, max_nodes), ending, moved_cluster)
        executions.append(
            SyntheticExecution(
                execution_id=execution_id,
                key=writer.events[0].execution_key,
                final_phase=ending,
                moved_cluster=moved_cluster,
                events=writer.events,
            )
        )
        start_seconds += offsets.randint(0, 3)
    return executions


def _occurred_at_key(event: ExecutionEvent) -> tuple[int, int]:
    occurred_at = event.message.occurred_at
    return (occurred_at.seconds, occurred_at.nanos)


def flatten(executions: Iterable[SyntheticExecution]) -> list[ExecutionEvent]:
    """Merge the executions' events into one list ordered by occurred_at, as one topic would receive them.

    Each execution keeps its own order. Events with equal occurred_at from
    different executions come in the order of the executions.
    """
    streams = [execution.events for execution in executions]
    return list(heapq.merge(*streams, key=_occurred_at_key))


def to_stream_lines(events: Iterable[ExecutionEvent]) -> str:
    """Return the events as stream file text: one ``{"kind": ..., "event": ...}`` JSON object per line.

    The event is protobuf JSON (json_format.MessageToDict, camelCase names),
    which processor.streamfile.parse_line reads back.
    """
    lines = []
    for event in events:
        document = {"kind": event.kind.value, "event": json_format.MessageToDict(event.message)}
        lines.append(json.dumps(document, separators=(",", ":")))
        lines.append("\n")
    return "".join(lines)


__all__: list[str] = [
    "DEFAULT_START",
    "MOVED_PRODUCER_ID",
    "PRODUCER_ID",
    "SyntheticExecution",
    "flatten",
    "generate_executions",
    "to_stream_lines",
]


def generate_running_tasks(
    executions: int,
    tasks_per_execution: int,
    seed: int,
    *,
    start: datetime = DEFAULT_START,
    project: str = "flytesnacks",
    domain: str = "development",
) -> Iterator[ExecutionEvent]:
    """Yield one RUNNING task event, with one log link, for each of ``tasks_per_execution`` nodes of each execution.

    Each event creates a task execution record, so the events build a task
    table of executions x tasks_per_execution keys with few events. It is the
    load of the benchmark's recovery measurement. Executions come one after
    another.
    """
    start_seconds = _epoch_seconds(start)
    for index in range(executions):
        rng = random.Random(f"synthetic-tasks:{seed}:{index}")
        name = f"t{index:09d}" + "".join(rng.choices(_NAME_ALPHABET, k=10))
        execution_id = identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)
        writer = _ExecutionWriter(rng, execution_id, start_seconds)
        for task in range(tasks_per_execution):
            node = writer.node(f"n{task}")
            writer.task_event(node, 0, TaskPhase.RUNNING, logs=[writer.log(node, 0, "Kubernetes Logs")])
        yield from writer.events
