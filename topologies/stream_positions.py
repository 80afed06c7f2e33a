"""Selection of the fetched records of input partitions that faust may hand to the worker's agent.

faust-streaming 0.15.3 reads records on a consumer thread and hands them to
its streams on the event loop. Three of its paths let a record pass unseen
while later records of the same partition are committed:

- Records returned by a fetch that started before a seek are handed over
  after it. faust then takes the jump from the seek target to their offset
  for a gap left by transaction markers and commits the offsets in between,
  which the agent never received.
- faust skips the records of partitions it does not count as active yet,
  while the consumer has already moved its position past them.
- Records below faust's last read offset are dropped as already read, also
  when a seek moved the partition back and nothing below that offset was
  read since.

``StreamPositions`` keeps, for each input partition, the offset of the next
record the agent must receive. A seek sets it, each record handed over
advances it, and a record below it is dropped as a repeat. A record above it
is handed over only when the fetch shows that the log has no record in
between. Either the record before it in the same fetch is the last one
handed over, or the record is the first of a fetch that started at the
expected offset. A fetch starts there when the previous one handed all of
its records over and no seek came since, or when the partition was just
sought back there. Offsets without records are transaction markers, or
records that retention deleted. Any other jump drops the rest of the partition's
fetch and seeks the partition back to the expected offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from faust.types import TP


class Verdict(enum.Enum):
    """Action for one fetched record."""

    # Hand the record to the streams.
    DELIVER = "deliver"
    # Drop the record: the agent received it already, or a seek replaces
    # the fetch it came from.
    DROP = "drop"
    # Drop the record and the rest of its partition's records in this fetch,
    # then seek the partition back to its expected offset.
    SEEK_BACK = "seek_back"


@dataclass
class StreamPositions:
    """The next offset each input partition must deliver, checked record by record.

    Call ``begin_fetch`` when a fetch is requested, ``start_fetch`` with the
    offsets it returned, ``check`` for each record that faust would hand
    over, in fetch order, and ``finish_fetch`` after the last one. Call
    ``sought`` for every seek of an input partition, and ``seek_back_done``
    after each seek back. A
    partition delivers nothing until it is sought; a seek to an unknown
    position (offset None) delivers its next record whatever its offset.
    """

    # Offset of the next record to deliver per partition.
    expected: dict[TP, int] = field(default_factory=dict)
    # Partitions whose next record is delivered at any offset.
    accepting_any: set[TP] = field(default_factory=set)
    # Partitions sought back by a SEEK_BACK: their first fetched record after
    # the seek shows where the log's next record is.
    verifying: set[TP] = field(default_factory=set)
    # Partitions whose consumer position is their expected offset: the last
    # fetch with records of theirs handed all of them over, and no seek came
    # after it. Their next fetch starts at the expected offset.
    continuous: set[TP] = field(default_factory=set)

    # Seeks so far, and the count at the last seek of each partition, to
    # tell a fetch that overlapped a seek.
    seeks: int = 0
    last_seek: dict[TP, int] = field(default_factory=dict)
    fetch_began_after: int = 0

    # The current fetch. It keeps the last offset per partition and the
    # offset before each record in its partition (None for the partition's
    # first record). The sets name the partitions whose first record may
    # jump (after a seek back, or continuing the last fetch), whose remaining
    # records are dropped, and that were sought or forgotten since the fetch
    # returned.
    last_in_fetch: dict[TP, int] = field(default_factory=dict)
    previous_in_fetch: dict[tuple[TP, int], Optional[int]] = field(default_factory=dict)
    verified_in_fetch: set[TP] = field(default_factory=set)
    continuous_in_fetch: set[TP] = field(default_factory=set)
    dropping_in_fetch: set[TP] = field(default_factory=set)
    repositioned_in_fetch: set[TP] = field(default_factory=set)

    def begin_fetch(self) -> None:
        """Record that a fetch was requested; seeks from now on overlap it."""
        self.fetch_began_after = self.seeks

    def start_fetch(self, offsets: Mapping[TP, Sequence[int]]) -> None:
        """Take the offsets that the fetch returned per partition, in order, before any ``check`` of its records."""
        self.last_in_fetch = {}
        self.previous_in_fetch = {}
        self.verified_in_fetch = set()
        self.continuous_in_fetch = set()
        self.dropping_in_fetch = set()
        self.repositioned_in_fetch = set()

        for tp, partition_offsets in offsets.items():
            previous = None
            for offset in partition_offsets:
                self.previous_in_fetch[(tp, offset)] = previous
                previous = offset
            if not partition_offsets:
                continue
            self.last_in_fetch[tp] = partition_offsets[-1]

            if self.last_seek.get(tp, 0) > self.fetch_began_after:
                # A seek ran while the fetch was in flight, so its records
                # may come from either side of it. finish_fetch seeks the
                # partition back to the seek target.
                self.dropping_in_fetch.add(tp)
            elif tp in self.verifying:
                self.verifying.discard(tp)
                self.verified_in_fetch.add(tp)
            elif tp in self.continuous:
                self.continuous_in_fetch.add(tp)

    def check(self, tp: TP, offset: int) -> Verdict:
        """Return what to do with the record at ``offset`` of ``tp``, and record a delivery."""
        if tp in self.dropping_in_fetch:
            return Verdict.DROP

        if tp in self.accepting_any:
            self.accepting_any.discard(tp)
            return self._deliver(tp, offset)

        expected = self.expected.get(tp)
        if expected is None:
            # Not sought since its assignment: the seek that follows
            # recovery sets the position, and the record is fetched again.
            return Verdict.DROP
        if offset < expected:
            return Verdict.DROP
        if offset == expected:
            return self._deliver(tp, offset)

        previous = self.previous_in_fetch.get((tp, offset), _NOT_FETCHED)
        if previous == expected - 1:
            # The fetch went from the last delivered record straight to this one.
            return self._deliver(tp, offset)
        if previous is None and (tp in self.verified_in_fetch or tp in self.continuous_in_fetch):
            # The first record of a fetch that started at the expected offset:
            # the offsets in between hold no record, such as the commit
            # marker of a transaction that ended the last fetch.
            return self._deliver(tp, offset)

        self.dropping_in_fetch.add(tp)
        return Verdict.SEEK_BACK

    def finish_fetch(self) -> list[TP]:
        """Return the partitions to seek back after the current fetch because records it returned were not delivered.

        faust skipped them, or they were dropped because the fetch overlapped
        a seek, and the consumer's position is past them. Partitions sought
        since the fetch returned are left out, because that seek set their
        position. Partitions whose records were all delivered continue at
        their expected offset with the next fetch. Call it after the last
        ``check`` of every fetch, then seek each returned partition back as
        for a SEEK_BACK.
        """
        behind = []
        for tp, last in self.last_in_fetch.items():
            if tp in self.repositioned_in_fetch or tp not in self.expected:
                self.continuous.discard(tp)
            elif self.expected[tp] == last + 1:
                self.continuous.add(tp)
            else:
                self.continuous.discard(tp)
                if last >= self.expected[tp]:
                    behind.append(tp)
        return sorted(behind)

    def sought(self, tp: TP, offset: Optional[int]) -> None:
        """Record a seek of ``tp`` to ``offset``; None means the position is unknown."""
        self.seeks += 1
        self.last_seek[tp] = self.seeks
        self.verifying.discard(tp)
        self.continuous.discard(tp)
        self.dropping_in_fetch.add(tp)
        self.repositioned_in_fetch.add(tp)
        if offset is None:
            self.expected.pop(tp, None)
            self.accepting_any.add(tp)
        else:
            self.expected[tp] = offset
            self.accepting_any.discard(tp)

    def seek_back_done(self, tp: TP) -> None:
        """Record that ``tp`` was sought back to its expected offset after a SEEK_BACK."""
        self.verifying.add(tp)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop the positions of partitions; they deliver nothing until sought again."""
        for tp in tps:
            self.expected.pop(tp, None)
            self.accepting_any.discard(tp)
            self.verifying.discard(tp)
            self.continuous.discard(tp)
            self.dropping_in_fetch.add(tp)
            self.repositioned_in_fetch.add(tp)

    def _deliver(self, tp: TP, offset: int) -> Verdict:
        self.expected[tp] = offset + 1
        return Verdict.DELIVER


_NOT_FETCHED = object()
