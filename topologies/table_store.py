"""A StateStore over faust tables that hold serialized state messages."""

from __future__ import annotations

import collections
import weakref
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from faust import streams as faust_streams
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP
from google.protobuf.message import Message

from processor import metrics
from processor.fold.execution import RecordKind
from processor.fold.write_back import PendingWrite
from processor.routing import partition_for_key


class StateStoreError(RuntimeError):
    """A faust table failed to read or write; the event that needed it must be retried, not dead-lettered."""


class TableStateStore:
    """Read records from faust tables keyed and valued by bytes: the backing store of the worker's WriteBackStore.

    It has no write methods, because TableWriter writes the tables only
    after Kafka confirmed their changelog records.
    """

    def __init__(self, tables: Mapping[RecordKind, object]) -> None:
        self.tables = tables

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        try:
            raw = _read_raw(self.tables[kind], key.encode())
        except Exception as error:
            raise StateStoreError(f"cannot read {key!r} from the {kind.value} table: {error}") from error
        return None if raw is None else kind.parse(raw)


def _read_raw(table, key: bytes) -> Optional[bytes]:
    """Return the table's value of ``key``, or None, with one lookup in a RocksDB store.

    faust's ``table.get`` checks whether the store contains the key and
    reads it only then: two RocksDB reads for a key that exists, one for a
    missing key, and about ten Python calls either way. The store's ``_get``
    is the read that both make, in the database of the current event's
    partition, where TableWriter puts each record.
    NOTE: ``_get`` is private to faust-streaming 0.15.3's RocksDB store;
    tests/unit/test_table_read.py compares it with ``table.get``.
    """
    store = table.data
    if isinstance(store, faust_rocksdb.Store):
        return store._get(key)
    return table.get(key)


