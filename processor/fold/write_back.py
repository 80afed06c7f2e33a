"""A write-back StateStore: a batch of folds works on decoded records in memory.

The worker folds events in batches. Within a batch every record is decoded at
most once, and ``take_writes`` returns it at most once however many of the
batch's events change it, so the worker writes it once to its table and
changelog topic. Records read or written stay decoded in a bounded cache
across batches, because the next batch mostly touches the same running
executions.

Contract:

- ``get`` returns the record as last put in this store, or as the backing
  store has it. The returned record belongs to the store: callers copy it
  before they change it, as every fold in processor/fold does.
- ``put`` and ``delete`` change nothing in the backing store until
  ``take_writes``, which returns each changed key once, with its last value
  and the partition that was current when it was last changed.
- ``discard`` drops the cache and the writes not yet taken. Call it whenever
  the backing store can have changed behind this store, for example after a
  rebalance recovered tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

from google.protobuf.message import Message

from processor.fold.execution import RecordId, RecordKind, StateStore


class RecordReader(Protocol):
    """Source of the records that a WriteBackStore has not cached; every StateStore is one."""

    def get(self, kind: RecordKind, key: str) -> Optional[Message]: ...


# Decoded records kept between batches. A task record with its ledger is a
# few kilobytes when decoded, so this bounds the cache to some hundreds of MiB.
DEFAULT_MAX_CACHED_RECORDS = 50_000


@dataclass(frozen=True)
class PendingWrite:
    """The last value of one changed record in a batch; ``state`` None deletes it."""

    kind: RecordKind
    key: str
    state: Optional[Message]
    partition: int


class WriteBackStore:
    """A StateStore that defers and merges writes to its backing store until ``take_writes``."""

    def __init__(self, backing: RecordReader, max_cached_records: int = DEFAULT_MAX_CACHED_RECORDS) -> None:
        self.backing = backing
        self.max_cached_records = max_cached_records

        # Partition of the event being folded. Each write is tagged with it,
        # because a table write goes to the changelog partition of the event
        # that made it.
        self.partition = 0

        # Insertion order is recency order: a hit moves the record to the end,
        # and eviction starts at the front.
        self._cached: dict[RecordId, Optional[Message]] = {}
        self._pending: dict[RecordId, int] = {}
        # Records taken by take_writes whose values the backing store does
        # not have yet, with how many taken writes of each are outstanding.
        self._unstored: dict[RecordId, int] = {}

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        record_id = (kind, key)
        cached = self._cached.pop(record_id, _MISSING)
        if cached is _MISSING:
            cached = self.backing.get(kind, key)
        self._cached[record_id] = cached
        return cached

    def put(self, kind: RecordKind, key: str, state: Message) -> None:
        record_id = (kind, key)
        self._cached.pop(record_id, None)
        self._cached[record_id] = state
        self._pending.pop(record_id, None)
        self._pending[record_id] = self.partition

    def delete(self, kind: RecordKind, key: str) -> None:
        record_id = (kind, key)
        self._cached.pop(record_id, None)
        self._cached[record_id] = None
        self._pending.pop(record_id, None)
        self._pending[record_id] = self.partition

    @property
    def pending_count(self) -> int:
        """Changed records not yet taken by ``take_writes``."""
        return len(self._pending)

    def take_writes(self) -> list[PendingWrite]:
        """Return every record changed since the last call, once each, in order of their last change.

        The caller must write them all to the backing store (``write_through``
        does it for a plain StateStore) and then call ``mark_stored``. Until
        then the cache keeps their records.
        """
        writes = [
            PendingWrite(kind, key, self._cached[(kind, key)], partition)
            for (kind, key), partition in self._pending.items()
        ]
        for record_id in self._pending:
            self._unstored[record_id] = self._unstored.get(record_id, 0) + 1
        self._pending = {}
        self._evict()
        return writes

    def mark_stored(self, writes: list[PendingWrite]) -> None:
        """Record that ``writes`` reached the backing store, so their records may leave the cache.

        Until then the cache keeps them, because the backing store still
        returns their older values.
        """
        for write in writes:
            record_id = (write.kind, write.key)
            remaining = self._unstored.get(record_id, 0) - 1
            if remaining > 0:
                self._unstored[record_id] = remaining
            else:
                self._unstored.pop(record_id, None)

    def discard(self) -> None:
        """Drop every cached record and every write not yet taken or not yet stored."""
        self._pending = {}
        self._unstored = {}
        self._cached = {}

    def _evict(self) -> None:
        excess = len(self._cached) - self.max_cached_records
        if excess <= 0:
            return
        # The least recently used records come first; walk only as far as
        # the excess needs, past the records still waiting to be stored.
        evicted = []
        for record_id in self._cached:
            if len(evicted) == excess:
                break
            if record_id not in self._unstored:
                evicted.append(record_id)
        for record_id in evicted:
            del self._cached[record_id]


def write_through(store: StateStore, writes: list[PendingWrite]) -> None:
    """Apply writes taken from a WriteBackStore to a plain StateStore; the caller then calls ``mark_stored``."""
    for write in writes:
        if write.state is None:
            store.delete(write.kind, write.key)
        else:
            store.put(write.kind, write.key, write.state)


_MISSING = object()
