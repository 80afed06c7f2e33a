"""Transitions of a node execution record.

The record is ``NodeExecutionState``; ``node_execution`` follows FlyteAdmin's
``NodeExecution``. Phase, times and result are derived from the record's
ledger in occurred_at order with FlyteAdmin's rules:

- any phase creates the record, terminal phases included (cache hits, skipped
  nodes and the start node often send a single terminal event);
- terminal phases are SUCCEEDED, FAILED, TIMED_OUT, ABORTED, SKIPPED and
  RECOVERED; after the first of them nothing changes the phase;
- an event with the current phase is a duplicate;
- every RUNNING event sets started_at; DYNAMIC_RUNNING does not;
- the result comes only from the terminal event.

The descriptive fields (input, target metadata, flags, parent link, names)
merge from every accepted event: from the newest as it arrives, and from an
older one only where the record still lacks them.
"""

from __future__ import annotations

from flyteidl.event import event_pb2

from processor.fold import ledger
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import NODE_RANK, NODE_TERMINAL, NodePhase
from processor.fold.public import public_equal
from processor.fold.progress import Progress, write_progress
from processor.messages import NodeExecutionState

NodeTransition = Transition[NodeExecutionState]


def fold_node_event(state: NodeExecutionState | None, event: event_pb2.NodeExecutionEvent) -> NodeTransition:
    """Fold one NodeExecutionEvent into the record of its node execution."""
    rejection, event_fingerprint = ledger.screen_event(state, event, NODE_RANK, "node")
    if rejection is not None:
        return rejection

    new_state = NodeExecutionState()
    if state is not None:
        new_state.CopyFrom(state)
    else:
        new_state.node_execution.id.CopyFrom(event.id)

    new_state.seen_fingerprints.append(event_fingerprint)
    entries, appended = ledger.with_entry(
        new_state.ledger, ledger.entry_from_event(event, event_fingerprint), NODE_RANK.__getitem__
    )
    progress = derive_progress(entries)
    apply_progress(new_state, progress, appended=appended)

    outcome = progress.verdicts[event_fingerprint]
    if outcome is Outcome.APPLIED:
        is_newest = progress.newest_accepted.fingerprint == event_fingerprint
        apply_descriptive_fields(new_state, event, is_newest=is_newest)
        if not is_newest:
            outcome = Outcome.STALE
    return Transition(new_state, outcome, state is None or not public_equal(new_state, state))


def derive_progress(entries) -> Progress:
    """Walk the entries, in ledger order, and apply the node rules to each."""
    progress = Progress()
    for entry in entries:
        if progress.terminal_at is not None:
            progress.reject(entry, Outcome.ALREADY_TERMINAL)
            continue
        progress.kept.append(entry)

        if entry.phase == progress.phase:
            progress.reject(entry, Outcome.DUPLICATE)
            continue

        progress.accept(entry)
        if progress.created_at is None:
            progress.created_at = entry.occurred_at
        if entry.phase == NodePhase.RUNNING:
            progress.started_at = entry.occurred_at
        if entry.phase in NODE_TERMINAL:
            progress.terminal_at = entry.occurred_at
            if ledger.has_result(entry):
                progress.result = entry
    return progress


def apply_progress(state: NodeExecutionState, progress: Progress, *, appended: bool = False) -> None:
    write_progress(state.node_execution.closure, progress, uri_field="output_uri")
    ledger.store_kept(state.ledger, progress.kept, appended)
    if progress.updated_at is not None:
        state.last_event_occurred_at.CopyFrom(progress.updated_at)


def apply_descriptive_fields(state: NodeExecutionState, event: event_pb2.NodeExecutionEvent, *, is_newest: bool) -> None:
    """Merge the fields that describe the node rather than its progress, in place.

    The newest event overwrites what it carries; an older one fills only what
    is still missing, so a late event never replaces newer data.
    """
    node_execution = state.node_execution
    closure = node_execution.closure
    metadata = node_execution.metadata

    if event.producer_id and (is_newest or not state.producer_id):
        state.producer_id = event.producer_id

    # The input is written once: later events never replace it.
    if event.input_uri and not node_execution.input_uri:
        node_execution.input_uri = event.input_uri

    if event.deck_uri and (is_newest or not closure.deck_uri):
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

    if event.HasField("parent_node_metadata") and event.parent_node_metadata.node_id and not state.parent_node_id:
        state.parent_node_id = event.parent_node_metadata.node_id
    if event.node_name and not state.node_name:
        state.node_name = event.node_name
    if event.HasField("target_entity") and not state.HasField("target_entity"):
        state.target_entity.CopyFrom(event.target_entity)

    # A launch plan node links to its child execution the first time it is seen.
    if event.HasField("workflow_node_metadata") and not closure.HasField("workflow_node_metadata"):
        closure.workflow_node_metadata.executionId.CopyFrom(event.workflow_node_metadata.execution_id)

    if event.HasField("task_node_metadata"):
        apply_task_node_metadata(state, event.task_node_metadata, is_newest=is_newest)


def apply_task_node_metadata(state: NodeExecutionState, task_node: event_pb2.TaskNodeMetadata, *, is_newest: bool) -> None:
    """Take the event's target metadata.

    As in FlyteAdmin, the newest event's task_node_metadata replaces the stored
    one, and cache status and catalog key are recorded only when the event
    carries a catalog key. Unlike FlyteAdmin, a stored catalog key survives a
    later event without one, and the dynamic workflow id and dynamic job spec
    URI are kept from whichever event reported them.
    """
    closure = state.node_execution.closure
    target = closure.task_node_metadata

    if task_node.checkpoint_uri and (is_newest or not target.checkpoint_uri):
        target.checkpoint_uri = task_node.checkpoint_uri
    if task_node.HasField("catalog_key") and (is_newest or not target.HasField("catalog_key")):
        target.cache_status = task_node.cache_status
        target.catalog_key.CopyFrom(task_node.catalog_key)
        state.reservation_status = task_node.reservation_status

    if task_node.HasField("dynamic_workflow"):
        dynamic = task_node.dynamic_workflow
        if dynamic.HasField("id") and not state.HasField("dynamic_workflow_id"):
            state.dynamic_workflow_id.CopyFrom(dynamic.id)
        if dynamic.dynamic_job_spec_uri and not closure.dynamic_job_spec_uri:
            closure.dynamic_job_spec_uri = dynamic.dynamic_job_spec_uri
