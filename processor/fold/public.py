"""The public view of a state record: what the state topics carry."""

from __future__ import annotations

from google.protobuf.message import Message

# Fields that serve the fold only; they are kept in the tables but not published.
BOOKKEEPING_FIELDS = (
    "ledger",
    "seen_fingerprints",
    "subtask_sources",
    "event_details",
    "node_phases",
    "task_phases",
)


def public_view(state: Message, *, keep_version: bool = False) -> Message:
    """Return a copy of the state without bookkeeping fields, and with version 0 unless ``keep_version``."""
    view = type(state)()
    view.CopyFrom(state)
    for name in BOOKKEEPING_FIELDS:
        if name in view.DESCRIPTOR.fields_by_name:
            view.ClearField(name)
    if not keep_version:
        view.version = 0
    return view
