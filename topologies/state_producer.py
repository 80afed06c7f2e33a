"""The producer of a batch's records: confluent-kafka, confirmed before the worker acknowledges events.

The worker writes its state records and its tables' changelog records with
this producer. faust's own producer costs tens of microseconds per record in
Python, where librdkafka enqueues one in about two. faust flushes only its
own producer before it commits offsets, so the worker calls ``confirm`` after
each batch and acknowledges the batch's events only when every record of it
is in Kafka. A worker that dies in between has acknowledged nothing, and its
replacement folds the batch again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from confluent_kafka import KafkaError, KafkaException, Producer

from processor.config import Settings
from processor.kafka_clients import producer_config
from processor.record_size import STATE_LZ4_LEVEL
from processor.topics import LIBRDKAFKA_BATCH_BYTES

log = logging.getLogger(__name__)

# How long ``confirm`` waits for the broker to acknowledge a batch's records,
# and how often it looks. librdkafka fails a record after message.timeout.ms
# (300 s by default), so the wait outlasts that and reports its error.
CONFIRM_TIMEOUT_SECONDS = 330.0
CONFIRM_POLL_SECONDS = 0.001

# How long ``send`` waits for room in librdkafka's local queue.
QUEUE_FULL_TIMEOUT_SECONDS = 60.0

# How long records may stay unconfirmed without any delivery report before
# ``confirm`` gives up on the producer they were sent with. librdkafka 2.16
# removes a broker from its list when a metadata response leaves it out, as
# the response of a broker that is shutting down does. Its idempotent
# producer then kept records of partitions that had requests in flight
# unsent until message.timeout.ms. The same records produced again by a new
# producer are delivered (docs/reliability.md). The wait is longer than a
# broker restart, which took about 40 s on a machine that ran six fault
# scenarios at once: replacing the producer during a restart is harmless
# but needless.
# NOTE: the clock is the producer's, not a partition's. Records of one
# partition that stall while other partitions keep reporting are not
# detected, so their batch still fails after CONFIRM_TIMEOUT_SECONDS.
STALL_SECONDS = 60.0


class StateRecordError(RuntimeError):
    """Records were not confirmed; the events that produced them must not be acknowledged."""


class DeliveryStalled(Exception):
    """Records of a delivery got no report for STALL_SECONDS, or a new producer sent them again.

    The caller replaces the producer (``StateRecordProducer.replace``) and
    produces the unconfirmed records again, unless another caller did so
    already, which ``Delivery.superseded`` shows.
    """


class ReportClock:
    """Time of the last delivery report of a producer, of any record and outcome."""

    __slots__ = ("last_report_at",)

    def __init__(self) -> None:
        self.last_report_at = time.monotonic()

    def touch(self) -> None:
        self.last_report_at = time.monotonic()


class Delivery:
    """Delivery reports of the records of one batch."""

    __slots__ = ("pending", "failures", "offsets", "clock", "superseded")

    def __init__(self) -> None:
        self.pending = 0
        self.failures: list[str] = []
        # Offset of the last confirmed record per (topic, partition).
        self.offsets: dict[tuple[str, int], int] = {}
        # The report clock of the producer that sent the records.
        self.clock: Optional[ReportClock] = None
        # Set when the records were produced again under another Delivery,
        # after which this one's reports no longer count.
        self.superseded = False

    def on_delivery(self, error: Optional[KafkaError], message) -> None:
        if self.clock is not None:
            self.clock.touch()
        self.pending -= 1
        if error is not None:
            self.failures.append(f"{message.topic()}[{message.partition()}] key {message.key()!r}: {error}")
            return
        # Reports of one partition arrive in offset order.
        self.offsets[(message.topic(), message.partition())] = message.offset()


class StateRecordProducer:
    """Produce records keyed by record key, to a given partition or by the murmur2 partitioner, as faust would."""

    def __init__(
        self, settings: Settings, batch_bytes: int = LIBRDKAFKA_BATCH_BYTES, stall_seconds: float = STALL_SECONDS
    ) -> None:
        """Create the producer; ``batch_bytes`` caps each partition's record batch, see ``state_topic_limits``."""
        self.stall_seconds = stall_seconds
        self.clock = ReportClock()
        # How often ``replace`` gave up on a producer, for the logs.
        self.replacements = 0
        self.config = (
            {
                **producer_config(settings),
                # A batch is confirmed as a whole, so a short linger fills
                # produce requests without delaying the confirmation much.
                "linger.ms": 2,
                "batch.num.messages": 10_000,
                # One fold batch can change hundreds of records of one
                # partition, and the broker rejects their record batch when
                # it exceeds the topic's segment or message size. A single
                # record does so only when processor/record_size.py
                # underestimates its compressed size, because the folder
                # rejects events that would make a larger record.
                "batch.size": batch_bytes,
                # processor/record_size.py estimates record sizes with the
                # same codec and level.
                "compression.type": "lz4",
                "compression.level": STATE_LZ4_LEVEL,
            }
        )
        self.producer = Producer(self.config)

    def send(
        self, topic: str, key: bytes, value: Optional[bytes], delivery: Delivery, partition: Optional[int] = None
    ) -> None:
        """Enqueue one record whose report goes to ``delivery``; ``value`` None is a tombstone.

        ``partition`` None lets the murmur2 partitioner choose.
        """
        deadline = time.monotonic() + QUEUE_FULL_TIMEOUT_SECONDS
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value, key, on_delivery=delivery.on_delivery)
                else:
                    self.producer.produce(topic, value, key, partition=partition, on_delivery=delivery.on_delivery)
                break
            except BufferError:
                # The local queue is full: let librdkafka send some of it.
                if time.monotonic() > deadline:
                    raise StateRecordError(
                        f"librdkafka's queue stayed full for {QUEUE_FULL_TIMEOUT_SECONDS:.0f} s while sending to {topic}"
                    ) from None
                self.producer.poll(0.05)
        # Reports are served only by poll(), so none can arrive before this.
        delivery.pending += 1
        delivery.clock = self.clock

    def serve_reports(self) -> None:
        """Run the callbacks of delivery reports that have arrived, without waiting."""
        self.producer.poll(0)

    async def confirm(self, delivery: Delivery, deadline: Optional[float] = None, detect_stall: bool = True) -> None:
        """Wait until the broker has acknowledged every record of ``delivery``.

        ``deadline`` is a time.monotonic() value, by default CONFIRM_TIMEOUT_SECONDS
        from now. Raises DeliveryStalled when the delivery was superseded, and
        with ``detect_stall`` when no report of any record arrived for
        ``stall_seconds`` while records were pending. Raises StateRecordError
        when a record failed or the deadline passed.
        """
        # Delivery reports are served here, on the event loop's thread, with
        # poll(0) between short sleeps. A flush() on another thread would run
        # each callback only after taking the GIL back from the event loop,
        # which can wait a whole switch interval (5 ms) per callback.
        started = time.monotonic()
        if deadline is None:
            deadline = started + CONFIRM_TIMEOUT_SECONDS
        self.producer.poll(0)
        while delivery.pending > 0 and not delivery.failures and not delivery.superseded:
            now = time.monotonic()
            if now >= deadline:
                break
            # An idle producer's last report can be old, so the wait counts from this call at the earliest.
            silent_seconds = now - max(self.clock.last_report_at, started)
            if detect_stall and silent_seconds > self.stall_seconds:
                raise DeliveryStalled(f"{delivery.pending} records got no delivery report for {silent_seconds:.0f} s")
            await asyncio.sleep(CONFIRM_POLL_SECONDS)
            self.producer.poll(0)

        if delivery.superseded:
            raise DeliveryStalled("the records were produced again by a new producer")
        if delivery.failures:
            raise StateRecordError(f"{len(delivery.failures)} records failed, first: {delivery.failures[0]}")
        if delivery.pending > 0:
            raise StateRecordError(
                f"{delivery.pending} records unconfirmed at the deadline, {time.monotonic() - started:.0f} s into this wait"
            )

    def replace(self, reason: str) -> None:
        """Give up on the current producer and create a new one with the same settings.

        The old producer's queued and in-flight records are purged, and
        their reports go to Deliveries that the caller marks superseded
        before it produces the records again through the new producer.
        Records that the broker received before the purge can arrive twice;
        changelog and state records carry whole values, so a second copy
        changes nothing.
        """
        self.replacements += 1
        log.warning(
            "replacing the state and changelog producer (replacement %d): %s; unconfirmed records are produced again",
            self.replacements,
            reason,
        )
        old, self.producer = self.producer, None
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)
        # Dropping the last reference destroys the old producer and closes
        # its connections before the new one connects.
        # NOTE: a request that the old producer wrote to a socket before the
        # purge can still be appended by the broker. The new producer's first
        # records follow a metadata and a producer id round trip, so such a
        # request lands before them in practice, but nothing orders the two.
        del old
        self.clock = ReportClock()
        try:
            self.producer = Producer(self.config)
        except KafkaException as error:
            raise StateRecordError(f"cannot create a new producer: {error}") from error
