"""faust's commit offsets after gaps, with and without the fix the worker applies."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from topologies.faust_fixes import apply_commit_gap_fix

ORIGINAL_NEW_OFFSET = getattr(Consumer._new_offset, "__wrapped__", Consumer._new_offset)


class OffsetBook:
    """The consumer attributes that faust's gap and commit bookkeeping reads and writes."""

    def __init__(self, new_offset) -> None:
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self.new_offset = new_offset

    _add_gap = Consumer._add_gap


async def replay_transactional_partition(seed: int, new_offset) -> tuple[int, int, list[str]]:
    """Feed one partition whose transactions end in a commit marker; return (committed, end, violations).

    Records are handled in order, acknowledged in bursts, and commits are
    computed at random moments, as the worker's fetcher and commit timer do.
    """
    rng = random.Random(seed)
    book = OffsetBook(new_offset)
    tp = "partition"
    offsets = []
    next_offset = 0
    for _ in range(200):
        records = rng.randint(1, 10)
        offsets.extend(range(next_offset, next_offset + records))
        next_offset += records + 1

    violations = []
    read_offset = None
    pending = []
    for offset in offsets:
        if read_offset and offset - read_offset > 1:
            await book._add_gap(tp, read_offset + 1, offset)
        read_offset = offset
        pending.append(offset)

        if rng.random() < 0.7:
            for acked in pending:
                book._acked[tp].append(acked)
                book._acked_index[tp].add(acked)
            pending = []

        if rng.random() < 0.2:
            committed = book.new_offset(book, tp)
            if committed is not None:
                if any(unhandled < committed for unhandled in pending):
                    violations.append(f"committed {committed} before handling {pending}")
                book._committed_offset[tp] = committed

    for acked in pending:
        book._acked[tp].append(acked)
    for _ in range(3):
        committed = book.new_offset(book, tp)
        if committed is not None:
            book._committed_offset[tp] = committed
    return book._committed_offset[tp], offsets[-1] + 1, violations


def test_unfixed_commit_stalls_after_gaps():
    results = [asyncio.run(replay_transactional_partition(seed, ORIGINAL_NEW_OFFSET)) for seed in range(50)]
    stalled = [seed for seed, (committed, end, _) in enumerate(results) if committed != end]

    assert stalled, "faust's own computation no longer stalls; the fix may be removed"


@pytest.mark.parametrize("seed", range(200))
def test_fixed_commit_reaches_end(seed):
    apply_commit_gap_fix()

    committed, end, violations = asyncio.run(replay_transactional_partition(seed, Consumer._new_offset))

    assert committed == end
    assert violations == []


def test_fix_applied_once():
    apply_commit_gap_fix()
    patched = Consumer._new_offset

    apply_commit_gap_fix()

    assert Consumer._new_offset is patched
