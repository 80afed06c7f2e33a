"""faust wiring: input topics -> one agent -> state tables -> state topics.

Everything the agent decides comes from processor/ (routing and fold); this
module only moves records between Kafka and those functions.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import faust

from processor import metrics, retention
from processor.config import Settings
from processor.events import DeadLetterReason
from processor.fold.execution import ExecutionFolder, RecordKind
from processor.messages import WorkflowExecutionState
from processor.security import faust_broker_credentials
from processor.topics import TABLE_NAMES
from processor.routing import (
    DeadLetter,
    FoldHere,
    InputRecord,
    RecordRouter,
    Repartition,
    dead_letter_headers,
    header_value,
    partition_for_key,
)
from topologies.faust_fixes import apply_commit_gap_fix
from topologies.table_store import StateStoreError, TableStateStore
from topologies.worker_metrics import WorkerGauges, start_metrics_server

log = logging.getLogger(__name__)


# Exit code of a worker that stops itself because it could not publish a
# record or use a table. The event is not acknowledged, so a restart folds it
# again.
EXIT_PUBLISH_FAILED = 70


def build_app(settings: Settings) -> faust.App:
    apply_commit_gap_fix()

    # faust opens its data directory without creating missing parents.
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # NOTE: under at-least-once processing faust-streaming 0.15.3 consumes with
    # isolation level read_uncommitted, so events of aborted producer
    # transactions are folded as well.

    # faust's rocksdb:// store runs on rocksdict when python-rocksdb is absent.
    store = "memory://" if settings.store == "memory" else "rocksdb://"
    return faust.App(
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
        web_enabled=False,
        broker_credentials=faust_broker_credentials(settings.security),
    )


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

    def __post_init__(self) -> None:
        settings = self.settings
        app = self.app
        topics = settings.topics

        self.input_topic = app.topic(
            *topics.all_inputs,
            settings.repartition_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
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
        self.folder = ExecutionFolder(TableStateStore(self.tables))
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

        self.assigned_at = time.monotonic()
        app.on_partitions_assigned.connect(self._on_partitions_assigned)
        self.tables[RecordKind.WORKFLOW].on_recover(self._log_recovery)

    async def _on_partitions_assigned(self, sender, assigned, **kwargs) -> None:
        self.assigned_at = time.monotonic()
        log.info("assigned %d partitions; recovering tables", len(assigned))

    async def _log_recovery(self) -> None:
        elapsed = time.monotonic() - self.assigned_at
        sizes = ", ".join(f"{TABLE_NAMES[kind]}={len(table)}" for kind, table in self.tables.items())
        log.info("table recovery finished in %.1f s; keys per table: %s", elapsed, sizes)

    async def _consume(self, stream) -> None:
        # TODO: fold in batches with one table write and one state record per
        # changed key per batch. The per-event writes and sends keep the
        # worker far below faust's own floor (docs/benchmarks.md).
        async for event in stream.events():
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
                if self.is_sweep_request(record):
                    await self.sweep_partition(record)
                    continue
                await self.handle(record)
            except Exception:
                # A failed publish or table write leaves the state topics behind
                # the tables. Exit without acknowledging the event so that a
                # restart folds it again, because faust acks and skips an event
                # whose agent raises.
                log.critical(
                    "cannot handle %s[%d]@%d; stopping the worker without committing",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc_info=True,
                )
                logging.shutdown()
                os._exit(EXIT_PUBLISH_FAILED)

    def is_sweep_request(self, record: InputRecord) -> bool:
        # Only the worker itself writes control records, to the repartition topic.
        return (
            record.topic == self.settings.repartition_topic
            and header_value(record.headers, retention.CONTROL_HEADER) == retention.RETENTION_SWEEP
        )

    async def handle(self, record: InputRecord) -> None:
        """Route one record and carry out the decision: fold, forward or dead-letter."""
        metrics.EVENTS_CONSUMED.labels(topic=record.topic).inc()
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

    async def fold(self, record: InputRecord, route: FoldHere) -> None:
        event = route.event
        try:
            with metrics.FOLD_SECONDS.labels(kind=event.kind.value).time():
                result = self.folder.fold(event, enrichment=route.enrichment)
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

        metrics.EVENTS_FOLDED.labels(kind=event.kind.value, outcome=result.outcome.value).inc()
        if result.outcome.value != "applied":
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

        await self.publish(result.records_to_publish)

    async def publish(self, changes) -> None:
        """Send changed records, or tombstones, to their state topics.

        faust flushes its producer before it commits an offset, so a record is
        never lost when the worker dies between publishing and committing.
        """
        for change in changes:
            value = change.state.SerializeToString() if change.state is not None else None
            await self.app.producer.send(
                self.state_topic_names[change.kind], change.key.encode(), value, None, None, None
            )
            metrics.STATE_RECORDS_PUBLISHED.labels(kind=change.kind.value).inc()

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
            for raw_key, raw_value in list(self.tables[RecordKind.WORKFLOW].items()):
                if partition_for_key(raw_key, self.settings.partitions) != record.partition:
                    continue
                state = WorkflowExecutionState()
                state.ParseFromString(raw_value)
                yield raw_key.decode(), state

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


def build_topology(settings: Settings) -> ExecutionStateTopology:
    return ExecutionStateTopology(settings=settings, app=build_app(settings))


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM or SIGINT; return faust's exit code."""
    topology = build_topology(settings)
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
