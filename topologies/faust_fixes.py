"""Fixes for faust-streaming 0.15.3's offsets, applied when the worker builds its app.

Commits after gaps: faust marks the offsets between two records as a gap when they are not
consecutive (transaction markers and compacted records leave such gaps), and
its gap ranges include the next record's offset. That record's offset then
reaches the list of acknowledged offsets twice. ``Consumer._new_offset``
commits only the first run of consecutive offsets, and a duplicate ends each
run, so the committed offset falls behind and, once a duplicate sits below
the committed offset, stops for good. faust-streaming's tracker has the same
kind of stall as issue 606, "Wrong offset commit in case of gaps".

The fix removes duplicates and offsets below the committed one before faust's
own computation runs. It adds no offset to the acknowledged list, so it never
commits past a record that the agent has not handled; the replay in
tests/unit/test_faust_fixes.py checks that.

Partitions without a committed offset: faust's fetcher drops records that
aiokafka returned after a rebalance began, or for partitions it does not
count as active yet, while aiokafka has already moved its position past
them. After each rebalance faust seeks every partition back to its
committed offset, but aiokafka leaves a partition without one where it is.
A worker that joins a new consumer group while another one folds a backlog
then starts such partitions at their end, and their earlier events are
never folded. The fix seeks these partitions to their earliest offset, as
the worker's ``auto.offset.reset`` of earliest promises.
"""

from __future__ import annotations

import functools

from faust.transport.consumer import Consumer

# Set on each wrapper, so that a second call of a fix finds it applied.
_PATCHED_MARK = "_flyte_state_patched"


def _wrap_once(name: str, make_wrapper) -> None:
    """Replace ``Consumer.<name>`` with ``make_wrapper(original)``, unless an earlier call did."""
    original = getattr(Consumer, name)
    if getattr(original, _PATCHED_MARK, False):
        return

    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(wrapper, _PATCHED_MARK, True)
    setattr(Consumer, name, wrapper)


def apply_commit_gap_fix() -> None:
    """Wrap faust's Consumer._new_offset once per process."""

    def make_wrapper(original):
        def new_offset_without_duplicates(self, tp):
            acked = self._acked[tp]
            if acked:
                committed = self._committed_offset[tp]
                unique = sorted({offset for offset in acked if committed is None or offset >= committed})
                acked[:] = unique
                self._acked_index[tp].intersection_update(unique)
            return original(self, tp)

        return new_offset_without_duplicates

    _wrap_once("_new_offset", make_wrapper)


def apply_uncommitted_seek_fix() -> None:
    """Wrap faust's Consumer.perform_seek once per process."""

    def make_wrapper(original):
        async def perform_seek_with_earliest_for_uncommitted(self):
            await original(self)
            await seek_uncommitted_to_earliest(self)

        return perform_seek_with_earliest_for_uncommitted

    _wrap_once("perform_seek", make_wrapper)


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
