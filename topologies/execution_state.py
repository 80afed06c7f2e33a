"""faust wiring: input topics -> one agent -> state tables -> state topics.

Everything the agent decides comes from processor/ (routing and fold); this
module only moves records between Kafka and those functions.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

import faust
import uvloop
from faust.types import TP

from processor import metrics, retention
from processor.config import Settings
from processor.events import DeadLetterReason
from processor.fold.execution import ExecutionFolder, RecordId, RecordKind, StateChange
from processor.fold.outcome import Outcome
from processor.fold.write_back import WriteBackStore
from processor.record_size import RecordSizeLimit
from processor.security import faust_broker_credentials
from processor.topics import TABLE_NAMES, StateTopicLimits
from processor.routing import (
    DeadLetter,
    FoldHere,
    InputRecord,
    RecordRouter,
    Repartition,
    dead_letter_headers,
    header_value,
)
from topologies.batch_pipeline import Batch, BatchPipeline
from topologies.consumer_fetch import configure_fetches
from topologies.fast_delivery import apply_fast_delivery
from topologies.faust_fixes import apply_faust_fixes
from topologies.lean_monitor import LeanMonitor
from topologies.raw_input import RawInputSchema
from topologies.stalled_commits import CHECK_INTERVAL_SECONDS, StalledCommits, seek_back_stalled
from topologies.state_producer import StateRecordError, StateRecordProducer
from topologies.table_store import StateStoreError, TableStateStore, TableWriter, partition_items
from topologies.worker_metrics import WorkerGauges, start_metrics_server

log = logging.getLogger(__name__)


# Exit code of a worker that stops itself because it could not publish a
# record or use a table. The event is not acknowledged, so a restart folds it
# again.
EXIT_PUBLISH_FAILED = 70

# Records remembered as published after an assignment, while the worker folds
# events that a previous owner may have folded. A record left out is only
# published once more per event that touches it, so the bound costs writes,
# not correctness. Each takes an estimated 150 bytes.
MAX_REMEMBERED_PUBLISHED_RECORDS = 500_000

# How long a revocation waits for the records of unconfirmed batches. The
# group's rebalance waits for it, so the wait is bounded.
REVOCATION_CONFIRM_SECONDS = 30.0

# Maximum events in the agent's stream buffer. faust stops fetching a
# partition that delivers while the buffer contains at least this divided
# by 1.25 (6,553 events), but still delivers the rest of the records it
# fetched. A delivery
# to a full buffer waits, and each further record is then handed over only
# when the agent takes one, which more than halved the worker's rate when a
# fetch returned tens of thousands of records.
STREAM_BUFFER_EVENTS = 8192

# Maximum records that one fetch hands to faust. The number fits in the room
# above the mark where faust stops fetching (8,192 - 6,553), so a delivery
# rarely waits. Larger fetches would make fewer round trips to the
# consumer's thread.
# NOTE: aiokafka hands out one partition's fetched records (up to 1 MiB)
# before the next partition's, so a worker that catches up on a backlog
# folds its partitions in turns of a few thousand events each.
FETCH_MAX_RECORDS = 1500


def build_app(settings: Settings) -> faust.App:
    apply_faust_fixes()
    apply_fast_delivery()

    # faust opens its data directory without creating missing parents.
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: under at-least-once processing faust-streaming 0.15.3 consumes with
    # isolation level read_uncommitted, so events of aborted producer
    # transactions are folded as well.

    # faust's rocksdb:// store runs on rocksdict when python-rocksdb is absent.
    store = "memory://" if settings.store == "memory" else "rocksdb://"
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        store=store,
        datadir=str(settings.state_dir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds / 4),
        producer_acks=-1,
        producer_max_request_size=settings.max_record_bytes,
        stream_buffer_maxsize=STREAM_BUFFER_EVENTS,
        broker_max_poll_records=FETCH_MAX_RECORDS,
        table_standby_replicas=settings.standby_replicas,
        web_enabled=False,
        Monitor=LeanMonitor,
        broker_credentials=faust_broker_credentials(settings.security),
    )
    configure_fetches(app, settings.fetch_min_bytes, settings.fetch_max_wait_seconds)
    return app


# Series updated for every event or record. The counters reach Prometheus once per batch.
_EVENTS_CONSUMED = metrics.PendingCounts(metrics.EVENTS_CONSUMED)
_EVENTS_FOLDED = metrics.PendingCounts(metrics.EVENTS_FOLDED)
_FOLD_SECONDS = metrics.LabelledSeries(metrics.FOLD_SECONDS)


class _LogLimiter:
    """Allow at most ``per_minute`` log lines per reason and count the rest."""

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute = per_minute
        self.window_start = time.monotonic()
        self.counts: dict[str, int] = {}

    def allow(self, reason: str) -> bool:
        now = time.monotonic()
        if now - self.window_start >= 60:
            suppressed = {name: count - self.per_minute for name, count in self.counts.items() if count > self.per_minute}
            if suppressed:
                log.warning("suppressed dead-letter log lines in the last minute: %s", suppressed)
            self.window_start = now
            self.counts = {}
        self.counts[reason] = self.counts.get(reason, 0) + 1
        return self.counts[reason] <= self.per_minute


@dataclass
class ExecutionStateTopology:
    """The faust app of the worker with its topics, tables and agent."""

    settings: Settings
    app: faust.App
    # Batch and record sizes that the changelog and state topics accept, as
    # processor.topics.state_topic_limits reads them; None takes those of the
    # topics as the worker creates them.
    limits: Optional[StateTopicLimits] = None

    def __post_init__(self) -> None:
        settings = self.settings
        app = self.app
        topics = settings.topics
        if self.limits is None:
            self.limits = StateTopicLimits.of_created_topics(settings)

        self.input_topic = app.topic(*topics.all_inputs, settings.repartition_topic, schema=RawInputSchema())
        self.repartition_topic = app.topic(
            settings.repartition_topic, key_serializer="raw", value_serializer="raw"
        )
        self.dead_letter_topic = app.topic(topics.dead_letter, key_serializer="raw", value_serializer="raw")
        self.state_topic_names = {
            RecordKind.WORKFLOW: topics.workflow_state,
            RecordKind.NODE: topics.node_state,
            RecordKind.TASK: topics.task_state,
            RecordKind.SUMMARY: topics.summary_state,
        }

        # key_type/value_type bytes give the tables the raw codec, which their
        # changelog recovery needs; the values are serialized state messages.
        self.tables = {
            kind: app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.partitions)
            for kind, name in TABLE_NAMES.items()
        }

        self.router = RecordRouter(settings)
        self.table_store = TableStateStore(self.tables)
        self.store = WriteBackStore(self.table_store)
        record_limit = RecordSizeLimit(
            settings.max_record_bytes, self.limits.topic_bytes, topics_keep_lz4=self.limits.topics_keep_lz4
        )
        self.folder = ExecutionFolder(self.store, record_limit)
        self.state_producer = StateRecordProducer(settings, self.limits.batch_bytes)
        self.table_writer = TableWriter(self.tables, self.state_producer)
        self.pipeline = BatchPipeline(self.store, self.table_writer, self.state_producer, self.state_topic_names)
        self.batch = Batch()
        self.batch_lock = asyncio.Lock()
        # Per input or repartition partition, the high watermark when this
        # worker read its first event after the last assignment. Events
        # below it may have been folded by a previous owner that died before
        # all of their records reached Kafka, so they are folded with
        # republish_touched.
        self.replay_until: dict[tuple[str, int], int] = {}
        # Records this worker has published since the last assignment, while
        # it folds such events: their state records carry the current value,
        # so the republishing skips them.
        self.published_since_assignment: set[RecordId] = set()
        # The stream that acknowledges events; set when the agent starts.
        self.acking_stream = None
        self.log_limiter = _LogLimiter()
        self.gauges = WorkerGauges(
            app,
            {TABLE_NAMES[kind]: table for kind, table in self.tables.items()},
            [*topics.all_inputs, settings.repartition_topic],
        )

        # One agent instance: with concurrency above 1 faust can commit the
        # offset of an event whose fold has not finished.
        app.agent(self.input_topic, name="fold-execution-events", concurrency=1)(self._consume)
        app.timer(settings.retention_sweep_seconds, on_leader=False)(self._request_retention_sweeps)
        self.stalled_commits = StalledCommits()
        app.timer(CHECK_INTERVAL_SECONDS, on_leader=False)(self._seek_back_stalled_partitions)

        self.assigned_at = time.monotonic()
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_partitions_assigned.connect(self._on_partitions_assigned)
        self.tables[RecordKind.WORKFLOW].on_recover(self._log_recovery)

    async def _on_partitions_revoked(self, sender, revoked, **kwargs) -> None:
        """Stop publishing, and wait until Kafka has confirmed every record produced so far, before the partitions move.

        A record that arrived later could land in a changelog or state topic
        after the partition's next owner has written newer values there. The
        batches stay unacknowledged: their owners fold their events again.
        """
        self.pipeline.paused = True
        try:
            await asyncio.wait_for(self.pipeline.confirm_produced(), REVOCATION_CONFIRM_SECONDS)
        except (asyncio.TimeoutError, StateRecordError) as error:
            log.warning(
                "records of %d unacknowledged batches were not confirmed before %d partitions were revoked: %s",
                len(self.pipeline.unconfirmed),
                len(revoked),
                error or "timed out",
            )

    async def _on_partitions_assigned(self, sender, assigned, **kwargs) -> None:
        self.assigned_at = time.monotonic()
        log.info("assigned %d partitions; recovering tables", len(assigned))

        # Recovery can change any table key, so decoded records must be read
        # again. A batch still open here lost its partitions before its
        # events were acknowledged; their owners fold them again.
        async with self.batch_lock:
            unacknowledged = len(self.batch.events) + self.pipeline.drop()
            if unacknowledged:
                log.warning(
                    "dropping %d unacknowledged events after a rebalance; they will be folded again",
                    unacknowledged,
                )
            self.batch = Batch()
            self.store.discard()
            self.replay_until.clear()
            self.published_since_assignment.clear()
        # The seek after recovery moves every partition to its committed offset.
        self.stalled_commits.clear()

    async def _log_recovery(self) -> None:
        elapsed = time.monotonic() - self.assigned_at
        sizes = ", ".join(f"{TABLE_NAMES[kind]}={len(table)}" for kind, table in self.tables.items())
        log.info("table recovery finished in %.1f s; keys per table: %s", elapsed, sizes)

    async def _consume(self, stream) -> None:
        # Events are acknowledged by write_batch, once the tables and state
        # topics hold what they changed.
        events = stream.noack()
        self.acking_stream = events

        # The agent ends a batch when an event arrives. This task ends one
        # when none arrives, so an idle worker publishes within about 1.5
        # times the linger time. It is a task of the agent rather than a faust
        # timer because it must keep running while faust stops or rebalances:
        # faust then waits for every open batch's events to be acknowledged.
        lingering_batches = asyncio.ensure_future(self._write_lingering_batches())
        publisher = asyncio.ensure_future(self.pipeline.run_publisher(self._stop_without_committing))
        try:
            await self._fold_events(events)
        finally:
            lingering_batches.cancel()
            publisher.cancel()

    async def _fold_events(self, events) -> None:
        async for event in events.events():
            message = event.message
            record = InputRecord(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                headers=list(message.headers or ()),
            )
            try:
                # The lock keeps the linger task from writing and acknowledging
                # the open batch while this event's forward or dead-letter send
                # is still awaited.
                async with self.batch_lock:
                    await self.add_to_batch(event, record)
                    if self.batch_is_due():
                        await self._write_batch_locked()
            except Exception:
                self._stop_without_committing(f"cannot handle {record.topic}[{record.partition}]@{record.offset}")

    def batch_is_due(self) -> bool:
        batch = self.batch
        return bool(batch.events) and (
            len(batch.events) >= self.settings.batch_max_events
            or time.monotonic() - batch.started_at >= self.settings.batch_linger_seconds
        )

    def _stop_without_committing(self, failure: str) -> None:
        # A failed publish or table write leaves the state topics behind the
        # tables. Exit without acknowledging the batch so that a restart folds
        # it again, because faust acks and skips an event whose agent raises.
        log.critical("%s; stopping the worker without committing", failure, exc_info=True)
        logging.shutdown()
        os._exit(EXIT_PUBLISH_FAILED)

    async def add_to_batch(self, event, record: InputRecord) -> None:
        """Fold, forward or dead-letter one record; its table and state changes join the open batch."""
        if self.is_sweep_request(record):
            # The sweep reads the workflow table directly, so it must see
            # every change folded before it, stored after Kafka confirmed it.
            await self._write_batch_locked(confirm_all=True)
            self.batch.add_event(event, record.partition)
            self.store.partition = record.partition
            await self.sweep_partition(record)
            return

        self.batch.add_event(event, record.partition)
        self.store.partition = record.partition
        await self.handle(record)

    async def write_batch(self) -> None:
        """Write the open batch's changed records, then acknowledge the batches that Kafka has confirmed.

        Each changed record is written to its table's changelog once and
        published once, with its last value. The pipeline produces a batch's
        state records only after Kafka confirmed its changelog records, and
        its events are acknowledged only after every record is confirmed, so
        a worker that dies on the way acknowledges none of them. To keep
        folding while the broker confirms, the newest batch stays
        unacknowledged until the next call. A call with no open batch
        acknowledges every batch, and the linger task makes such calls when
        no event arrives.
        """
        async with self.batch_lock:
            await self._write_batch_locked()

    async def _write_batch_locked(self, *, confirm_all: bool = False) -> None:
        """Do what write_batch does, and with ``confirm_all`` acknowledge the newest batch too.

        The caller holds batch_lock. Nothing is written while a revocation
        has paused the pipeline: the assignment that follows drops the open
        batch.
        """
        _EVENTS_CONSUMED.flush()
        _EVENTS_FOLDED.flush()
        if self.pipeline.paused:
            return
        batch, self.batch = self.batch, Batch()
        if batch.events:
            self.pipeline.write(batch)

        keep = 1 if batch.events and not confirm_all else 0
        while len(self.pipeline.unconfirmed) > keep:
            if not await self._acknowledge_oldest():
                return

    async def _acknowledge_oldest(self) -> bool:
        """Acknowledge the oldest batch's events once Kafka confirmed its records.

        Returns False, acknowledging nothing, when a revocation paused the
        pipeline before the batch's state records went out.
        """
        written = await self.pipeline.confirm_oldest()
        if written is None:
            return False
        for event in written.batch.events:
            await self.acking_stream.ack(event)

        metrics.BATCH_EVENTS.observe(len(written.batch.events))
        metrics.BATCH_WRITE_SECONDS.observe(time.monotonic() - written.written_at)
        return True

    async def _write_lingering_batches(self) -> None:
        interval = self.settings.batch_linger_seconds / 2
        while True:
            await asyncio.sleep(interval)
            batch = self.batch
            if not self.batch_is_due() and (batch.events or not self.pipeline.unconfirmed):
                continue
            try:
                await self.write_batch()
            except Exception:
                self._stop_without_committing(f"cannot write a batch of {len(batch.events)} events")

    def is_sweep_request(self, record: InputRecord) -> bool:
        # Only the worker itself writes control records, to the repartition topic.
        return (
            record.topic == self.settings.repartition_topic
            and header_value(record.headers, retention.CONTROL_HEADER) == retention.RETENTION_SWEEP
        )

    async def handle(self, record: InputRecord) -> None:
        """Route one record and carry out the decision: fold, forward or dead-letter."""
        _EVENTS_CONSUMED.add(record.topic)
        route = self.router.route(record)

        if isinstance(route, DeadLetter):
            await self.dead_letter(record, route.reason, route.detail)
            return

        if isinstance(route, Repartition):
            await self.repartition_topic.send(key=route.key, value=record.value, headers=route.headers)
            metrics.EVENTS_REPARTITIONED.labels(topic=record.topic).inc()
            log.debug(
                "forwarded %s event of %s from %s[%d]@%d to %s",
                route.event.kind.value,
                route.event.execution_key,
                record.topic,
                record.partition,
                record.offset,
                self.settings.repartition_topic,
            )
            return

        assert isinstance(route, FoldHere)
        await self.fold(record, route)

    def may_be_replayed(self, record: InputRecord) -> bool:
        """Return whether a previous owner of the record's partition may have folded it already."""
        position = (record.topic, record.partition)
        replay_until = self.replay_until.get(position)
        if replay_until is None:
            highwater = self.app.consumer.highwater(TP(record.topic, record.partition))
            if highwater is None:
                return True
            replay_until = self.replay_until[position] = highwater
        return record.offset < replay_until

    async def fold(self, record: InputRecord, route: FoldHere) -> None:
        event = route.event
        try:
            possibly_replayed = self.may_be_replayed(record)
            started = time.perf_counter()
            result = self.folder.fold(
                event,
                enrichment=route.enrichment,
                republish_touched=possibly_replayed,
                published=self.published_since_assignment,
            )
            _FOLD_SECONDS(event.kind.value).observe(time.perf_counter() - started)
        except StateStoreError:
            # The table failed, not the event: dead-lettering would lose a
            # valid event, so the worker stops without acknowledging it.
            raise
        except Exception as error:
            log.exception(
                "fold failed for %s event of %s at %s[%d]@%d",
                event.kind.value,
                event.execution_key,
                record.topic,
                record.partition,
                record.offset,
            )
            await self.dead_letter(
                record, DeadLetterReason.FOLD_FAILED, f"{type(error).__name__}: {error}", event.execution_key
            )
            return

        _EVENTS_FOLDED.add(event.kind.value, result.outcome.value)
        if result.outcome is Outcome.RECORD_TOO_LARGE:
            # The fold changed nothing. Kafka would reject the record, and a
            # worker that stopped on it would stop again after each restart.
            await self.dead_letter(record, DeadLetterReason.RECORD_TOO_LARGE, result.detail, event.execution_key)
            return
        if result.outcome is not Outcome.APPLIED:
            log.debug(
                "rejected %s event of %s (%s) at %s[%d]@%d: %s %s",
                event.kind.value,
                event.execution_key,
                event.entity_key,
                record.topic,
                record.partition,
                record.offset,
                result.outcome.value,
                result.detail,
            )

        changes = result.records_to_publish
        if possibly_replayed and len(self.published_since_assignment) < MAX_REMEMBERED_PUBLISHED_RECORDS:
            self.published_since_assignment.update((change.kind, change.key) for change in changes)
        await self.publish(changes)

    async def publish(self, changes: list[StateChange]) -> None:
        """Add changed records, or tombstones, to the open batch; write_batch publishes them."""
        self.batch.add_changes(changes)

    async def _seek_back_stalled_partitions(self) -> None:
        """Seek input partitions whose commit stopped before a record that never reached the agent back to it."""
        if self.app.rebalancing:
            return
        try:
            await seek_back_stalled(self.app.consumer, self.stalled_commits)
        except Exception as error:
            # A rebalance can revoke partitions under the check, and an
            # exception from a faust timer stops the whole worker.
            log.warning("cannot check the input partitions for stalled commits: %r", error)

    async def _request_retention_sweeps(self) -> None:
        """Send one sweep control record to each repartition-topic partition this worker holds."""
        now = time.time()
        for partition in sorted(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.repartition_topic
        ):
            await self.repartition_topic.send(
                key=retention.RETENTION_SWEEP,
                value=retention.sweep_record(now),
                partition=partition,
                headers=[(retention.CONTROL_HEADER, retention.RETENTION_SWEEP)],
            )

    async def sweep_partition(self, record: InputRecord) -> None:
        """Remove the expired executions of the record's partition and tombstone their records."""
        try:
            now = retention.parse_sweep_record(record.value or b"")
        except (ValueError, KeyError) as error:
            await self.dead_letter(record, DeadLetterReason.UNDECODABLE, f"invalid sweep record: {error}")
            return

        def workflows_of_partition():
            stored = partition_items(self.tables[RecordKind.WORKFLOW], record.partition, self.settings.partitions)
            for raw_key, raw_value in stored:
                yield raw_key.decode(), RecordKind.WORKFLOW.parse(raw_value)

        # NOTE: a sweep replayed after a crash finds the records that the
        # dead worker deleted from its table store, but whose tombstones did
        # not reach Kafka, already gone, so it writes no tombstones for them.
        # They come back only in a table recovered into an empty state
        # directory, and the next sweep of that worker removes them again.
        expired = list(
            retention.expired_execution_keys(workflows_of_partition(), now, self.settings.retention_seconds)
        )
        for execution_key in expired:
            tombstones = self.folder.remove_execution(execution_key)
            await self.publish(tombstones)
            metrics.EXECUTIONS_EXPIRED.inc()
            log.info(
                "removed expired execution %s (%d records) on partition %d",
                execution_key,
                len(tombstones),
                record.partition,
            )

    async def dead_letter(
        self, record: InputRecord, reason: DeadLetterReason, detail: str, execution_key: str = ""
    ) -> None:
        """Send the record unchanged to the dead-letter topic; ``execution_key`` is empty when unknown."""
        headers = dead_letter_headers(record, reason, detail)
        await self.dead_letter_topic.send(key=record.key, value=record.value, headers=headers)
        metrics.DEAD_LETTERS.labels(reason=reason.value).inc()
        if self.log_limiter.allow(reason.value):
            log.warning(
                "dead-lettered record of %s[%d]@%d (execution %s) to %s: %s: %s",
                record.topic,
                record.partition,
                record.offset,
                execution_key or "unknown",
                self.settings.topics.dead_letter,
                reason.value,
                detail,
            )


def build_topology(settings: Settings, limits: Optional[StateTopicLimits] = None) -> ExecutionStateTopology:
    return ExecutionStateTopology(settings=settings, app=build_app(settings), limits=limits)


def install_event_loop() -> None:
    """Make new event loops uvloop loops; call it before the faust app and worker are built.

    faust hands every event through several coroutines and futures, and
    uvloop runs those for less CPU than asyncio's own loop.
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())


def run_worker(settings: Settings, limits: Optional[StateTopicLimits] = None) -> int:
    """Run the worker until SIGTERM or SIGINT; return faust's exit code.

    ``limits`` are the sizes that the changelog and state topics accept, as
    processor.topics.state_topic_limits reads them from the broker.
    """
    # A crash in native code (librdkafka, RocksDB, uvloop) then leaves the
    # Python stack of every thread in the worker's log.
    faulthandler.enable()
    install_event_loop()
    topology = build_topology(settings, limits)
    start_metrics_server(settings)
    worker = faust.Worker(topology.app, loglevel=settings.log_level, quiet=True)
    log.info(
        "starting worker %s on %s: inputs %s, state store %s",
        settings.app_id,
        settings.bootstrap_servers,
        ", ".join(settings.topics.all_inputs),
        settings.store,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
