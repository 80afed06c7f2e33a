"""faust's commit offsets after gaps and its seeks of uncommitted partitions, with the fixes the worker applies."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from topologies.faust_fixes import apply_commit_gap_fix, apply_uncommitted_seek_fix, seek_uncommitted_to_earliest

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


class SeekingConsumer:
    """The consumer attributes that seek_uncommitted_to_earliest reads, with the seeks it made."""

    def __init__(self, assigned, committed, reset="earliest") -> None:
        self.app = SimpleNamespace(
            conf=SimpleNamespace(consumer_auto_offset_reset=reset),
            tables=SimpleNamespace(changelog_topics={"app-table-changelog"}),
        )
        self.assigned = set(assigned)
        self._committed_offset = defaultdict(lambda: None, committed)
        self.seeks = {}

    def assignment(self):
        return self.assigned

    async def earliest_offsets(self, *partitions):
        return {tp: 5 for tp in partitions}

    async def seek(self, tp, offset):
        self.seeks[tp] = offset


def test_seek_moves_only_uncommitted_stream_partitions():
    events, committed_events, changelog = TP("events", 0), TP("events", 1), TP("app-table-changelog", 0)
    consumer = SeekingConsumer([events, committed_events, changelog], {committed_events: 40})

    asyncio.run(seek_uncommitted_to_earliest(consumer))

    assert consumer.seeks == {events: 5}


def test_seek_respects_latest_reset():
    consumer = SeekingConsumer([TP("events", 0)], {}, reset="latest")

    asyncio.run(seek_uncommitted_to_earliest(consumer))

    assert consumer.seeks == {}


def test_seek_fix_applied_once():
    apply_uncommitted_seek_fix()
    patched = Consumer.perform_seek

    apply_uncommitted_seek_fix()

    assert Consumer.perform_seek is patched
