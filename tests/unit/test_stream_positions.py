"""StreamPositions: which fetched records of input partitions reach the agent."""

from __future__ import annotations

import random

import pytest
from faust.types import TP

from topologies.stream_positions import StreamPositions, Verdict

TP0 = TP("events", 0)
TP1 = TP("events", 1)


def fetch(positions: StreamPositions, tp: TP, offsets) -> list[Verdict]:
    """Run one fetch that returned ``offsets`` for ``tp``, check each of them and finish the fetch."""
    positions.begin_fetch()
    positions.start_fetch({tp: list(offsets)})
    verdicts = [positions.check(tp, offset) for offset in offsets]
    positions.finish_fetch()
    return verdicts


def seek_back(positions: StreamPositions, tp: TP) -> None:
    positions.sought(tp, positions.expected[tp])
    positions.seek_back_done(tp)


def test_records_in_order_delivered():
    positions = StreamPositions()
    positions.sought(TP0, 5)

    verdicts = fetch(positions, TP0, [5, 6, 7])

    assert verdicts == [Verdict.DELIVER] * 3
    assert positions.expected[TP0] == 8


def test_unsought_partition_delivers_nothing():
    positions = StreamPositions()

    assert fetch(positions, TP0, [0, 1]) == [Verdict.DROP, Verdict.DROP]


def test_repeats_below_expected_dropped():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    fetch(positions, TP0, [5, 6])

    assert fetch(positions, TP0, [5, 6, 7]) == [Verdict.DROP, Verdict.DROP, Verdict.DELIVER]


def test_fetch_from_before_seek_sought_back():
    # The consumer was at 385 when the partition was sought to its
    # committed offset 16, and the next fetch still starts at 385.
    positions = StreamPositions()
    positions.sought(TP0, 16)

    verdicts = fetch(positions, TP0, [385, 386, 387])

    assert verdicts == [Verdict.SEEK_BACK, Verdict.DROP, Verdict.DROP]
    assert positions.expected[TP0] == 16


def test_fetch_after_seek_back_delivers_from_expected():
    positions = StreamPositions()
    positions.sought(TP0, 16)
    fetch(positions, TP0, [385])
    seek_back(positions, TP0)

    assert fetch(positions, TP0, [16, 17]) == [Verdict.DELIVER, Verdict.DELIVER]


def test_jump_within_fetch_delivered():
    # Offset 7 is a transaction marker.
    positions = StreamPositions()
    positions.sought(TP0, 5)

    assert fetch(positions, TP0, [5, 6, 8, 9]) == [Verdict.DELIVER] * 4


def test_jump_continuing_last_fetch_delivered():
    # The previous fetch ended at 9 and offset 10 is a transaction marker.
    positions = StreamPositions()
    positions.sought(TP0, 5)
    fetch(positions, TP0, [5, 6, 7, 8, 9])

    assert fetch(positions, TP0, [11, 12]) == [Verdict.DELIVER, Verdict.DELIVER]
    assert positions.finish_fetch() == []


def test_jump_after_seek_verified_by_seek_back():
    # Offset 5, the seek target, is a transaction marker.
    positions = StreamPositions()
    positions.sought(TP0, 5)

    first = fetch(positions, TP0, [6, 7])
    seek_back(positions, TP0)
    second = fetch(positions, TP0, [6, 7])

    assert first == [Verdict.SEEK_BACK, Verdict.DROP]
    assert second == [Verdict.DELIVER, Verdict.DELIVER]


def test_jump_after_skipped_tail_sought_back():
    # faust skipped 7 and 8 of the last fetch, so the next one starts at 9.
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.start_fetch({TP0: [5, 6, 7, 8]})
    positions.check(TP0, 5)
    positions.check(TP0, 6)
    behind = positions.finish_fetch()

    assert behind == [TP0]
    assert fetch(positions, TP0, [9, 10]) == [Verdict.SEEK_BACK, Verdict.DROP]


