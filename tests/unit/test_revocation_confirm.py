"""A revocation waits until the records of unconfirmed batches are in Kafka."""

from __future__ import annotations

import asyncio
import logging

from processor.config import Settings
from topologies import execution_state
from topologies.execution_state import _Batch, _WrittenBatch, build_topology
from topologies.state_producer import Delivery


class _FakeProducer:
    """Confirms each delivery after ``delay`` seconds and records the order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.confirmed: list[Delivery] = []

    async def confirm(self, delivery: Delivery) -> None:
        await asyncio.sleep(self.delay)
        self.confirmed.append(delivery)


def _written() -> _WrittenBatch:
    return _WrittenBatch(_Batch(), [], [], Delivery(), 0.0)


def test_revocation_confirms_every_unconfirmed_batch(tmp_path):
    topology = build_topology(Settings(state_dir=tmp_path, metrics_port=0))
    topology.state_producer = _FakeProducer(delay=0.01)
    batches = [_written(), _written()]
    topology.unconfirmed.extend(batches)

    asyncio.run(topology._on_partitions_revoked(topology.app, set()))

    assert topology.state_producer.confirmed == [batch.delivery for batch in batches]
    # The batches stay unacknowledged; the assignment that follows drops them.
    assert list(topology.unconfirmed) == batches


def test_revocation_wait_is_bounded(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(execution_state, "REVOCATION_CONFIRM_SECONDS", 0.05)
    topology = build_topology(Settings(state_dir=tmp_path, metrics_port=0))
    topology.state_producer = _FakeProducer(delay=10.0)
    topology.unconfirmed.append(_written())

    with caplog.at_level(logging.WARNING):
        asyncio.run(topology._on_partitions_revoked(topology.app, set()))

    assert "were not confirmed before 0 partitions were revoked" in caplog.text
