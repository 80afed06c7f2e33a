"""A stalled producer is replaced and the unconfirmed records are produced again, in order."""

from __future__ import annotations

import asyncio
import time

import pytest

from processor import metrics
from processor.config import Settings
from processor.metrics import counter_value
from processor.fold.execution import RecordKind, StateChange
from processor.fold.write_back import PendingWrite
from processor.messages import WorkflowExecutionState
from topologies import batch_pipeline
from topologies.batch_pipeline import Batch, BatchPipeline
from topologies.state_producer import Delivery, DeliveryStalled, StateRecordError, StateRecordProducer
from tests.unit.test_batch_pipeline import STATE_TOPICS, FakeProducer, FakeStore, changed_batch


class StallingProducer(FakeProducer):
    """A FakeProducer whose confirm reports a stall until ``replace`` is called."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = True
        self.replaced: list[str] = []

    def replace(self, reason: str) -> None:
        # The purge drops every open record of the old producer unreported.
        self.replaced.append(reason)
        self.open = []
        self.stalled = False

    async def confirm(self, delivery: Delivery, deadline=None, detect_stall=True) -> None:
        while delivery.pending > 0 and not delivery.failures:
            if delivery.superseded or (self.stalled and detect_stall):
                raise DeliveryStalled("no report")
            if deadline is not None and time.monotonic() > deadline:
                raise StateRecordError("records unconfirmed at the deadline")
            await asyncio.sleep(0.001)
        if delivery.failures:
            raise StateRecordError(delivery.failures[0])


class ChangelogWriter:
    """A table writer that records the values it produces, and produces them again unchanged."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.stored: list[list[str]] = []

    def produce(self, writes, delivery):
        values = [f"value of {write.key}".encode() for write in writes]
        self.produce_again(writes, values, delivery)
        return values

    def produce_again(self, writes, values, delivery) -> None:
        for write, value in zip(writes, values):
            self.producer.send(f"changelog.{write.kind.value}", write.key.encode(), value, delivery, write.partition)

    def store(self, writes, values, offsets, event_of_partition) -> None:
        self.stored.append([write.key for write in writes])


def make_pipeline():
    producer = StallingProducer()
    writer = ChangelogWriter(producer)
    store = FakeStore()
    return BatchPipeline(store, writer, producer, STATE_TOPICS), producer, writer, store


async def _deliver_while(task: asyncio.Future, producer: FakeProducer):
    while not task.done():
        await asyncio.sleep(0.002)
        producer.deliver()
    return await task


def test_stalled_changelog_is_produced_again():
    pipeline, producer, writer, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    replacements = counter_value(metrics.PRODUCER_REPLACEMENTS)

    async def run():
        return await _deliver_while(asyncio.ensure_future(pipeline.confirm_oldest()), producer)

    written = asyncio.run(run())

    assert producer.replaced == ["no report"]
    assert producer.produced == [
        ("changelog.workflow", b"a"),
        ("changelog.workflow", b"a"),
        ("state.workflow", b"a"),
    ]
    assert written.changelog.pending == 0
    assert writer.stored == [["a"]]
    assert counter_value(metrics.PRODUCER_REPLACEMENTS) == replacements + 1


def test_only_unconfirmed_records_are_produced_again():
    pipeline, producer, _, store = make_pipeline()
    # Batch "a" has its changelog confirmed and its state records open;
    # batch "b" has its changelog records open.
    producer.stalled = False
    pipeline.write(changed_batch(store, "a"))
    producer.deliver()
    pipeline.publish_confirmed()
    pipeline.write(changed_batch(store, "b"))
    producer.produced.clear()

    pipeline.produce_unconfirmed_again("test")

    assert producer.produced == [("state.workflow", b"a"), ("changelog.workflow", b"b")]
    first, second = pipeline.unconfirmed
    assert first.changelog.pending == 0
    assert first.state.pending == 1
    assert second.changelog.pending == 1
    assert second.state is None


def test_resent_batch_gets_new_delivery():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    old_changelog = pipeline.unconfirmed[0].changelog

    pipeline.produce_unconfirmed_again("test")

    assert old_changelog.superseded
    assert pipeline.unconfirmed[0].changelog is not old_changelog


def test_failed_records_are_not_produced_again():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    producer.deliver(error="MSG_SIZE_TOO_LARGE")
    producer.produced.clear()

    pipeline.produce_unconfirmed_again("test")

    assert producer.produced == []
    with pytest.raises(StateRecordError, match="MSG_SIZE_TOO_LARGE"):
        asyncio.run(pipeline.confirm_oldest())


def test_two_waiters_replace_once():
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))

    async def run():
        revocation = asyncio.ensure_future(pipeline.confirm_produced())
        oldest = asyncio.ensure_future(pipeline.confirm_oldest())
        await _deliver_while(asyncio.gather(revocation, oldest), producer)

    asyncio.run(run())

    assert len(producer.replaced) == 1


def _unanswered_record(stall_seconds: float) -> tuple[StateRecordProducer, Delivery]:
    """Return a producer whose one record stays unreported, because nothing listens on port 1 of 127.0.0.1."""
    producer = StateRecordProducer(Settings(bootstrap_servers="127.0.0.1:1"), stall_seconds=stall_seconds)
    delivery = Delivery()
    producer.send("state.workflow", b"a", b"value", delivery, partition=0)
    return producer, delivery


def test_producer_without_reports_stalls():
    producer, delivery = _unanswered_record(stall_seconds=0.2)

    with pytest.raises(DeliveryStalled, match="1 records got no delivery report"):
        asyncio.run(producer.confirm(delivery))


