"""Input partitions whose committed offset stopped moving because one record never reached the agent.

The agent acknowledges the records of a partition in the order it received
them, and StreamPositions hands them over in offset order. Suppose offsets
after a partition's committed offset are acknowledged, and the committed
offset itself is neither acknowledged nor a gap. Then its record was lost on
the way to the agent. The commit cannot pass it, so the partition's lag
stays above 0 for good. ``StalledCommits`` reports such a partition once it has
seen it in that state at two checks in a row with the same committed
offset. The worker then seeks the partition back to that offset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from faust.types import TP
from intervaltree import IntervalTree

from processor import metrics
from topologies.faust_fixes import contiguous_commit_offset, is_stream_partition

log = logging.getLogger(__name__)

# Seconds between two checks. A stalled partition is sought back after two
# to three of them. A partition whose agent is merely slow is not reported,
# because its later offsets are not acknowledged before the committed one,
# and no partition is checked while a commit is in flight.
CHECK_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class CommitHead:
    """Commit bookkeeping of one input partition, as faust's consumer records it at a check."""

    # Next offset to commit, or None before the partition's first commit.
    committed: Optional[int]
    # Acknowledged offsets that the commit has not covered yet.
    acked: Sequence[int]
    # Offsets that contain no record (transaction markers, deleted records).
    gaps: IntervalTree


def is_stalled(head: CommitHead) -> bool:
    """Return whether later offsets are acknowledged while the committed offset is neither acknowledged nor a gap."""
    if head.committed is None or not head.acked:
        return False
    # The commit would move when the committed offset is acknowledged or a gap.
    if contiguous_commit_offset(head.acked, head.gaps, head.committed) is not None:
        return False
    return min(head.acked) > head.committed


@dataclass
class StalledCommits:
    """Partitions stalled at two consecutive checks; call ``check`` at a fixed interval."""

    # Committed offset of each partition found stalled at the last check.
    suspects: dict[TP, int] = field(default_factory=dict)

    def check(self, heads: Mapping[TP, CommitHead]) -> list[tuple[TP, int]]:
        """Return (partition, committed offset) for each partition stalled at this check and the last one at the same offset.

        A returned partition starts over: it is reported again only after
        two more checks that find it stalled.
        """
        stalled = {tp: head.committed for tp, head in heads.items() if is_stalled(head)}
        confirmed = sorted(
            (tp, offset) for tp, offset in stalled.items() if self.suspects.get(tp) == offset
        )
        for tp, _ in confirmed:
            del stalled[tp]
        self.suspects = stalled
        return confirmed

    def clear(self) -> None:
        """Forget every suspect, as after a seek of all partitions or while a commit is in flight."""
        self.suspects.clear()


def commit_heads(consumer, tps: Iterable[TP]) -> dict[TP, CommitHead]:
    """Read the commit bookkeeping of faust's consumer for ``tps``."""
    return {
        tp: CommitHead(
            committed=consumer._committed_offset.get(tp),
            acked=tuple(consumer._acked.get(tp) or ()),
            gaps=consumer._gap.get(tp) or IntervalTree(),
        )
        for tp in tps
    }


async def seek_back_stalled(consumer, stalled_commits: StalledCommits) -> int:
    """Check the consumer's assigned input partitions and seek each confirmed stalled one back to its committed offset.

    Returns how many partitions were sought back. A seek that fails (the
    partition was revoked meanwhile) is logged and left to the next
    assignment, whose seek sets the position again.
    """
    if consumer._commit_fut is not None:
        # faust removes the offsets it commits from the acknowledged ones
        # before the commit and moves the committed offset only after it, so
        # a partition looks stalled while its commit is in flight.
        stalled_commits.clear()
        return 0

    tps = [tp for tp in consumer.assignment() if is_stream_partition(consumer, tp)]
    sought = 0
    for tp, offset in stalled_commits.check(commit_heads(consumer, tps)):
        acked = consumer._acked.get(tp) or ()
        log.warning(
            "%s[%d] has not committed past offset %d while offsets %d to %d are acknowledged: "
            "the record at %d never reached the agent; seeking back to it",
            tp.topic,
            tp.partition,
            offset,
            min(acked, default=offset),
            max(acked, default=offset),
            offset,
        )
        try:
            await consumer.seek(tp, offset)
        except Exception as error:
            log.warning("cannot seek %s[%d] back to %d: %r", tp.topic, tp.partition, offset, error)
            continue
        metrics.INPUT_SEEK_BACKS.labels(topic=tp.topic, cause="stalled-commit").inc()
        sought += 1
    return sought
