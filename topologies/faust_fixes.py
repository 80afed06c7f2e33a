"""Fixes for faust-streaming 0.15.3's offsets, hand-over and shutdown, applied when the worker builds its app.

Each fix replaces one method of faust's consumer classes, once per process.
Together they keep one promise that faust's own code breaks in several
places: the committed offset of an input partition never passes a record
that the agent has not acknowledged, unless the log contains no record at that
offset (a transaction marker, for example).

Contiguous commits: faust commits the first run of consecutive acknowledged
offsets, after adding the offsets of its recorded gaps. Its gap ranges
include the offset of the record that follows the gap, it treats the
committed offset (the next offset to read) as read, and it commits past a
single missing offset at the head of the run. Depending on the order of
acknowledgements the committed offset then stalls for good (the
faust-streaming issue "Wrong offset commit in case of gaps" describes the
stall) or passes a record still in the agent's batch. The fix commits up to the first
offset that is neither acknowledged nor inside a gap.

Stream positions: records fetched before a seek reached the streams after
it, faust recorded the jump as a gap, and the records in between were
committed unread. topologies/stream_positions.py decides which fetched
records are handed over, and only it records gaps for input partitions.

Partitions without a committed offset: after each rebalance faust seeks
every partition back to its committed offset, but leaves a partition
without one where the consumer happens to be. A worker that joins a new
consumer group while another one folds a backlog then starts such
partitions at their end, and their earlier events are never folded. The fix
seeks these partitions to their earliest offset, as the worker's
``auto.offset.reset`` of earliest promises.

Seeks on the consumer's thread: faust runs aiokafka's consumer on a thread
of its own, and its other seeks go through that thread's method queue, but
``seek`` calls aiokafka from the event loop's thread. aiokafka then deletes
the partition's fetched records while its fetcher may be iterating them on
the consumer's thread; the fetcher raised KeyError and the worker stopped.
The fix sends the seek through the method queue as well.

Queues kept when the flow resumes: faust's FlowControlEvent.resume empties
every agent's queue, also when the flow is already running. Table recovery
resumes the flow to read the changelogs, resumes the input partitions,
seeks them to their committed offsets, and then resumes the flow once more.
The records fetched between that seek and the second resume were in the
agent's queue and vanished unacknowledged: the committed offset stayed
before them for good and the consumer lag never reached 0 (the scale chaos
scenario on a loaded machine). The fix empties the queues only when the
flow was suspended, as it is after every revocation.

Read offsets: faust drops a fetched record whose offset is below the last
one it handed over, its read offset. It sets that offset after awaiting the
hand-over, so a seek made meanwhile is undone, and the records that the
seek fetches again are dropped while StreamPositions counts them as
delivered. StreamPositions already drops repeats, so checked_records sets
faust's read offset to each record it delivers.

Rebalances while the worker stops: faust responds to a rebalance that starts
after SIGTERM by closing aiokafka's client and group coordinator from the
event loop's thread, while they run on the consumer's thread. In the scale
chaos scenario on a loaded machine, a worker that received SIGTERM just
before a second worker joined then either logged failed heartbeats until
it was killed, or died of a segmentation fault. The fix leaves the
rebalance alone. The group may still assign partitions to the stopping
worker, which folds nothing more and leaves the group when its consumer
stops, from its own thread, 1 to 3 s later in the chaos runs.

Stalled commits: ``StalledCommits`` finds input partitions whose next
offset to commit stays unacknowledged while later offsets are acknowledged,
which means that its record never reached the agent. The worker seeks
such a partition back to that offset, so a hand-over lost in a way not
foreseen above costs a replay instead of a partition that stops committing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Optional

from faust.app.base import App
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.types import TP
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent

from processor import metrics
from topologies.stream_positions import StreamPositions, Verdict

log = logging.getLogger(__name__)

# Set on each wrapper, so that a second call of a fix finds it applied.
_PATCHED_MARK = "_flyte_state_patched"

# Name of the consumer attribute that stores its StreamPositions.
_POSITIONS_ATTRIBUTE = "_flyte_state_stream_positions"


def wrap_once(cls: type, name: str, make_wrapper) -> None:
    """Replace ``cls.<name>`` with ``make_wrapper(original)``, unless an earlier call did."""
    original = getattr(cls, name)
    if getattr(original, _PATCHED_MARK, False):
        return

    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(wrapper, _PATCHED_MARK, True)
    setattr(cls, name, wrapper)


def apply_faust_fixes() -> None:
    """Apply every fix of this module; the worker calls it before it builds its app."""
    apply_contiguous_commit_fix()
    apply_stream_position_fix()
    apply_thread_seek_fix()
    apply_flow_resume_fix()
    apply_stopping_rebalance_fix()


# Rebalances while the worker stops -------------------------------------------------


def apply_stopping_rebalance_fix() -> None:
    """Make faust ignore a rebalance that starts while the app stops, instead of closing the consumer from the wrong thread."""

    def make_ignore(original):
        def ignore_rebalance_while_stopping(self):
            # NOTE: the topology's revocation handler, which waits for the
            # records of unconfirmed batches before partitions move, does not
            # run here, as it did not with faust's own handling. Suppose a last
            # batch is confirmed after the next owner's first writes of the
            # same keys. Then an older changelog value could come last, though
            # no run has shown it.
            log.info(
                "the group rebalances while this worker stops; it folds no more events "
                "and leaves the group when its consumer stops"
            )

        return ignore_rebalance_while_stopping

    wrap_once(App, "_on_rebalance_when_stopped", make_ignore)


# Queues kept when the flow resumes ---------------------------------------------------


def apply_flow_resume_fix() -> None:
    """Make FlowControlEvent.resume empty the queues only when the flow was suspended."""

    def make_resume(original):
        def resume_keeping_queued_events(self):
            if self.is_active():
                # Already running: the queued events were put after the
                # last suspension and belong to the current assignment.
                self._suspend.clear()
                self._resume.set()
                return
            original(self)

        return resume_keeping_queued_events

    wrap_once(FlowControlEvent, "resume", make_resume)


# Seeks on the consumer's thread ---------------------------------------------------


def apply_thread_seek_fix() -> None:
    """Make faust's seek run on the consumer's thread, as its seek_wait and seek_to_beginning do."""

    def make_seek_on_thread(original):
        async def seek_on_consumer_thread(self, partition, offset):
            thread = self._thread
            if asyncio.get_running_loop() is getattr(thread, "thread_loop", None):
                # Already on the consumer's thread: the method queue runs there.
                thread.seek(partition, offset)
                return
            await thread.call_thread(thread.seek, partition, offset)

        return seek_on_consumer_thread

    wrap_once(ThreadDelegateConsumer, "_seek", make_seek_on_thread)


# Contiguous commits ------------------------------------------------------------


def contiguous_commit_offset(acked: list[int], gaps: IntervalTree, committed: Optional[int]) -> Optional[int]:
    """Return the offset to commit: the first offset from ``committed`` on that is neither acknowledged nor in a gap.

    ``committed`` is the next offset to read, None when the partition has
    none, and then the run starts at the lowest acknowledged offset. Returns
    None when the run does not move past ``committed``.
    """
    done = set(acked)
    if not done:
        return None
    start = committed if committed is not None else min(done)

    position = start
    while True:
        if position in done:
            position += 1
            continue
        covering = gaps.at(position)
        if covering:
            position = max(interval.end for interval in covering)
            continue
        break

    if position == start and committed is not None:
        return None
    return position


def apply_contiguous_commit_fix() -> None:
    """Replace faust's Consumer._new_offset once per process."""

    def make_wrapper(original):
        def new_offset_contiguous(self, tp):
            acked = self._acked[tp]
            gaps = self._gap[tp]
            offset = contiguous_commit_offset(acked, gaps, self._committed_offset[tp])
            if offset is None:
                return None

            # Forget what the commit covers; later acknowledgements below it
            # are ignored by faust's ack().
            remaining = [acked_offset for acked_offset in acked if acked_offset >= offset]
            acked[:] = remaining
            self._acked_index[tp].intersection_update(remaining)
            if gaps:
                gaps.chop(0, offset)
            return offset

        return new_offset_contiguous

    wrap_once(Consumer, "_new_offset", make_wrapper)


