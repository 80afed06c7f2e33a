"""Fault scenarios on a real broker: the worker is killed, the broker restarted, workers join and leave.

Each scenario publishes a generated stream and disturbs the worker or the
broker while it folds. Once the consumer lag is 0, it compares every record
of the state topics with the fold of the same events by the pure fold
functions. The comparison uses the public view of each record without
its version, because the version counts visible changes and so depends on how
events of different records interleave.

Used by scripts/chaos (full runs) and tests/faults (shorter runs in CI).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from flyteidl.event import event_pb2
from google.protobuf import json_format

from processor import synthetic
from processor.config import Settings
from processor.events import ExecutionEvent
from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.fold.public import public_view
from processor.kafka_clients import client_config, producer_config
from processor.lag import consumer_lag
from processor.local_broker import LocalBroker
from processor.state_reader import StateReader
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess

log = logging.getLogger(__name__)

# Generated executions occurred weeks before the run; a retention this long
# keeps the sweep from removing them while a scenario runs.
CHAOS_RETENTION_SECONDS = 10 * 365 * 24 * 3600.0

# librdkafka's message.timeout.ms for the scenarios' publisher, and how often
# it produces failed records again with a new producer. Five attempts outlast
# the broker scenario's outages on a machine that ran six scenarios at once,
# where the broker was down for up to 65 s at a time and for 3 minutes in all.
PUBLISH_TIMEOUT_SECONDS = 60.0
PUBLISH_ATTEMPTS = 5

RECOVERY_LOG_PATTERN = re.compile(r"table recovery finished in ([0-9.]+) s")

RecordKey = tuple[RecordKind, str]


@dataclass
class ScenarioReport:
    """Figures of one scenario run; ``passed`` when nothing was lost, nothing applied twice and lag reached 0."""

    name: str
    events_published: int = 0
    malformed_published: int = 0
    disruptions: int = 0
    executions_compared: int = 0
    events_lost: int = 0
    events_applied_twice: int = 0
    dead_letters: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    lag_zero: bool = False
    mismatches: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.lag_zero and self.events_lost == 0 and self.events_applied_twice == 0 and not self.mismatches

    def lines(self) -> list[str]:
        recovery = (
            f"{min(self.recovery_seconds):.1f} / {sorted(self.recovery_seconds)[len(self.recovery_seconds) // 2]:.1f}"
            f" / {max(self.recovery_seconds):.1f} s (min / median / max of {len(self.recovery_seconds)})"
            if self.recovery_seconds
            else "not measured"
        )
        lines = [
            f"scenario: {self.name}",
            f"  events published: {self.events_published}",
            f"  malformed records published: {self.malformed_published}",
            f"  dead letters: {self.dead_letters}",
            f"  kills or restarts survived: {self.disruptions}",
            f"  executions compared: {self.executions_compared}",
            f"  events lost: {self.events_lost}",
            f"  events applied twice: {self.events_applied_twice}",
            f"  recovery seconds: {recovery}",
            f"  consumer lag reached 0: {'yes' if self.lag_zero else 'no'}",
            f"  duration: {self.duration_seconds:.0f} s",
            f"  result: {'PASS' if self.passed else 'FAIL'}",
        ]
        lines.extend(f"  mismatch: {mismatch}" for mismatch in self.mismatches[:20])
        return lines


def reference_records(events: Iterable[ExecutionEvent]) -> dict[RecordKey, object]:
    """Fold the events in order with the pure fold and return the public view of every record."""
    store = InMemoryStateStore()
    folder = ExecutionFolder(store)
    for event in events:
        folder.fold(event)
    return {
        (kind, key): public_view(state)
        for kind, records in store.records.items()
        for key, state in records.items()
    }


def published_records(reader: StateReader) -> dict[RecordKey, object]:
    return {
        (kind, key): public_view(state)
        for kind, records in reader.records.items()
        for key, state in records.items()
    }


def compare(
    expected: dict[RecordKey, object], actual: dict[RecordKey, object], events: list[ExecutionEvent]
) -> tuple[int, int, list[str]]:
    """Return (events lost, events applied twice, mismatch descriptions).

    A missing or incomplete record counts the events of its entity as lost.
    A summary whose counts are too high, a task with repeated reasons, or a
    record that should not exist counts as applied twice.
    """
    events_per_entity: dict[str, int] = {}
    for event in events:
        events_per_entity[event.entity_key] = events_per_entity.get(event.entity_key, 0) + 1

    lost = 0
    twice = 0
    mismatches = []
    for record_key, reference in expected.items():
        kind, key = record_key
        got = actual.get(record_key)
        if got is None:
            lost += events_per_entity.get(key, 1)
            mismatches.append(f"{kind.value} {key}: missing")
            continue
        if got == reference:
            continue

        extra = _extra_applications(kind, reference, got)
        if extra:
            twice += extra
        else:
            lost += 1
        mismatches.append(f"{kind.value} {key}: differs from the reference fold in {_differing_fields(reference, got)}")

    for record_key in actual.keys() - expected.keys():
        twice += 1
        mismatches.append(f"{record_key[0].value} {record_key[1]}: not in the reference fold")
    return lost, twice, mismatches


def _differing_fields(reference, got) -> str:
    """Name the innermost fields that differ, with both values, shortened."""
    differences: list[str] = []
    _collect_differences(json_format.MessageToDict(reference), json_format.MessageToDict(got), "", differences)
    return "; ".join(
        f"{path} (reference {str(expected)[:200]}, published {str(actual)[:200]})"
        for path, expected, actual in differences[:MAX_LISTED_DIFFERENCES]
    )


# Differing fields named per mismatch; a record that differs everywhere would flood the report.
MAX_LISTED_DIFFERENCES = 5


def _collect_differences(expected, actual, path: str, differences: list) -> None:
    """Append (path, expected, actual) for each leaf where the two JSON values differ."""
    if expected == actual:
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for name in sorted(expected.keys() | actual.keys()):
            _collect_differences(expected.get(name), actual.get(name), f"{path}.{name}" if path else name, differences)
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (left, right) in enumerate(zip(expected, actual)):
            _collect_differences(left, right, f"{path}[{index}]", differences)
        return
    differences.append((path, expected, actual))


def _extra_applications(kind: RecordKind, reference, got) -> int:
    if kind is RecordKind.SUMMARY:
        extra = (got.node_count - reference.node_count) + (got.task_count - reference.task_count)
        return max(0, extra)
    if kind is RecordKind.TASK:
        return max(0, len(got.task_execution.closure.reasons) - len(reference.task_execution.closure.reasons))
    return 0


class ScenarioRunner:
    """Runs scenarios against one broker, each on topics of its own."""

    def __init__(
        self,
        bootstrap_servers: str,
        workdir: Path,
        *,
        executions: int = 500,
        seed: int = 7,
        broker: Optional[LocalBroker] = None,
        partitions: int = 4,
        standby_replicas: int = Settings.standby_replicas,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.standby_replicas = standby_replicas
        self.workdir = workdir
        self.executions = executions
        self.seed = seed
        self.broker = broker
        self.partitions = partitions

    # Set-up -----------------------------------------------------------------

    def settings(self, name: str, **changes) -> Settings:
        prefix = f"chaos-{name}-{uuid.uuid4().hex[:8]}."
        base = Settings(
            bootstrap_servers=self.bootstrap_servers,
            partitions=self.partitions,
            state_dir=self.workdir / prefix / "state",
            retention_seconds=CHAOS_RETENTION_SECONDS,
            # Several workers share this host; none serves metrics.
            metrics_port=0,
            standby_replicas=self.standby_replicas,
            # A failure that only some runs show is diagnosed with librdkafka's
            # debug log, so the workers take it from the runner's environment.
            librdkafka_debug=os.environ.get("FLYTE_STATE_LIBRDKAFKA_DEBUG", "").strip(),
        )
        settings = base.with_topic_prefix(prefix)
        return settings.replace(**changes) if changes else settings

    def events(self, seed_offset: int = 0) -> list[ExecutionEvent]:
        executions = synthetic.generate_executions(self.executions, self.seed + seed_offset)
        return synthetic.flatten(executions)

    def worker(self, settings: Settings, name: str, state_dir: Optional[Path] = None) -> WorkerProcess:
        worker_settings = settings.replace(state_dir=state_dir) if state_dir is not None else settings
        return WorkerProcess(worker_settings, self.workdir / f"{settings.app_id}-{name}.log")

    # Publishing ---------------------------------------------------------------

    def publish_in_background(
        self,
        settings: Settings,
        events: list[ExecutionEvent],
        *,
        rate: float,
        extra_records: Optional[list[tuple[str, Optional[bytes], bytes]]] = None,
        transactional: bool = False,
    ) -> threading.Thread:
        """Produce the events at about ``rate`` per second from a thread; extra records are mixed in evenly."""
        records = [
            (settings.topics.input_topic(event.kind), event.execution_key.encode(), event.message.SerializeToString())
            for event in events
        ]
        if extra_records:
            step = max(1, len(records) // (len(extra_records) + 1))
            for index, extra in enumerate(extra_records):
                records.insert(min(len(records), (index + 1) * step + index), extra)

        def publish(pending: list, producer: Producer, paced: bool) -> list:
            """Produce ``pending`` and wait for the reports; return the records that failed, with their errors."""
            failed: list = []

            def report(record, error, _message) -> None:
                if error is not None:
                    failed.append((record, error.str()))

            started = time.monotonic()
            for index, record in enumerate(pending):
                topic, key, value = record
                while True:
                    try:
                        producer.produce(topic, key=key, value=value, on_delivery=functools.partial(report, record))
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
                if transactional and index % 97 == 96:
                    producer.commit_transaction(60)
                    producer.begin_transaction()
                ahead = (index + 1) / rate - (time.monotonic() - started)
                if paced and ahead > 0:
                    time.sleep(ahead)
            if transactional:
                producer.commit_transaction(60)
            remaining = producer.flush(PUBLISH_TIMEOUT_SECONDS + 30)
            if remaining:
                raise RuntimeError(f"{remaining} records unsent after {PUBLISH_TIMEOUT_SECONDS + 30} s")
            return failed

        def produce() -> None:
            config = producer_config(settings)
            if transactional:
                config["transactional.id"] = f"{settings.app_id}-chaos-producer"
                producer = Producer(config)
                producer.init_transactions(60)
                producer.begin_transaction()
                failed = publish(records, producer, paced=True)
                if failed:
                    first_errors = [error for _, error in failed[:3]]
                    raise RuntimeError(f"{len(failed)} records failed in the transactional publish, first: {first_errors}")
                return

            # librdkafka 2.16's idempotent producer can keep records unsent
            # after a broker restart until they time out (docs/reliability.md),
            # so records that failed are produced again by a new producer.
            # The fold ignores an event that arrives twice.
            config["message.timeout.ms"] = int(PUBLISH_TIMEOUT_SECONDS * 1000)
            pending = records
            for attempt in range(1, PUBLISH_ATTEMPTS + 1):
                failed = publish(pending, Producer(config), paced=attempt == 1)
                if not failed:
                    return
                log.warning(
                    "%d records failed (first: %s); producing them again with a new producer",
                    len(failed),
                    failed[0][1],
                )
                pending = [record for record, _ in failed]
            raise RuntimeError(f"{len(pending)} records failed {PUBLISH_ATTEMPTS} times")

        thread = threading.Thread(target=produce, name="chaos-publisher", daemon=True)
        thread.start()
        return thread

    # Waiting and comparing ----------------------------------------------------

    def consumer_lag(self, settings: Settings) -> int:
        return consumer_lag(settings)

    def wait_for_lag_zero(self, settings: Settings, timeout_seconds: float) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            try:
                if self.consumer_lag(settings) == 0:
                    return True
            except Exception as error:  # the broker may be restarting
                log.info("cannot read consumer lag yet: %s", error)
            time.sleep(1.0)
        return False

    def settle_and_compare(
        self,
        report: ScenarioReport,
        settings: Settings,
        events: list[ExecutionEvent],
        timeout_seconds: float = 300.0,
    ) -> None:
        """Wait for lag 0 and for the state topics to match the reference fold, then fill in the report."""
        expected = reference_records(events)
        report.executions_compared = sum(1 for kind, _ in expected if kind is RecordKind.WORKFLOW)
        report.lag_zero = self.wait_for_lag_zero(settings, timeout_seconds)

        deadline = time.monotonic() + 60.0
        with StateReader(settings) as reader:
            while True:
                reader.poll(10.0)
                actual = published_records(reader)
                if actual == expected or time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
        lost, twice, mismatches = compare(expected, actual, events)
        report.events_lost = lost
        report.events_applied_twice = twice
        # Keep what the scenario recorded before, such as a worker that
        # did not exit 0 on SIGTERM.
        report.mismatches.extend(mismatches)

    def count_dead_letters(self, settings: Settings) -> int:
        admin = AdminClient(client_config(settings))
        partitions = [TopicPartition(settings.topics.dead_letter, p) for p in range(settings.partitions)]
        ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=30)
        return sum(future.result().offset for future in ends.values())

    # Disruptions ----------------------------------------------------------------

    @staticmethod
    def wait_for_recovery(worker: WorkerProcess, log_offset: int, started: float, timeout_seconds: float = 120.0):
        """Return seconds from ``started`` until the worker logged finished table recovery, or None."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if worker.log_path.exists():
                text = worker.log_path.read_text(errors="replace")[log_offset:]
                if RECOVERY_LOG_PATTERN.search(text):
                    return time.monotonic() - started
            if worker.exit_code() is not None:
                return None
            time.sleep(0.2)
        return None

    @staticmethod
    def log_size(worker: WorkerProcess) -> int:
        return worker.log_path.stat().st_size if worker.log_path.exists() else 0

    def restart(self, worker: WorkerProcess, report: ScenarioReport, *, kill: bool) -> None:
        """Kill -9 (or SIGTERM) the worker, start it again and record its recovery time."""
        if kill:
            worker.kill()
        else:
            exit_code = worker.stop()
            if exit_code != 0:
                report.mismatches.append(f"worker exited with {exit_code} after SIGTERM")
        report.disruptions += 1
        offset = self.log_size(worker)
        started = time.monotonic()
        worker.start()
        recovery = self.wait_for_recovery(worker, offset, started)
        if recovery is not None:
            report.recovery_seconds.append(recovery)

    # Scenarios --------------------------------------------------------------------

    def run(self, name: str, scenario: Callable[[ScenarioReport], None]) -> ScenarioReport:
        report = ScenarioReport(name=name)
        started = time.monotonic()
        scenario(report)
        report.duration_seconds = time.monotonic() - started
        for line in report.lines():
            log.info("%s", line)
        return report

    def kill_worker(self, kills: int, rate: float = 3000.0) -> ScenarioReport:
        """Kill -9 the worker at random points while it folds, then restart it, ``kills`` times."""

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("kill")
            ensure_topics(settings)
            events = self.events()
            worker = self.worker(settings, "worker").start()
            try:
                publisher = self.publish_in_background(settings, events, rate=rate)
                report.events_published = len(events)
                rng = random.Random(self.seed)
                for _ in range(kills):
                    time.sleep(rng.uniform(1.0, 4.0))
                    self.restart(worker, report, kill=True)
                publisher.join()
                self.settle_and_compare(report, settings, events)
            finally:
                _stop(worker, report)

        return self.run(f"kill -9 of the worker, {kills} times", scenario)

    def restart_broker(self, restarts: int, long_stop_seconds: float = 20.0, rate: float = 2000.0) -> ScenarioReport:
        """Restart the broker mid-stream, then stop it for longer than the session timeout."""
        if self.broker is None:
            raise RuntimeError("the broker scenario needs a broker started by this runner")

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("broker")
            ensure_topics(settings)
            events = self.events(seed_offset=1)
            worker = self.worker(settings, "worker").start()
            try:
                self.wait_for_recovery(worker, 0, time.monotonic())
                publisher = self.publish_in_background(settings, events, rate=rate)
                report.events_published = len(events)
                for _ in range(restarts):
                    time.sleep(3.0)
                    self.broker.stop()
                    self.broker.start()
                    report.disruptions += 1
                time.sleep(2.0)
                self.broker.stop()
                time.sleep(long_stop_seconds)
                self.broker.start()
                report.disruptions += 1
                publisher.join()
                if worker.exit_code() is not None:
                    report.mismatches.append(f"worker exited with {worker.exit_code()} while the broker was down")
                self.settle_and_compare(report, settings, events)
            finally:
                _stop(worker, report)

        return self.run(f"broker restarted {restarts} times and stopped for {long_stop_seconds:.0f} s", scenario)

    def scale_workers(self, rate: float = 2000.0) -> ScenarioReport:
        """Scale 1 -> 2 -> 1 -> 2 -> 1: a second worker joins, one leaves by SIGTERM, one by kill -9."""

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("scale")
            ensure_topics(settings)
            events = self.events(seed_offset=2)
            first = self.worker(settings, "first", settings.state_dir / "first").start()
            second = self.worker(settings, "second", settings.state_dir / "second")
            third = self.worker(settings, "third", settings.state_dir / "third")
            try:
                publisher = self.publish_in_background(settings, events, rate=rate)
                report.events_published = len(events)
                time.sleep(3.0)
                second.start()
                report.disruptions += 1
                time.sleep(5.0)
                exit_code = first.stop()
                if exit_code != 0:
                    report.mismatches.append(f"first worker exited with {exit_code} after SIGTERM")
                report.disruptions += 1
                time.sleep(2.0)
                third.start()
                report.disruptions += 1
                time.sleep(5.0)
                second.kill()
                report.disruptions += 1
                publisher.join()
                self.settle_and_compare(report, settings, events)
            finally:
                for worker in (first, second, third):
                    if worker.process is not None and worker.exit_code() is None:
                        worker.stop()

        return self.run("workers scaled 1 -> 2 -> 1 -> 2 -> 1 (SIGTERM and kill -9)", scenario)

    def compact_changelogs(self, rate: float = 4000.0) -> ScenarioReport:
        """Fold with tiny changelog segments so compaction runs, then recover into an empty state directory."""

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("compaction")
            self._create_compacting_changelogs(settings)
            ensure_topics(settings)
            events = self.events(seed_offset=3)
            worker = self.worker(settings, "worker").start()
            try:
                publisher = self.publish_in_background(settings, events, rate=rate)
                report.events_published = len(events)
                publisher.join()
                self.wait_for_lag_zero(settings, 300)
                time.sleep(5.0)
                worker.stop()

                # A new state directory forces recovery from the compacted changelogs.
                replacement = self.worker(settings, "recovered", settings.state_dir / "recovered")
                offset = self.log_size(replacement)
                started = time.monotonic()
                replacement.start()
                recovery = self.wait_for_recovery(replacement, offset, started)
                report.disruptions += 1
                if recovery is None:
                    report.mismatches.append("recovery from the compacted changelogs did not finish")
                else:
                    report.recovery_seconds.append(recovery)
                worker = replacement
                self.settle_and_compare(report, settings, events)
            finally:
                _stop(worker, report)

        return self.run("changelog compaction, then recovery", scenario)

    def _create_compacting_changelogs(self, settings: Settings) -> None:
        from processor.topics import TABLE_NAMES, changelog_topic

        admin = AdminClient(client_config(settings))
        config = {
            "cleanup.policy": "compact",
            "segment.bytes": "65536",
            "segment.ms": "2000",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "max.compaction.lag.ms": "2000",
        }
        topics = [
            NewTopic(changelog_topic(settings, name), num_partitions=settings.partitions, config=config)
            for name in TABLE_NAMES.values()
        ]
        for future in admin.create_topics(topics).values():
            future.result()

    def malformed_records(self, count: int = 1000, rate: float = 4000.0) -> ScenarioReport:
        """Mix ``count`` unreadable records into the stream; all reach the dead-letter topic."""

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("malformed", max_event_bytes=64 * 1024)
            ensure_topics(settings)
            events = self.events(seed_offset=4)
            extra = _malformed(settings, count, random.Random(self.seed))
            worker = self.worker(settings, "worker").start()
            try:
                publisher = self.publish_in_background(settings, events, rate=rate, extra_records=extra)
                report.events_published = len(events)
                report.malformed_published = len(extra)
                publisher.join()
                self.settle_and_compare(report, settings, events)
                report.dead_letters = self.count_dead_letters(settings)
                if report.dead_letters != len(extra):
                    report.mismatches.append(f"{report.dead_letters} dead letters for {len(extra)} malformed records")
            finally:
                _stop(worker, report)

        return self.run(f"{count} malformed records mixed in", scenario)

    def transactional_input(self, rate: float = 4000.0) -> ScenarioReport:
        """Publish through a transactional producer, whose commit markers leave gaps in the offsets."""

        def scenario(report: ScenarioReport) -> None:
            settings = self.settings("transactional")
            ensure_topics(settings)
            events = self.events(seed_offset=5)
            worker = self.worker(settings, "worker").start()
            try:
                publisher = self.publish_in_background(settings, events, rate=rate, transactional=True)
                report.events_published = len(events)
                publisher.join()
                self.settle_and_compare(report, settings, events)
            finally:
                _stop(worker, report)

        return self.run("input from a transactional producer", scenario)


