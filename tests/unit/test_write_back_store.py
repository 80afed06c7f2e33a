"""WriteBackStore: one write per changed record per batch, a bounded cache, and folds that match a plain store."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.fold.write_back import WriteBackStore, write_through
from processor.messages import ExecutionSummary
from processor.synthetic import flatten, generate_executions


class CountingStore(InMemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0

    def get(self, kind, key):
        self.reads += 1
        return super().get(kind, key)

    def put(self, kind, key, state):
        self.writes += 1
        super().put(kind, key, state)

    def delete(self, kind, key):
        self.writes += 1
        super().delete(kind, key)


def summary(count: int) -> ExecutionSummary:
    return ExecutionSummary(node_count=count)


def test_write_waits_until_taken():
    backing = CountingStore()
    store = WriteBackStore(backing)

    store.put(RecordKind.SUMMARY, "p:d:a", summary(1))

    assert backing.get(RecordKind.SUMMARY, "p:d:a") is None
    assert store.get(RecordKind.SUMMARY, "p:d:a").node_count == 1
    assert store.pending_count == 1


def test_take_writes_merges_each_key():
    store = WriteBackStore(CountingStore())

    store.partition = 3
    store.put(RecordKind.SUMMARY, "p:d:a", summary(1))
    store.put(RecordKind.NODE, "p:d:a/n0", summary(7))
    store.partition = 4
    store.put(RecordKind.SUMMARY, "p:d:a", summary(2))

    writes = store.take_writes()

    assert [(w.kind, w.key, w.partition) for w in writes] == [
        (RecordKind.NODE, "p:d:a/n0", 3),
        (RecordKind.SUMMARY, "p:d:a", 4),
    ]
    assert writes[1].state.node_count == 2
    assert store.take_writes() == []


def test_delete_after_put_wins():
    backing = CountingStore()
    backing.put(RecordKind.SUMMARY, "p:d:a", summary(1))
    store = WriteBackStore(backing)

    store.put(RecordKind.SUMMARY, "p:d:a", summary(2))
    store.delete(RecordKind.SUMMARY, "p:d:a")
    writes = store.take_writes()
    write_through(backing, writes)

    assert [(w.key, w.state) for w in writes] == [("p:d:a", None)]
    assert backing.get(RecordKind.SUMMARY, "p:d:a") is None
    assert store.get(RecordKind.SUMMARY, "p:d:a") is None


def test_cached_record_read_once():
    backing = CountingStore()
    backing.put(RecordKind.SUMMARY, "p:d:a", summary(1))
    store = WriteBackStore(backing)

    for _ in range(5):
        store.get(RecordKind.SUMMARY, "p:d:a")
    store.get(RecordKind.SUMMARY, "p:d:missing")
    store.get(RecordKind.SUMMARY, "p:d:missing")

    assert backing.reads == 2


def test_cache_evicts_least_recent():
    backing = CountingStore()
    for index in range(4):
        backing.put(RecordKind.SUMMARY, f"p:d:{index}", summary(index))
    store = WriteBackStore(backing, max_cached_records=2)

    for index in range(4):
        store.get(RecordKind.SUMMARY, f"p:d:{index}")
    store.get(RecordKind.SUMMARY, "p:d:0")
    store.take_writes()
    reads_before = backing.reads
    store.get(RecordKind.SUMMARY, "p:d:0")
    store.get(RecordKind.SUMMARY, "p:d:3")

    assert reads_before == backing.reads
    store.get(RecordKind.SUMMARY, "p:d:1")
    assert backing.reads == reads_before + 1


def test_discard_drops_cache_and_pending_writes():
    backing = CountingStore()
    backing.put(RecordKind.SUMMARY, "p:d:a", summary(1))
    store = WriteBackStore(backing)
    store.get(RecordKind.SUMMARY, "p:d:a")
    store.put(RecordKind.SUMMARY, "p:d:b", summary(2))

    backing.put(RecordKind.SUMMARY, "p:d:a", summary(9))
    store.discard()

    assert store.get(RecordKind.SUMMARY, "p:d:a").node_count == 9
    assert store.take_writes() == []


@pytest.mark.parametrize("batch_size", [1, 7, 250])
def test_batched_folds_match_plain_store(batch_size):
    events = flatten(generate_executions(12, 5, start=datetime(2026, 1, 1, tzinfo=timezone.utc)))
    reference = ExecutionFolder(CountingStore())
    backing = CountingStore()
    batched = ExecutionFolder(WriteBackStore(backing, max_cached_records=40))

    for start in range(0, len(events), batch_size):
        for event in events[start : start + batch_size]:
            reference.fold(event)
            batched.fold(event)
        writes = batched.store.take_writes()
        write_through(backing, writes)
        batched.store.mark_stored(writes)

    assert backing.records == reference.store.records
    if batch_size == 1:
        assert backing.writes == reference.store.writes
    else:
        assert backing.writes < reference.store.writes


def test_unstored_records_stay_cached():
    backing = CountingStore()
    store = WriteBackStore(backing, max_cached_records=1)
    store.put(RecordKind.SUMMARY, "p:d:a", summary(1))
    store.put(RecordKind.SUMMARY, "p:d:b", summary(2))

    writes = store.take_writes()

    assert store.get(RecordKind.SUMMARY, "p:d:a").node_count == 1
    assert store.get(RecordKind.SUMMARY, "p:d:b").node_count == 2
    assert backing.reads == 0

    write_through(backing, writes)
    store.mark_stored(writes)
    store.take_writes()

    assert len(store._cached) == 1
