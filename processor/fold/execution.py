"""Fold of one execution's events across its records: workflow, nodes, tasks and summary.

``ExecutionFolder`` is the only place that knows how the records of one
execution relate. It reads and writes them through a ``StateStore``, which is
a faust table in the worker and a dict in tests, the benchmark's bare loop and
the reference fold of the fault tests. It never touches Kafka.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Protocol

from google.protobuf.message import Message

from processor.events import EventKind, ExecutionEvent
from processor.fold import node as node_fold
from processor.fold import task as task_fold
from processor.fold import timestamps
from processor.fold import workflow as workflow_fold
from processor.fold.outcome import Outcome, Transition
from processor.fold.public import public_view
from processor.fold.phases import WORKFLOW_TERMINAL, node_phase_name, task_phase_name
from processor.messages import ExecutionSummary, NodeExecutionState, TaskExecutionState, WorkflowExecutionState


class RecordKind(str, enum.Enum):
    """Kind of state record; the value names it in ``state --json`` output."""

    WORKFLOW = "workflow"
    NODE = "node"
    TASK = "task"
    SUMMARY = "summary"

    @property
    def message_class(self) -> type:
        return _RECORD_CLASSES[self]


_RECORD_CLASSES = {
    RecordKind.WORKFLOW: WorkflowExecutionState,
    RecordKind.NODE: NodeExecutionState,
    RecordKind.TASK: TaskExecutionState,
    RecordKind.SUMMARY: ExecutionSummary,
}


class StateStore(Protocol):
    """Where the folder reads and writes records, by kind and key text."""

    def get(self, kind: RecordKind, key: str) -> Optional[Message]: ...

    def put(self, kind: RecordKind, key: str, state: Message) -> None: ...

    def delete(self, kind: RecordKind, key: str) -> None: ...


class InMemoryStateStore:
    """A StateStore over plain dicts; records are stored as given, not copied."""

    def __init__(self) -> None:
        self.records: dict[RecordKind, dict[str, Message]] = {kind: {} for kind in RecordKind}

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        return self.records[kind].get(key)

    def put(self, kind: RecordKind, key: str, state: Message) -> None:
        self.records[kind][key] = state

    def delete(self, kind: RecordKind, key: str) -> None:
        self.records[kind].pop(key, None)


@dataclass(frozen=True)
class StateChange:
    """A record that changed and must be published to its state topic; ``state`` None is a tombstone."""

    kind: RecordKind
    key: str
    state: Optional[Message]


@dataclass
class FoldResult:
    """Outcome of the event itself and every record it changed, in publishing order."""

    outcome: Outcome
    detail: str = ""
    changes: list[StateChange] = field(default_factory=list)

    # Current records to publish again, unchanged, because the event was a
    # replay: after a crash the tables can hold a change whose state record
    # never reached its topic, and re-sending the current record repairs that.
    republish: list[StateChange] = field(default_factory=list)

    @property
    def records_to_publish(self) -> list[StateChange]:
        return [*self.changes, *self.republish]


class ExecutionFolder:
    """Fold decoded events into the records of their execution."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def fold(self, event: ExecutionEvent) -> FoldResult:
        if event.kind is EventKind.WORKFLOW:
            return self._fold_workflow(event)
        if event.kind is EventKind.NODE:
            return self._fold_node(event)
        return self._fold_task(event)

    def _fold_workflow(self, event: ExecutionEvent) -> FoldResult:
        previous = self.store.get(RecordKind.WORKFLOW, event.entity_key)
        transition = workflow_fold.fold_workflow_event(previous, event.message)
        result = FoldResult(transition.outcome, transition.detail)
        if transition.state is previous:
            if transition.replayed:
                self._republish_current(result, RecordKind.WORKFLOW, event)
            return result

        if self._store_change(result, RecordKind.WORKFLOW, event.entity_key, previous, transition):
            self._update_summary(result, event, workflow=transition.state)
        return result

    def _republish_current(self, result: FoldResult, kind: RecordKind, event: ExecutionEvent) -> None:
        records = [(kind, event.entity_key), (RecordKind.SUMMARY, event.execution_key)]
        if kind is not RecordKind.WORKFLOW:
            # The event may have created the inferred workflow record.
            records.append((RecordKind.WORKFLOW, event.execution_key))
        for record_kind, key in records:
            state = self.store.get(record_kind, key)
            if state is not None:
                result.republish.append(StateChange(record_kind, key, public_view(state, keep_version=True)))

    def _check_cluster(self, event: ExecutionEvent) -> Optional[FoldResult]:
        """Reject a node or task event from a cluster that did not own the execution when it occurred."""
        workflow = self.store.get(RecordKind.WORKFLOW, event.execution_key)
        message = event.message
        if workflow_fold.is_compatible_producer(workflow, message.producer_id, message.occurred_at):
            return None
        owner = workflow_fold.owner_at(workflow, message.occurred_at)
        return FoldResult(
            Outcome.INCOMPATIBLE_CLUSTER,
            f"producer {message.producer_id!r} does not own the execution, {owner!r} does",
        )

    def _fold_node(self, event: ExecutionEvent) -> FoldResult:
        rejection = self._check_cluster(event)
        if rejection is not None:
            return rejection

        previous = self.store.get(RecordKind.NODE, event.entity_key)
        transition = node_fold.fold_node_event(previous, event.message)
        result = FoldResult(transition.outcome, transition.detail)
        if transition.state is previous:
            if transition.replayed:
                self._republish_current(result, RecordKind.NODE, event)
            return result

        self._ensure_workflow(result, event)
        if previous is None:
            self._register_child(event, "node_keys")
        if not self._store_change(result, RecordKind.NODE, event.entity_key, previous, transition):
            return result

        old_phase = node_phase_name(previous.node_execution.closure.phase) if previous is not None else None
        new_phase = node_phase_name(transition.state.node_execution.closure.phase)
        self._update_summary(result, event, node_phases=(old_phase, new_phase))
        return result

    def _fold_task(self, event: ExecutionEvent) -> FoldResult:
        rejection = self._check_cluster(event)
        if rejection is not None:
            return rejection

        previous = self.store.get(RecordKind.TASK, event.entity_key)
        transition = task_fold.fold_task_event(previous, event.message)
        result = FoldResult(transition.outcome, transition.detail)
        if transition.state is previous:
            if transition.replayed:
                self._republish_current(result, RecordKind.TASK, event)
            return result

        self._ensure_workflow(result, event)
        if previous is None:
            self._register_child(event, "task_keys")
        if not self._store_change(result, RecordKind.TASK, event.entity_key, previous, transition):
            return result

        old_phase = task_phase_name(previous.task_execution.closure.phase) if previous is not None else None
        new_phase = task_phase_name(transition.state.task_execution.closure.phase)
        self._update_summary(result, event, task_phases=(old_phase, new_phase))
        return result

    def _store_change(
        self,
        result: FoldResult,
        kind: RecordKind,
        key: str,
        previous: Optional[Message],
        transition: Transition,
    ) -> bool:
        """Store the new state; when its public view changed, give it the next version and list it.

        A change of bookkeeping alone (ledger, fingerprints) is stored but not
        published, so consumers see a new version only when something they can
        read changed. Returns whether the public view changed.
        """
        state = transition.state
        visible = transition.changed
        state.version = (previous.version if previous is not None else 0) + (1 if visible else 0)
        self.store.put(kind, key, state)
        if visible:
            result.changes.append(StateChange(kind, key, public_view(state, keep_version=True)))
        return visible

    def _ensure_workflow(self, result: FoldResult, event: ExecutionEvent) -> None:
        """Create an inferred workflow record when a node or task event comes before any workflow event."""
        if self.store.get(RecordKind.WORKFLOW, event.execution_key) is not None:
            return

        if event.kind is EventKind.NODE:
            execution_id = event.message.id.execution_id
        else:
            execution_id = event.message.parent_node_execution_id.execution_id
        state = workflow_fold.create_inferred(execution_id, event.message.occurred_at)
        self._store_change(
            result, RecordKind.WORKFLOW, event.execution_key, None, Transition(state, Outcome.APPLIED, True)
        )
        self._update_summary(result, event, workflow=state)

    def _register_child(self, event: ExecutionEvent, field_name: str) -> None:
        """Remember a new node or task key in its workflow record, for retention."""
        workflow = self.store.get(RecordKind.WORKFLOW, event.execution_key)
        updated = WorkflowExecutionState()
        updated.CopyFrom(workflow)
        getattr(updated, field_name).append(event.entity_key)
        self.store.put(RecordKind.WORKFLOW, event.execution_key, updated)

    def remove_execution(self, execution_key: str) -> list[StateChange]:
        """Delete an execution's workflow, node, task and summary records; return their tombstones."""
        workflow = self.store.get(RecordKind.WORKFLOW, execution_key)
        if workflow is None:
            return []

        removed = [(RecordKind.NODE, key) for key in workflow.node_keys]
        removed += [(RecordKind.TASK, key) for key in workflow.task_keys]
        removed += [(RecordKind.SUMMARY, execution_key), (RecordKind.WORKFLOW, execution_key)]
        for kind, key in removed:
            self.store.delete(kind, key)
        return [StateChange(kind, key, None) for kind, key in removed]

    def _update_summary(
        self,
        result: FoldResult,
        event: ExecutionEvent,
        *,
        workflow: Optional[WorkflowExecutionState] = None,
        node_phases: Optional[tuple[Optional[str], str]] = None,
        task_phases: Optional[tuple[Optional[str], str]] = None,
    ) -> None:
        previous = self.store.get(RecordKind.SUMMARY, event.execution_key)
        summary = ExecutionSummary()
        if previous is not None:
            summary.CopyFrom(previous)
        else:
            summary.execution_id.CopyFrom(_execution_id_of(event))

        if workflow is not None:
            closure = workflow.execution.closure
            summary.phase = closure.phase
            summary.finished = closure.phase in WORKFLOW_TERMINAL
            if closure.HasField("started_at"):
                summary.started_at.CopyFrom(closure.started_at)

        if node_phases is not None:
            _move_count(summary.node_phase_counts, *node_phases)
            summary.node_count = sum(summary.node_phase_counts.values())
        if task_phases is not None:
            _move_count(summary.task_phase_counts, *task_phases)
            summary.task_count = sum(summary.task_phase_counts.values())

        occurred_at = event.message.occurred_at
        summary.latest_event_occurred_at.CopyFrom(timestamps.latest(summary.latest_event_occurred_at, occurred_at))
        summary.updated_at.CopyFrom(summary.latest_event_occurred_at)

        if previous is not None:
            comparable = ExecutionSummary()
            comparable.CopyFrom(summary)
            comparable.version = previous.version
            if comparable == previous:
                return

        self._store_change(
            result, RecordKind.SUMMARY, event.execution_key, previous, Transition(summary, Outcome.APPLIED, True)
        )


def _execution_id_of(event: ExecutionEvent):
    if event.kind is EventKind.WORKFLOW:
        return event.message.execution_id
    if event.kind is EventKind.NODE:
        return event.message.id.execution_id
    return event.message.parent_node_execution_id.execution_id


def _move_count(counts, old_phase: Optional[str], new_phase: str) -> None:
    """Move one record from old_phase to new_phase in a phase-count map; None means newly created."""
    if old_phase == new_phase:
        return
    if old_phase is not None:
        remaining = counts[old_phase] - 1
        if remaining > 0:
            counts[old_phase] = remaining
        else:
            del counts[old_phase]
    counts[new_phase] = counts[new_phase] + 1
