"""A StateStore over faust tables that hold serialized state messages."""

from __future__ import annotations

from typing import Mapping, Optional

from google.protobuf.message import Message

from processor.fold.execution import RecordKind


class StateStoreError(RuntimeError):
    """A faust table failed to read or write; the event that needed it must be retried, not dead-lettered."""


class TableStateStore:
    """Read and write records in faust tables keyed and valued by bytes.

    Writes must happen inside the agent that handles the event, because faust
    sends each table change to the changelog partition of the current event.
    """

    def __init__(self, tables: Mapping[RecordKind, object]) -> None:
        self.tables = tables

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        try:
            raw = self.tables[kind].get(key.encode())
        except Exception as error:
            raise StateStoreError(f"cannot read {key!r} from the {kind.value} table: {error}") from error
        if raw is None:
            return None
        state = kind.message_class()
        state.ParseFromString(raw)
        return state

    def put(self, kind: RecordKind, key: str, state: Message) -> None:
        try:
            self.tables[kind][key.encode()] = state.SerializeToString()
        except Exception as error:
            raise StateStoreError(f"cannot write {key!r} to the {kind.value} table: {error}") from error

    def delete(self, kind: RecordKind, key: str) -> None:
        try:
            self.tables[kind].pop(key.encode(), None)
        except Exception as error:
            raise StateStoreError(f"cannot delete {key!r} from the {kind.value} table: {error}") from error
