"""Progress of a record derived from its sorted ledger: phase, times, result and per-event verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from google.protobuf import timestamp_pb2

from processor.fold import timestamps
from processor.fold.ledger import copy_result
from processor.fold.outcome import Outcome
from processor.messages import LedgerEntry


@dataclass
class Progress:
    """What the walk over a sorted ledger found.

    ``verdicts`` maps each entry's fingerprint to the outcome it had in the
    walk; ``kept`` holds the entries up to and including the first terminal
    one, because later entries can never matter again: an event that arrives
    later can only move the first terminal event earlier.
    """

    phase: Optional[int] = None
    phase_version: int = 0
    created_at: Optional[timestamp_pb2.Timestamp] = None
    updated_at: Optional[timestamp_pb2.Timestamp] = None
    started_at: Optional[timestamp_pb2.Timestamp] = None
    terminal_at: Optional[timestamp_pb2.Timestamp] = None
    result: Optional[LedgerEntry] = None
    newest_accepted: Optional[LedgerEntry] = None
    verdicts: dict[int, Outcome] = field(default_factory=dict)
    kept: list[LedgerEntry] = field(default_factory=list)
    ownership: list[tuple[timestamp_pb2.Timestamp, str]] = field(default_factory=list)

    def accept(self, entry: LedgerEntry) -> None:
        self.verdicts[entry.fingerprint] = Outcome.APPLIED
        self.phase = entry.phase
        self.updated_at = entry.occurred_at
        self.newest_accepted = entry

    def reject(self, entry: LedgerEntry, outcome: Outcome) -> None:
        self.verdicts[entry.fingerprint] = outcome


def write_progress(closure, progress: Progress, uri_field: str) -> None:
    """Overwrite the closure's progress fields with the derived ones, in place."""
    closure.phase = progress.phase if progress.phase is not None else 0

    for name, value in (
        ("created_at", progress.created_at),
        ("updated_at", progress.updated_at),
        ("started_at", progress.started_at),
    ):
        if value is None:
            closure.ClearField(name)
        else:
            getattr(closure, name).CopyFrom(value)

    # No duration without a known start: absent, not zero.
    if progress.terminal_at is not None and progress.started_at is not None:
        closure.duration.CopyFrom(timestamps.duration_between(progress.started_at, progress.terminal_at))
    else:
        closure.ClearField("duration")

    closure.ClearField("output_result")
    if progress.result is not None:
        copy_result(progress.result, closure, uri_field)
