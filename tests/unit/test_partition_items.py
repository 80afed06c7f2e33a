"""partition_items reads one input partition's records of a table, as the retention sweep needs them."""

from __future__ import annotations

from types import SimpleNamespace

from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP
from rocksdict import Options, Rdict

from processor.routing import partition_for_key
from topologies.table_store import partition_items

PARTITIONS = 3
CHANGELOG = "app-workflow-executions-changelog"
KEYS = [f"flytesnacks:development:exec-{index}".encode() for index in range(30)]


def _rocksdb_table(tmp_path, active: set[int]) -> SimpleNamespace:
    """A table whose faust RocksDB store has one open database per partition, as TableWriter fills them."""
    store = object.__new__(faust_rocksdb.Store)
    store.use_rocksdict = True
    actives = {TP(CHANGELOG, partition) for partition in active}
    store.app = SimpleNamespace(assignor=SimpleNamespace(assigned_actives=lambda: actives))
    store._dbs = {
        partition: Rdict(str(tmp_path / f"partition-{partition}"), Options(raw_mode=True))
        for partition in range(PARTITIONS)
    }
    for key in KEYS:
        store._dbs[partition_for_key(key, PARTITIONS)][key] = b"value of " + key
    for partition, db in store._dbs.items():
        db[store.offset_key] = str(partition).encode()
    return SimpleNamespace(data=store, changelog_topic_name=CHANGELOG)


def _close(table) -> None:
    for db in table.data._dbs.values():
        db.close()


def test_partition_items_reads_one_rocksdb_database(tmp_path):
    table = _rocksdb_table(tmp_path, active=set(range(PARTITIONS)))
    try:
        by_partition = {partition: partition_items(table, partition, PARTITIONS) for partition in range(PARTITIONS)}
    finally:
        _close(table)

    for partition, items in by_partition.items():
        expected = {key for key in KEYS if partition_for_key(key, PARTITIONS) == partition}
        assert {key for key, _ in items} == expected
        assert all(value == b"value of " + key for key, value in items)


def test_partition_items_skips_the_offset_key(tmp_path):
    table = _rocksdb_table(tmp_path, active=set(range(PARTITIONS)))
    try:
        keys = [key for partition in range(PARTITIONS) for key, _ in partition_items(table, partition, PARTITIONS)]
    finally:
        _close(table)

    assert table.data.offset_key not in keys


def test_partition_items_of_inactive_partition(tmp_path):
    # A standby copy, or a database that a revocation closed.
    table = _rocksdb_table(tmp_path, active={0, 2})
    try:
        items = partition_items(table, 1, PARTITIONS)
    finally:
        _close(table)

    assert items == []


def test_partition_items_filters_other_stores_by_key():
    records = {key: b"value of " + key for key in KEYS}
    table = SimpleNamespace(data=records, items=records.items)

    items = partition_items(table, 1, PARTITIONS)

    assert {key for key, _ in items} == {key for key in KEYS if partition_for_key(key, PARTITIONS) == 1}
