"""Phase sets and orders of the three entity kinds, from flyteidl.core.execution."""

from __future__ import annotations

from flyteidl.core import execution_pb2

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution

WORKFLOW_TERMINAL = frozenset(
    {WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.TIMED_OUT, WorkflowPhase.ABORTED}
)

NODE_TERMINAL = frozenset(
    {
        NodePhase.SUCCEEDED,
        NodePhase.FAILED,
        NodePhase.TIMED_OUT,
        NodePhase.ABORTED,
        NodePhase.SKIPPED,
        NodePhase.RECOVERED,
    }
)

TASK_TERMINAL = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.ABORTED})

# Progress rank of each phase, used to order events that occurred at the same
# instant: a later stage of the life cycle wins a tie. Terminal phases rank
# highest, so a tie between a terminal and a running event keeps the terminal.
WORKFLOW_RANK = {
    WorkflowPhase.UNDEFINED: 0,
    WorkflowPhase.QUEUED: 1,
    WorkflowPhase.RUNNING: 2,
    WorkflowPhase.SUCCEEDING: 3,
    WorkflowPhase.FAILING: 3,
    WorkflowPhase.ABORTING: 4,
    WorkflowPhase.SUCCEEDED: 5,
    WorkflowPhase.FAILED: 5,
    WorkflowPhase.TIMED_OUT: 5,
    WorkflowPhase.ABORTED: 5,
}

NODE_RANK = {
    NodePhase.UNDEFINED: 0,
    NodePhase.QUEUED: 1,
    NodePhase.RUNNING: 2,
    NodePhase.DYNAMIC_RUNNING: 3,
    NodePhase.SUCCEEDED: 5,
    NodePhase.FAILING: 4,
    NodePhase.FAILED: 5,
    NodePhase.ABORTED: 5,
    NodePhase.SKIPPED: 5,
    NodePhase.TIMED_OUT: 5,
    NodePhase.RECOVERED: 5,
}

TASK_RANK = {
    TaskPhase.UNDEFINED: 0,
    TaskPhase.QUEUED: 1,
    TaskPhase.WAITING_FOR_RESOURCES: 1,
    TaskPhase.INITIALIZING: 2,
    TaskPhase.RUNNING: 3,
    TaskPhase.RETRYABLE_FAILED: 4,
    TaskPhase.SUCCEEDED: 5,
    TaskPhase.FAILED: 5,
    TaskPhase.ABORTED: 5,
}


def workflow_phase_name(phase: int) -> str:
    return WorkflowPhase.Phase.Name(phase) if phase in WORKFLOW_RANK else str(phase)


def node_phase_name(phase: int) -> str:
    return NodePhase.Phase.Name(phase) if phase in NODE_RANK else str(phase)


def task_phase_name(phase: int) -> str:
    return TaskPhase.Phase.Name(phase) if phase in TASK_RANK else str(phase)
