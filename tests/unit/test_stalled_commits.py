"""Stalled commits: a partition whose committed offset never got its record is found and sought back."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP
from intervaltree import IntervalTree

from processor import metrics
from topologies.stalled_commits import CommitHead, StalledCommits, is_stalled, seek_back_stalled

EVENTS = TP("flyte.events.task", 2)


def head(committed, acked, gaps=()) -> CommitHead:
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    return CommitHead(committed=committed, acked=tuple(acked), gaps=tree)


def test_missing_head_is_stalled():
    assert is_stalled(head(3340, [4046, 4047]))


def test_acked_head_not_stalled():
    assert not is_stalled(head(3340, [3340, 3341]))


def test_head_in_gap_not_stalled():
    assert not is_stalled(head(3340, [3342], gaps=[(3340, 3342)]))


def test_nothing_acked_not_stalled():
    # The agent may still be folding the record at the committed offset.
    assert not is_stalled(head(3340, []))


def test_no_commit_not_stalled():
    assert not is_stalled(head(None, [5, 6]))


def test_stall_reported_second_check():
    stalled_commits = StalledCommits()

    first = stalled_commits.check({EVENTS: head(80, [457])})
    second = stalled_commits.check({EVENTS: head(80, [457, 458])})

    assert first == []
    assert second == [(EVENTS, 80)]


def test_reported_stall_starts_over():
    stalled_commits = StalledCommits()
    stalled_commits.check({EVENTS: head(80, [457])})
    stalled_commits.check({EVENTS: head(80, [457])})

    assert stalled_commits.check({EVENTS: head(80, [457])}) == []
    assert stalled_commits.check({EVENTS: head(80, [457])}) == [(EVENTS, 80)]


def test_moved_commit_not_reported():
    stalled_commits = StalledCommits()
    stalled_commits.check({EVENTS: head(80, [457])})

    assert stalled_commits.check({EVENTS: head(81, [457])}) == []


def test_resolved_stall_not_reported():
    stalled_commits = StalledCommits()
    stalled_commits.check({EVENTS: head(80, [457])})
    stalled_commits.check({EVENTS: head(80, [80, 457])})

    assert stalled_commits.check({EVENTS: head(80, [457])}) == []


class StalledConsumer:
    """The consumer attributes that seek_back_stalled reads, with the seeks it made."""

    def __init__(self, assigned, fail_seeks=False) -> None:
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == EVENTS.topic))
        self.assigned = set(assigned)
        self._committed_offset = defaultdict(lambda: None)
        self._acked = defaultdict(list)
        self._gap = defaultdict(IntervalTree)
        self.fail_seeks = fail_seeks
        self.seeks = []
        self._commit_fut = None

    def assignment(self):
        return set(self.assigned)

    async def seek(self, tp, offset):
        if self.fail_seeks:
            raise RuntimeError("partition not assigned")
        self.seeks.append((tp, offset))


def stalled_consumer(**kwargs) -> StalledConsumer:
    changelog = TP("app-task-executions-changelog", 2)
    consumer = StalledConsumer([EVENTS, changelog], **kwargs)
    consumer._committed_offset[EVENTS] = 3340
    consumer._acked[EVENTS] = [4046, 4047]
    consumer._committed_offset[changelog] = 10
    consumer._acked[changelog] = [12]
    return consumer


def test_seek_back_stalled_partition():
    consumer = stalled_consumer()
    stalled_commits = StalledCommits()
    before = metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic=EVENTS.topic, cause="stalled-commit")

    async def two_checks():
        return [await seek_back_stalled(consumer, stalled_commits) for _ in range(2)]

    assert asyncio.run(two_checks()) == [0, 1]
    assert consumer.seeks == [(EVENTS, 3340)]
    assert metrics.counter_value(metrics.INPUT_SEEK_BACKS, topic=EVENTS.topic, cause="stalled-commit") == before + 1


def test_failed_seek_back_logged(caplog):
    consumer = stalled_consumer(fail_seeks=True)
    stalled_commits = StalledCommits()

    async def two_checks():
        return [await seek_back_stalled(consumer, stalled_commits) for _ in range(2)]

    assert asyncio.run(two_checks()) == [0, 0]
    assert "cannot seek flyte.events.task[2] back to 3340" in caplog.text


def test_commit_in_flight_not_reported():
    # faust took offsets 3340 to 4045 out of the acknowledged ones and awaits
    # their commit, so the committed offset has not moved yet.
    consumer = stalled_consumer()
    stalled_commits = StalledCommits()

    async def checks_during_commit():
        consumer._commit_fut = asyncio.get_running_loop().create_future()
        during = [await seek_back_stalled(consumer, stalled_commits) for _ in range(2)]
        consumer._commit_fut = None
        after = await seek_back_stalled(consumer, stalled_commits)
        return during, after

    during, after = asyncio.run(checks_during_commit())

    assert during == [0, 0]
    assert after == 0
    assert consumer.seeks == []
