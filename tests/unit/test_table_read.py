"""TableStateStore reads a record with one RocksDB lookup and finds what faust's own ``table.get`` finds."""

from __future__ import annotations

from types import SimpleNamespace

import faust
import pytest

from processor.fold.execution import RecordKind
from processor.messages import WorkflowExecutionState
from topologies.table_store import TableStateStore, changing_tables_for

KEY = "flytesnacks:development:exec-1"


class _FoldedEvent:
    """The part of a faust event that the RocksDB store reads: the partition of its message."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


@pytest.fixture
def rocksdb_table(tmp_path):
    # No broker is contacted: the table's store opens its databases under datadir.
    app = faust.App(
        "table-read-test",
        broker="kafka://127.0.0.1:1",
        store="rocksdb://",
        datadir=str(tmp_path),
        autodiscover=False,
    )
    table = app.Table("workflow", key_type=bytes, value_type=bytes, partitions=3)
    yield table
    for db in table.data._dbs.values():
        db.close()


def _stored_record(version: int) -> bytes:
    record = WorkflowExecutionState(version=version)
    record.execution.id.name = "exec-1"
    return record.SerializeToString()


def test_table_read_current_event_partition(rocksdb_table):
    rocksdb_table.data._db_for_partition(1).put(KEY.encode(), _stored_record(version=4))
    store = TableStateStore({RecordKind.WORKFLOW: rocksdb_table})

    with changing_tables_for(_FoldedEvent(partition=1)):
        record = store.get(RecordKind.WORKFLOW, KEY)
        same_as_faust = rocksdb_table.get(KEY.encode())

    assert record.version == 4
    assert record.SerializeToString() == same_as_faust


def test_table_read_missing_key_is_none(rocksdb_table):
    rocksdb_table.data._db_for_partition(2).put(KEY.encode(), _stored_record(version=1))
    store = TableStateStore({RecordKind.WORKFLOW: rocksdb_table})

    # The key is in partition 2's database, so an event of partition 1 does
    # not see it, with faust's read or with this one.
    with changing_tables_for(_FoldedEvent(partition=1)):
        assert store.get(RecordKind.WORKFLOW, KEY) is None
        assert rocksdb_table.get(KEY.encode()) is None
        assert store.get(RecordKind.WORKFLOW, "flytesnacks:development:other") is None


def test_table_read_memory_store():
    stored = {KEY.encode(): _stored_record(version=2)}
    table = SimpleNamespace(data=stored, get=stored.get)
    store = TableStateStore({RecordKind.WORKFLOW: table})

    assert store.get(RecordKind.WORKFLOW, KEY).version == 2
    assert store.get(RecordKind.WORKFLOW, "flytesnacks:development:other") is None
