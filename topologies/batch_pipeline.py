"""The write path of a batch: changelog records, then state records once Kafka confirmed those, then acknowledgements.

A state record is produced only after Kafka confirmed the changelog record
that carries the same value. A worker killed between the two leaves a
changelog ahead of its state topic, never behind it. The next owner of the
partition recovers the newer value with its version and folds the batch's
events again, so the versions of a key in its state topic never go down.
When the state record went out first, the next owner could recover an older
value and publish later changes of the key under versions that readers
already held, and readers that keep the highest version kept the stale
record.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from processor import metrics
from processor.fold.execution import RecordKind, StateChange
from processor.fold.public import public_bytes
from processor.fold.write_back import PendingWrite, WriteBackStore
from topologies.state_producer import (
    CONFIRM_POLL_SECONDS,
    CONFIRM_TIMEOUT_SECONDS,
    Delivery,
    DeliveryStalled,
    StateRecordProducer,
)
from topologies.table_store import TableWriter

_STATE_RECORDS_PUBLISHED = metrics.LabelledSeries(metrics.STATE_RECORDS_PUBLISHED)

log = logging.getLogger(__name__)


def _needs_resend(delivery: Delivery) -> bool:
    """Return whether records of ``delivery`` await a report that no failure has made pointless."""
    return delivery.pending > 0 and not delivery.failures


@dataclass
class Batch:
    """Events folded since the last write, and the last change of each record they changed."""

    events: list = field(default_factory=list)
    event_of_partition: dict[int, object] = field(default_factory=dict)
    changes: dict[tuple[RecordKind, str], StateChange] = field(default_factory=dict)
    started_at: float = 0.0

    def add_event(self, event, partition: int) -> None:
        if not self.events:
            self.started_at = time.monotonic()
        self.events.append(event)
        self.event_of_partition[partition] = event

    def add_changes(self, changes: list[StateChange]) -> None:
        for change in changes:
            self.changes[(change.kind, change.key)] = change


@dataclass
class WrittenBatch:
    """A batch whose changelog records were produced, until Kafka confirmed all of its records."""

    batch: Batch
    writes: list[PendingWrite]
    # Serialized values of ``writes``, None for a deletion.
    values: list[Optional[bytes]]
    changelog: Delivery
    written_at: float
    # Delivery reports of the state records; None until they are produced.
    state: Optional[Delivery] = None


class BatchPipeline:
    """Batches written but not yet acknowledged, oldest first, and the publishing of their state records.

    ``write`` produces a batch's changelog records. ``publish_confirmed``,
    called by ``write`` and by the ``run_publisher`` task, stores each batch
    whose changelog records Kafka confirmed into the tables and produces its
    state records, in write order. ``confirm_oldest`` waits for both and
    hands the oldest batch back for acknowledgement. While paused, no state
    record is produced, so only a batch whose state records went out before
    the pause can still be confirmed.
    """

    def __init__(
        self,
        store: WriteBackStore,
        table_writer: TableWriter,
        producer: StateRecordProducer,
        state_topic_names: Mapping[RecordKind, str],
    ) -> None:
        self.store = store
        self.table_writer = table_writer
        self.producer = producer
        self.state_topic_names = state_topic_names
        self.unconfirmed: collections.deque[WrittenBatch] = collections.deque()
        self.paused = False
        self._batch_written = asyncio.Event()

    def write(self, batch: Batch) -> None:
        """Produce the changelog records of the records that ``batch`` changed; the state records follow."""
        delivery = Delivery()
        writes = self.store.take_writes()
        values = self.table_writer.produce(writes, delivery)
        self.unconfirmed.append(WrittenBatch(batch, writes, values, delivery, time.monotonic()))
        self.producer.serve_reports()
        self.publish_confirmed()
        self._batch_written.set()

    def publish_confirmed(self) -> None:
        """Store and publish each batch, in write order, whose changelog records Kafka has confirmed.

        Stops at the first batch still waiting for a confirmation or with a
        failed record; ``confirm_oldest`` raises the failure. Raises
        StateStoreError when a table store fails and StateRecordError when
        librdkafka's queue stays full.
        """
        if self.paused:
            return
        for written in self.unconfirmed:
            if written.state is not None:
                continue
            if written.changelog.pending > 0 or written.changelog.failures:
                return
            self._store_and_publish(written)

    def _store_and_publish(self, written: WrittenBatch) -> None:
        self.table_writer.store(
            written.writes, written.values, written.changelog.offsets, written.batch.event_of_partition
        )
        self.store.mark_stored(written.writes)

        written.state = self._send_state_records(written.batch)

    def _send_state_records(self, batch: Batch, *, again: bool = False) -> Delivery:
        """Produce the state record of each record that ``batch`` changed; return their Delivery.

        Records produced ``again`` after a producer replacement are not
        counted as published a second time.
        """
        state = Delivery()
        published: collections.Counter[RecordKind] = collections.Counter()
        for change in batch.changes.values():
            value = public_bytes(change.record) if change.record is not None else None
            self.producer.send(self.state_topic_names[change.kind], change.key.encode(), value, state)
            published[change.kind] += 1
        if not again:
            for kind, count in published.items():
                _STATE_RECORDS_PUBLISHED(kind.value).inc(count)
        return state

    async def _confirm(self, written: WrittenBatch, part: str) -> None:
        """Wait until Kafka confirmed the ``part`` ("changelog" or "state") records of ``written``.

        When the producer stalls, it is replaced, the unconfirmed records are
        produced again, and the wait goes on for the new records. While a
        revocation pauses the pipeline nothing is produced again: the
        partitions may belong to another worker by then. This wait is
        bounded by CONFIRM_TIMEOUT_SECONDS, replacements included, and
        StateRecordError ends it as before.
        """
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        while True:
            delivery = written.changelog if part == "changelog" else written.state
            try:
                await self.producer.confirm(delivery, deadline, detect_stall=not self.paused)
                return
            except DeliveryStalled as stall:
                # Another waiter may have produced the records again already.
                if not delivery.superseded and not self.paused:
                    self.produce_unconfirmed_again(str(stall))

    def produce_unconfirmed_again(self, reason: str) -> None:
        """Replace the producer and produce the unconfirmed records of the unacknowledged batches again.

        Changelog and state records are two streams, each in batch order.
        A stream goes out again from its first batch with an unconfirmed
        record, with every later batch's records, confirmed ones included.
        So the newest value of each key is again the last one in its
        partition. State records go out again only for batches whose state
        records were produced, and those had their changelog records
        confirmed: publish_confirmed produces state records in batch order
        and stops at the first batch whose changelog records are
        unconfirmed. So a state record still never goes out before its
        changelog record is in Kafka.
        """
        changelog_from = state_from = None
        for index, written in enumerate(self.unconfirmed):
            if changelog_from is None and _needs_resend(written.changelog):
                changelog_from = index
            if state_from is None and written.state is not None and _needs_resend(written.state):
                state_from = index

        again = []
        for index, written in enumerate(self.unconfirmed):
            changelog = changelog_from is not None and index >= changelog_from and not written.changelog.failures
            state = (
                state_from is not None
                and index >= state_from
                and written.state is not None
                and not written.state.failures
            )
            if changelog:
                written.changelog.superseded = True
            if state:
                written.state.superseded = True
            again.append((written, changelog, state))

        metrics.PRODUCER_REPLACEMENTS.inc()
        self.producer.replace(reason)
        changelog_records = state_records = 0
        for written, changelog, state in again:
            if changelog:
                written.changelog = Delivery()
                self.table_writer.produce_again(written.writes, written.values, written.changelog)
                changelog_records += written.changelog.pending
            if state:
                written.state = self._send_state_records(written.batch, again=True)
                state_records += written.state.pending
        log.warning(
            "produced %d changelog and %d state records of %d unacknowledged batches again",
            changelog_records,
            state_records,
            len(self.unconfirmed),
        )

    async def confirm_oldest(self) -> Optional[WrittenBatch]:
        """Wait until Kafka confirmed every record of the oldest batch, then remove and return it.

        Returns None, leaving the batch in place, when it is paused before
        the batch's state records went out. Raises StateRecordError when a
        record failed or was not confirmed in time.
        """
        written = self.unconfirmed[0]
        await self._confirm(written, "changelog")
        if written.state is None:
            # Every older batch is confirmed and gone, so this one is next.
            self.publish_confirmed()
        if written.state is None:
            return None
        await self._confirm(written, "state")
        self.unconfirmed.popleft()
        return written

    async def confirm_produced(self) -> None:
        """Wait until Kafka confirmed every record produced so far, without producing more.

        Raises StateRecordError as ``confirm_oldest`` does.
        """
        for written in list(self.unconfirmed):
            await self._confirm(written, "changelog")
            if written.state is not None:
                await self._confirm(written, "state")

    def drop(self) -> int:
        """Forget every unacknowledged batch and resume publishing; return how many events they held."""
        events = sum(len(written.batch.events) for written in self.unconfirmed)
        self.unconfirmed.clear()
        self.paused = False
        return events

    async def run_publisher(self, on_failure: Callable[[str], None]) -> None:
        """Publish batches as soon as Kafka confirms their changelog records, until cancelled.

        Without this task a batch's state records would wait for the next
        write or acknowledgement. ``on_failure`` receives a description when
        a table store or the producer fails.
        """
        while True:
            await self._batch_written.wait()
            self._batch_written.clear()
            while self._waiting_for_changelog():
                await asyncio.sleep(CONFIRM_POLL_SECONDS)
                self.producer.serve_reports()
                try:
                    self.publish_confirmed()
                except Exception:
                    on_failure("cannot publish the state records of a confirmed batch")
                    return

    def _waiting_for_changelog(self) -> bool:
        """Return whether a batch waits for its changelog confirmation, with no failure that stops it."""
        if self.paused:
            return False
        for written in self.unconfirmed:
            if written.state is None:
                return not written.changelog.failures
        return False
