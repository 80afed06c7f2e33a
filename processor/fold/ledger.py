"""The per-record ledger: the events of a record, sorted, from which its progress is derived.

Why a ledger: Kafka producers and FlyteAdmin's own publisher do not keep
event order, and faust replays events after a crash on top of restored
tables. Deriving phase, started_at, duration and the result from the sorted
set of events makes them independent of arrival order and makes a replayed
event a no-op (its fingerprint is already known).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Callable, Iterable, Mapping, MutableSequence, Optional, Sequence

from google.protobuf.message import Message

from processor.fold.outcome import Outcome, Transition
from processor.messages import LedgerEntry


def fingerprint(event: Message) -> int:
    """Return a 64-bit identity of an event: equal events give equal fingerprints."""
    digest = hashlib.blake2b(event.SerializeToString(deterministic=True), digest_size=8).digest()
    return struct.unpack(">Q", digest)[0]


def entry_from_event(event: Message, event_fingerprint: int) -> LedgerEntry:
    """Reduce a workflow, node or task event to its ledger entry."""
    entry = LedgerEntry(
        phase=event.phase,
        fingerprint=event_fingerprint,
        producer_id=event.producer_id,
    )
    entry.occurred_at.CopyFrom(event.occurred_at)
    if hasattr(event, "phase_version"):
        entry.phase_version = event.phase_version

    if event.output_uri:
        entry.output_uri = event.output_uri
    elif event.HasField("output_data"):
        entry.output_data.CopyFrom(event.output_data)
    elif event.HasField("error"):
        entry.error.CopyFrom(event.error)
    return entry


def sort_key(entry: LedgerEntry, rank: Callable[[int], int]) -> tuple:
    """Order of ledger entries: occurred_at, then phase rank, then phase_version, then fingerprint.

    The last key only makes the order total, so that equal sets of events
    always sort the same way.
    """
    occurred_at = entry.occurred_at
    return (occurred_at.seconds, occurred_at.nanos, rank(entry.phase), entry.phase_version, entry.fingerprint)


def sorted_entries(entries: Iterable[LedgerEntry], rank: Callable[[int], int]) -> list[LedgerEntry]:
    """Return the entries in ``sort_key`` order."""
    return sorted(entries, key=lambda entry: sort_key(entry, rank))


def with_entry(stored: Sequence[LedgerEntry], entry: LedgerEntry, rank: Callable[[int], int]) -> tuple[list, bool]:
    """Return the stored entries, sorted, with ``entry`` in its place, and whether that place is the end.

    ``stored`` is a record's ledger, which is sorted already. Executors send
    most events in order, so the new entry usually goes last and nothing
    else moves. A fold then updates the record instead of rewriting it.
    """
    entries = [*stored, entry]
    if len(entries) == 1 or sort_key(entries[-2], rank) < sort_key(entry, rank):
        return entries, True
    return sorted_entries(entries, rank), False


def store_kept(ledger: MutableSequence[LedgerEntry], kept: list[LedgerEntry], appended: bool) -> None:
    """Make a record's ledger hold the kept entries of a walk over ``with_entry``'s result.

    With ``appended`` the walk saw the stored entries first, in the same
    order, so it kept all of them and at most the new entry after them: the
    ledger gets that entry, or nothing. Otherwise it is rewritten.
    """
    if appended:
        if len(kept) > len(ledger):
            ledger.append(kept[-1])
        return
    del ledger[:]
    ledger.extend(kept)


def has_result(entry: LedgerEntry) -> bool:
    return entry.WhichOneof("result") is not None


def copy_result(entry: LedgerEntry, closure: Message, uri_field: str) -> None:
    """Set the closure's result oneof from the entry; ``uri_field`` names the closure's URI field."""
    kind = entry.WhichOneof("result")
    if kind == "output_uri":
        if uri_field == "outputs.uri":
            closure.outputs.uri = entry.output_uri
        else:
            setattr(closure, uri_field, entry.output_uri)
    elif kind == "output_data":
        closure.output_data.CopyFrom(entry.output_data)
    elif kind == "error":
        closure.error.CopyFrom(entry.error)


def screen_event(
    state: Optional[Message], event: Message, ranks: Mapping[int, int], kind: str
) -> tuple[Optional[Transition], int]:
    """Return (rejection, fingerprint); the rejection is None when the event may be folded.

    An event without occurred_at or with a phase unknown to ``ranks`` is
    invalid, and an event whose fingerprint the record has seen is a replay.
    """
    if not event.HasField("occurred_at"):
        return Transition(state, Outcome.INVALID, False, "event has no occurred_at"), 0
    if event.phase not in ranks:
        return Transition(state, Outcome.INVALID, False, f"unknown {kind} phase {event.phase}"), 0

    event_fingerprint = fingerprint(event)
    if state is not None and event_fingerprint in state.seen_fingerprints:
        replay = Transition(state, Outcome.DUPLICATE, False, "event was already folded", replayed=True)
        return replay, event_fingerprint
    return None, event_fingerprint
