"""Transitions of a node execution record, one function per step.

The record is ``NodeExecutionState``; ``node_execution`` follows FlyteAdmin's
``NodeExecution`` (closure and metadata), and the state adds the parent link,
node name, target entity and dynamic workflow id that FlyteAdmin keeps
elsewhere or drops.
"""

from __future__ import annotations

from flyteidl.event import event_pb2

from processor.fold import timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import NODE_RANK, NODE_TERMINAL, NodePhase, node_phase_name
from processor.messages import NodeExecutionState

NodeTransition = Transition[NodeExecutionState]


def fold_node_event(state: NodeExecutionState | None, event: event_pb2.NodeExecutionEvent) -> NodeTransition:
    """Fold one NodeExecutionEvent into the record of its node execution."""
    if not event.HasField("occurred_at"):
        return Transition(state, Outcome.INVALID, False, "event has no occurred_at")

    if event.phase not in NODE_RANK:
        return Transition(state, Outcome.INVALID, False, f"unknown node phase {event.phase}")

    if state is None:
        return Transition(create_from_event(event), Outcome.APPLIED, True)

    stored_phase = state.node_execution.closure.phase

    if event.phase == stored_phase:
        return Transition(state, Outcome.DUPLICATE, False)

    if is_older_than_state(state, event):
        return fill_from_older_event(state, event)

    if stored_phase in NODE_TERMINAL:
        return Transition(state, Outcome.ALREADY_TERMINAL, False, f"node is {node_phase_name(stored_phase)}")

    new_state = NodeExecutionState()
    new_state.CopyFrom(state)
    apply_phase(new_state, event)
    return Transition(new_state, Outcome.APPLIED, True)


def create_from_event(event: event_pb2.NodeExecutionEvent) -> NodeExecutionState:
    """Create the record from the first event seen, whatever its phase.

    Cache hits, skipped nodes and the start node often send a single terminal
    event, so a terminal phase creates the record too.
    """
    state = NodeExecutionState()
    state.node_execution.id.CopyFrom(event.id)
    state.node_execution.closure.created_at.CopyFrom(event.occurred_at)
    apply_phase(state, event)
    return state


def is_older_than_state(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent) -> bool:
    if not state.HasField("last_event_occurred_at"):
        return False
    event_key = (timestamps.sort_key(event.occurred_at), NODE_RANK[event.phase])
    stored_key = (timestamps.sort_key(state.last_event_occurred_at), NODE_RANK[state.node_execution.closure.phase])
    return event_key < stored_key


def fill_from_older_event(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent) -> NodeTransition:
    """Keep the newer phase; take the start and the descriptive fields the record still lacks."""
    new_state = NodeExecutionState()
    new_state.CopyFrom(state)
    closure = new_state.node_execution.closure

    if event.phase == NodePhase.RUNNING and not closure.HasField("started_at"):
        closure.started_at.CopyFrom(event.occurred_at)
        if closure.phase in NODE_TERMINAL:
            closure.duration.CopyFrom(timestamps.duration_between(event.occurred_at, closure.updated_at))

    apply_descriptive_fields(new_state, event)
    changed = new_state != state
    return Transition(new_state if changed else state, Outcome.STALE, changed, "event is older than the stored phase")


def apply_phase(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent) -> None:
    """Move the record to the event's phase, in place; the caller owns ``state``."""
    closure = state.node_execution.closure
    closure.phase = event.phase
    closure.updated_at.CopyFrom(event.occurred_at)
    state.last_event_occurred_at.CopyFrom(timestamps.latest(state.last_event_occurred_at, event.occurred_at))

    # Every RUNNING event restarts the clock, as FlyteAdmin does; DYNAMIC_RUNNING
    # is a later stage of the same run and leaves it alone.
    if event.phase == NodePhase.RUNNING:
        closure.started_at.CopyFrom(event.occurred_at)

    if event.phase in NODE_TERMINAL:
        if closure.HasField("started_at"):
            closure.duration.CopyFrom(timestamps.duration_between(closure.started_at, event.occurred_at))
        apply_result(state, event)

    apply_descriptive_fields(state, event)


def apply_result(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent) -> None:
    closure = state.node_execution.closure
    if event.output_uri:
        closure.output_uri = event.output_uri
    elif event.HasField("output_data"):
        closure.output_data.CopyFrom(event.output_data)
    elif event.HasField("error"):
        closure.error.CopyFrom(event.error)


def apply_descriptive_fields(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent) -> None:
    """Merge the fields that describe the node rather than its progress, in place."""
    node_execution = state.node_execution
    closure = node_execution.closure
    metadata = node_execution.metadata

    if event.producer_id:
        state.producer_id = event.producer_id

    # The input is written once: the first event that carries it wins.
    if event.input_uri and not node_execution.input_uri:
        node_execution.input_uri = event.input_uri

    if event.deck_uri:
        closure.deck_uri = event.deck_uri

    if event.retry_group and not metadata.retry_group:
        metadata.retry_group = event.retry_group
    if event.spec_node_id and not metadata.spec_node_id:
        metadata.spec_node_id = event.spec_node_id

    # Flags only ever turn on: the executor sets them on some events only.
    metadata.is_parent_node = metadata.is_parent_node or event.is_parent
    metadata.is_dynamic = metadata.is_dynamic or event.is_dynamic
    metadata.is_array = metadata.is_array or event.is_array
    metadata.is_eager = metadata.is_eager or event.is_eager
    state.is_in_dynamic_chain = state.is_in_dynamic_chain or event.is_in_dynamic_chain

    if event.HasField("parent_node_metadata") and event.parent_node_metadata.node_id:
        state.parent_node_id = event.parent_node_metadata.node_id
    if event.node_name and not state.node_name:
        state.node_name = event.node_name
    if event.HasField("target_entity") and not state.HasField("target_entity"):
        state.target_entity.CopyFrom(event.target_entity)

    if event.HasField("workflow_node_metadata") and not closure.HasField("workflow_node_metadata"):
        closure.workflow_node_metadata.executionId.CopyFrom(event.workflow_node_metadata.execution_id)

    if event.HasField("task_node_metadata"):
        apply_task_node_metadata(state, event.task_node_metadata)


def apply_task_node_metadata(state: NodeExecutionState, task_node: event_pb2.TaskNodeMetadata) -> None:
    """Replace the stored target metadata with the event's.

    Cache status and catalog key are recorded only when the event carries a
    catalog key, as FlyteAdmin does; the dynamic workflow id and the dynamic job
    spec URI are kept from whichever event reported them.
    """
    closure = state.node_execution.closure
    target = closure.task_node_metadata
    previous_cache_status = target.cache_status
    previous_catalog_key = type(target.catalog_key)()
    previous_catalog_key.CopyFrom(target.catalog_key)
    had_catalog_key = target.HasField("catalog_key")

    target.Clear()
    target.checkpoint_uri = task_node.checkpoint_uri
    if task_node.HasField("catalog_key"):
        target.cache_status = task_node.cache_status
        target.catalog_key.CopyFrom(task_node.catalog_key)
        state.reservation_status = task_node.reservation_status
    elif had_catalog_key:
        target.cache_status = previous_cache_status
        target.catalog_key.CopyFrom(previous_catalog_key)

    if task_node.HasField("dynamic_workflow"):
        dynamic = task_node.dynamic_workflow
        if dynamic.HasField("id"):
            state.dynamic_workflow_id.CopyFrom(dynamic.id)
        if dynamic.dynamic_job_spec_uri:
            closure.dynamic_job_spec_uri = dynamic.dynamic_job_spec_uri
