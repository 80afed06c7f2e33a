"""Transitions of a task execution attempt record, one function per step.

The record is ``TaskExecutionState``; ``task_execution`` follows FlyteAdmin's
``TaskExecution``, and the state adds the phase_version that FlyteAdmin keeps
in a database column outside that shape.
"""

from __future__ import annotations

from flyteidl.event import event_pb2

from processor.fold import merge, timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import TASK_RANK, TASK_TERMINAL, TaskPhase, task_phase_name
from processor.messages import TaskExecutionState

TaskTransition = Transition[TaskExecutionState]


def fold_task_event(state: TaskExecutionState | None, event: event_pb2.TaskExecutionEvent) -> TaskTransition:
    """Fold one TaskExecutionEvent into the record of its attempt."""
    if not event.HasField("occurred_at"):
        return Transition(state, Outcome.INVALID, False, "event has no occurred_at")

    if event.phase not in TASK_RANK:
        return Transition(state, Outcome.INVALID, False, f"unknown task phase {event.phase}")

    if state is None:
        return Transition(create_from_event(event), Outcome.APPLIED, True)

    stored_phase = state.task_execution.closure.phase

    # Within a phase the executor numbers its updates with phase_version; a
    # version not above the stored one brings nothing new.
    if event.phase == stored_phase and event.phase_version <= state.phase_version:
        return Transition(state, Outcome.DUPLICATE, False)

    if is_older_than_state(state, event):
        return fill_from_older_event(state, event)

    if stored_phase in TASK_TERMINAL:
        return Transition(state, Outcome.ALREADY_TERMINAL, False, f"attempt is {task_phase_name(stored_phase)}")

    new_state = TaskExecutionState()
    new_state.CopyFrom(state)
    apply_phase(new_state, event)
    return Transition(new_state, Outcome.APPLIED, True)


def create_from_event(event: event_pb2.TaskExecutionEvent) -> TaskExecutionState:
    state = TaskExecutionState()
    task_id = state.task_execution.id
    task_id.task_id.CopyFrom(event.task_id)
    task_id.node_execution_id.CopyFrom(event.parent_node_execution_id)
    task_id.retry_attempt = event.retry_attempt
    state.task_execution.closure.created_at.CopyFrom(event.occurred_at)
    apply_phase(state, event)
    return state


def is_older_than_state(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> bool:
    """Order by occurred_at, then phase rank, then phase_version."""
    if not state.HasField("last_event_occurred_at"):
        return False
    event_key = (timestamps.sort_key(event.occurred_at), TASK_RANK[event.phase], event.phase_version)
    stored_key = (
        timestamps.sort_key(state.last_event_occurred_at),
        TASK_RANK[state.task_execution.closure.phase],
        state.phase_version,
    )
    return event_key < stored_key


def fill_from_older_event(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> TaskTransition:
    """Keep the newer phase; take a missing start, the input and metadata from the older event."""
    new_state = TaskExecutionState()
    new_state.CopyFrom(state)
    task_execution = new_state.task_execution
    closure = task_execution.closure

    if event.phase == TaskPhase.RUNNING and not closure.HasField("started_at"):
        closure.started_at.CopyFrom(event.occurred_at)
        if closure.phase in TASK_TERMINAL:
            closure.duration.CopyFrom(timestamps.duration_between(event.occurred_at, closure.updated_at))

    if event.input_uri and not task_execution.input_uri:
        task_execution.input_uri = event.input_uri
    if event.task_type and not closure.task_type:
        closure.task_type = event.task_type

    changed = new_state != state
    return Transition(new_state if changed else state, Outcome.STALE, changed, "event is older than the stored phase")


def apply_phase(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    """Move the record to the event's phase and version, in place; the caller owns ``state``."""
    task_execution = state.task_execution
    closure = task_execution.closure

    closure.phase = event.phase
    # A phase change takes the event's version too. FlyteAdmin keeps the old
    # one (its ORM skips zero values), which turns later updates of the new
    # phase into duplicates; this fold does not copy that.
    state.phase_version = event.phase_version
    closure.updated_at.CopyFrom(event.occurred_at)
    state.last_event_occurred_at.CopyFrom(timestamps.latest(state.last_event_occurred_at, event.occurred_at))

    if event.producer_id:
        state.producer_id = event.producer_id
    if event.input_uri and not task_execution.input_uri:
        task_execution.input_uri = event.input_uri
    if event.task_type:
        closure.task_type = event.task_type
    closure.event_version = max(closure.event_version, event.event_version)

    if event.phase == TaskPhase.RUNNING and not closure.HasField("started_at"):
        closure.started_at.CopyFrom(event.occurred_at)
    if event.phase in TASK_TERMINAL and closure.HasField("started_at"):
        closure.duration.CopyFrom(timestamps.duration_between(closure.started_at, event.occurred_at))

    apply_result(state, event)
    apply_logs(state, event)
    apply_reasons(state, event)
    apply_metadata(state, event)

    if event.HasField("custom_info"):
        closure.custom_info.CopyFrom(merge.merge_custom_info(closure.custom_info, event.custom_info))
    if event.HasField("log_context"):
        closure.log_context.CopyFrom(event.log_context)


def apply_result(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    closure = state.task_execution.closure
    if event.output_uri:
        closure.output_uri = event.output_uri
    elif event.HasField("output_data"):
        closure.output_data.CopyFrom(event.output_data)
    elif event.HasField("error"):
        closure.error.CopyFrom(event.error)


def apply_logs(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    closure = state.task_execution.closure
    merged = merge.merge_logs(closure.logs, event.logs)
    visible = merge.filter_logs_for_phase(merged, closure.phase)
    del closure.logs[:]
    closure.logs.extend(visible)


def apply_reasons(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    """Append the event's reasons; the legacy single reason only when it differs from the current one."""
    closure = state.task_execution.closure
    for reason in event.reasons:
        entry = closure.reasons.add(message=reason.reason)
        entry.occurred_at.CopyFrom(reason.occurred_at if reason.HasField("occurred_at") else event.occurred_at)

    if not event.reasons and event.reason and event.reason != closure.reason:
        entry = closure.reasons.add(message=event.reason)
        entry.occurred_at.CopyFrom(event.occurred_at)

    if closure.reasons:
        closure.reason = closure.reasons[-1].message


def apply_metadata(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    if not event.HasField("metadata"):
        return

    stored = state.task_execution.closure.metadata
    latest = event.metadata
    if latest.generated_name:
        stored.generated_name = latest.generated_name
    if latest.plugin_identifier:
        stored.plugin_identifier = latest.plugin_identifier
    if latest.instance_class:
        stored.instance_class = latest.instance_class
    if latest.resource_pool_info:
        del stored.resource_pool_info[:]
        stored.resource_pool_info.extend(latest.resource_pool_info)

    merged = merge.merge_external_resources(stored.external_resources, latest.external_resources)
    del stored.external_resources[:]
    stored.external_resources.extend(merged)
