"""Transitions of a workflow execution record, one function per step.

The record is ``WorkflowExecutionState``; its ``execution.closure`` follows
FlyteAdmin's ``ExecutionClosure``: phase, started_at, duration, created_at,
updated_at and the result (outputs, output_data or error).
"""

from __future__ import annotations

from flyteidl.core import identifier_pb2
from flyteidl.event import event_pb2

from processor.fold import timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import WORKFLOW_RANK, WORKFLOW_TERMINAL, WorkflowPhase, workflow_phase_name
from processor.messages import WorkflowExecutionState

WorkflowTransition = Transition[WorkflowExecutionState]


def fold_workflow_event(
    state: WorkflowExecutionState | None, event: event_pb2.WorkflowExecutionEvent
) -> WorkflowTransition:
    """Fold one WorkflowExecutionEvent into the record of its execution."""
    if not event.HasField("occurred_at"):
        return Transition(state, Outcome.INVALID, False, "event has no occurred_at")

    if event.phase not in WORKFLOW_RANK:
        return Transition(state, Outcome.INVALID, False, f"unknown workflow phase {event.phase}")

    if state is None or state.inferred:
        return Transition(create_from_event(state, event), Outcome.APPLIED, True)

    closure = state.execution.closure
    stored_phase = closure.phase

    if event.phase == stored_phase and event.phase != WorkflowPhase.QUEUED:
        return Transition(state, Outcome.DUPLICATE, False)

    if is_older_than_state(state, event):
        return fill_from_older_event(state, event)

    if stored_phase in WORKFLOW_TERMINAL:
        return Transition(state, Outcome.ALREADY_TERMINAL, False, f"execution is {workflow_phase_name(stored_phase)}")

    if stored_phase == WorkflowPhase.RUNNING and event.phase == WorkflowPhase.QUEUED:
        return Transition(state, Outcome.INVALID, False, "cannot go from RUNNING back to QUEUED")

    if stored_phase == WorkflowPhase.ABORTING and event.phase not in WORKFLOW_TERMINAL:
        return Transition(
            state, Outcome.INVALID, False, f"cannot go from ABORTING to {workflow_phase_name(event.phase)}"
        )

    new_state = WorkflowExecutionState()
    new_state.CopyFrom(state)
    apply_phase(new_state, event)
    return Transition(new_state, Outcome.APPLIED, True)


def create_from_event(
    inferred_state: WorkflowExecutionState | None, event: event_pb2.WorkflowExecutionEvent
) -> WorkflowExecutionState:
    """Create the record from the first workflow event of the execution.

    A record inferred from node or task events keeps its created_at when that
    is earlier, so created_at stays the first time anything was seen.
    """
    new_state = WorkflowExecutionState()
    if inferred_state is not None:
        new_state.CopyFrom(inferred_state)
    new_state.inferred = False

    execution = new_state.execution
    execution.id.CopyFrom(event.execution_id)

    closure = execution.closure
    if not closure.HasField("created_at") or timestamps.is_before(event.occurred_at, closure.created_at):
        closure.created_at.CopyFrom(event.occurred_at)

    apply_phase(new_state, event)
    return new_state


def create_inferred(execution_id: identifier_pb2.WorkflowExecutionIdentifier, occurred_at) -> WorkflowExecutionState:
    """Create a placeholder record for an execution known only from its node or task events."""
    state = WorkflowExecutionState(inferred=True)
    state.execution.id.CopyFrom(execution_id)
    state.execution.closure.created_at.CopyFrom(occurred_at)
    state.execution.closure.updated_at.CopyFrom(occurred_at)
    state.last_event_occurred_at.CopyFrom(occurred_at)
    return state


def is_older_than_state(state: WorkflowExecutionState, event: event_pb2.WorkflowExecutionEvent) -> bool:
    """Tell whether the event comes before the record's newest event in the life cycle.

    Events are ordered by occurred_at; a tie is broken by phase rank.
    """
    if not state.HasField("last_event_occurred_at"):
        return False
    event_key = (timestamps.sort_key(event.occurred_at), WORKFLOW_RANK[event.phase])
    state_key = (timestamps.sort_key(state.last_event_occurred_at), WORKFLOW_RANK[state.execution.closure.phase])
    return event_key < state_key


def fill_from_older_event(state: WorkflowExecutionState, event: event_pb2.WorkflowExecutionEvent) -> WorkflowTransition:
    """Keep the newer phase but take what only the older event carries: a missing start."""
    closure = state.execution.closure
    if event.phase != WorkflowPhase.RUNNING or closure.HasField("started_at"):
        return Transition(state, Outcome.STALE, False, "event is older than the stored phase")

    new_state = WorkflowExecutionState()
    new_state.CopyFrom(state)
    new_closure = new_state.execution.closure
    new_closure.started_at.CopyFrom(event.occurred_at)
    if new_closure.phase in WORKFLOW_TERMINAL:
        new_closure.duration.CopyFrom(timestamps.duration_between(event.occurred_at, new_closure.updated_at))
    return Transition(new_state, Outcome.STALE, True, "older event filled started_at")


def apply_phase(state: WorkflowExecutionState, event: event_pb2.WorkflowExecutionEvent) -> None:
    """Move the record to the event's phase, in place; the caller owns ``state``."""
    closure = state.execution.closure
    closure.phase = event.phase
    closure.updated_at.CopyFrom(event.occurred_at)
    state.last_event_occurred_at.CopyFrom(timestamps.latest(state.last_event_occurred_at, event.occurred_at))

    if event.producer_id:
        state.producer_id = event.producer_id

    if event.phase == WorkflowPhase.RUNNING:
        closure.started_at.CopyFrom(event.occurred_at)

    if event.phase in WORKFLOW_TERMINAL and closure.HasField("started_at"):
        closure.duration.CopyFrom(timestamps.duration_between(closure.started_at, event.occurred_at))

    apply_result(state, event)


def apply_result(state: WorkflowExecutionState, event: event_pb2.WorkflowExecutionEvent) -> None:
    """Copy the event's result: output_uri, else output_data, else error (kind and code kept)."""
    closure = state.execution.closure
    if event.output_uri:
        closure.outputs.uri = event.output_uri
    elif event.HasField("output_data"):
        closure.output_data.CopyFrom(event.output_data)
    elif event.HasField("error"):
        closure.error.CopyFrom(event.error)
