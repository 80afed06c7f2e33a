"""Fold of one execution's events across its records: workflow, nodes, tasks and summary.

``ExecutionFolder`` is the only place that relates the records of one
execution relate. It reads and writes them through a ``StateStore``, which is
a faust table in the worker and a dict in tests, the benchmark's bare loop and
the reference fold of the fault tests. It never touches Kafka.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Container, Optional, Protocol

from google.protobuf.message import Message

from processor.events import EventKind, ExecutionEvent
from processor.fold import node as node_fold
from processor.fold import task as task_fold
from processor.fold import enrichment as enrichment_fold
from processor.fold import timestamps
from processor.fold import workflow as workflow_fold
from processor.fold.enrichment import Enrichment
from processor.fold.journal import FoldJournal
from processor.fold.outcome import Outcome, Transition
from processor.fold.public import public_equal, public_view
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

    def parse(self, raw: bytes) -> Message:
        """Decode a serialized record of this kind, as tables and changelog topics hold it."""
        state = _RECORD_CLASSES[self]()
        state.ParseFromString(raw)
        return state


_RECORD_CLASSES = {
    RecordKind.WORKFLOW: WorkflowExecutionState,
    RecordKind.NODE: NodeExecutionState,
    RecordKind.TASK: TaskExecutionState,
    RecordKind.SUMMARY: ExecutionSummary,
}


RecordId = tuple[RecordKind, str]
"""A record's kind and key text: what identifies it across the tables and state topics."""


class StateStore(Protocol):
    """Storage of the folder's records, addressed by kind and key text."""

    def get(self, kind: RecordKind, key: str) -> Optional[Message]: ...

    def put(self, kind: RecordKind, key: str, state: Message) -> None: ...

    def delete(self, kind: RecordKind, key: str) -> None: ...