def test_seek_during_fetch_drops_its_remaining_records():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.start_fetch({TP0: [5, 6, 7]})
    delivered = positions.check(TP0, 5)

    positions.sought(TP0, 3)
    remaining = [positions.check(TP0, offset) for offset in (6, 7)]

    assert delivered is Verdict.DELIVER
    assert remaining == [Verdict.DROP, Verdict.DROP]
    assert positions.expected[TP0] == 3


def test_fetch_overlapping_seek_dropped():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.sought(TP0, 5)
    positions.start_fetch({TP0: [5, 6]})

    assert [positions.check(TP0, offset) for offset in (5, 6)] == [Verdict.DROP, Verdict.DROP]


def test_fetch_after_seek_delivered():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    fetch(positions, TP0, [5])

    positions.sought(TP0, 2)

    assert fetch(positions, TP0, [2, 3]) == [Verdict.DELIVER, Verdict.DELIVER]


def test_jump_after_records_faust_skipped_sought_back():
    # faust handed over 5 and skipped 6 and 7 of the same fetch.
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.start_fetch({TP0: [5, 6, 7, 8]})

    verdicts = [positions.check(TP0, offset) for offset in (5, 8)]

    assert verdicts == [Verdict.DELIVER, Verdict.SEEK_BACK]


def test_fetch_with_skipped_tail_sought_back():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.start_fetch({TP0: [5, 6, 7], TP1: [9]})
    positions.check(TP0, 5)

    assert positions.finish_fetch() == [TP0]


def test_fetch_overlapping_seek_sought_back():
    # The fetch ran after the seek to 5, so the consumer is at 8 now.
    positions = StreamPositions()
    positions.sought(TP0, 9)
    positions.begin_fetch()
    positions.sought(TP0, 5)
    positions.start_fetch({TP0: [5, 6, 7]})
    verdicts = [positions.check(TP0, offset) for offset in (5, 6, 7)]

    assert verdicts == [Verdict.DROP] * 3
    assert positions.finish_fetch() == [TP0]


def test_fetch_sought_during_iteration_needs_no_seek_back():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.begin_fetch()
    positions.start_fetch({TP0: [5, 6, 7]})
    positions.check(TP0, 5)

    positions.sought(TP0, 2)

    assert positions.finish_fetch() == []


def test_fetch_handed_over_whole_needs_no_seek_back():
    positions = StreamPositions()
    positions.sought(TP0, 5)

    fetch(positions, TP0, [5, 6, 7])

    assert positions.finish_fetch() == []


def test_verification_spent_on_skipped_fetch():
    # faust skipped the first fetch after the seek back, so a jump in the
    # next one proves nothing.
    positions = StreamPositions()
    positions.sought(TP0, 16)
    fetch(positions, TP0, [385])
    seek_back(positions, TP0)
    positions.begin_fetch()
    positions.start_fetch({TP0: [16, 17]})

    assert fetch(positions, TP0, [18]) == [Verdict.SEEK_BACK]


def test_other_seek_ends_verification():
    positions = StreamPositions()
    positions.sought(TP0, 16)
    fetch(positions, TP0, [385])
    seek_back(positions, TP0)

    positions.sought(TP0, 20)

    assert fetch(positions, TP0, [385]) == [Verdict.SEEK_BACK]


def test_unknown_position_accepts_first_record():
    positions = StreamPositions()
    positions.sought(TP0, None)

    assert fetch(positions, TP0, [40, 41]) == [Verdict.DELIVER, Verdict.DELIVER]
    assert positions.expected[TP0] == 42


def test_forgotten_partition_delivers_nothing():
    positions = StreamPositions()
    positions.sought(TP0, 5)
    positions.sought(TP1, 5)

    positions.forget([TP0])

    assert fetch(positions, TP0, [5]) == [Verdict.DROP]
    assert fetch(positions, TP1, [5]) == [Verdict.DELIVER]


