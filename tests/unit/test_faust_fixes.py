"""faust's commit offsets, its seeks and its hand-over of fetched records, with the fixes the worker applies."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.app.base import App
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.types import TP
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from processor import metrics
from topologies.faust_fixes import (
    apply_contiguous_commit_fix,
    apply_flow_resume_fix,
    apply_stopping_rebalance_fix,
    apply_stream_position_fix,
    apply_thread_seek_fix,
    checked_records,
    contiguous_commit_offset,
    seek_uncommitted_to_earliest,
    stream_positions_of,
)


def original(method):
    """Return faust's own method under the wrappers of the fixes."""
    while hasattr(method, "__wrapped__"):
        method = method.__wrapped__
    return method


ORIGINAL_NEW_OFFSET = original(Consumer._new_offset)
ORIGINAL_ADD_GAP = original(Consumer._add_gap)


class OffsetBook:
    """The consumer attributes that faust's gap and commit bookkeeping reads and writes."""

    def __init__(self, new_offset) -> None:
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self.new_offset = new_offset



async def faust_gap(book: OffsetBook, tp, previous: int, offset: int) -> None:
    """Record a gap as faust's fetcher does: from the offset after ``previous`` through ``offset`` itself.

    faust records no gap after the record at offset 0, because it tests the
    last read offset for truth.
    """
    if previous:
        await ORIGINAL_ADD_GAP(book, tp, previous + 1, offset)


async def fixed_gap(book: OffsetBook, tp, previous: int, offset: int) -> None:
    """Record a gap as the stream position fix does: the offsets between the two records only."""
    book._gap[tp].addi(previous + 1, offset)


async def replay_transactional_partition(seed: int, new_offset, record_gap) -> tuple[int, int, list[str]]:
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
        if read_offset is not None and offset - read_offset > 1:
            await record_gap(book, tp, read_offset, offset)
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
    results = [asyncio.run(replay_transactional_partition(seed, ORIGINAL_NEW_OFFSET, faust_gap)) for seed in range(50)]
    stalled = [seed for seed, (committed, end, _) in enumerate(results) if committed != end]

    assert stalled, "faust's own computation no longer stalls; the fix may be removed"


@pytest.mark.parametrize("seed", range(200))
def test_fixed_commit_reaches_end(seed):
    apply_contiguous_commit_fix()

    committed, end, violations = asyncio.run(replay_transactional_partition(seed, Consumer._new_offset, fixed_gap))

    assert committed == end
    assert violations == []


def test_fix_applied_once():
    apply_contiguous_commit_fix()
    patched = Consumer._new_offset

    apply_contiguous_commit_fix()

    assert Consumer._new_offset is patched


def test_unfixed_commit_passes_missing_head():
    # Offset 10 is still in the agent's batch when 11 and 12 are acknowledged.
    book = OffsetBook(ORIGINAL_NEW_OFFSET)
    book._committed_offset["partition"] = 10
    book._acked["partition"].extend([11, 12])

    assert book.new_offset(book, "partition") == 13


def test_contiguous_commit_waits_for_head():
    assert contiguous_commit_offset([11, 12], IntervalTree(), committed=10) is None


def test_contiguous_commit_through_acked_and_gaps():
    gaps = IntervalTree()
    gaps.addi(12, 14)

    assert contiguous_commit_offset([10, 11, 14, 16], gaps, committed=10) == 15


def test_contiguous_commit_gap_at_head():
    # A transaction marker sits at the committed offset.
    gaps = IntervalTree()
    gaps.addi(10, 11)

    assert contiguous_commit_offset([11, 12], gaps, committed=10) == 13


def test_contiguous_commit_without_committed_offset():
    assert contiguous_commit_offset([3, 4, 6], IntervalTree(), committed=None) == 5


def test_contiguous_commit_ignores_offsets_below_committed():
    assert contiguous_commit_offset([5, 6, 10], IntervalTree(), committed=10) == 11


def test_contiguous_commit_nothing_acked():
    assert contiguous_commit_offset([], IntervalTree(), committed=10) is None


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


def test_stream_position_fix_applied_once():
    apply_stream_position_fix()
    patched = Consumer.perform_seek

    apply_stream_position_fix()

    assert Consumer.perform_seek is patched


class FetchingConsumer:
    """The consumer attributes that checked_records reads, with the seeks it made."""

    def __init__(self, stream_topics=("events",)) -> None:
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: topic in stream_topics))
        self._gap = defaultdict(IntervalTree)
        self._read_offset = defaultdict(lambda: None)
        self.seeks = []

    async def seek(self, tp, offset):
        # faust's seek, with the stream position fix's wrapper.
        self.seeks.append({tp: offset})
        self._read_offset[tp] = offset
        stream_positions_of(self).sought(tp, offset)