class RecordLimit(Protocol):
    """A size limit of stored records, as processor.record_size.RecordSizeLimit applies Kafka's."""

    def violation(self, key: str, state: Message) -> Optional[str]:
        """Describe why the record does not fit, as a clause after its name; None when it fits."""
        ...


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
    """A record that changed and must be published to its state topic; ``record`` None is a tombstone.

    ``record`` is the stored record, bookkeeping included. A fold copies a
    record before it changes it and never mutates one it has stored. So the
    public view can be taken when the change is published, and a worker that
    folds a batch takes it once, for the last change of each key.
    """

    kind: RecordKind
    key: str
    record: Optional[Message]

    @property
    def state(self) -> Optional[Message]:
        """The public view with its version, as the state topic carries it; None for a tombstone."""
        return None if self.record is None else public_view(self.record, keep_version=True)


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
    """Fold decoded events into the records of their execution.

    A fold changes all of its records or none: one that raises, or whose
    records ``record_limit`` rejects, leaves every record as it was. None
    checks no size.
    """

    def __init__(self, store: StateStore, record_limit: Optional[RecordLimit] = None) -> None:
        self.store = store
        self.record_limit = record_limit
        self._records = FoldJournal(store)

    def fold(
        self,
        event: ExecutionEvent,
        enrichment: Optional[Enrichment] = None,
        *,
        republish_touched: bool = False,
        published: Container[RecordId] = frozenset(),
    ) -> FoldResult:
        """Fold one event, then apply the enrichment of the version 2 CloudEvent that carried it, if any.

        With ``republish_touched`` every existing record that the event's
        fold reads or writes (its own record, the execution's workflow record
        and summary) is stored and published again even when unchanged. A
        worker sets it for events that a previous owner of the partition may
        have folded already. That owner can have died with some of those
        records in its table store or changelog but not in the state topics,
        and an event that is folded anew then changes nothing in them.
        Records in ``published`` are left out: the caller has published
        their current value since that owner's records were recovered.

        When ``record_limit`` rejects a record that the fold changed, the
        fold is undone and the outcome is RECORD_TOO_LARGE, with no changes.
        """
        journal = self._records
        journal.begin()
        try:
            if event.kind is EventKind.WORKFLOW:
                result = self._fold_workflow(event)
            elif event.kind is EventKind.NODE:
                result = self._fold_node(event)
            else:
                result = self._fold_task(event)
            if enrichment is not None:
                self._apply_enrichment(result, event, enrichment)
            if republish_touched and result.outcome is not Outcome.INCOMPATIBLE_CLUSTER:
                self._republish_touched(result, event, published)
            oversized = self._oversized_record()
        except BaseException:
            journal.undo()
            raise

        if oversized is not None:
            journal.undo()
            return FoldResult(Outcome.RECORD_TOO_LARGE, oversized)
        return result

    def _oversized_record(self) -> Optional[str]:
        """Describe the first record this fold changed that ``record_limit`` rejects; None when all fit."""
        if self.record_limit is None:
            return None
        for kind, key, state in self._records.changed():
            violation = self.record_limit.violation(key, state)
            if violation is not None:
                return f"the {kind.value} record {key} {violation}"
        return None

    def _republish_touched(self, result: FoldResult, event: ExecutionEvent, published: Container[RecordId]) -> None:
        listed = {(change.kind, change.key) for change in result.records_to_publish}
        touched = [(RecordKind.WORKFLOW, event.execution_key), (RecordKind.SUMMARY, event.execution_key)]
        if event.kind is EventKind.NODE:
            touched.append((RecordKind.NODE, event.entity_key))
        elif event.kind is EventKind.TASK:
            touched.append((RecordKind.TASK, event.entity_key))
        self._republish(result, [record for record in touched if record not in listed and record not in published])

    def _apply_enrichment(self, result: FoldResult, event: ExecutionEvent, enrichment: Enrichment) -> None:
        """Write the enrichment into the execution's workflow record and, for a node event, its node record.

        Only records that exist are enriched. A record whose public view
        changes is published once per fold: when the event already changed
        it, that change is replaced by the enriched record under the same
        version, and a republished copy of it is dropped.
        """
        targets = [(RecordKind.WORKFLOW, event.execution_key, enrichment_fold.enrich_workflow)]
        if event.kind is EventKind.NODE:
            targets.append((RecordKind.NODE, event.entity_key, enrichment_fold.enrich_node))

        for kind, key, enrich in targets:
            previous = self._records.get(kind, key)
            if previous is None:
                continue
            state = type(previous)()
            state.CopyFrom(previous)
            enrich(state, enrichment)
            if not public_equal(state, previous):
                self._store_enriched(result, kind, key, state)

    def _store_enriched(self, result: FoldResult, kind: RecordKind, key: str, state: Message) -> None:
        same_record = [index for index, change in enumerate(result.changes) if (change.kind, change.key) == (kind, key)]
        if not same_record:
            state.version += 1
        self._records.put(kind, key, state)

        published = StateChange(kind, key, state)
        if same_record:
            result.changes[same_record[-1]] = published
        else:
            result.changes.append(published)
        result.republish = [change for change in result.republish if (change.kind, change.key) != (kind, key)]

    def _fold_workflow(self, event: ExecutionEvent) -> FoldResult:
        previous = self._records.get(RecordKind.WORKFLOW, event.entity_key)
        transition = workflow_fold.fold_workflow_event(previous, event.message)
        result = FoldResult(transition.outcome, transition.detail)
        if transition.state is previous and not transition.replayed:
            return result

        if transition.state is not previous:
            self._store_change(result, RecordKind.WORKFLOW, event.entity_key, previous, transition)
        workflow = self._records.get(RecordKind.WORKFLOW, event.entity_key)
        self._sync_summary(result, event, workflow.last_event_occurred_at, workflow=workflow)

        if transition.replayed:
            self._republish(result, [(RecordKind.WORKFLOW, event.entity_key), (RecordKind.SUMMARY, event.execution_key)])
        return result

    def _fold_node(self, event: ExecutionEvent) -> FoldResult:
        return self._fold_child(event, RecordKind.NODE, node_fold.fold_node_event)

    def _fold_task(self, event: ExecutionEvent) -> FoldResult:
        return self._fold_child(event, RecordKind.TASK, task_fold.fold_task_event)

    def _fold_child(self, event: ExecutionEvent, kind: RecordKind, fold_event) -> FoldResult:
        """Fold a node or task event, then bring the workflow and summary records in line with the result.

        The summary is synchronized from the record's current phase whether the
        event changed the record or was a replay, so a summary write lost in a
        crash is repaired when the event is replayed.
        """
        rejection = self._check_cluster(event)
        if rejection is not None:
            return rejection

        previous = self._records.get(kind, event.entity_key)
        transition = fold_event(previous, event.message)
        result = FoldResult(transition.outcome, transition.detail)
        if transition.state is previous and not transition.replayed:
            return result

        self._ensure_workflow(result, event)
        if transition.state is not previous:
            self._store_change(result, kind, event.entity_key, previous, transition)
        current = self._records.get(kind, event.entity_key)
        self._sync_summary(result, event, current.last_event_occurred_at, child=(kind, _phase_name(kind, current)))

        if transition.replayed:
            self._republish(
                result,
                [
                    (kind, event.entity_key),
                    (RecordKind.SUMMARY, event.execution_key),
                    (RecordKind.WORKFLOW, event.execution_key),
                ],
            )
        return result

    def _republish(self, result: FoldResult, records: list[tuple[RecordKind, str]]) -> None:
        """List the current records for publishing again, and store them again unchanged.

        A worker can die after its table store took a batch's records but
        before their changelog records reached Kafka. The replayed events then
        find their changes in the store and change nothing, so writing the
        records again is what puts them back into the changelog.
        """
        for kind, key in records:
            state = self._records.get(kind, key)
            if state is not None:
                self._records.put(kind, key, state)
                result.republish.append(StateChange(kind, key, state))

    def _check_cluster(self, event: ExecutionEvent) -> Optional[FoldResult]:
        """Reject a node or task event from a cluster that did not own the execution when it occurred."""
        workflow = self._records.get(RecordKind.WORKFLOW, event.execution_key)
        message = event.message
        if workflow_fold.is_compatible_producer(workflow, message.producer_id, message.occurred_at):
            return None
        owner = workflow_fold.owner_at(workflow, message.occurred_at)
        return FoldResult(
            Outcome.INCOMPATIBLE_CLUSTER,
            f"producer {message.producer_id!r} does not own the execution, {owner!r} does",
        )

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
        previous_version = previous.version if previous is not None else 0
        state.version = previous_version + 1 if visible else previous_version
        self._records.put(kind, key, state)
        if visible:
            result.changes.append(StateChange(kind, key, state))
        return visible

    def _ensure_workflow(self, result: FoldResult, event: ExecutionEvent) -> None:
        """Create an inferred workflow record when a node or task event comes before any workflow event."""
        if self._records.get(RecordKind.WORKFLOW, event.execution_key) is not None:
            return

        state = workflow_fold.create_inferred(_execution_id_of(event), event.message.occurred_at)
        self._store_change(
            result, RecordKind.WORKFLOW, event.execution_key, None, Transition(state, Outcome.APPLIED, True)
        )
        self._sync_summary(result, event, state.last_event_occurred_at, workflow=state)

    def remove_execution(self, execution_key: str) -> list[StateChange]:
        """Delete an execution's workflow, node, task and summary records; return their tombstones.

        It is no fold, so it writes to the store directly, not through the journal.
        """
        summary = self.store.get(RecordKind.SUMMARY, execution_key)
        removed = []
        if summary is not None:
            removed += [(RecordKind.NODE, key) for key in sorted(summary.node_phases)]
            removed += [(RecordKind.TASK, key) for key in sorted(summary.task_phases)]
        removed += [(RecordKind.SUMMARY, execution_key), (RecordKind.WORKFLOW, execution_key)]

        tombstones = []
        for kind, key in removed:
            if self.store.get(kind, key) is not None:
                self.store.delete(kind, key)
                tombstones.append(StateChange(kind, key, None))
        return tombstones

    def _sync_summary(
        self,
        result: FoldResult,
        event: ExecutionEvent,
        occurred_at,
        *,
        workflow: Optional[WorkflowExecutionState] = None,
        child: Optional[tuple[RecordKind, str]] = None,
    ) -> None:
        """Bring the execution's summary in line with a workflow record or one child record's phase.

        Every step is an assignment or a maximum, so running it again for the
        same record changes nothing. The summary stores a phase per child, so
        it is copied only when a step would change it.
        """
        previous = self._records.get(RecordKind.SUMMARY, event.execution_key)
        if previous is not None and _summary_in_line(previous, event.entity_key, occurred_at, workflow, child):
            return

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
            else:
                summary.ClearField("started_at")

        if child is not None:
            kind, phase = child
            if kind is RecordKind.NODE:
                _set_phase(summary.node_phases, summary.node_phase_counts, event.entity_key, phase)
                summary.node_count = len(summary.node_phases)
            else:
                _set_phase(summary.task_phases, summary.task_phase_counts, event.entity_key, phase)
                summary.task_count = len(summary.task_phases)

        summary.latest_event_occurred_at.CopyFrom(timestamps.latest(summary.latest_event_occurred_at, occurred_at))
        summary.updated_at.CopyFrom(summary.latest_event_occurred_at)

        # Each step that changes a bookkeeping map (node_phases, task_phases)
        # also changes a public count, so a changed summary is always a
        # visible change.
        self._store_change(
            result, RecordKind.SUMMARY, event.execution_key, previous, Transition(summary, Outcome.APPLIED, True)
        )