@contextmanager
def changing_tables_for(event) -> Iterator[None]:
    """Make ``event`` faust's current event while the block writes tables.

    faust writes a table key to the rocksdb partition and the changelog
    partition of its current event. A batch is written after its events were
    iterated, so the worker names, for each partition, one event of that
    partition whose writes are being made.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def partition_items(table, partition: int, partitions: int) -> list[tuple[bytes, bytes]]:
    """Return the key and value of every record that ``table`` contains for input partition ``partition``.

    faust's ``items()`` reads the RocksDB database of every active partition
    of the worker, so a sweep of each partition read the whole table once per
    partition. TableWriter puts each record into the database of the
    partition of the event being folded, on the input or the repartition
    topic. The router folds an event only on its key's murmur2 partition.
    faust's recovery and standby copies fill the database of a changelog
    partition's own number. So a RocksDB store's database of ``partition``
    contains exactly those records. Other stores keep all keys together and are
    filtered by the key's murmur2 partition.

    A partition that is not active gives no records, as in ``items()``: its
    database may be a standby copy, or closed after a revocation.
    NOTE: it reads faust-streaming 0.15.3's private ``_db_for_partition`` and
    ``_visible_items``; tests/unit/test_partition_items.py covers them.
    """
    store = table.data
    if not isinstance(store, faust_rocksdb.Store):
        return [(key, value) for key, value in table.items() if partition_for_key(key, partitions) == partition]

    changelog = TP(table.changelog_topic_name, partition)
    if changelog not in store.app.assignor.assigned_actives():
        return []
    return list(store._visible_items(store._db_for_partition(partition)))


class TableWriter:
    """Write a batch's changed records to the tables' changelog topics and, once confirmed, their local stores.

    faust's own table write sends each changelog record through faust's
    producer, which costs more than the fold of an event. This writer
    produces the changelog records with the worker's confluent-kafka
    producer, to the partition of the event that changed each record, and
    puts the values into the tables' stores as faust would, but only after
    Kafka confirmed them. A store therefore never contains a value that its
    changelog lacks, which faust's recovery would otherwise roll back
    unevenly: it seeks to the persisted offset itself and applies that
    record again.
    """

    def __init__(self, tables: Mapping[RecordKind, object], producer) -> None:
        self.tables = tables
        self.producer = producer
        self.changelog_topics = {kind: table.changelog_topic_name for kind, table in tables.items()}
        self.kind_of_changelog = {topic: kind for kind, topic in self.changelog_topics.items()}
        self.writes_by_kind = {
            kind: metrics.TABLE_WRITES.labels(table=table.name) for kind, table in tables.items()
        }

    def produce(self, writes: list[PendingWrite], delivery) -> list[Optional[bytes]]:
        """Produce each record's changelog record to the partition of the event that changed it.

        Returns the serialized values, None for a deletion, in the order of
        ``writes``, for ``store`` to put into the tables once Kafka confirmed
        them.
        """
        values = [write.state.SerializeToString() if write.state is not None else None for write in writes]
        self.produce_again(writes, values, delivery)

        written = collections.Counter(write.kind for write in writes)
        for kind, count in written.items():
            self.writes_by_kind[kind].inc(count)
        return values

    def produce_again(self, writes: list[PendingWrite], values: list[Optional[bytes]], delivery) -> None:
        """Produce a changelog record of each write with its value, to the write's partition.

        ``produce`` sends its records with it, and a pipeline that replaced
        its producer sends the records of an unconfirmed batch again.
        """
        for write, value in zip(writes, values):
            self.producer.send(self.changelog_topics[write.kind], write.key.encode(), value, delivery, partition=write.partition)

    def store(
        self,
        writes: list[PendingWrite],
        values: list[Optional[bytes]],
        offsets: Mapping[tuple[str, int], int],
        event_of_partition: Mapping[int, object],
    ) -> None:
        """Put the values that ``produce`` returned, and the confirmed changelog offsets, into the tables' stores.

        The worker calls it only after Kafka confirmed the changelog records,
        so the local store never contains a value that its changelog lacks.
        ``offsets`` holds the last confirmed offset of each changelog
        partition, which the store records as faust does after each
        changelog write, so that a restart on the same disk reads only newer
        changelog records. Raises StateStoreError when a store fails.
        """
        items: dict[tuple[RecordKind, int], list[tuple[bytes, Optional[bytes]]]] = collections.defaultdict(list)
        for write, value in zip(writes, values):
            items[(write.kind, write.partition)].append((write.key.encode(), value))
        offset_of: dict[tuple[RecordKind, int], int] = {}
        for (topic, partition), offset in offsets.items():
            kind = self.kind_of_changelog.get(topic)
            if kind is not None:
                offset_of[(kind, partition)] = offset

        for kind, partition in sorted(items.keys() | offset_of.keys()):
            store = self.tables[kind].data
            partition_items = items.get((kind, partition), [])
            offset = offset_of.get((kind, partition))
            try:
                if isinstance(store, faust_rocksdb.Store):
                    _write_rocksdb_batch(store, partition, partition_items, offset)
                else:
                    with changing_tables_for(event_of_partition[partition]):
                        _write_one_by_one(store, partition_items, offset, TP(self.changelog_topics[kind], partition))
            except Exception as error:
                raise StateStoreError(
                    f"cannot write {len(partition_items)} records and offset {offset} to partition {partition} "
                    f"of the {kind.value} table: {error}"
                ) from error


def _write_rocksdb_batch(
    store: faust_rocksdb.Store, partition: int, items: list[tuple[bytes, Optional[bytes]]], offset: Optional[int]
) -> None:
    """Write a partition's values and its changelog offset to its RocksDB database in one atomic write batch.

    One batch appends to the write-ahead log once instead of once per key,
    and a crash leaves either all of it or none. The keys go into the
    store's key index as faust's own writes put them, so that reads find
    their partition without looking into every database.
    """
    batch = faust_rocksdb.rocksdict.WriteBatch(raw_mode=True) if store.use_rocksdict else faust_rocksdb.rocksdb.WriteBatch()
    for key, value in items:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
            store._key_index[key] = partition
    if offset is not None:
        batch.put(store.offset_key, str(offset).encode())
    store._db_for_partition(partition).write(batch)


def _write_one_by_one(store, items: list[tuple[bytes, Optional[bytes]]], offset: Optional[int], changelog: TP) -> None:
    """Write values and the changelog offset through the store's mapping interface: the path of memory stores."""
    for key, value in items:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    if offset is not None:
        store.set_persisted_offset(changelog, offset)
