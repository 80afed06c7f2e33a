"""Current state records grouped by execution, kept in memory for the dashboard.

The follower thread writes records into a ``StateCache`` and the web server's
event loop reads from it, so every method takes the cache's lock. Stored
messages are never modified in place: a newer record replaces the old object,
so a reader may serialize the messages it got after releasing the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from google.protobuf.message import Message

from processor.fold.execution import RecordKind
from processor.fold.phases import workflow_phase_name
from processor.ids import InvalidIdError, parse_execution_key
from processor.messages import ExecutionSummary, NodeExecutionState, TaskExecutionState, WorkflowExecutionState

# How many changed execution keys the cache keeps for server-sent events. A
# client that falls further behind gets a reset and reloads everything.
DEFAULT_CHANGE_LOG_SIZE = 10_000


def execution_key_of(kind: RecordKind, key: str) -> str:
    """Return the execution key that a record key belongs to.

    Node and task keys extend the execution key with ``/``-separated parts
    that contain no ``:``, and the execution key ends with ``:name``, so the
    execution key ends at the first ``/`` after its last ``:``.
    """
    if kind in (RecordKind.WORKFLOW, RecordKind.SUMMARY):
        return key
    slash = key.find("/", key.rfind(":"))
    return key if slash < 0 else key[:slash]


def _timestamp_text(message, field_name: str) -> Optional[str]:
    return getattr(message, field_name).ToJsonString() if message.HasField(field_name) else None


def _timestamp_nanos(message, field_name: str) -> int:
    return getattr(message, field_name).ToNanoseconds() if message.HasField(field_name) else 0


@dataclass(frozen=True)
class ExecutionRow:
    """Row of the execution list for one execution, derived from its workflow and summary records."""

    key: str
    org: str
    project: str
    domain: str
    name: str
    phase: str
    inferred: bool
    finished: bool
    created_at: Optional[str]
    started_at: Optional[str]
    updated_at: Optional[str]
    duration_seconds: Optional[float]
    node_count: int
    task_count: int
    node_phase_counts: dict[str, int]
    task_phase_counts: dict[str, int]

    # Nanoseconds since the epoch that order the list, newest first.
    sort_nanos: int

    def to_json(self) -> dict:
        document = {name: getattr(self, name) for name in self.__dataclass_fields__}
        del document["sort_nanos"]
        return document


def build_row(key: str, workflow: Optional[Message], summary: Optional[Message]) -> ExecutionRow:
    """Derive the list row of an execution; either record may be missing, not both."""
    if workflow is None and summary is None:
        raise ValueError(f"execution {key} has neither a workflow nor a summary record")

    if workflow is not None:
        execution_id = workflow.execution.id
        closure = workflow.execution.closure
        phase = workflow_phase_name(closure.phase)
        created_at = _timestamp_text(closure, "created_at")
        started_at = _timestamp_text(closure, "started_at")
        updated_at = _timestamp_text(closure, "updated_at")
        duration = closure.duration.ToNanoseconds() / 1e9 if closure.HasField("duration") else None
        sort_nanos = _timestamp_nanos(closure, "created_at") or _timestamp_nanos(closure, "started_at")
    else:
        execution_id = summary.execution_id
        phase = workflow_phase_name(summary.phase)
        created_at = None
        started_at = _timestamp_text(summary, "started_at")
        updated_at = _timestamp_text(summary, "updated_at")
        duration = None
        sort_nanos = 0

    if summary is not None:
        sort_nanos = sort_nanos or _timestamp_nanos(summary, "started_at")
        sort_nanos = sort_nanos or _timestamp_nanos(summary, "latest_event_occurred_at")

    if not execution_id.name:
        # A record without an id inside: take the parts from the key instead.
        try:
            execution_id = parse_execution_key(key)
        except InvalidIdError:
            pass

    return ExecutionRow(
        key=key,
        org=execution_id.org,
        project=execution_id.project,
        domain=execution_id.domain,
        name=execution_id.name,
        phase=phase,
        inferred=bool(workflow is not None and workflow.inferred),
        finished=bool(summary is not None and summary.finished),
        created_at=created_at,
        started_at=started_at,
        updated_at=updated_at,
        duration_seconds=duration,
        node_count=summary.node_count if summary is not None else 0,
        task_count=summary.task_count if summary is not None else 0,
        node_phase_counts=dict(summary.node_phase_counts) if summary is not None else {},
        task_phase_counts=dict(summary.task_phase_counts) if summary is not None else {},
        sort_nanos=sort_nanos,
    )


@dataclass(frozen=True)
class ExecutionFilter:
    """Conditions of the execution list; an empty field matches every execution."""

    project: str = ""
    domain: str = ""
    phases: frozenset[str] = frozenset()

    # Case-insensitive substring of the execution key, which contains the name.
    query: str = ""

    def matches(self, row: ExecutionRow) -> bool:
        if self.project and row.project != self.project:
            return False
        if self.domain and row.domain != self.domain:
            return False
        if self.phases and row.phase not in self.phases:
            return False
        if self.query and self.query.lower() not in row.key.lower():
            return False
        return True


@dataclass(frozen=True)
class ExecutionPage:
    """One page of the filtered execution list and the number of executions that match in all."""

    total: int
    offset: int
    limit: int
    rows: list[ExecutionRow]


@dataclass
class ExecutionRecords:
    """Every record of one execution that the state topics hold."""

    workflow: Optional[WorkflowExecutionState] = None
    summary: Optional[ExecutionSummary] = None
    nodes: dict[str, NodeExecutionState] = field(default_factory=dict)
    tasks: dict[str, TaskExecutionState] = field(default_factory=dict)
    row: Optional[ExecutionRow] = None

    def is_empty(self) -> bool:
        return self.workflow is None and self.summary is None and not self.nodes and not self.tasks


@dataclass(frozen=True)
class ExecutionSnapshot:
    """The records of one execution at one moment; the message objects are not modified later."""

    key: str
    workflow: Optional[WorkflowExecutionState]
    summary: Optional[ExecutionSummary]
    nodes: dict[str, NodeExecutionState]
    tasks: dict[str, TaskExecutionState]


@dataclass(frozen=True)
class ChangeSet:
    """Executions changed after a given sequence number, up to ``sequence``.

    ``reset`` is True when the cache no longer has the keys changed since
    then, so the client must reload everything it shows.
    """

    sequence: int
    execution_keys: list[str]
    reset: bool


@dataclass(frozen=True)
class CacheStatus:
    ready: bool
    executions: int
    records: int
    sequence: int
    error: str

    def to_json(self) -> dict:
        return {
            "ready": self.ready,
            "executions": self.executions,
            "records": self.records,
            "sequence": self.sequence,
            "error": self.error,
        }


class StateCache:
    """Records of the state topics by execution, with the list rows and a log of changed executions."""

    def __init__(self, change_log_size: int = DEFAULT_CHANGE_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._executions: dict[str, ExecutionRecords] = {}
        self._record_count = 0
        self._row_count = 0

        # Execution keys sorted newest first; None when it must be rebuilt.
        self._order: Optional[list[str]] = None

        self._sequence = 0
        self._changes: OrderedDict[str, int] = OrderedDict()
        self._change_log_size = change_log_size
        # Highest sequence number whose execution key was dropped from _changes.
        self._forgotten_through = 0

        self._ready = False
        self._error = ""

    def apply(self, kind: RecordKind, key: str, value: Optional[bytes]) -> bool:
        """Store a serialized record, or delete the key for a tombstone (``value`` None).

        A record whose version is below the stored one is ignored. An equal
        version replaces it, because the worker publishes the current record
        again after a replayed event. Returns whether the cache changed.
        Raises DecodeError when ``value`` is not a message of ``kind``.
        """
        if value is None:
            return self.delete(kind, key)
        return self.put(kind, key, kind.parse(value))

    def put(self, kind: RecordKind, key: str, state: Message) -> bool:
        execution_key = execution_key_of(kind, key)
        with self._lock:
            records = self._executions.get(execution_key)
            if records is None:
                records = self._executions[execution_key] = ExecutionRecords()

            current = self._get(records, kind, key)
            if current is not None and state.version < current.version:
                return False
            if current is None:
                self._record_count += 1
            self._set(records, kind, key, state)
            self._changed(execution_key, records)
            return True

    def delete(self, kind: RecordKind, key: str) -> bool:
        execution_key = execution_key_of(kind, key)
        with self._lock:
            records = self._executions.get(execution_key)
            if records is None or self._get(records, kind, key) is None:
                return False
            self._record_count -= 1
            self._set(records, kind, key, None)
            self._changed(execution_key, records)
            if records.is_empty():
                del self._executions[execution_key]
            return True

    @staticmethod
    def _get(records: ExecutionRecords, kind: RecordKind, key: str) -> Optional[Message]:
        if kind is RecordKind.WORKFLOW:
            return records.workflow
        if kind is RecordKind.SUMMARY:
            return records.summary
        if kind is RecordKind.NODE:
            return records.nodes.get(key)
        return records.tasks.get(key)

    @staticmethod
    def _set(records: ExecutionRecords, kind: RecordKind, key: str, state: Optional[Message]) -> None:
        if kind is RecordKind.WORKFLOW:
            records.workflow = state
        elif kind is RecordKind.SUMMARY:
            records.summary = state
        else:
            children = records.nodes if kind is RecordKind.NODE else records.tasks
            if state is None:
                children.pop(key, None)
            else:
                children[key] = state

    def _changed(self, execution_key: str, records: ExecutionRecords) -> None:
        """Rebuild the execution's row and log the change; the caller holds the lock."""
        previous = records.row
        if records.workflow is None and records.summary is None:
            records.row = None
        else:
            records.row = build_row(execution_key, records.workflow, records.summary)
        if (previous is None) != (records.row is None):
            self._row_count += 1 if previous is None else -1
            self._order = None
        elif previous is not None and previous.sort_nanos != records.row.sort_nanos:
            self._order = None

        self._sequence += 1
        self._changes[execution_key] = self._sequence
        self._changes.move_to_end(execution_key)
        while len(self._changes) > self._change_log_size:
            _, forgotten = self._changes.popitem(last=False)
            self._forgotten_through = forgotten

    def _ordered_keys(self) -> list[str]:
        if self._order is None:
            rows = [records.row for records in self._executions.values() if records.row is not None]
            rows.sort(key=lambda row: (-row.sort_nanos, row.key))
            self._order = [row.key for row in rows]
        return self._order

    def list_executions(self, conditions: ExecutionFilter, limit: int, offset: int) -> ExecutionPage:
        """Return the executions that match, newest first, from ``offset`` on, at most ``limit`` of them."""
        with self._lock:
            matching = []
            for key in self._ordered_keys():
                row = self._executions[key].row
                if conditions.matches(row):
                    matching.append(row)
        return ExecutionPage(total=len(matching), offset=offset, limit=limit, rows=matching[offset : offset + limit])

    def facets(self) -> dict[str, dict[str, int]]:
        """Return how many executions each project, domain and phase has, for the list's filters."""
        counts: dict[str, dict[str, int]] = {"project": {}, "domain": {}, "phase": {}}
        with self._lock:
            rows = [records.row for records in self._executions.values() if records.row is not None]
        for row in rows:
            for name, value in (("project", row.project), ("domain", row.domain), ("phase", row.phase)):
                counts[name][value] = counts[name].get(value, 0) + 1
        return {name: dict(sorted(values.items())) for name, values in counts.items()}

    def execution(self, key: str) -> Optional[ExecutionSnapshot]:
        """Return the records of one execution, or None when it has no workflow or summary record."""
        with self._lock:
            records = self._executions.get(key)
            if records is None or records.row is None:
                return None
            return ExecutionSnapshot(
                key=key,
                workflow=records.workflow,
                summary=records.summary,
                nodes=dict(records.nodes),
                tasks=dict(records.tasks),
            )

    def changes_since(self, sequence: int) -> ChangeSet:
        """Return the executions changed after ``sequence``, oldest change first."""
        with self._lock:
            current = self._sequence
            if sequence > current or sequence < self._forgotten_through:
                return ChangeSet(current, [], reset=True)
            keys = []
            for key, changed_at in reversed(self._changes.items()):
                if changed_at <= sequence:
                    break
                keys.append(key)
        keys.reverse()
        return ChangeSet(current, keys, reset=False)

    @property
    def sequence(self) -> int:
        with self._lock:
            return self._sequence

    def mark_ready(self) -> None:
        """Record that the cache contains everything the state topics had when reading started."""
        with self._lock:
            self._ready = True

    def set_error(self, message: str) -> None:
        """Record the error that keeps the cache from following the state topics; empty clears it."""
        with self._lock:
            self._error = message

    def status(self) -> CacheStatus:
        with self._lock:
            return CacheStatus(
                ready=self._ready,
                executions=self._row_count,
                records=self._record_count,
                sequence=self._sequence,
                error=self._error,
            )