def _stop(worker: WorkerProcess, report: ScenarioReport) -> None:
    if worker.process is None or worker.exit_code() is not None:
        return
    exit_code = worker.stop()
    if exit_code != 0:
        report.mismatches.append(f"worker exited with {exit_code} after SIGTERM; see {worker.log_path}")


def _malformed(settings: Settings, count: int, rng: random.Random) -> list[tuple[str, Optional[bytes], bytes]]:
    """Unreadable records of five kinds: random bytes, truncated events, events without ids, wrong kinds, oversized."""
    topics = settings.topics
    node_event = event_pb2.NodeExecutionEvent(phase=1, producer_id="propeller")
    node_event.id.node_id = "n0"
    node_event.id.execution_id.project = "flytesnacks"
    node_event.id.execution_id.domain = "development"
    node_event.id.execution_id.name = "malformed"
    node_event.occurred_at.GetCurrentTime()
    node_bytes = node_event.SerializeToString()

    records = []
    for index in range(count):
        shape = index % 5
        if shape == 0:
            records.append((topics.task_events, b"random", bytes(rng.getrandbits(8) | 0x80 for _ in range(40))))
        elif shape == 1:
            # Cutting the last byte truncates occurred_at, the last field written.
            records.append((topics.node_events, None, node_bytes[:-1]))
        elif shape == 2:
            without_id = event_pb2.WorkflowExecutionEvent(phase=2, producer_id="propeller")
            records.append((topics.workflow_events, None, without_id.SerializeToString()))
        elif shape == 3:
            records.append((topics.workflow_events, b"wrong-kind", node_bytes))
        else:
            records.append((topics.node_events, b"oversized", b"\x0a" + bytes(70 * 1024)))
    return records

