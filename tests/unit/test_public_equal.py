"""public_equal gives the same verdict as comparing copied public views."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.fold.public import public_equal, public_view
from processor.messages import TaskExecutionState
from processor.synthetic import flatten, generate_executions


def states_of_folds() -> list:
    """Every record state that the folds of a few synthetic executions store, in order."""
    stored = []

    class RecordingStore(InMemoryStateStore):
        def put(self, kind, key, state):
            stored.append((kind, state))
            super().put(kind, key, state)

    folder = ExecutionFolder(RecordingStore())
    for event in flatten(generate_executions(6, 3, start=datetime(2026, 1, 1, tzinfo=timezone.utc))):
        folder.fold(event)
    return stored


def test_public_equal_matches_view_comparison():
    stored = states_of_folds()
    by_kind = {kind: [state for state_kind, state in stored if state_kind is kind] for kind in RecordKind}

    for states in by_kind.values():
        for left, right in itertools.product(states[:40], repeat=2):
            assert public_equal(left, right) == (public_view(left) == public_view(right))


def test_public_equal_ignores_bookkeeping_and_version():
    left = TaskExecutionState(version=1)
    right = TaskExecutionState(version=2)
    right.seen_fingerprints.append(7)

    assert public_equal(left, right)


def test_public_equal_sees_presence_of_empty_message():
    left = TaskExecutionState()
    right = TaskExecutionState()
    right.last_event_occurred_at.SetInParent()

    assert not public_equal(left, right)
    assert public_view(left) != public_view(right)


def test_public_equal_handles_missing_record():
    assert public_equal(None, None)
    assert not public_equal(None, TaskExecutionState())
