"""partition_items reads one input partition's records of a table, as the retention sweep needs them."""

from __future__ import annotations

from types import SimpleNamespace

from faust.stores import rocksdb as faust_rocksdb
from rocksdict import Options, Rdict

from processor.routing import partition_for_key
from topologies.table_store import partition_items

PARTITIONS = 3
KEYS = [f"flytesnacks:development:exec-{index}".encode() for index in range(30)]


def _rocksdb_store(tmp_path) -> faust_rocksdb.Store:
    """A faust RocksDB store with one open database per partition, as TableWriter fills them."""
    store = object.__new__(faust_rocksdb.Store)
    store.use_rocksdict = True
    store._dbs = {
        partition: Rdict(str(tmp_path / f"partition-{partition}"), Options(raw_mode=True))
        for partition in range(PARTITIONS)
    }
    for key in KEYS:
        store._dbs[partition_for_key(key, PARTITIONS)][key] = b"value of " + key
    for partition, db in store._dbs.items():
        db[store.offset_key] = str(partition).encode()
    return store


def test_partition_items_reads_one_rocksdb_database(tmp_path):
    store = _rocksdb_store(tmp_path)
    table = SimpleNamespace(data=store)
    try:
        for partition in range(PARTITIONS):
            items = partition_items(table, partition, PARTITIONS)

            expected = {key for key in KEYS if partition_for_key(key, PARTITIONS) == partition}
            assert {key for key, _ in items} == expected
            assert all(value == b"value of " + key for key, value in items)
    finally:
        for db in store._dbs.values():
            db.close()


def test_partition_items_skips_the_offset_key(tmp_path):
    store = _rocksdb_store(tmp_path)
    table = SimpleNamespace(data=store)
    try:
        keys = [key for partition in range(PARTITIONS) for key, _ in partition_items(table, partition, PARTITIONS)]
    finally:
        for db in store._dbs.values():
            db.close()

    assert store.offset_key not in keys


def test_partition_items_filters_other_stores_by_key():
    records = {key: b"value of " + key for key in KEYS}
    table = SimpleNamespace(data=records, items=records.items)

    items = partition_items(table, 1, PARTITIONS)

    assert {key for key, _ in items} == {key for key in KEYS if partition_for_key(key, PARTITIONS) == 1}