async def handed_over(consumer, fetched):
    """Run one fetch of ``fetched`` (tp, offset) pairs through checked_records; return the offsets it yields."""
    positions = stream_positions_of(consumer)
    positions.begin_fetch()
    by_partition = defaultdict(list)
    for tp, offset in fetched:
        by_partition[tp].append(offset)
    positions.start_fetch(by_partition)

    async def records():
        for tp, offset in fetched:
            yield tp, SimpleNamespace(offset=offset)

    return [(tp, message.offset) async for tp, message in checked_records(consumer, records())]


def test_checked_records_stale_fetch_sought_back():
    events = TP("events", 0)
    consumer = FetchingConsumer()
    stream_positions_of(consumer).sought(events, 16)
    before = metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic="events", cause="jump")

    delivered = asyncio.run(handed_over(consumer, [(events, 385), (events, 386)]))

    assert delivered == []
    assert consumer.seeks == [{events: 16}]
    assert not consumer._gap[events]
    assert metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic="events", cause="jump") == before + 1


def test_checked_records_skipped_tail_sought_back():
    events = TP("events", 0)
    consumer = FetchingConsumer()
    stream_positions_of(consumer).sought(events, 5)
    positions = stream_positions_of(consumer)
    positions.begin_fetch()
    positions.start_fetch({events: [5, 6, 7]})
    before = metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic="events", cause="undelivered")

    async def faust_hands_over_only_the_first():
        yield events, SimpleNamespace(offset=5)

    async def run():
        return [offset async for _, offset in _offsets(checked_records(consumer, faust_hands_over_only_the_first()))]

    delivered = asyncio.run(run())

    assert delivered == [5]
    assert consumer.seeks == [{events: 6}]
    assert metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic="events", cause="undelivered") == before + 1


async def _offsets(records):
    async for tp, message in records:
        yield tp, message.offset


def test_checked_records_marker_recorded_as_gap():
    events = TP("events", 0)
    consumer = FetchingConsumer()
    stream_positions_of(consumer).sought(events, 5)

    delivered = asyncio.run(handed_over(consumer, [(events, 5), (events, 7)]))

    assert delivered == [(events, 5), (events, 7)]
    assert sorted((interval.begin, interval.end) for interval in consumer._gap[events]) == [(6, 7)]
    assert consumer.seeks == []


def test_checked_records_pass_changelog_records():
    changelog = TP("table-changelog", 0)
    consumer = FetchingConsumer()

    delivered = asyncio.run(handed_over(consumer, [(changelog, 40), (changelog, 90)]))

    assert delivered == [(changelog, 40), (changelog, 90)]


class SeekFailingConsumer(FetchingConsumer):
    async def seek(self, tp, offset):
        raise RuntimeError("partition not assigned")


def test_checked_records_forget_partition_seek_back_fails():
    events = TP("events", 0)
    consumer = SeekFailingConsumer()
    stream_positions_of(consumer).sought(events, 16)

    delivered = asyncio.run(handed_over(consumer, [(events, 385)]))

    assert delivered == []
    assert events not in stream_positions_of(consumer).expected


class CommittedSeekConsumer(SeekingConsumer):
    """A consumer for faust's perform_seek: committed offsets come from seek_to_committed."""

    def __init__(self, assigned, committed, reset="earliest") -> None:
        super().__init__(assigned, {}, reset)
        self.app.topics = SimpleNamespace(acks_enabled_for=lambda topic: topic == "events")
        self.broker_committed = committed
        self._read_offset = defaultdict(lambda: None)

    async def seek_to_committed(self):
        return dict(self.broker_committed)

    async def seek(self, tp, offset):
        await super().seek(tp, offset)
        stream_positions_of(self).sought(tp, offset)


def test_perform_seek_sets_expected_offsets():
    apply_stream_position_fix()
    committed, uncommitted, changelog = TP("events", 0), TP("events", 1), TP("app-table-changelog", 0)
    consumer = CommittedSeekConsumer([committed, uncommitted, changelog], {committed: 40, uncommitted: None})

    asyncio.run(Consumer.perform_seek(consumer))

    positions = stream_positions_of(consumer)
    assert positions.expected == {committed: 40, uncommitted: 5}
    assert consumer.seeks == {committed: 40, uncommitted: 5}


