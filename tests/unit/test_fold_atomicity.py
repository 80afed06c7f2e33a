"""A fold changes all of its records or none: the journal, failed folds and records too large for their topics."""

from __future__ import annotations

import pytest
from flyteidl.event import event_pb2

from .builders import EXECUTION_KEY, TaskPhase, WorkflowPhase, keyed, task_event, task_log, workflow_event
from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.fold.journal import FoldJournal
from processor.fold.outcome import Outcome
from processor.fold.write_back import WriteBackStore
from processor.messages import ExecutionSummary, WorkflowExecutionState

TASK_KEY = f"{EXECUTION_KEY}/n0/wf.train/0"


class SizeLimit:
    """A record limit on key and serialized value together, without compression."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def violation(self, key: str, state) -> str | None:
        size = len(key) + state.ByteSize()
        return None if size <= self.max_bytes else f"would take {size} bytes, more than {self.max_bytes} bytes"


def snapshot(store: InMemoryStateStore) -> dict:
    """Serialized copy of every record, to compare a store before and after a fold."""
    return {
        (kind, key): record.SerializeToString(deterministic=True)
        for kind, records in store.records.items()
        for key, record in records.items()
    }


def map_task_event(at: int, first_index: int, subtasks: int, phase: int = TaskPhase.RUNNING):
    """A map task event reporting ``subtasks`` subtasks from ``first_index`` on, each with a 100-byte log URI."""
    event = task_event("n0", phase, at, phase_version=at)
    for index in range(first_index, first_index + subtasks):
        resource = event.metadata.external_resources.add(external_id=f"job-{index}", index=index, phase=phase)
        resource.logs.append(task_log(f"log-{index}", uri="https://logs.example/" + "x" * 80 + f"/{index}"))
    return event


def test_journal_undo_restores_values():
    store = InMemoryStateStore()
    old = ExecutionSummary(version=1)
    store.put(RecordKind.SUMMARY, "a", old)
    journal = FoldJournal(store)

    journal.begin()
    journal.put(RecordKind.SUMMARY, "a", ExecutionSummary(version=2))
    journal.put(RecordKind.SUMMARY, "a", ExecutionSummary(version=3))
    journal.put(RecordKind.SUMMARY, "b", ExecutionSummary(version=1))
    journal.undo()

    assert store.get(RecordKind.SUMMARY, "a") is old
    assert store.get(RecordKind.SUMMARY, "b") is None


def test_journal_undo_restores_deleted():
    store = InMemoryStateStore()
    old = WorkflowExecutionState(version=4)
    store.put(RecordKind.WORKFLOW, "w", old)
    journal = FoldJournal(store)

    journal.begin()
    journal.delete(RecordKind.WORKFLOW, "w")
    journal.undo()

    assert store.get(RecordKind.WORKFLOW, "w") is old


def test_journal_changed_skips_rewrites_and_deletes():
    store = InMemoryStateStore()
    unchanged = ExecutionSummary(version=1)
    store.put(RecordKind.SUMMARY, "same", unchanged)
    store.put(RecordKind.SUMMARY, "gone", ExecutionSummary(version=1))
    journal = FoldJournal(store)

    journal.begin()
    journal.put(RecordKind.SUMMARY, "same", unchanged)
    journal.delete(RecordKind.SUMMARY, "gone")
    replacement = ExecutionSummary(version=2)
    journal.put(RecordKind.SUMMARY, "new", replacement)

    assert list(journal.changed()) == [(RecordKind.SUMMARY, "new", replacement)]


def test_journal_begin_forgets_last_fold():
    store = InMemoryStateStore()
    journal = FoldJournal(store)
    journal.begin()
    journal.put(RecordKind.SUMMARY, "a", ExecutionSummary(version=1))

    journal.begin()
    journal.undo()

    assert store.get(RecordKind.SUMMARY, "a") is not None


def test_failed_fold_changes_nothing(monkeypatch):
    store = InMemoryStateStore()
    folder = ExecutionFolder(store)
    folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 1)))
    before = snapshot(store)

    # The task record is stored before the summary; a failure there must
    # take the task record back out.
    def failing_sync(*args, **kwargs):
        raise RuntimeError("summary failed")

    monkeypatch.setattr(folder, "_sync_summary", failing_sync)
    with pytest.raises(RuntimeError):
        folder.fold(keyed(task_event("n0", TaskPhase.RUNNING, 2)))

    assert snapshot(store) == before


def test_oversized_record_rejected_unchanged():
    store = InMemoryStateStore()
    folder = ExecutionFolder(store, SizeLimit(30_000))
    folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 1)))
    first = folder.fold(keyed(map_task_event(2, 0, 100)))
    before = snapshot(store)

    result = folder.fold(keyed(map_task_event(3, 100, 100)))

    assert first.outcome is Outcome.APPLIED
    assert result.outcome is Outcome.RECORD_TOO_LARGE
    assert TASK_KEY in result.detail
    assert "more than 30000 bytes" in result.detail
    assert result.changes == []
    assert result.republish == []
    assert snapshot(store) == before


def test_oversized_first_event_leaves_no_records():
    # The first event of an execution also creates an inferred workflow
    # record and a summary; a rejection removes them again.
    store = InMemoryStateStore()
    folder = ExecutionFolder(store, SizeLimit(10_000))

    result = folder.fold(keyed(map_task_event(2, 0, 100)))

    assert result.outcome is Outcome.RECORD_TOO_LARGE
    assert snapshot(store) == {}


def test_later_small_event_still_folds():
    store = InMemoryStateStore()
    folder = ExecutionFolder(store, SizeLimit(30_000))
    folder.fold(keyed(map_task_event(2, 0, 100)))
    folder.fold(keyed(map_task_event(3, 100, 100)))

    result = folder.fold(keyed(task_event("n0", TaskPhase.SUCCEEDED, 4, phase_version=4)))

    assert result.outcome is Outcome.APPLIED
    task = store.get(RecordKind.TASK, TASK_KEY)
    assert task.task_execution.closure.phase == TaskPhase.SUCCEEDED
    assert len(task.task_execution.closure.metadata.external_resources) == 100


def test_rejection_in_write_back_store_keeps_old_values():
    backing = InMemoryStateStore()
    store = WriteBackStore(backing)
    folder = ExecutionFolder(store, SizeLimit(30_000))
    folder.fold(keyed(map_task_event(2, 0, 100)))
    stored = store.get(RecordKind.TASK, TASK_KEY)

    result = folder.fold(keyed(map_task_event(3, 100, 100)))
    writes = {(write.kind, write.key): write.state for write in store.take_writes()}

    assert result.outcome is Outcome.RECORD_TOO_LARGE
    assert writes[(RecordKind.TASK, TASK_KEY)] is stored
    assert store.get(RecordKind.TASK, TASK_KEY) is stored


def test_map_task_event_size_below_limit():
    # The rejected event itself is small: the record grows past the limit.
    event = map_task_event(3, 100, 100)

    assert isinstance(event, event_pb2.TaskExecutionEvent)
    assert event.ByteSize() < 30_000


class FailingLimit:
    """A record limit whose check itself fails, as a codec out of memory would."""

    def violation(self, key: str, state) -> str | None:
        raise MemoryError("cannot compress")


def test_failing_size_check_changes_nothing():
    store = InMemoryStateStore()
    folder = ExecutionFolder(store, FailingLimit())

    with pytest.raises(MemoryError):
        folder.fold(keyed(task_event("n0", TaskPhase.RUNNING, 2)))

    assert snapshot(store) == {}
