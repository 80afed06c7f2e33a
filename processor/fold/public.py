"""The public view of a state record: what the state topics carry."""

from __future__ import annotations

from typing import Optional

from google.protobuf.descriptor import Descriptor, FieldDescriptor
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
    """Return a copy of the state without bookkeeping fields, and with version 0 unless ``keep_version``.

    Only the public fields are copied: the bookkeeping of a task record (its
    ledger, event details and subtask sources) is often larger than the rest.
    """
    view = type(state)()
    for name, kind in _copied_fields(state.DESCRIPTOR):
        if kind is _SCALAR:
            setattr(view, name, getattr(state, name))
        elif kind is _REPEATED_MESSAGE or kind is _REPEATED_SCALAR:
            getattr(view, name).extend(getattr(state, name))
        elif kind is _SCALAR_MAP:
            getattr(view, name).update(getattr(state, name))
        elif kind is _MESSAGE_MAP:
            target = getattr(view, name)
            for key, value in getattr(state, name).items():
                target[key].CopyFrom(value)
        elif state.HasField(name):
            if kind is _SINGULAR_MESSAGE:
                getattr(view, name).CopyFrom(getattr(state, name))
            else:
                setattr(view, name, getattr(state, name))
    if keep_version:
        view.version = state.version
    return view


_SINGULAR_MESSAGE = "singular message"
_REPEATED_MESSAGE = "repeated message"
_REPEATED_SCALAR = "repeated scalar"
_SCALAR_MAP = "map of scalars"
_MESSAGE_MAP = "map of messages"
_SCALAR = "scalar"
_OPTIONAL_SCALAR = "scalar with presence"

# Per message type: (name, kind) of each field that public_view copies.
_COPIED_FIELDS: dict[Descriptor, tuple[tuple[str, str], ...]] = {}


def _copied_fields(descriptor: Descriptor) -> tuple[tuple[str, str], ...]:
    fields = _COPIED_FIELDS.get(descriptor)
    if fields is None:
        fields = tuple(
            (field.name, _field_kind(field))
            for field in descriptor.fields
            if field.name not in BOOKKEEPING_FIELDS and field.name != "version"
        )
        _COPIED_FIELDS[descriptor] = fields
    return fields


def _field_kind(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return _MESSAGE_MAP if value_field.type == FieldDescriptor.TYPE_MESSAGE else _SCALAR_MAP
    repeated = field.is_repeated
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _REPEATED_MESSAGE if repeated else _SINGULAR_MESSAGE
    if repeated:
        return _REPEATED_SCALAR
    return _OPTIONAL_SCALAR if field.has_presence else _SCALAR


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