def test_replace_creates_new_producer_and_purges_old():
    producer, delivery = _unanswered_record(stall_seconds=0.2)
    old = producer.producer

    delivery.superseded = True
    producer.replace("test")

    assert producer.producer is not old
    assert producer.replacements == 1
    # The purge reported the old record as failed to the superseded Delivery.
    assert delivery.pending == 0
    assert delivery.failures
    with pytest.raises(DeliveryStalled, match="produced again"):
        asyncio.run(producer.confirm(delivery))


def test_confirm_deadline_still_ends_the_wait():
    producer, delivery = _unanswered_record(stall_seconds=60.0)

    with pytest.raises(StateRecordError, match="unconfirmed at the deadline"):
        asyncio.run(producer.confirm(delivery, deadline=time.monotonic() + 0.1))


def test_idle_producer_does_not_stall_at_once():
    producer, delivery = _unanswered_record(stall_seconds=0.2)
    # The last report came long ago, while the worker had nothing to write.
    producer.clock.last_report_at -= 100.0

    started = time.monotonic()
    with pytest.raises(DeliveryStalled):
        asyncio.run(producer.confirm(delivery))

    assert time.monotonic() - started >= 0.2


class PartitionedProducer(StallingProducer):
    """A StallingProducer that keeps each record's value and reports records one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict] = []

    def send(self, topic, key, value, delivery, partition=None) -> None:
        super().send(topic, key, value, delivery, partition)
        self.records.append({"topic": topic, "key": key, "value": value, "delivery": delivery, "reported": False})

    def report(self, topic_prefix: str, key: bytes, value: bytes) -> None:
        """Confirm the unreported records of one key and value, as a partition that keeps working would."""
        for record in self.records:
            matches = record["topic"].startswith(topic_prefix) and record["key"] == key and record["value"] == value
            if matches and not record["reported"]:
                record["reported"] = True
                record["delivery"].pending -= 1

    def replace(self, reason: str) -> None:
        super().replace(reason)
        # The purge reports every open record of the old producer as failed.
        for record in self.records:
            if not record["reported"]:
                record["reported"] = True
                record["delivery"].pending -= 1
                record["delivery"].failures.append("purged")

    def last_value(self, topic_prefix: str, key: bytes) -> bytes:
        return [record["value"] for record in self.records if record["topic"].startswith(topic_prefix) and record["key"] == key][-1]


class VersionedWriter(ChangelogWriter):
    """A ChangelogWriter whose values name the batch that wrote them."""

    def __init__(self, producer) -> None:
        super().__init__(producer)
        self.batches = 0

    def produce(self, writes, delivery):
        self.batches += 1
        values = [f"{write.key} of batch {self.batches}".encode() for write in writes]
        self.produce_again(writes, values, delivery)
        return values


def versioned_batch(store: FakeStore, keys: list[str], version: int) -> Batch:
    batch = Batch()
    batch.add_event(object(), 0)
    for key in keys:
        state = WorkflowExecutionState(version=version)
        store.writes.append(PendingWrite(RecordKind.WORKFLOW, key, state, 0))
        batch.add_changes([StateChange(RecordKind.WORKFLOW, key, state)])
    return batch


def make_partitioned_pipeline():
    producer = PartitionedProducer()
    producer.stalled = False
    writer = VersionedWriter(producer)
    store = FakeStore()
    return BatchPipeline(store, writer, producer, STATE_TOPICS), producer, store


def test_newer_changelog_value_stays_last():
    pipeline, producer, store = make_partitioned_pipeline()
    pipeline.write(versioned_batch(store, ["k", "a"], version=1))
    pipeline.write(versioned_batch(store, ["k"], version=2))
    # The partition of k keeps working, the partition of a stalls.
    producer.report("changelog.", b"k", b"k of batch 1")
    producer.report("changelog.", b"k", b"k of batch 2")

    pipeline.produce_unconfirmed_again("test")

    assert producer.last_value("changelog.", b"k") == b"k of batch 2"
    assert producer.last_value("changelog.", b"a") == b"a of batch 1"


def test_newer_state_value_stays_last():
    pipeline, producer, store = make_partitioned_pipeline()
    pipeline.write(versioned_batch(store, ["k", "a"], version=1))
    producer.report("changelog.", b"k", b"k of batch 1")
    producer.report("changelog.", b"a", b"a of batch 1")
    pipeline.publish_confirmed()
    pipeline.write(versioned_batch(store, ["k"], version=2))
    producer.report("changelog.", b"k", b"k of batch 2")
    pipeline.publish_confirmed()
    # Both state records of k are confirmed, the one of a is not.
    older_k = [record["value"] for record in producer.records if record["topic"].startswith("state.")][0]
    producer.report("state.", b"k", older_k)
    producer.report("state.", b"k", producer.last_value("state.", b"k"))

    pipeline.produce_unconfirmed_again("test")

    assert WorkflowExecutionState.FromString(producer.last_value("state.", b"k")).version == 2
    # The changelog records were all confirmed, so none went out again.
    assert [record["key"] for record in producer.records if record["topic"].startswith("changelog.")] == [b"k", b"a", b"k"]


def test_paused_pipeline_produces_nothing_again(monkeypatch):
    monkeypatch.setattr(batch_pipeline, "CONFIRM_TIMEOUT_SECONDS", 0.05)
    pipeline, producer, _, store = make_pipeline()
    pipeline.write(changed_batch(store, "a"))
    pipeline.paused = True

    with pytest.raises(StateRecordError, match="deadline"):
        asyncio.run(pipeline.confirm_produced())

    assert producer.replaced == []
    assert producer.produced == [("changelog.workflow", b"a")]
