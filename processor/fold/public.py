"""The public view of a state record: what the state topics carry."""

from __future__ import annotations

from typing import Optional

from google.protobuf.descriptor import Descriptor
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


# Per message type: (name, compare presence first) of each field that is
# neither bookkeeping nor the version.
_PUBLIC_FIELDS: dict[Descriptor, tuple[tuple[str, bool], ...]] = {}


def _public_fields(descriptor: Descriptor) -> tuple[tuple[str, bool], ...]:
    fields = _PUBLIC_FIELDS.get(descriptor)
    if fields is None:
        fields = tuple(
            (field.name, field.has_presence)
            for field in descriptor.fields
            if field.name not in BOOKKEEPING_FIELDS and field.name != "version"
        )
        _PUBLIC_FIELDS[descriptor] = fields
    return fields


def public_equal(left: Optional[Message], right: Optional[Message]) -> bool:
    """Return whether two records of one type have the same public view, without copying either.

    Returns the same as ``public_view(left) == public_view(right)``.
    A field with presence (a message field or an optional scalar) differs
    when it is set on one side only, even if the set value is the default.
    """
    if left is None or right is None:
        return left is right
    for name, has_presence in _public_fields(left.DESCRIPTOR):
        if has_presence and left.HasField(name) != right.HasField(name):
            return False
        if getattr(left, name) != getattr(right, name):
            return False
    return True


def public_bytes(state: Message) -> bytes:
    """Serialize the public view of ``state``, version included: the value of its state record."""
    return public_view(state, keep_version=True).SerializeToString()