# Stream positions --------------------------------------------------------------


def stream_positions_of(consumer) -> StreamPositions:
    """Return the consumer's StreamPositions, created on first use."""
    positions = consumer.__dict__.get(_POSITIONS_ATTRIBUTE)
    if positions is None:
        positions = consumer.__dict__[_POSITIONS_ATTRIBUTE] = StreamPositions()
    return positions


def is_stream_partition(consumer, tp: TP) -> bool:
    # Input topics are the ones whose records agents acknowledge; changelog
    # records go to table recovery and are never acknowledged.
    return consumer.app.topics.acks_enabled_for(tp.topic)


def _record_gap(consumer, tp: TP, first: int, end: int) -> None:
    """Record offsets ``first`` up to but excluding ``end`` as holding no record."""
    gaps = consumer._gap[tp]
    gaps.addi(first, end)
    gaps.merge_overlaps()


async def checked_records(consumer, records):
    """Yield the (tp, message) pairs of ``records`` that StreamPositions delivers, and seek partitions back where it returns SEEK_BACK."""
    positions = stream_positions_of(consumer)
    read_offsets = consumer._read_offset
    async for tp, message in records:
        if not is_stream_partition(consumer, tp):
            yield tp, message
            continue

        expected = positions.expected.get(tp)
        verdict = positions.check(tp, message.offset)
        if verdict is Verdict.DELIVER:
            if expected is not None and message.offset > expected:
                _record_gap(consumer, tp, expected, message.offset)
            # faust's fetcher reads this right after the yield and drops the
            # record when its offset is lower; StreamPositions decides instead.
            read_offsets[tp] = message.offset
            yield tp, message
        elif verdict is Verdict.SEEK_BACK:
            log.warning(
                "fetched %s[%d]@%d where offset %d was expected; seeking back to that offset",
                tp.topic,
                tp.partition,
                message.offset,
                expected,
            )
            metrics.INPUT_SEEK_BACKS.labels(topic=tp.topic, cause="jump").inc()
            await _seek_back(consumer, positions, tp)

    # Expected after a rebalance, whose seek overlaps a fetch.
    for tp in positions.finish_fetch():
        log.info(
            "seeking %s[%d] back to %d: the last fetch returned records from there on that were not handed to the agent",
            tp.topic,
            tp.partition,
            positions.expected[tp],
        )
        metrics.INPUT_SEEK_BACKS.labels(topic=tp.topic, cause="undelivered").inc()
        await _seek_back(consumer, positions, tp)


