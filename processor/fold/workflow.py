"""Transitions of a workflow execution record.

The record is ``WorkflowExecutionState``; its ``execution.closure`` follows
FlyteAdmin's ``ExecutionClosure``. Phase, times and result are derived from
the record's ledger (see processor/fold/ledger.py) with FlyteAdmin's rules
applied in occurred_at order:

- terminal phases are SUCCEEDED, FAILED, TIMED_OUT and ABORTED; after the
  first of them nothing changes the phase;
- a repeated QUEUED is accepted (the execution moved to another cluster), any
  other repeat of the current phase is a duplicate;
- RUNNING followed by QUEUED is rejected, and after ABORTING only terminal
  phases are accepted;
- RUNNING sets started_at; the first terminal event sets duration;
- every accepted event with a result sets it (output_uri, else output_data,
  else error);
- an event from another cluster than the owner is rejected unless its
  producer_id is empty or "propeller" or its phase is UNDEFINED or QUEUED,
  which hands the execution to that producer.
"""

from __future__ import annotations

from flyteidl.core import identifier_pb2
from flyteidl.event import event_pb2
from google.protobuf import timestamp_pb2

from processor.fold import ledger, timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import WORKFLOW_RANK, WORKFLOW_TERMINAL, WorkflowPhase
from processor.fold.public import public_equal
from processor.fold.progress import Progress, write_progress
from processor.messages import WorkflowExecutionState

WorkflowTransition = Transition[WorkflowExecutionState]

# producer_id values that any cluster may send, as FlyteAdmin treats them.
NEUTRAL_PRODUCERS = frozenset({"", "propeller"})

_OWNERSHIP_PHASES = frozenset({WorkflowPhase.UNDEFINED, WorkflowPhase.QUEUED})


def fold_workflow_event(
    state: WorkflowExecutionState | None, event: event_pb2.WorkflowExecutionEvent
) -> WorkflowTransition:
    """Fold one WorkflowExecutionEvent into the record of its execution."""
    rejection, event_fingerprint = ledger.screen_event(state, event, WORKFLOW_RANK, "workflow")
    if rejection is not None:
        return rejection

    new_state = WorkflowExecutionState()
    if state is not None:
        new_state.CopyFrom(state)
    if not new_state.execution.HasField("id"):
        new_state.execution.id.CopyFrom(event.execution_id)

    new_state.seen_fingerprints.append(event_fingerprint)
    entries, appended = ledger.with_entry(
        new_state.ledger, ledger.entry_from_event(event, event_fingerprint), WORKFLOW_RANK.__getitem__
    )
    progress = derive_progress(entries)
    apply_progress(new_state, progress, appended=appended)

    outcome = progress.verdicts[event_fingerprint]
    if outcome is Outcome.APPLIED and progress.newest_accepted.fingerprint != event_fingerprint:
        outcome = Outcome.STALE
    return Transition(new_state, outcome, state is None or not public_equal(new_state, state))


def derive_progress(entries) -> Progress:
    """Walk the entries, in ledger order, and apply the workflow rules to each."""
    progress = Progress()
    for entry in entries:
        if progress.terminal_at is not None:
            progress.reject(entry, Outcome.ALREADY_TERMINAL)
            continue
        progress.kept.append(entry)

        verdict = judge(progress, entry)
        if verdict is not Outcome.APPLIED:
            progress.reject(entry, verdict)
            continue

        progress.accept(entry)
        if progress.created_at is None:
            progress.created_at = entry.occurred_at
        if entry.phase in _OWNERSHIP_PHASES and entry.producer_id:
            progress.ownership.append((entry.occurred_at, entry.producer_id))
        if entry.phase == WorkflowPhase.RUNNING:
            progress.started_at = entry.occurred_at
        if entry.phase in WORKFLOW_TERMINAL:
            progress.terminal_at = entry.occurred_at
        if ledger.has_result(entry):
            progress.result = entry
    return progress


def judge(progress: Progress, entry) -> Outcome:
    """Return APPLIED when the entry may follow the progress so far, else the rejection reason."""
    current = progress.phase
    if current is not None:
        if entry.phase == current and entry.phase != WorkflowPhase.QUEUED:
            return Outcome.DUPLICATE
        if current == WorkflowPhase.RUNNING and entry.phase == WorkflowPhase.QUEUED:
            return Outcome.INVALID
        if current == WorkflowPhase.ABORTING and entry.phase not in WORKFLOW_TERMINAL:
            return Outcome.INVALID

    if entry.phase not in _OWNERSHIP_PHASES and progress.ownership:
        owner = progress.ownership[-1][1]
        if entry.producer_id not in NEUTRAL_PRODUCERS and entry.producer_id != owner:
            return Outcome.INCOMPATIBLE_CLUSTER
    return Outcome.APPLIED


def apply_progress(state: WorkflowExecutionState, progress: Progress, *, appended: bool = False) -> None:
    """Write derived progress into the record, in place; the caller owns ``state``."""
    closure = state.execution.closure
    inferred_created_at = timestamp_pb2.Timestamp()
    inferred_created_at.CopyFrom(closure.created_at)

    write_progress(closure, progress, uri_field="outputs.uri")
    state.inferred = False

    ledger.store_kept(state.ledger, progress.kept, appended)

    del state.ownership[:]
    for occurred_at, producer_id in progress.ownership:
        change = state.ownership.add(producer_id=producer_id)
        change.occurred_at.CopyFrom(occurred_at)
    state.producer_id = progress.ownership[-1][1] if progress.ownership else _first_producer(progress)

    if progress.updated_at is not None:
        state.last_event_occurred_at.CopyFrom(progress.updated_at)
    else:
        # Only rejected events so far: keep what the inferred record knew.
        closure.created_at.CopyFrom(inferred_created_at)


def _first_producer(progress: Progress) -> str:
    for entry in progress.kept:
        if progress.verdicts.get(entry.fingerprint) is Outcome.APPLIED and entry.producer_id:
            return entry.producer_id
    return ""


def owner_at(state: WorkflowExecutionState | None, occurred_at: timestamp_pb2.Timestamp) -> str:
    """Return the producer that owned the execution at ``occurred_at``; empty when unknown."""
    if state is None:
        return ""
    owner = ""
    for change in state.ownership:
        if timestamps.is_before(occurred_at, change.occurred_at):
            break
        owner = change.producer_id
    return owner


def is_compatible_producer(state: WorkflowExecutionState | None, producer_id: str, occurred_at) -> bool:
    """Tell whether a node or task event of ``producer_id`` may change the execution's records."""
    if producer_id in NEUTRAL_PRODUCERS:
        return True
    owner = owner_at(state, occurred_at)
    return not owner or owner == producer_id


def create_inferred(execution_id: identifier_pb2.WorkflowExecutionIdentifier, occurred_at) -> WorkflowExecutionState:
    """Create a placeholder record for an execution known only from its node or task events."""
    state = WorkflowExecutionState(inferred=True)
    state.execution.id.CopyFrom(execution_id)
    state.execution.closure.created_at.CopyFrom(occurred_at)
    state.execution.closure.updated_at.CopyFrom(occurred_at)
    state.last_event_occurred_at.CopyFrom(occurred_at)
    return state