def _summary_in_line(
    summary: ExecutionSummary,
    entity_key: str,
    occurred_at,
    workflow: Optional[WorkflowExecutionState],
    child: Optional[tuple[RecordKind, str]],
) -> bool:
    """Return whether every step of ``_sync_summary`` would leave ``summary`` as it is."""
    if workflow is not None:
        closure = workflow.execution.closure
        if summary.phase != closure.phase or summary.finished != (closure.phase in WORKFLOW_TERMINAL):
            return False
        if closure.HasField("started_at") != summary.HasField("started_at"):
            return False
        if closure.HasField("started_at") and closure.started_at != summary.started_at:
            return False

    if child is not None:
        kind, phase = child
        phases = summary.node_phases if kind is RecordKind.NODE else summary.task_phases
        if phases.get(entity_key) != phase:
            return False

    latest = summary.latest_event_occurred_at
    if not summary.HasField("latest_event_occurred_at") or timestamps.is_before(latest, occurred_at):
        return False
    return summary.HasField("updated_at") and summary.updated_at == latest


def _phase_name(kind: RecordKind, state: Message) -> str:
    if kind is RecordKind.NODE:
        return node_phase_name(state.node_execution.closure.phase)
    return task_phase_name(state.task_execution.closure.phase)


def _set_phase(phases, counts, key: str, phase: str) -> None:
    """Record ``key``'s phase and move it between the phase counts; a no-op when it is already there."""
    old_phase = phases.get(key)
    if old_phase == phase:
        return
    if old_phase is not None:
        remaining = counts[old_phase] - 1
        if remaining > 0:
            counts[old_phase] = remaining
        else:
            del counts[old_phase]
    phases[key] = phase
    counts[phase] = counts[phase] + 1


def _execution_id_of(event: ExecutionEvent):
    if event.kind is EventKind.WORKFLOW:
        return event.message.execution_id
    if event.kind is EventKind.NODE:
        return event.message.id.execution_id
    return event.message.parent_node_execution_id.execution_id
