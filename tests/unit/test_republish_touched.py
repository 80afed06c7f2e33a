"""ExecutionFolder.fold with republish_touched: records that a dead owner left unpublished are published again."""

from __future__ import annotations

from datetime import datetime, timezone

from processor.events import EventKind
from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.synthetic import generate_executions


def events_until_last_task_event():
    """The events of one execution up to and including its last task event, and that event's index."""
    events = generate_executions(1, 11, start=datetime(2026, 1, 1, tzinfo=timezone.utc))[0].events
    last_task = max(index for index, event in enumerate(events) if event.kind is EventKind.TASK)
    return events[: last_task + 1], last_task


def store_with_summary_ahead():
    """A store in which the last task event's task record is rolled back but the summary already reflects it."""
    events, last_task = events_until_last_task_event()
    ahead = ExecutionFolder(InMemoryStateStore())
    for event in events:
        ahead.fold(event)

    behind = ExecutionFolder(InMemoryStateStore())
    for event in events[:last_task]:
        behind.fold(event)
    key = events[last_task].execution_key
    behind.store.put(RecordKind.SUMMARY, key, ahead.store.get(RecordKind.SUMMARY, key))
    return behind, events[last_task]


def test_plain_fold_skips_unchanged_summary():
    folder, event = store_with_summary_ahead()

    result = folder.fold(event)

    published = {(change.kind, change.key) for change in result.records_to_publish}
    assert (RecordKind.TASK, event.entity_key) in published
    assert (RecordKind.SUMMARY, event.execution_key) not in published


def test_republish_touched_publishes_summary_and_workflow():
    folder, event = store_with_summary_ahead()

    result = folder.fold(event, republish_touched=True)

    published = [(change.kind, change.key) for change in result.records_to_publish]
    assert (RecordKind.SUMMARY, event.execution_key) in published
    assert (RecordKind.WORKFLOW, event.execution_key) in published
    assert published.count((RecordKind.TASK, event.entity_key)) == 1


def test_republish_touched_keeps_records_unchanged():
    folder, event = store_with_summary_ahead()
    summary_before = folder.store.get(RecordKind.SUMMARY, event.execution_key)

    folder.fold(event, republish_touched=True)

    assert folder.store.get(RecordKind.SUMMARY, event.execution_key) == summary_before


def test_republish_touched_skips_published_records():
    folder, event = store_with_summary_ahead()
    summary = (RecordKind.SUMMARY, event.execution_key)

    result = folder.fold(event, republish_touched=True, published={summary})

    published = [(change.kind, change.key) for change in result.records_to_publish]
    assert summary not in published
    assert (RecordKind.WORKFLOW, event.execution_key) in published
    assert (RecordKind.TASK, event.entity_key) in published
