"""A StateStore wrapper that lets one fold be undone: the fold of an event changes all of its records or none.

The folder writes up to five records for one event (its own record, an
inferred workflow record, the summary, enriched records) and can reject the
event, or fail, after it wrote some of them. ``FoldJournal`` passes every
read and write through to the store and remembers, for each record that the
current fold writes, the value it had before. ``undo`` puts those values back.

Contract: a record's value before the fold is the store's value at the
fold's first write of it. ``undo`` restores it with ``put``, or ``delete``
for a record that did not exist, so a write-back store counts the record as
changed once more, with its old value. Folds never mutate a stored record,
so the remembered values are the records as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

from google.protobuf.message import Message

if TYPE_CHECKING:
    # processor.fold.execution imports this module.
    from processor.fold.execution import RecordId, RecordKind, StateStore


class FoldJournal:
    """A StateStore over ``store`` that remembers each record's value before the current fold's first write of it."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.before: dict[RecordId, Optional[Message]] = {}
        # The value of each record that the current fold wrote last; None for a deletion.
        self.after: dict[RecordId, Optional[Message]] = {}

    def begin(self) -> None:
        """Start a new fold: forget what the last one wrote."""
        if self.before:
            self.before = {}
            self.after = {}

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        return self.store.get(kind, key)

    def put(self, kind: RecordKind, key: str, state: Message) -> None:
        self._remember(kind, key)
        self.store.put(kind, key, state)
        self.after[(kind, key)] = state

    def delete(self, kind: RecordKind, key: str) -> None:
        self._remember(kind, key)
        self.store.delete(kind, key)
        self.after[(kind, key)] = None

    def changed(self) -> Iterator[tuple[RecordKind, str, Message]]:
        """Yield each record that the current fold replaced with another object, as it is now; deleted ones are skipped."""
        before = self.before
        for record_id, current in self.after.items():
            if current is not None and current is not before[record_id]:
                yield record_id[0], record_id[1], current

    def undo(self) -> None:
        """Give every record that the current fold wrote its value from before the fold, latest write first."""
        for (kind, key), previous in reversed(self.before.items()):
            if previous is None:
                self.store.delete(kind, key)
            else:
                self.store.put(kind, key, previous)
        self.before = {}
        self.after = {}

    def _remember(self, kind: RecordKind, key: str) -> None:
        record_id = (kind, key)
        if record_id not in self.before:
            self.before[record_id] = self.store.get(kind, key)
