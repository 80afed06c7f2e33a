"""BatchPipeline: state records follow the confirmation of the changelog records that carry their values."""

from __future__ import annotations

import asyncio

import pytest

from processor.fold.execution import RecordKind, StateChange
from processor.fold.write_back import PendingWrite
from processor.messages import WorkflowExecutionState
from topologies.batch_pipeline import Batch, BatchPipeline
from topologies.state_producer import Delivery, StateRecordError

STATE_TOPICS = {kind: f"state.{kind.value}" for kind in RecordKind}


class FakeProducer:
    """Keeps produced records unconfirmed until ``deliver`` reports them."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes]] = []
        self.open: list[tuple[Delivery, str, int]] = []

    def send(self, topic, key, value, delivery, partition=None) -> None:
        self.produced.append((topic, key))
        delivery.pending += 1
        self.open.append((delivery, topic, 0 if partition is None else partition))

    def deliver(self, error: str = "") -> None:
        for delivery, topic, partition in self.open:
            delivery.pending -= 1
            if error:
                delivery.failures.append(error)
            else:
                delivery.offsets[(topic, partition)] = len(self.produced)
        self.open = []

    def serve_reports(self) -> None:
        pass

    async def confirm(self, delivery: Delivery, deadline=None, detect_stall=True) -> None:
        while delivery.pending > 0 and not delivery.failures:
            await asyncio.sleep(0.001)
        if delivery.failures:
            raise StateRecordError(delivery.failures[0])


class FakeTableWriter:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.stored: list[list[str]] = []

    def produce(self, writes, delivery):
        for write in writes:
            self.producer.send(f"changelog.{write.kind.value}", write.key.encode(), b"value", delivery, write.partition)
        return [b"value"] * len(writes)

    def store(self, writes, values, offsets, event_of_partition) -> None:
        self.stored.append([write.key for write in writes])


class FakeStore:
    def __init__(self) -> None:
        self.writes: list[PendingWrite] = []
        self.marked: list[list[str]] = []

    def take_writes(self):
        writes, self.writes = self.writes, []
        return writes

    def mark_stored(self, writes) -> None:
        self.marked.append([write.key for write in writes])


def make_pipeline():
    producer = FakeProducer()
    table_writer = FakeTableWriter(producer)
    store = FakeStore()
    return BatchPipeline(store, table_writer, producer, STATE_TOPICS), producer, table_writer, store


def changed_batch(store: FakeStore, key: str) -> Batch:
    state = WorkflowExecutionState()
    store.writes.append(PendingWrite(RecordKind.WORKFLOW, key, state, 0))
    batch = Batch()
    batch.add_event(object(), 0)
    batch.add_changes([StateChange(RecordKind.WORKFLOW, key, state)])
    return batch


def state_records(producer: FakeProducer) -> list[bytes]:
    return [key for topic, key in producer.produced if topic.startswith("state.")]


def test_state_records_wait_for_changelog():
    pipeline, producer, table_writer, store = make_pipeline()

    pipeline.write(changed_batch(store, "a"))

    assert state_records(producer) == []
    assert table_writer.stored == []


def test_state_records_follow_confirmed_changelog():
    pipeline, producer, table_writer, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))

    producer.deliver()
    pipeline.publish_confirmed()

    assert state_records(producer) == [b"a"]
    assert table_writer.stored == [["a"]]
    assert store.marked == [["a"]]


def test_batches_published_in_write_order():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    first_changelog = producer.open[:]
    producer.open = []
    pipeline.write(changed_batch(store, "b"))

    # The second batch's changelog is confirmed first.
    producer.deliver()
    pipeline.publish_confirmed()
    published_early = state_records(producer)
    producer.open = first_changelog
    producer.deliver()
    pipeline.publish_confirmed()

    assert published_early == []
    assert state_records(producer) == [b"a", b"b"]


def test_confirm_oldest_returns_batch_after_all_records():
    pipeline, producer, _, store = make_pipeline()
    batch = changed_batch(store, "a")
    pipeline.write(batch)

    async def confirm():
        task = asyncio.ensure_future(pipeline.confirm_oldest())
        for _ in range(3):
            await asyncio.sleep(0.005)
            producer.deliver()
        return await task

    written = asyncio.run(confirm())

    assert written.batch is batch
    assert written.state.pending == 0
    assert not pipeline.unconfirmed


def test_paused_pipeline_publishes_nothing():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    pipeline.paused = True
    producer.deliver()

    written = asyncio.run(pipeline.confirm_oldest())

    assert written is None
    assert state_records(producer) == []
    assert len(pipeline.unconfirmed) == 1


def test_failed_changelog_publishes_nothing():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    producer.deliver(error="broker down")

    pipeline.publish_confirmed()

    assert state_records(producer) == []
    with pytest.raises(StateRecordError):
        asyncio.run(pipeline.confirm_oldest())


def test_drop_resumes_publishing():
    pipeline, _, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    pipeline.paused = True

    dropped = pipeline.drop()

    assert dropped == 1
    assert not pipeline.unconfirmed
    assert not pipeline.paused


def test_publisher_publishes_on_confirmation():
    pipeline, producer, _, store = make_pipeline()
    failures = []

    async def run():
        publisher = asyncio.ensure_future(pipeline.run_publisher(failures.append))
        pipeline.write(changed_batch(store, "a"))
        await asyncio.sleep(0.01)
        producer.deliver()
        await asyncio.sleep(0.02)
        publisher.cancel()

    asyncio.run(run())

    assert state_records(producer) == [b"a"]
    assert failures == []