def test_perform_seek_latest_reset_accepts_next_record():
    apply_stream_position_fix()
    uncommitted = TP("events", 1)
    consumer = CommittedSeekConsumer([uncommitted], {uncommitted: None}, reset="latest")

    asyncio.run(Consumer.perform_seek(consumer))

    assert stream_positions_of(consumer).accepting_any == {uncommitted}


class RecordingThread:
    """A consumer thread stand-in that records seeks and where they ran."""

    def __init__(self) -> None:
        self.thread_loop = None
        self.seeks: list[tuple] = []
        self.queued: list[str] = []

    def seek(self, partition, offset) -> None:
        self.seeks.append((partition, offset))

    async def call_thread(self, fun, *args):
        self.queued.append(fun.__name__)
        return fun(*args)


def test_seek_goes_through_consumer_thread():
    apply_thread_seek_fix()
    consumer = SimpleNamespace(_thread=RecordingThread())
    tp = TP("flyte.events.task", 3)

    asyncio.run(ThreadDelegateConsumer._seek(consumer, tp, 42))

    assert consumer._thread.queued == ["seek"]
    assert consumer._thread.seeks == [(tp, 42)]


def test_seek_on_consumer_thread_runs_directly():
    apply_thread_seek_fix()
    thread = RecordingThread()
    consumer = SimpleNamespace(_thread=thread)
    tp = TP("flyte.events.task", 3)

    async def seek_from_thread_loop():
        thread.thread_loop = asyncio.get_running_loop()
        await ThreadDelegateConsumer._seek(consumer, tp, 7)

    asyncio.run(seek_from_thread_loop())

    assert thread.queued == []
    assert thread.seeks == [(tp, 7)]


def test_checked_records_set_faust_read_offset():
    events = TP("events", 0)
    consumer = FetchingConsumer()
    stream_positions_of(consumer).sought(events, 3340)
    # faust's fetcher set this after a hand-over that a seek back to 3340 overtook.
    consumer._read_offset[events] = 3819
    read_offsets_seen = []

    async def faust_fetcher():
        positions = stream_positions_of(consumer)
        positions.begin_fetch()
        positions.start_fetch({events: [3340, 3341]})

        async def records():
            for offset in (3340, 3341):
                yield events, SimpleNamespace(offset=offset)

        async for tp, message in checked_records(consumer, records()):
            # faust's fetcher drops a record below its read offset.
            read_offsets_seen.append(consumer._read_offset[tp])

    asyncio.run(faust_fetcher())

    assert read_offsets_seen == [3340, 3341]


def _managed_queue(flow_control: FlowControlEvent) -> FlowControlQueue:
    # As faust's channels make their queues.
    return FlowControlQueue(maxsize=10, flow_control=flow_control, clear_on_resume=True)


def test_flow_resume_keeps_queued_events():
    apply_flow_resume_fix()

    async def run():
        flow_control = FlowControlEvent()
        queue = _managed_queue(flow_control)
        flow_control.resume()
        queue.put_nowait("event fetched after the seek")

        # Table recovery resumes the flow again after it sought the inputs.
        flow_control.resume()

        return queue.qsize()

    assert asyncio.run(run()) == 1


def test_flow_resume_after_suspension_empties_queues():
    apply_flow_resume_fix()

    async def run():
        flow_control = FlowControlEvent()
        queue = _managed_queue(flow_control)
        flow_control.resume()
        queue.put_nowait("event of the revoked assignment")
        flow_control.suspend()

        flow_control.resume()

        return queue.qsize(), flow_control.is_active()

    queued, active = asyncio.run(run())

    assert queued == 0
    assert active


def test_flow_resume_fix_applied_once():
    apply_flow_resume_fix()
    patched = FlowControlEvent.resume

    apply_flow_resume_fix()

    assert FlowControlEvent.resume is patched


class StoppingApp:
    """A faust app that stops, with a consumer that must not be closed from the event loop's thread."""

    def __init__(self) -> None:
        self.should_stop = True
        self.consumer = SimpleNamespace(close=self.close_consumer)
        self.closed = False

    def close_consumer(self) -> None:
        self.closed = True


def test_stopping_rebalance_keeps_consumer(caplog):
    apply_stopping_rebalance_fix()
    caplog.set_level(logging.INFO, logger="topologies.faust_fixes")
    app = StoppingApp()

    App._on_rebalance_when_stopped(app)

    assert not app.closed
    assert "leaves the group when its consumer stops" in caplog.text
