"""Outcome of folding one event into its record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

StateT = TypeVar("StateT")


class Outcome(str, enum.Enum):
    """Result of folding one event; every value but APPLIED is a rejection."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    ALREADY_TERMINAL = "already-terminal"
    STALE = "stale"
    INCOMPATIBLE_CLUSTER = "incompatible-cluster"
    INVALID = "invalid"
    # The fold would make a record larger than the state and changelog topics
    # accept, so it changed nothing.
    RECORD_TOO_LARGE = "record-too-large"


@dataclass(frozen=True)
class Transition(Generic[StateT]):
    """New state of a record after one event.

    ``state`` is a new object whenever the record changed in any way, its
    bookkeeping (ledger, fingerprints) included, and the input state otherwise;
    a fold never mutates the state it was given. ``changed`` is true when the
    public view changed, the part that is published. A rejected event can
    still change the record (an older event fills fields the record lacks, a
    duplicate phase joins the ledger), so ``changed`` and ``outcome`` are
    independent.
    """

    state: Optional[StateT]
    outcome: Outcome
    changed: bool
    detail: str = ""

    # True when the record had already folded this very event (same fingerprint).
    replayed: bool = False