async def _seek_back(consumer, positions: StreamPositions, tp: TP) -> None:
    """Seek ``tp`` to its expected offset; a partition revoked meanwhile is forgotten."""
    offset = positions.expected[tp]
    try:
        await consumer.seek(tp, offset)
    except Exception as error:
        # The next assignment's seek sets the position again.
        log.warning(
            "cannot seek %s[%d] back to %d, so it delivers nothing until the next rebalance: %r",
            tp.topic,
            tp.partition,
            offset,
            error,
        )
        positions.forget([tp])
        return
    positions.seek_back_done(tp)


def apply_stream_position_fix() -> None:
    """Wrap faust's getmany, seeks, gap records and revocation once per process.

    The wrapped perform_seek also seeks partitions without a committed
    offset to their earliest offset.
    """

    def make_fetch(original):
        async def fetch_with_offsets_recorded(self, active_partitions, timeout):
            positions = stream_positions_of(self)
            positions.begin_fetch()
            records = await original(self, active_partitions, timeout)
            positions.start_fetch(
                {
                    tp: [record.offset for record in partition_records]
                    for tp, partition_records in records.items()
                    if is_stream_partition(self, tp)
                }
            )
            return records

        return fetch_with_offsets_recorded

    def make_getmany(original):
        async def getmany_checked(self, timeout):
            async for tp, message in checked_records(self, original(self, timeout)):
                yield tp, message

        return getmany_checked

    def make_seek(original):
        async def seek_recorded(self, partition, offset):
            await original(self, partition, offset)
            if is_stream_partition(self, partition):
                stream_positions_of(self).sought(partition, offset)

        return seek_recorded

    def make_seek_wait(original):
        async def seek_wait_recorded(self, partitions):
            await original(self, partitions)
            positions = stream_positions_of(self)
            for tp, offset in partitions.items():
                if is_stream_partition(self, tp):
                    positions.sought(tp, offset)

        return seek_wait_recorded

    def make_perform_seek(original):
        async def perform_seek_recorded(self):
            positions = stream_positions_of(self)
            stream_partitions = [tp for tp in self.assignment() if is_stream_partition(self, tp)]
            # Until the seek is done, records of these partitions may come
            # from either side of it, so none is handed over.
            positions.forget(stream_partitions)

            await original(self)
            await seek_uncommitted_to_earliest(self)

            for tp in stream_partitions:
                committed = self._committed_offset.get(tp)
                if committed is not None:
                    # Seek again: fetches that ran after faust's seek moved
                    # the position past records that were dropped above.
                    await self.seek(tp, committed)
                elif tp not in positions.expected:
                    # No committed offset and no earliest seek (an
                    # auto.offset.reset other than earliest): the consumer
                    # keeps its position, so its next record is taken as is.
                    positions.sought(tp, None)

        return perform_seek_recorded

    def make_add_gap(original):
        async def add_gap_of_changelogs_only(self, tp, offset_from, offset_to):
            # checked_records records the gaps of input partitions itself.
            if is_stream_partition(self, tp):
                return
            await original(self, tp, offset_from, offset_to)

        return add_gap_of_changelogs_only

    def make_on_partitions_revoked(original):
        async def on_partitions_revoked_forgetting(self, revoked):
            stream_positions_of(self).forget(revoked)
            await original(self, revoked)

        return on_partitions_revoked_forgetting

    wrap_once(ThreadDelegateConsumer, "_getmany", make_fetch)
    wrap_once(Consumer, "getmany", make_getmany)
    wrap_once(Consumer, "seek", make_seek)
    wrap_once(ThreadDelegateConsumer, "seek_wait", make_seek_wait)
    wrap_once(Consumer, "perform_seek", make_perform_seek)
    wrap_once(Consumer, "_add_gap", make_add_gap)
    wrap_once(Consumer, "on_partitions_revoked", make_on_partitions_revoked)


# Partitions without a committed offset ------------------------------------------


async def seek_uncommitted_to_earliest(consumer) -> list:
    """Seek each assigned stream partition without a committed offset to its earliest offset; return them.

    Changelog partitions are left alone: table recovery and standby reads
    position them from the offsets stored with the tables.
    """
    if consumer.app.conf.consumer_auto_offset_reset != "earliest":
        return []

    changelog_topics = consumer.app.tables.changelog_topics
    uncommitted = sorted(
        tp
        for tp in consumer.assignment()
        if tp.topic not in changelog_topics and consumer._committed_offset.get(tp) is None
    )
    if not uncommitted:
        return []

    earliest = await consumer.earliest_offsets(*uncommitted)
    for tp in uncommitted:
        await consumer.seek(tp, earliest[tp])
    return uncommitted
