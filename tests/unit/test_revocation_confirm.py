"""A revocation stops publishing and waits until the records produced so far are in Kafka."""

from __future__ import annotations

import asyncio
import logging

from processor.config import Settings
from topologies import execution_state
from topologies.batch_pipeline import Batch, WrittenBatch
from topologies.execution_state import build_topology
from topologies.state_producer import Delivery


class _FakeProducer:
    """Confirms each delivery after ``delay`` seconds and records the order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.confirmed: list[Delivery] = []

    async def confirm(self, delivery: Delivery, deadline=None, detect_stall=True) -> None:
        await asyncio.sleep(self.delay)
        self.confirmed.append(delivery)


def _written(published: bool) -> WrittenBatch:
    return WrittenBatch(Batch(), [], [], Delivery(), 0.0, state=Delivery() if published else None)


def test_revocation_confirms_every_unconfirmed_batch(tmp_path):
    topology = build_topology(Settings(state_dir=tmp_path, metrics_port=0))
    topology.pipeline.producer = _FakeProducer(delay=0.01)
    published, unpublished = _written(published=True), _written(published=False)
    topology.pipeline.unconfirmed.extend([published, unpublished])

    asyncio.run(topology._on_partitions_revoked(topology.app, set()))

    assert topology.pipeline.producer.confirmed == [published.changelog, published.state, unpublished.changelog]
    # The batches stay unacknowledged; the assignment that follows drops them.
    assert list(topology.pipeline.unconfirmed) == [published, unpublished]
    assert unpublished.state is None
    assert topology.pipeline.paused


def test_revocation_wait_is_bounded(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(execution_state, "REVOCATION_CONFIRM_SECONDS", 0.05)
    topology = build_topology(Settings(state_dir=tmp_path, metrics_port=0))
    topology.pipeline.producer = _FakeProducer(delay=10.0)
    topology.pipeline.unconfirmed.append(_written(published=False))

    with caplog.at_level(logging.WARNING):
        asyncio.run(topology._on_partitions_revoked(topology.app, set()))

    assert "records of 1 unacknowledged batches were not confirmed before 0 partitions were revoked" in caplog.text