class SimulatedPartition:
    """One log partition with transaction markers, read from a position that fetches advance."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.markers = {offset for offset in range(size) if rng.random() < 0.1}
        self.size = size
        self.position = 0

    def records_from(self, start: int, count: int) -> list[int]:
        offsets = [offset for offset in range(start, self.size) if offset not in self.markers]
        return offsets[:count]

    def fetch(self, count: int) -> list[int]:
        records = self.records_from(self.position, count)
        if records:
            self.position = records[-1] + 1
        return records


def seek_back_log(log: SimulatedPartition, positions: StreamPositions) -> None:
    log.position = positions.expected[TP0]
    positions.sought(TP0, log.position)
    positions.seek_back_done(TP0)


@pytest.mark.parametrize("seed", range(300))
def test_random_races_deliver_records_in_log_order(seed):
    """Seeks racing fetches, and records faust skips: records from the last seek target on arrive once, in order."""
    rng = random.Random(seed)
    log = SimulatedPartition(rng, 400)
    positions = StreamPositions()
    state = {"target": 0, "delivered": [], "gaps": []}

    def seek(target: int) -> None:
        log.position = target
        positions.sought(TP0, target)
        state.update(target=target, delivered=[], gaps=[])

    seek(0)
    for _ in range(300):
        positions.begin_fetch()
        overlapping_seek = rng.random() < 0.15
        if overlapping_seek and rng.random() < 0.5:
            # The seek reaches the consumer before the fetch does.
            seek(rng.randint(0, log.size))
            records = log.fetch(rng.randint(1, 20))
        else:
            records = log.fetch(rng.randint(1, 20))
            if overlapping_seek:
                seek(rng.randint(0, log.size))
        positions.start_fetch({TP0: records})

        # faust may skip a partition's records or stop a fetch early.
        mode = rng.random()
        if mode < 0.1:
            handed = []
        elif mode < 0.2:
            handed = records[: rng.randint(0, len(records))]
        else:
            handed = records

        for offset in handed:
            if rng.random() < 0.02:
                seek(rng.randint(0, log.size))
            expected = positions.expected.get(TP0)
            verdict = positions.check(TP0, offset)
            if verdict is Verdict.DELIVER:
                if offset > expected:
                    state["gaps"].append((expected, offset))
                state["delivered"].append(offset)
            elif verdict is Verdict.SEEK_BACK:
                seek_back_log(log, positions)
        for _ in positions.finish_fetch():
            seek_back_log(log, positions)

        delivered = state["delivered"]
        assert delivered == log.records_from(state["target"], len(delivered))
        for first, end in state["gaps"]:
            assert all(offset in log.markers for offset in range(first, end))


@pytest.mark.parametrize("seed", range(100))
def test_random_races_reach_log_end(seed):
    """After the last seek, a partition delivers every record up to the log's end, also when fetches overlapped seeks."""
    rng = random.Random(seed)
    log = SimulatedPartition(rng, 400)
    positions = StreamPositions()
    state = {"target": 0, "delivered": []}

    def seek(target: int) -> None:
        log.position = target
        positions.sought(TP0, target)
        state.update(target=target, delivered=[])

    seek(0)
    for step in range(2000):
        seeking = step < 100 and rng.random() < 0.2
        positions.begin_fetch()
        if seeking and rng.random() < 0.5:
            # The seek reaches the consumer before the fetch does.
            seek(rng.randint(0, positions.expected.get(TP0, 0)))
            records = log.fetch(rng.randint(1, 20))
        else:
            records = log.fetch(rng.randint(1, 20))
            if seeking:
                seek(rng.randint(0, positions.expected.get(TP0, 0)))
        positions.start_fetch({TP0: records})

        handed = [] if rng.random() < 0.1 else records
        for offset in handed:
            verdict = positions.check(TP0, offset)
            if verdict is Verdict.DELIVER:
                state["delivered"].append(offset)
            elif verdict is Verdict.SEEK_BACK:
                seek_back_log(log, positions)
        for _ in positions.finish_fetch():
            seek_back_log(log, positions)

    assert state["delivered"] == log.records_from(state["target"], log.size)
