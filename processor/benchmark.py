"""Benchmark of the worker beside a bare fold loop and a faust floor, on one broker and one input.

One run publishes one synthetic load (processor.synthetic) to topics of its
own and then measures, one after another so that they do not share the CPU:

1. bare loop: a confluent-kafka consumer that decodes and folds every event
   over InMemoryStateStore, with no durability and no publishing. It is the
   ceiling for Python.
2. faust floor: a faust app with build_app's settings and one agent that only
   iterates ``stream.events()``. It is the ceiling for a faust worker.
3. product: the real worker with a rocksdb store, from the timestamp of its
   first state record to the timestamp of its last.
4. latency: events published at a steady rate to the running worker, each
   from its produce() call to the moment its state record is read back.
5. with ``--latency-workers N`` above 1, the latency phase again, on N new
   worker processes that share one consumer group, once they have folded
   the input published before.

Each measurement runs in a process of its own, so peak RSS (VmHWM) is that
measurement's alone. ``python -m processor.benchmark --help`` lists the
options, and docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Optional

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from processor.config import ConfigError, Settings
from processor.events import EventKind, decode_event
from processor.fold.execution import ExecutionFolder, InMemoryStateStore, RecordKind
from processor.kafka_clients import client_config, producer_config, reader_config
from processor.local_broker import LocalBroker, free_ports
from processor.synthetic import flatten, generate_executions, generate_running_tasks
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess

log = logging.getLogger("flyte_state.benchmark")

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL_SCRIPT = REPO_ROOT / "scripts" / "kafka-local"

DEFAULT_EVENTS = 200_000
DEFAULT_EXECUTIONS = 2_000
DEFAULT_SEED = 1
DEFAULT_LATENCY_RATE = 5_000.0
DEFAULT_LATENCY_SECONDS = 20.0
DEFAULT_LATENCY_WORKERS = 1
DEFAULT_PHASE_TIMEOUT_SECONDS = 900.0
DEFAULT_PROFILE_TOP = 25

# Events the bare loop takes from one consume() call. Its per-batch figures
# (writes if each key were written once per batch) use batches of this size.
BARE_LOOP_BATCH = 1000

# Task executions per workflow execution in the recovery measurement's load.
RECOVERY_TASKS_PER_EXECUTION = 100

# Batch sizes for which the bare loop counts the distinct keys written and
# changed per batch. The report compares the worker's records with the count
# for the largest of these sizes that its mean batch reaches.
BATCH_SIZES = (25, 50, 100, 200, 500, 1000)

# Sampling rate of py-spy, in samples per second.
PROFILE_RATE = 100

# Interval of the latency phase's producer loop; it sends the events due in each.
PRODUCE_TICK_SECONDS = 0.002

# The first start of scripts/kafka-local also downloads the broker jars with Maven.
KAFKA_LOCAL_START_TIMEOUT_SECONDS = 600
KAFKA_LOCAL_STOP_TIMEOUT_SECONDS = 120

ADMIN_TIMEOUT_SECONDS = 30.0

# Targets of the product brief.
TARGET_SHARE_OF_FAUST_FLOOR = 0.8
TARGET_EVENTS_PER_SECOND = 10_000.0
TARGET_P99_SECONDS = 1.0


class BenchmarkError(RuntimeError):
    """A measurement could not finish; the message names the phase and its log file."""


# ---------------------------------------------------------------------------
# Broker


@contextlib.contextmanager
def benchmark_broker(bootstrap_servers: Optional[str]) -> Iterator[str]:
    """Yield ``bootstrap_servers`` when given, else start scripts/kafka-local on free ports and reset it afterwards."""
    if bootstrap_servers:
        yield bootstrap_servers
        return

    broker = LocalBroker.on_free_ports(REPO_ROOT / ".local" / "kafka", "bench")
    print(f"starting a local broker with {KAFKA_LOCAL_SCRIPT} on port {broker.port}", file=sys.stderr, flush=True)
    try:
        broker.start(KAFKA_LOCAL_START_TIMEOUT_SECONDS)
    except RuntimeError as error:
        raise BenchmarkError(f"{error}; logs are in {broker.instance_dir / 'logs'}") from None
    try:
        yield broker.bootstrap_servers
    finally:
        try:
            broker.reset(KAFKA_LOCAL_STOP_TIMEOUT_SECONDS)
        except RuntimeError as error:
            log.error("scripts/kafka-local reset of %s failed: %s", broker.instance_dir, error)


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def _partitions(admin: AdminClient, topics: list[str]) -> list[TopicPartition]:
    metadata_ = admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS)
    partitions = []
    for topic in topics:
        if topic not in metadata_.topics:
            raise BenchmarkError(f"topic {topic} does not exist")
        partitions.extend(TopicPartition(topic, partition) for partition in sorted(metadata_.topics[topic].partitions))
    return partitions


def _end_offsets(admin: AdminClient, topics: list[str]) -> dict[tuple[str, int], int]:
    """Return the end offset of every partition of ``topics``."""
    request = {partition: OffsetSpec.latest() for partition in _partitions(admin, topics)}
    futures = admin.list_offsets(request, request_timeout=ADMIN_TIMEOUT_SECONDS)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def _committed_offsets(reader: Consumer, targets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Return the offsets that the reader's consumer group committed for the partitions of ``targets``.

    It reads them with Consumer.committed rather than the admin client's
    list_consumer_group_offsets, because librdkafka 2.16 crashed (SIGSEGV)
    parsing the admin response while a new broker's group coordinator was
    still loading.
    """
    partitions = [TopicPartition(topic, partition) for topic, partition in targets]
    try:
        committed = reader.committed(partitions, timeout=ADMIN_TIMEOUT_SECONDS)
    except KafkaException as error:
        # A new broker returns NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS
        # until its group coordinator is ready, so the caller tries again.
        if error.args[0].retriable():
            log.info("committed offsets not available yet: %s", error)
            return {}
        raise
    return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed}


def _wait_for_commits(
    admin: AdminClient,
    settings: Settings,
    topics: list[str],
    timeout_seconds: float,
    processes: list["_ChildProcess"],
    on_poll: Optional[Callable[[], None]] = None,
) -> None:
    """Wait until the workers' consumer group committed the end offset of every partition of ``topics``.

    A worker acknowledges an event only after Kafka confirmed every record
    of its batch, so once the commits reach the end, every state record of
    those events is in Kafka. ``on_poll`` runs before each check, twice a
    second. Raises BenchmarkError on timeout or when any of ``processes``
    exits, even after the commits reached the end.
    """
    targets = _end_offsets(admin, topics)
    reader = Consumer({**client_config(settings), "group.id": settings.app_id, "enable.auto.commit": False})
    try:
        _wait_until_committed(reader, targets, timeout_seconds, processes, on_poll)
    finally:
        reader.close()


def _wait_until_committed(
    reader: Consumer,
    targets: dict[tuple[str, int], int],
    timeout_seconds: float,
    processes: list["_ChildProcess"],
    on_poll: Optional[Callable[[], None]],
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        if on_poll is not None:
            on_poll()
        committed = _committed_offsets(reader, targets)
        behind = sum(max(0, end - committed.get(key, 0)) for key, end in targets.items())
        # Checked even when nothing is left, because the other workers of a
        # group take over the partitions of a worker that exits and commit its events.
        _raise_if_exited(processes, f"while {behind} events were left")
        if behind == 0:
            return
        if time.monotonic() >= deadline:
            raise BenchmarkError(
                f"{_joined_names(processes)} still had {behind} events left after {timeout_seconds:.0f} s; "
                f"{_log_paths(processes)}"
            )
        time.sleep(0.5)


# ---------------------------------------------------------------------------
# Load


@dataclass(frozen=True)
class LoadEvent:
    """One serialized synthetic event, and what the latency phase matches its state record by."""

    topic: str
    key: bytes
    value: bytes
    entity_key: str
    occurred_at: tuple[int, int]


@dataclass(frozen=True)
class Load:
    events: list[LoadEvent]
    executions: int
    max_nodes: int


def _calibrate_max_nodes(events: int, executions: int, seed: int, start: datetime) -> int:
    """Return the smallest max_nodes (min_nodes is 2) whose executions average at least events/executions events."""
    target = events / executions
    sample = min(executions, 100)
    for max_nodes in range(2, 500):
        generated = generate_executions(sample, seed, start=start, max_nodes=max_nodes)
        if sum(len(execution.events) for execution in generated) / sample >= target:
            return max_nodes
    raise BenchmarkError(f"no execution shape gives {target:.0f} events per execution: pass more --executions")


def build_load(settings: Settings, events: int, executions: int, seed: int, start: datetime) -> Load:
    """Generate ``executions`` executions with enough nodes for ``events`` events, merged by occurred_at, cut at ``events``.

    The cut leaves the last executions unfinished, as a stream read at any
    moment would.
    """
    max_nodes = _calibrate_max_nodes(events, executions, seed, start)
    while True:
        flat = flatten(generate_executions(executions, seed, start=start, max_nodes=max_nodes))
        if len(flat) >= events:
            break
        max_nodes += 1

    encoded = []
    for event in flat[:events]:
        occurred_at = event.message.occurred_at
        encoded.append(
            LoadEvent(
                topic=settings.topics.input_topic(event.kind),
                key=event.execution_key.encode(),
                value=event.message.SerializeToString(),
                entity_key=event.entity_key,
                occurred_at=(occurred_at.seconds, occurred_at.nanos),
            )
        )
    return Load(events=encoded, executions=executions, max_nodes=max_nodes)


class _DeliveryErrors:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, error: Optional[KafkaError], message) -> None:
        if error is not None:
            self.errors.append(f"{message.topic()}: {error.str()}")


def _produce(producer: Producer, event: LoadEvent, on_delivery: _DeliveryErrors) -> None:
    while True:
        try:
            producer.produce(event.topic, key=event.key, value=event.value, on_delivery=on_delivery)
            return
        except BufferError:
            # The local queue is full: serve delivery reports to make room.
            producer.poll(0.1)


def _flush(producer: Producer, errors: _DeliveryErrors, settings: Settings) -> None:
    remaining = producer.flush(60)
    if remaining:
        raise BenchmarkError(f"{remaining} events were not acknowledged by {settings.bootstrap_servers} within 60 s")
    if errors.errors:
        raise BenchmarkError(f"{len(errors.errors)} events failed to publish: {errors.errors[0]}")


def publish_load(settings: Settings, load: Load) -> float:
    """Publish every event as fast as the producer goes; return the seconds it took."""
    producer = Producer(producer_config(settings))
    errors = _DeliveryErrors()
    started = time.perf_counter()
    for event in load.events:
        _produce(producer, event, errors)
        producer.poll(0)
    _flush(producer, errors, settings)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------
# Child processes: bare loop and faust floor


def _peak_rss_kib(pid: int | str = "self") -> int:
    """Return VmHWM, the peak resident set size, of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise BenchmarkError(f"/proc/{pid}/status has no VmHWM line")


def _cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time that process ``pid`` and its threads used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of proc(5); the slice starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds_or_nan(pid: int) -> float:
    """Return ``_cpu_seconds(pid)``, or nan for a process that has exited and been reaped."""
    try:
        return _cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return math.nan


def _machine_jiffies() -> tuple[int, int]:
    """Return the busy and total CPU time of all CPUs since boot, in clock ticks, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user, nice, system, idle, iowait, irq, softirq, steal; guest time is already part of user.
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def _busy_share(start: tuple[int, int], end: tuple[int, int]) -> float:
    """Return the share of all CPUs that any process kept busy between two _machine_jiffies() readings."""
    return (end[0] - start[0]) / max(1, end[1] - start[1])


def _write_json(path: Path, document: dict) -> None:
    """Write ``document`` so that a reader sees the whole file or none of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.rename(path)


class _CountingStateStore(InMemoryStateStore):
    """InMemoryStateStore that counts writes, in total and as distinct keys per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.batch_keys: set[tuple[RecordKind, str]] = set()

    def put(self, kind: RecordKind, key: str, state) -> None:
        super().put(kind, key, state)
        self.writes += 1
        self.batch_keys.add((kind, key))


def run_bare_loop(settings: Settings, events: int, result_path: Path, idle_timeout_seconds: float) -> None:
    """Consume the input topics from the beginning, decode and fold ``events`` events, and write the figures."""
    consumer = Consumer(
        {**reader_config(settings, group_id=f"{settings.app_id}-bare-loop"), "enable.partition.eof": False}
    )
    admin = _admin(settings)
    partitions = _partitions(admin, list(settings.topics.inputs))
    consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions])

    kind_by_topic = {settings.topics.input_topic(kind): kind for kind in EventKind}
    store = _CountingStateStore()
    folder = ExecutionFolder(store)
    folded = 0
    state_changes = 0
    # Keys written and keys changed by each event, for the per-batch counts
    # that are computed after the timed loop.
    written_per_event: list[set] = []
    changed_per_event: list[set] = []
    first: Optional[float] = None
    idle_since = time.monotonic()

    while folded < events:
        messages = consumer.consume(BARE_LOOP_BATCH, timeout=1.0)
        if not messages:
            if time.monotonic() - idle_since > idle_timeout_seconds:
                raise BenchmarkError(
                    f"bare loop read {folded} of {events} events, then none for {idle_timeout_seconds:.0f} s"
                )
            continue
        idle_since = time.monotonic()
        if first is None:
            first = time.perf_counter()

        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            event = decode_event(kind_by_topic[message.topic()], message.value(), max_bytes=settings.max_event_bytes)
            store.batch_keys = set()
            result = folder.fold(event)
            state_changes += len(result.records_to_publish)
            written_per_event.append(store.batch_keys)
            changed_per_event.append({(change.kind, change.key) for change in result.records_to_publish})
            folded += 1

    seconds = time.perf_counter() - first
    consumer.close()
    _write_json(
        result_path,
        {
            "events": folded,
            "seconds": seconds,
            "table_writes": store.writes,
            "state_changes": state_changes,
            "batched_table_writes": {str(size): _distinct_per_batch(written_per_event, size) for size in BATCH_SIZES},
            "batched_state_changes": {str(size): _distinct_per_batch(changed_per_event, size) for size in BATCH_SIZES},
            "peak_rss_kib": _peak_rss_kib(),
        },
    )


def _distinct_per_batch(keys_per_event: list[set], batch_size: int) -> int:
    """Sum over consecutive batches of ``batch_size`` events of the distinct keys in each batch."""
    total = 0
    for start in range(0, len(keys_per_event), batch_size):
        total += len(set().union(*keys_per_event[start : start + batch_size]))
    return total


def batch_size_at_most(mean_batch_events: float) -> int:
    """Return the largest of BATCH_SIZES not above the worker's mean batch, or the smallest of them."""
    fitting = [size for size in BATCH_SIZES if size <= mean_batch_events]
    return max(fitting) if fitting else min(BATCH_SIZES)


def run_faust_floor(settings: Settings, events: int, result_path: Path) -> int:
    """Run a faust worker whose one agent only iterates ``stream.events()``; write the figures after ``events`` events.

    faust acknowledges each event once the loop body for it has run, as it
    does for the product's agent. Runs until SIGTERM; returns faust's exit code.
    """
    import faust

    from topologies.execution_state import build_app, install_event_loop

    install_event_loop()
    app = build_app(settings)
    topic = app.topic(*settings.topics.inputs, key_serializer="raw", value_serializer="raw")
    progress = {"count": 0, "first": 0.0}

    async def iterate(stream) -> None:
        async for _ in stream.events():
            now = time.perf_counter()
            if progress["count"] == 0:
                progress["first"] = now
            progress["count"] += 1
            if progress["count"] == events:
                _write_json(
                    result_path,
                    {"events": events, "seconds": now - progress["first"], "peak_rss_kib": _peak_rss_kib()},
                )

    app.agent(topic, name="iterate-events", concurrency=1)(iterate)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@dataclass
class _ChildProcess:
    """A child process of the benchmark with its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def exit_code(self) -> Optional[int]:
        return self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_seconds: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s (pid %d) did not stop within %.0f s of SIGTERM; killing it",
                    self.name,
                    self.process.pid,
                    timeout_seconds,
                )
                self.process.kill()
        return self.process.wait()


def _joined_names(processes: list[_ChildProcess]) -> str:
    return " and ".join(process.name for process in processes)


def _log_paths(processes: list[_ChildProcess]) -> str:
    """Return ``log: <path>`` for one process and ``logs: <path>, <path>`` for several."""
    label = "log" if len(processes) == 1 else "logs"
    return f"{label}: {', '.join(str(process.log_path) for process in processes)}"


def _raise_if_exited(processes: list[_ChildProcess], situation: str) -> None:
    """Raise BenchmarkError with the log of the first of ``processes`` that exited, ``situation`` after its exit code."""
    for process in processes:
        exit_code = process.exit_code()
        if exit_code is not None:
            raise BenchmarkError(
                f"{process.name} exited with {exit_code} {situation}; log: {process.log_path}\n{process.log_tail()}"
            )


def _start_child(
    name: str, mode: str, settings: Settings, events: int, work_dir: Path, idle_timeout: float
) -> tuple[_ChildProcess, Path]:
    result_path = work_dir / f"{mode}.json"
    log_path = work_dir / f"{mode}.log"
    command = [
        sys.executable,
        "-m",
        "processor.benchmark",
        "--child",
        mode,
        "--result",
        str(result_path),
        "--events",
        str(events),
        "--timeout",
        str(idle_timeout),
    ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            env={**os.environ, **settings.to_env()},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    return _ChildProcess(name, process, log_path), result_path


def _wait_for_result(child: _ChildProcess, result_path: Path, timeout_seconds: float) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while not result_path.exists():
        if child.exit_code() is not None:
            raise BenchmarkError(
                f"{child.name} exited with {child.exit_code()}; log: {child.log_path}\n{child.log_tail()}"
            )
        if time.monotonic() >= deadline:
            child.stop()
            raise BenchmarkError(f"{child.name} did not finish within {timeout_seconds:.0f} s; log: {child.log_path}")
        time.sleep(0.2)
    return json.loads(result_path.read_text())


def measure_bare_loop(settings: Settings, events: int, work_dir: Path, timeout_seconds: float) -> dict:
    jiffies = _machine_jiffies()
    child, result_path = _start_child("bare loop", "bare-loop", settings, events, work_dir, timeout_seconds)
    try:
        result = _wait_for_result(child, result_path, timeout_seconds)
    finally:
        child.stop()
    result["machine_busy"] = _busy_share(jiffies, _machine_jiffies())
    return result


def measure_faust_floor(settings: Settings, events: int, work_dir: Path, timeout_seconds: float) -> dict:
    jiffies = _machine_jiffies()
    child, result_path = _start_child("faust floor", "faust-floor", settings, events, work_dir, timeout_seconds)
    try:
        result = _wait_for_result(child, result_path, timeout_seconds)
        result["machine_busy"] = _busy_share(jiffies, _machine_jiffies())
    finally:
        exit_code = child.stop()
    if exit_code != 0:
        log.warning("faust floor exited with %d after its measurement; log: %s", exit_code, child.log_path)
    return result


# ---------------------------------------------------------------------------
# Product


def _state_topics(settings: Settings) -> list[str]:
    return list(settings.topics.states)


def _consumed_topics(settings: Settings) -> list[str]:
    """Return the topics that the benchmark's workers consume: the binary input topics and the repartition topic."""
    return [*settings.topics.inputs, settings.repartition_topic]


def _changelog_topics(admin: AdminClient, app_id: str) -> list[str]:
    """Return faust's table changelog topics of ``app_id``, named ``<app id>-<table>-changelog``."""
    names = admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS).topics
    return sorted(name for name in names if name.startswith(f"{app_id}-") and name.endswith("-changelog"))


def _first_timestamps_ms(settings: Settings, ends: dict[tuple[str, int], int]) -> list[int]:
    """Return the timestamp of the first record of every non-empty partition in ``ends``."""
    pending = {key for key, end in ends.items() if end > 0}
    consumer = Consumer(reader_config(settings, group_id=f"{settings.app_id}-bench-first-{uuid.uuid4()}"))
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in sorted(pending)])
    timestamps = []
    deadline = time.monotonic() + 60
    try:
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            key = (message.topic(), message.partition())
            if key in pending:
                pending.discard(key)
                timestamps.append(message.timestamp()[1])
                consumer.pause([TopicPartition(*key)])
    finally:
        consumer.close()
    if pending:
        raise BenchmarkError(f"could not read the first record of {len(pending)} state partitions within 60 s")
    return timestamps


def _max_timestamps_ms(admin: AdminClient, ends: dict[tuple[str, int], int]) -> list[int]:
    """Return the largest record timestamp of every non-empty partition in ``ends`` (ListOffsets with max timestamp)."""
    request = {
        TopicPartition(topic, partition): OffsetSpec.max_timestamp()
        for (topic, partition), end in ends.items()
        if end > 0
    }
    futures = admin.list_offsets(request, request_timeout=ADMIN_TIMEOUT_SECONDS)
    return [future.result().timestamp for future in futures.values()]


@dataclass(frozen=True)
class WorkerCounts:
    """Counters of the worker's Prometheus endpoint."""

    batches: int
    table_writes: int
    state_records: int

    # Seconds spent in ExecutionFolder.fold and the events it folded, from
    # the flyte_state_fold_seconds histogram.
    fold_seconds: float = 0.0
    folded_events: int = 0


@dataclass(frozen=True)
class CpuPerEvent:
    """The worker's CPU time per folded event and, of that, the time inside ExecutionFolder.fold, in microseconds."""

    cpu_us: float
    fold_us: float


@dataclass
class ProductResult:
    events: int
    seconds: float
    state_records: int
    changelog_records: int
    changelog_topics: list[str]

    # Share of one core the worker used while it folded the load. It is an
    # estimate because its start is the first poll that saw a state record.
    cpu_share: float = 0.0

    # Share of all CPUs that any process kept busy over the same span.
    machine_busy: float = 0.0

    # The worker's CPU time per event folded over the same span, and the
    # part of it inside the fold.
    cpu_per_event: CpuPerEvent = field(default_factory=lambda: CpuPerEvent(math.nan, math.nan))

    # Records in the dead-letter topic after both phases. The load is valid,
    # so each one is an event that the worker failed to fold.
    dead_letters: int = 0
    log_path: Optional[Path] = None
    peak_rss_kib: int = 0
    latency: Optional["LatencyResult"] = None
    profile: list[str] = field(default_factory=list)

    # The worker's own counts of batches and of the records it wrote in them
    # during the throughput phase, and its batch settings.
    counts: WorkerCounts = WorkerCounts(0, 0, 0)
    batch_max_events: int = 0
    batch_linger_seconds: float = 0.0

    @property
    def mean_batch_events(self) -> float:
        return self.events / self.counts.batches if self.counts.batches else 0.0


def cpu_per_event(cpu_seconds: float, at_start: WorkerCounts, at_end: WorkerCounts) -> CpuPerEvent:
    """Divide the CPU seconds and the fold time between two scrapes by the events folded between them.

    Both figures cover the same span, so the rest (CPU minus fold) is the
    cost of everything else on those events. NaN when no event was folded
    in the span.
    """
    events = at_end.folded_events - at_start.folded_events
    if events <= 0:
        return CpuPerEvent(math.nan, math.nan)
    fold_seconds = at_end.fold_seconds - at_start.fold_seconds
    return CpuPerEvent(cpu_seconds / events * 1e6, fold_seconds / events * 1e6)


def cpu_per_event_line(split: CpuPerEvent) -> str:
    """Format the split of the worker's CPU time per event into the fold and the rest: intake, routing, writes and publishing.

    The fold's part is wall time inside ExecutionFolder.fold. It includes
    moments when another thread of the worker held the GIL, or when the
    operating system ran another process on the CPU.
    """
    return (
        f"product worker CPU per event: {split.cpu_us:.0f} us, {split.fold_us:.0f} us of it in the fold "
        f"(flyte_state_fold_seconds), {split.cpu_us - split.fold_us:.0f} us in the rest (estimate)"
    )


def find_py_spy() -> Optional[str]:
    """Return the py-spy executable on PATH or beside this Python's, or None when neither exists."""
    beside_python = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else None)


class _Profiler:
    """py-spy attached to a running process, writing collapsed stacks."""

    def __init__(self, executable: str, pid: int, output: Path) -> None:
        self.output = output
        self.log_path = output.with_suffix(".log")
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    executable,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(PROFILE_RATE),
                    "--format",
                    "raw",
                    "--function",
                    "--full-filenames",
                    "--output",
                    str(output),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> Path:
        """Stop sampling; py-spy writes its output on SIGINT."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.output.exists():
            raise BenchmarkError(f"py-spy wrote no profile; log: {self.log_path}")
        return self.output


def _scrape_counts(settings: Settings) -> WorkerCounts:
    """Read the batch and write counters from the worker's Prometheus endpoint."""
    url = f"http://{settings.metrics_address}:{settings.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    sums = {"flyte_state_batch_events_count": 0.0, "flyte_state_table_writes_total": 0.0,
            "flyte_state_state_records_published_total": 0.0, "flyte_state_fold_seconds_sum": 0.0,
            "flyte_state_fold_seconds_count": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return WorkerCounts(
        batches=int(sums["flyte_state_batch_events_count"]),
        table_writes=int(sums["flyte_state_table_writes_total"]),
        state_records=int(sums["flyte_state_state_records_published_total"]),
        fold_seconds=sums["flyte_state_fold_seconds_sum"],
        folded_events=int(sums["flyte_state_fold_seconds_count"]),
    )


def measure_product(
    settings: Settings, events: int, work_dir: Path, options: argparse.Namespace, latency_load: Load
) -> ProductResult:
    """Run the worker over the published load, then the latency phase, and read its figures from Kafka."""
    admin = _admin(settings)
    worker = WorkerProcess(settings, work_dir / "product-worker.log").start()
    child = _ChildProcess("product worker", worker.process, worker.log_path)
    profiler = _Profiler(options.py_spy, worker.pid, work_dir / "product-profile.txt") if options.profile else None
    # Worker CPU seconds, machine jiffies and the worker's counters at the
    # first poll that saw a state record.
    at_first_record: list[tuple[float, tuple[int, int], WorkerCounts]] = []

    def note_first_record() -> None:
        if not at_first_record and sum(_end_offsets(admin, _state_topics(settings)).values()) > 0:
            at_first_record.append((_cpu_seconds(worker.pid), _machine_jiffies(), _scrape_counts(settings)))

    try:
        _wait_for_commits(
            admin,
            settings,
            _consumed_topics(settings),
            options.timeout,
            [child],
            on_poll=note_first_record,
        )
        cpu_at_start, jiffies_at_start, counts_at_start = (
            at_first_record[0] if at_first_record else (0.0, _machine_jiffies(), WorkerCounts(0, 0, 0))
        )
        cpu_used = _cpu_seconds(worker.pid) - cpu_at_start
        machine_busy = _busy_share(jiffies_at_start, _machine_jiffies())
        profile = []
        if profiler is not None:
            profile = summarize_profile(profiler.stop(), options.profile_top)
            profiler = None

        counts = _scrape_counts(settings)
        state_ends = _end_offsets(admin, _state_topics(settings))
        changelogs = _changelog_topics(admin, settings.app_id)
        changelog_ends = _end_offsets(admin, changelogs)
        first_ms = min(_first_timestamps_ms(settings, state_ends))
        last_ms = max(_max_timestamps_ms(admin, state_ends))
        result = ProductResult(
            events=events,
            seconds=max(0.001, (last_ms - first_ms) / 1000),
            state_records=sum(state_ends.values()),
            changelog_records=sum(changelog_ends.values()),
            changelog_topics=changelogs,
            profile=profile,
            counts=counts,
            batch_max_events=settings.batch_max_events,
            batch_linger_seconds=settings.batch_linger_seconds,
        )
        result.cpu_share = cpu_used / result.seconds
        result.cpu_per_event = cpu_per_event(cpu_used, counts_at_start, counts)
        result.machine_busy = machine_busy

        if latency_load.events:
            print(
                f"latency phase: {len(latency_load.events)} events at {options.latency_rate:.0f} events/s",
                file=sys.stderr,
                flush=True,
            )
            result.latency = measure_latency(settings, latency_load, options.latency_rate, [child], options.timeout)
        result.dead_letters = sum(_end_offsets(admin, [settings.topics.dead_letter]).values())
        result.log_path = worker.log_path
        result.peak_rss_kib = _peak_rss_kib(worker.pid)
        return result
    finally:
        if profiler is not None:
            with contextlib.suppress(BenchmarkError):
                profiler.stop()
        exit_code = worker.stop()
        if exit_code != 0:
            log.warning("product worker exited with %d; log: %s", exit_code, worker.log_path)


# ---------------------------------------------------------------------------
# Latency


@dataclass
class LatencyResult:
    """The timed events of one latency phase; the lists run parallel, one entry per timed event."""

    sent: int
    seconds: float

    # From the produce() call to the moment the benchmark read the state record.
    latencies: list[float]

    # From the phase's start to the event's produce() call.
    sent_after: list[float] = field(default_factory=list)

    # From the produce() call to the state record's Kafka timestamp, in
    # milliseconds. ensure_topics sets no timestamp type, so the broker's
    # default applies. With CreateTime, Kafka's default, the worker's producer
    # sets the timestamp when it produces the record; with LogAppendTime it
    # is the broker's append time. The rest is the benchmark's own reading.
    produced_after: list[float] = field(default_factory=list)

    # Where the CPU time went while the events were sent; None when not measured.
    cpu: Optional["PhaseCpu"] = None

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PhaseCpu:
    """CPU use while a latency phase sent its events, in cores: CPU seconds per second of the phase.

    ``machine_cores`` counts every process of the machine. The rest, after
    the workers and the benchmark itself, is mostly the broker on a machine
    that runs nothing else.
    """

    cpus: int
    machine_cores: float
    worker_cores: tuple[float, ...]
    benchmark_cores: float

    @property
    def other_cores(self) -> float:
        alive = [cores for cores in self.worker_cores if not math.isnan(cores)]
        return max(0.0, self.machine_cores - sum(alive) - self.benchmark_cores)


class _CpuMeter:
    """Readings of the machine's, the workers' and this process's CPU time at the start of a phase."""

    def __init__(self, worker_pids: list[int]) -> None:
        self.worker_pids = worker_pids
        self.jiffies = _machine_jiffies()
        self.worker_seconds = [_cpu_seconds(pid) for pid in worker_pids]
        self.benchmark_seconds = time.process_time()
        self.started = time.perf_counter()

    def since_start(self) -> PhaseCpu:
        """Return the CPU use since the meter was created, as cores."""
        seconds = max(1e-9, time.perf_counter() - self.started)
        cpus = os.cpu_count() or 1
        return PhaseCpu(
            cpus=cpus,
            machine_cores=_busy_share(self.jiffies, _machine_jiffies()) * cpus,
            worker_cores=tuple(
                (_cpu_seconds_or_nan(pid) - before) / seconds
                for pid, before in zip(self.worker_pids, self.worker_seconds)
            ),
            benchmark_cores=(time.process_time() - self.benchmark_seconds) / seconds,
        )


# Length of the parts of a latency phase whose p99 the report gives one by one.
LATENCY_WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class LatencyWindow:
    """The p99 of the events sent from ``start`` to ``end`` seconds into a latency phase; nan without any."""

    start: float
    end: float
    p99: float


def p99_by_window(latency: LatencyResult, window_seconds: float = LATENCY_WINDOW_SECONDS) -> list[LatencyWindow]:
    """Split the phase into windows of ``window_seconds`` by send time and return each one's p99, in order.

    A p99 that rises from window to window shows a backlog that grows
    during the phase; a flat one, a worker that keeps up. The last window
    runs to the phase's end, so it can be up to twice as long. A phase of
    20.003 s has four windows. One of 12 s has 0-5 s and 5-12 s, and one
    shorter than ``window_seconds`` has a single window.
    """
    windows = max(1, int(latency.seconds // window_seconds))
    by_window: list[list[float]] = [[] for _ in range(windows)]
    for sent_after, value in zip(latency.sent_after, latency.latencies):
        index = min(windows - 1, max(0, int(sent_after // window_seconds)))
        by_window[index].append(value)

    bounds = [index * window_seconds for index in range(windows)] + [latency.seconds]
    return [
        LatencyWindow(start=bounds[index], end=bounds[index + 1], p99=percentile(values, 0.99))
        for index, values in enumerate(by_window)
    ]


def latency_detail_lines(prefix: str, latency: LatencyResult) -> list[str]:
    """Lines with the latency until the state record was produced and the p99 of each part of the phase.

    Empty for a result without these timings.
    """
    if not latency.sent_after:
        return []
    produced_p50 = percentile(latency.produced_after, 0.50)
    produced_p99 = percentile(latency.produced_after, 0.99)
    windows = ", ".join(
        f"{window.start:.0f}-{window.end:.0f} s {window.p99:.3f} s" for window in p99_by_window(latency)
    )
    lines = [
        f"{prefix} until the state record was produced: p50 {produced_p50:.3f} s, p99 {produced_p99:.3f} s",
        f"{prefix} p99 by part of the phase: {windows}",
    ]
    if latency.cpu is not None:
        cpu = latency.cpu
        workers = " + ".join(f"{cores:.2f}" for cores in cpu.worker_cores)
        lines.append(
            f"{prefix} CPU while sending, in cores: machine {cpu.machine_cores:.2f} of {cpu.cpus}, "
            f"workers {workers}, benchmark {cpu.benchmark_cores:.2f}, other processes {cpu.other_cores:.2f}"
        )
    return lines


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values``; ``fraction`` 0.99 gives p99."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class _SentEvents:
    """Produce times of the latency phase's events by entity key, shared by the producing and the reading thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_entity: dict[str, list[tuple[tuple[int, int], float]]] = {}

    def add(self, entity_key: str, occurred_at: tuple[int, int], sent_at: float) -> None:
        with self.lock:
            self.by_entity.setdefault(entity_key, []).append((occurred_at, sent_at))

    def take_reflected(self, entity_key: str, occurred_at: tuple[int, int]) -> list[float]:
        """Remove and return the produce times of the entity's events that occurred at or before ``occurred_at``."""
        with self.lock:
            pending = self.by_entity.get(entity_key)
            if not pending:
                return []
            reflected = [sent_at for event_occurred_at, sent_at in pending if event_occurred_at <= occurred_at]
            self.by_entity[entity_key] = [item for item in pending if item[0] > occurred_at]
            return reflected


class _StateFollower(threading.Thread):
    """Read the workflow, node and task state topics from given offsets and time the events each record reflects.

    A record reflects every event of its entity whose occurred_at is not
    after the record's last_event_occurred_at, because the worker folds a
    whole batch before it publishes one record per changed entity. The first
    record that reflects an event times it. Events that change nothing a
    consumer can read, after the entity's last record, stay untimed.
    """

    def __init__(self, settings: Settings, start: dict[tuple[str, int], int], sent: "_SentEvents") -> None:
        super().__init__(name="state-follower", daemon=True)
        topics = settings.topics
        self.kind_by_topic = {
            topics.workflow_state: RecordKind.WORKFLOW,
            topics.node_state: RecordKind.NODE,
            topics.task_state: RecordKind.TASK,
        }
        self.consumer = Consumer(
            {
                **reader_config(settings, group_id=f"{settings.app_id}-bench-latency-{uuid.uuid4()}"),
                "enable.partition.eof": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, partition, offset) for (topic, partition), offset in start.items()])
        self.positions = dict(start)
        self.sent = sent
        self.latencies: list[float] = []
        self.sent_at: list[float] = []
        self.produced_after: list[float] = []
        self.stopping = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for message in self.consumer.consume(1000, timeout=0.1):
                    read_at = time.time()
                    if message.error() is not None:
                        raise KafkaException(message.error())
                    self.positions[(message.topic(), message.partition())] = message.offset() + 1
                    self._match(message, read_at)
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self.consumer.close()

    def _match(self, message, read_at: float) -> None:
        value = message.value()
        if value is None:
            return
        state = self.kind_by_topic[message.topic()].parse(value)
        occurred_at = state.last_event_occurred_at
        _, produced_at_ms = message.timestamp()
        for sent_at in self.sent.take_reflected(message.key().decode(), (occurred_at.seconds, occurred_at.nanos)):
            self.latencies.append(read_at - sent_at)
            self.sent_at.append(sent_at)
            self.produced_after.append(produced_at_ms / 1000 - sent_at)

    def caught_up(self, ends: dict[tuple[str, int], int]) -> bool:
        return all(self.positions.get(key, 0) >= end for key, end in ends.items())


def measure_latency(
    settings: Settings, load: Load, rate: float, workers: list[_ChildProcess], timeout_seconds: float
) -> LatencyResult:
    """Publish ``load`` at ``rate`` events per second to the running workers and time each event's state record."""
    admin = _admin(settings)
    followed = [settings.topics.workflow_state, settings.topics.node_state, settings.topics.task_state]
    sent = _SentEvents()
    follower = _StateFollower(settings, _end_offsets(admin, followed), sent)
    follower.start()

    producer = Producer(producer_config(settings))
    errors = _DeliveryErrors()
    try:
        cpu_meter = _CpuMeter([worker.process.pid for worker in workers])
        started = time.perf_counter()
        started_wall = time.time()
        index = 0
        while index < len(load.events):
            due = min(len(load.events), int((time.perf_counter() - started) * rate) + 1)
            while index < due:
                event = load.events[index]
                sent.add(event.entity_key, event.occurred_at, time.time())
                _produce(producer, event, errors)
                index += 1
            producer.poll(0)
            time.sleep(PRODUCE_TICK_SECONDS)
        seconds = time.perf_counter() - started
        cpu = cpu_meter.since_start()
        _flush(producer, errors, settings)

        _wait_for_commits(admin, settings, _consumed_topics(settings), timeout_seconds, workers)
        ends = _end_offsets(admin, followed)
        deadline = time.monotonic() + 60
        while not follower.caught_up(ends) and follower.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        follower.stopping.set()
        follower.join(30)
    if follower.error is not None:
        raise BenchmarkError(f"reading the state topics failed: {follower.error}")
    return LatencyResult(
        sent=len(load.events),
        seconds=seconds,
        latencies=follower.latencies,
        sent_after=[sent_at - started_wall for sent_at in follower.sent_at],
        produced_after=follower.produced_after,
        cpu=cpu,
    )


# ---------------------------------------------------------------------------
# Latency with several worker processes


@dataclass
class ScaledLatencyResult:
    """The latency phase measured on several worker processes of one consumer group."""

    workers: int
    latency: LatencyResult

    # FLYTE_STATE_STANDBY_REPLICAS of the workers: how many of them keep a copy of each other's tables.
    standby_replicas: int

    # Peak RSS of worker 1 to worker N, in KiB. Worker 1 alone folds the
    # input that was published before the phase, so its peak includes that.
    peak_rss_kib: list[int]

    # Records that these workers added to the dead-letter topic. Their input
    # is valid, so each one is an event that they failed to fold.
    dead_letters: int
    log_paths: list[Path]


def _stable_group_assignment(admin: AdminClient, group_id: str) -> Optional[list[set[tuple[str, int]]]]:
    """Return the partitions of each member of consumer group ``group_id``, or None while the group is not stable.

    Raises KafkaException when the broker does not describe the group.
    """
    future = admin.describe_consumer_groups([group_id], request_timeout=ADMIN_TIMEOUT_SECONDS)[group_id]
    description = future.result()
    if description.state != ConsumerGroupState.STABLE:
        return None
    return [{(tp.topic, tp.partition) for tp in member.assignment.topic_partitions} for member in description.members]


# Errors of ListOffsets for a topic created a moment ago, until its partitions have a leader.
NEW_TOPIC_ERRORS = (
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
)


def _wait_for_partition_leaders(admin: AdminClient, topics: list[str], timeout_seconds: float) -> None:
    """Wait until ListOffsets succeeds for every partition of ``topics``.

    Kafka 4.0.1 returned NOT_LEADER_FOR_PARTITION for a repartition topic
    that ensure_topics had just created. Raises KafkaException on another
    error or after ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            _end_offsets(admin, topics)
            return
        except KafkaException as error:
            if error.args[0].code() not in NEW_TOPIC_ERRORS or time.monotonic() >= deadline:
                raise
            log.info("partitions of %s have no leader yet: %s", ", ".join(topics), error)
        time.sleep(0.2)


# aiokafka 0.14 logs this before each JoinGroup request of a member, that is
# at the start of each rebalance that the member takes part in.
REVOCATION_LOG_TEXT = "Revoking previously assigned partitions"


def _recovered_since_revocation(log_path: Path) -> bool:
    """Return whether the worker log shows a finished table recovery after the worker's last partition revocation."""
    recovered = False
    for line in log_path.read_text(errors="replace").splitlines():
        if REVOCATION_LOG_TEXT in line:
            recovered = False
        elif RECOVERY_LINE.search(line):
            recovered = True
    return recovered


def _wait_until_group_ready(
    admin: AdminClient, settings: Settings, workers: list[_ChildProcess], timeout_seconds: float
) -> None:
    """Wait until the workers' consumer group is stable, each worker owns input partitions and has recovered its tables.

    Together the workers must own every partition of the input and
    repartition topics. Other partitions do not count, because faust's
    assignor can also give a member standby changelog partitions. Raises
    BenchmarkError on timeout or when a worker exits.
    """
    expected = {(tp.topic, tp.partition) for tp in _partitions(admin, _consumed_topics(settings))}
    deadline = time.monotonic() + timeout_seconds
    last_error: Optional[KafkaException] = None
    while True:
        _raise_if_exited(workers, f"before consumer group {settings.app_id} was ready")
        try:
            members = _stable_group_assignment(admin, settings.app_id)
        except KafkaException as error:
            # A request sent while the workers join can time out (seen with
            # Kafka 4.0.1), so a failed one is retried until the deadline.
            log.info("describing consumer group %s failed: %s", settings.app_id, error)
            last_error = error
            members = None
        if members is not None and len(members) == len(workers):
            owned = [partitions & expected for partitions in members]
            # The logs are read after the group was described. Every member
            # logs its revocation before it joins, so once the broker reports
            # the group stable, a recovery line after the revocation belongs
            # to the current assignment.
            if (
                all(owned)
                and set().union(*owned) == expected
                and all(_recovered_since_revocation(worker.log_path) for worker in workers)
            ):
                return
        if time.monotonic() >= deadline:
            error_text = f"; the last describe request failed with {last_error}" if last_error else ""
            raise BenchmarkError(
                f"consumer group {settings.app_id} was not stable with {len(workers)} recovered members that own "
                f"all {len(expected)} input partitions within {timeout_seconds:.0f} s{error_text}; "
                f"{_log_paths(workers)}"
            )
        time.sleep(0.5)


def _stop_together(workers: list[WorkerProcess]) -> list[int]:
    """Send SIGTERM to every worker at once and return their exit codes.

    Stopped one at a time, the workers still running would take over the
    partitions of each stopped one and recover its tables first.
    """
    if not workers:
        return []
    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        return list(pool.map(WorkerProcess.stop, workers))


def measure_scaled_latency(
    settings: Settings, workers: int, work_dir: Path, options: argparse.Namespace, load: Load
) -> ScaledLatencyResult:
    """Start ``workers`` worker processes in one consumer group and run the latency phase on them.

    ``settings.app_id`` must be new, so that the tables start empty. Worker 1
    starts alone and folds the input that is already published. The others
    start once it has committed that input, and the timed phase starts once
    the group is stable and every worker has recovered its tables, so that
    neither the backlog nor a rebalance falls into it. Worker i gets the
    state directory ``settings.state_dir / "worker-<i>"``, a free metrics
    port and the log ``product-worker-<i>-of-<workers>.log`` in
    ``work_dir``. The workers are stopped on return and on failure.
    """
    admin = _admin(settings)
    # Created here, so that the workers do not race to create the new app
    # id's repartition and changelog topics.
    ensure_topics(settings)
    _wait_for_partition_leaders(admin, _consumed_topics(settings), ADMIN_TIMEOUT_SECONDS)
    dead_letters_before = sum(_end_offsets(admin, [settings.topics.dead_letter]).values())
    ports = free_ports(workers)
    started: list[WorkerProcess] = []
    children: list[_ChildProcess] = []

    def start_worker(index: int) -> None:
        worker_settings = settings.replace(
            state_dir=settings.state_dir / f"worker-{index}", metrics_port=ports[index - 1]
        )
        worker = WorkerProcess(worker_settings, work_dir / f"product-worker-{index}-of-{workers}.log").start()
        started.append(worker)
        children.append(_ChildProcess(f"product worker {index} of {workers}", worker.process, worker.log_path))

    try:
        # Worker 1 folds the backlog alone and the others start after its
        # commits, so that the timed phase measures a group that has caught up.
        print(
            f"latency phase with {workers} worker processes: worker 1 folds the input that is already published",
            file=sys.stderr,
            flush=True,
        )
        start_worker(1)
        _wait_for_commits(admin, settings, _consumed_topics(settings), options.timeout, children)
        for index in range(2, workers + 1):
            start_worker(index)
        _wait_until_group_ready(admin, settings, children, options.timeout)

        print(
            f"latency phase with {workers} worker processes: {len(load.events)} events "
            f"at {options.latency_rate:.0f} events/s",
            file=sys.stderr,
            flush=True,
        )
        latency = measure_latency(settings, load, options.latency_rate, children, options.timeout)
        dead_letters_after = sum(_end_offsets(admin, [settings.topics.dead_letter]).values())
        return ScaledLatencyResult(
            workers=workers,
            latency=latency,
            standby_replicas=settings.standby_replicas,
            peak_rss_kib=[_peak_rss_kib(worker.pid) for worker in started],
            dead_letters=dead_letters_after - dead_letters_before,
            log_paths=[worker.log_path for worker in started],
        )
    finally:
        for child, exit_code in zip(children, _stop_together(started)):
            if exit_code != 0:
                log.warning("%s exited with %d; log: %s", child.name, exit_code, child.log_path)


# ---------------------------------------------------------------------------
# Profile


def _frame_name(frame: str) -> str:
    """Shorten ``function (/path/to/site-packages/pkg/mod.py:12)`` to ``function (pkg/mod.py:12)``."""
    name, _, location = frame.partition(" (")
    if not location:
        return frame
    path = location.rstrip(")")
    for marker in ("/site-packages/", "/lib/python3.11/", str(REPO_ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _package_of(frame: str) -> str:
    """Return the package of a frame's file: a site-packages name, ``stdlib <module>`` or a folder of this repository."""
    _, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(str(REPO_ROOT) + "/"):
        return path[len(str(REPO_ROOT)) + 1 :].split("/", 1)[0]
    if "/lib/python3" in path:
        module = path.split("/lib/python3", 1)[1].split("/", 2)[1]
        return f"stdlib {module.removesuffix('.py')}"
    return path or frame


def summarize_profile(raw_path: Path, top: int) -> list[str]:
    """Return report lines of py-spy's collapsed stacks: own and total time by function, own time by package."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if " (" in frame]
        if not frames:
            continue
        samples += count
        own[_frame_name(frames[-1])] += count
        packages[_package_of(frames[-1])] += count
        for name in {_frame_name(frame) for frame in frames}:
            total[name] += count

    if samples == 0:
        return ["profile: py-spy recorded no samples"]

    def table(title: str, counter: Counter[str], limit: int) -> list[str]:
        lines = [title]
        for name, count in counter.most_common(limit):
            lines.append(f"  {100 * count / samples:5.1f}%  {name}")
        return lines

    # Frames on nearly every stack are the entry points and the event loop, which show nothing about where time goes.
    total = Counter({name: count for name, count in total.items() if count < 0.9 * samples})
    repository_prefixes = ("processor/", "topologies/")
    repository = Counter(
        {name: count for name, count in total.items() if name.partition(" (")[2].startswith(repository_prefixes)}
    )
    return [
        f"profile of the product worker: {samples} samples at {PROFILE_RATE} per second (py-spy, busy threads only)",
        *table("own time by package:", packages, top),
        *table("own time by function:", own, top),
        *table("total time by function (including callees, without frames on over 90% of samples):", total, top),
        *table("total time of processor/ and topologies/ functions (including callees):", repository, top),
    ]


# ---------------------------------------------------------------------------
# Report


def _machine_lines(bootstrap_servers: str) -> list[str]:
    cpu_model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    import confluent_kafka

    versions = [f"Python {platform.python_version()}"]
    for distribution in ("faust-streaming", "aiokafka", "confluent-kafka", "protobuf", "rocksdict"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{distribution} {metadata.version(distribution)}")
    versions.append(f"librdkafka {confluent_kafka.libversion()[0]}")
    return [
        f"machine: {len(os.sched_getaffinity(0))} CPUs ({cpu_model}), {memory_kib / 1024 / 1024:.1f} GiB memory, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"versions: {', '.join(versions)}",
        f"broker: {bootstrap_servers}",
    ]


def _fetch_line(options: argparse.Namespace, consumers: str) -> str:
    """Return the report line with the fetch minimum and wait of ``consumers``."""
    return (
        f"faust consumer fetches of {consumers}: at least {options.fetch_min_bytes} bytes, "
        f"or after {options.fetch_max_wait_seconds:g} s"
    )


def _met(condition: bool) -> str:
    return "met" if condition else "not met"


def _latency_target_met(latency: LatencyResult, rate: float) -> bool:
    """Return whether p99 is below TARGET_P99_SECONDS and the producer kept at least 95% of ``rate``."""
    # The target is set at a rate; a run whose producer fell behind it does not count.
    at_rate = latency.achieved_rate >= 0.95 * rate
    return at_rate and percentile(latency.latencies, 0.99) < TARGET_P99_SECONDS


def format_report(
    header: list[str],
    bare: dict,
    floor: dict,
    product: ProductResult,
    options: argparse.Namespace,
    scaled: Optional[ScaledLatencyResult] = None,
) -> list[str]:
    bare_rate = bare["events"] / bare["seconds"]
    floor_rate = floor["events"] / floor["seconds"]
    product_rate = product.events / product.seconds
    events = product.events

    lines = [*header, ""]
    lines.append(f"{'measurement':<34}{'events':>10}{'seconds':>10}{'events/s':>12}")
    rows = [
        ("bare loop (confluent-kafka + fold)", bare["events"], bare["seconds"], bare_rate),
        ("faust floor (stream.events only)", floor["events"], floor["seconds"], floor_rate),
        ("product (worker, rocksdb)", product.events, product.seconds, product_rate),
    ]
    for name, count, seconds, rate in rows:
        lines.append(f"{name:<34}{count:>10}{seconds:>10.2f}{rate:>12.0f}")
    lines.append(f"ratio product/bare: {product_rate / bare_rate:.2f}")
    lines.append(f"ratio product/faust-floor: {product_rate / floor_rate:.2f}")
    lines.append(f"product worker CPU while folding: {100 * product.cpu_share:.0f}% of one core (estimate)")
    lines.append(cpu_per_event_line(product.cpu_per_event))
    lines.append(
        f"machine CPU busy, all processes: bare loop {100 * bare['machine_busy']:.0f}%, "
        f"faust floor {100 * floor['machine_busy']:.0f}%, product {100 * product.machine_busy:.0f}% "
        f"of {len(os.sched_getaffinity(0))} CPUs"
    )

    latency = product.latency
    if latency is not None:
        p50 = percentile(latency.latencies, 0.50)
        p99 = percentile(latency.latencies, 0.99)
        lines.append(
            f"latency: {latency.sent} events at {latency.achieved_rate:.0f} events/s for {latency.seconds:.1f} s, "
            f"{len(latency.latencies)} of them timed by their state record"
        )
        lines.append(f"latency p50: {p50:.3f} s")
        lines.append(f"latency p99: {p99:.3f} s")
        lines.extend(latency_detail_lines("latency", latency))
    if scaled is not None:
        scaled_latency = scaled.latency
        lines.append(
            f"latency with {scaled.workers} worker processes: {scaled_latency.sent} events "
            f"at {scaled_latency.achieved_rate:.0f} events/s for {scaled_latency.seconds:.1f} s, "
            f"{len(scaled_latency.latencies)} of them timed by their state record"
        )
        lines.append(
            f"latency with {scaled.workers} worker processes: standby replicas {scaled.standby_replicas}"
        )
        lines.append(
            f"latency with {scaled.workers} worker processes: "
            f"p50 {percentile(scaled_latency.latencies, 0.50):.3f} s, "
            f"p99 {percentile(scaled_latency.latencies, 0.99):.3f} s"
        )
        lines.extend(latency_detail_lines(f"latency with {scaled.workers} worker processes:", scaled_latency))

    lines.append(f"peak RSS product worker: {product.peak_rss_kib / 1024:.0f} MiB")
    if scaled is not None:
        for index, peak_rss_kib in enumerate(scaled.peak_rss_kib, 1):
            lines.append(f"peak RSS product worker {index} of {scaled.workers}: {peak_rss_kib / 1024:.0f} MiB")
    lines.append(f"peak RSS bare loop: {bare['peak_rss_kib'] / 1024:.0f} MiB")
    lines.append(f"peak RSS faust floor: {floor['peak_rss_kib'] / 1024:.0f} MiB")

    lines.append(f"product dead letters: {product.dead_letters}")
    if scaled is not None:
        lines.append(f"product dead letters with {scaled.workers} worker processes: {scaled.dead_letters}")
    lines.append(f"changelog records per event: {product.changelog_records / events:.2f}")
    lines.append(f"state records per event: {product.state_records / events:.2f}")
    batch_size = batch_size_at_most(product.mean_batch_events)
    batched_writes = bare["batched_table_writes"][str(batch_size)]
    batched_changes = bare["batched_state_changes"][str(batch_size)]
    lines.append(
        f"product batches: {product.counts.batches}, {product.mean_batch_events:.0f} events each on average "
        f"(at most {product.batch_max_events} events or {product.batch_linger_seconds:g} s)"
    )
    lines.append(
        f"bare loop table writes per event: {bare['table_writes'] / events:.2f} "
        f"({batched_writes / events:.2f} with one write per key per batch of {batch_size})"
    )
    lines.append(
        f"bare loop state changes per event: {bare['state_changes'] / events:.2f} "
        f"({batched_changes / events:.2f} with one record per key per batch of {batch_size})"
    )

    lines.append("")
    lines.append("targets:")
    lines.append(
        f"  product >= {TARGET_SHARE_OF_FAUST_FLOOR} x faust floor: "
        f"{_met(product_rate >= TARGET_SHARE_OF_FAUST_FLOOR * floor_rate)}"
    )
    lines.append(
        f"  product >= {TARGET_EVENTS_PER_SECOND:.0f} events/s: {_met(product_rate >= TARGET_EVENTS_PER_SECOND)}"
    )
    if latency is not None:
        met = _latency_target_met(latency, options.latency_rate)
        lines.append(f"  p99 < {TARGET_P99_SECONDS:.0f} s at {options.latency_rate:.0f} events/s: {_met(met)}")
    if scaled is not None:
        met = _latency_target_met(scaled.latency, options.latency_rate)
        lines.append(
            f"  p99 < {TARGET_P99_SECONDS:.0f} s at {options.latency_rate:.0f} events/s "
            f"with {scaled.workers} worker processes: {_met(met)}"
        )
    lines.append(
        f"  at most one changelog write per changed key per batch: "
        f"{_met(product.changelog_records <= product.counts.table_writes)}"
    )
    lines.append(
        f"  at most one state record per changed key per batch: "
        f"{_met(product.state_records <= product.counts.state_records)}"
    )

    if product.profile:
        lines.append("")
        lines.extend(product.profile)
    return lines


# ---------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m processor.benchmark",
        description=(
            "Measure the worker's throughput, latency and memory beside a bare fold loop and a faust floor, "
            "on one broker and one synthetic input. Uses KAFKA_BOOTSTRAP_SERVERS, else starts scripts/kafka-local."
        ),
    )
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help=f"events of the throughput load (default {DEFAULT_EVENTS})"
    )
    parser.add_argument(
        "--executions",
        type=int,
        default=DEFAULT_EXECUTIONS,
        help=f"executions the load spreads over (default {DEFAULT_EXECUTIONS})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed of the synthetic load (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=Settings.partitions,
        help=f"partitions of every topic (default {Settings.partitions})",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=DEFAULT_LATENCY_RATE,
        help=f"events per second of the latency phase (default {DEFAULT_LATENCY_RATE:.0f})",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=DEFAULT_LATENCY_SECONDS,
        help=f"seconds of the latency phase; 0 skips it (default {DEFAULT_LATENCY_SECONDS:.0f})",
    )
    parser.add_argument(
        "--latency-workers",
        type=int,
        default=DEFAULT_LATENCY_WORKERS,
        help="worker processes of one consumer group for a second latency phase, after the one on the single "
        f"worker; 1 skips it (default {DEFAULT_LATENCY_WORKERS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_PHASE_TIMEOUT_SECONDS,
        help=f"seconds each measurement may take before the run fails (default {DEFAULT_PHASE_TIMEOUT_SECONDS:.0f})",
    )

    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers; overrides KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run py-spy on the product worker during the throughput phase and print the top entries",
    )
    parser.add_argument(
        "--profile-top",
        type=int,
        default=DEFAULT_PROFILE_TOP,
        help=f"entries per profile table (default {DEFAULT_PROFILE_TOP})",
    )

    parser.add_argument(
        "--batch-max-events",
        type=int,
        default=Settings.batch_max_events,
        help=f"the worker's FLYTE_STATE_BATCH_MAX_EVENTS (default {Settings.batch_max_events})",
    )
    parser.add_argument(
        "--batch-linger-seconds",
        type=float,
        default=Settings.batch_linger_seconds,
        help=f"the worker's FLYTE_STATE_BATCH_LINGER_SECONDS (default {Settings.batch_linger_seconds:g})",
    )
    parser.add_argument(
        "--standby-replicas",
        type=int,
        default=Settings.standby_replicas,
        help=f"the workers' FLYTE_STATE_STANDBY_REPLICAS; only a run with --latency-workers above 1 has another "
        f"worker to keep a copy (default {Settings.standby_replicas})",
    )
    parser.add_argument(
        "--fetch-min-bytes",
        type=int,
        default=Settings.fetch_min_bytes,
        help=f"FLYTE_STATE_FETCH_MIN_BYTES of the workers and the faust floor, in bytes; 1 with a wait of 1.5 s "
        f"is faust's own setting (default {Settings.fetch_min_bytes})",
    )
    parser.add_argument(
        "--fetch-max-wait-seconds",
        type=float,
        default=Settings.fetch_max_wait_seconds,
        help=f"FLYTE_STATE_FETCH_MAX_WAIT_SECONDS of the workers and the faust floor, in seconds "
        f"(default {Settings.fetch_max_wait_seconds:g})",
    )
    parser.add_argument(
        "--recovery-tasks",
        type=int,
        default=0,
        help="instead of the throughput run, build a task table of this many records with the worker and "
        "time its recovery after a restart, on the same and on an empty state directory",
    )
    parser.add_argument("--keep-topics", action="store_true", help="keep the run's topics on the broker afterwards")
    parser.add_argument(
        "--work-dir", type=Path, help="folder for logs, results and worker state (default: a new temporary folder)"
    )

    # Internal: the benchmark runs its bare loop and faust floor as children of itself.
    parser.add_argument("--child", choices=["bare-loop", "faust-floor"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def _validate(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    if options.events < 1:
        parser.error(f"--events must be at least 1, got {options.events}")
    if not 1 <= options.executions <= options.events:
        parser.error(f"--executions must lie between 1 and --events ({options.events}), got {options.executions}")
    if options.latency_rate <= 0:
        parser.error(f"--latency-rate must be above 0, got {options.latency_rate}")
    if options.latency_seconds < 0:
        parser.error(f"--latency-seconds must be 0 or more, got {options.latency_seconds}")
    if not 1 <= options.latency_workers <= options.partitions:
        parser.error(
            f"--latency-workers must lie between 1 and --partitions ({options.partitions}), "
            f"got {options.latency_workers}"
        )
    if options.latency_workers > 1 and int(options.latency_rate * options.latency_seconds) == 0:
        parser.error(
            "--latency-workers above 1 needs a latency phase of at least one event: "
            "raise --latency-seconds or --latency-rate"
        )
    if options.standby_replicas < 0:
        parser.error(f"--standby-replicas must be 0 or more, got {options.standby_replicas}")
    if options.latency_workers > 1 and options.recovery_tasks:
        parser.error("--latency-workers does not apply to a --recovery-tasks run")
    # The settings' own check, before the run starts a broker.
    try:
        Settings(fetch_min_bytes=options.fetch_min_bytes, fetch_max_wait_seconds=options.fetch_max_wait_seconds).validate()
    except ConfigError as error:
        parser.error(f"invalid --fetch-min-bytes or --fetch-max-wait-seconds: {error}")
    if options.timeout <= 0:
        parser.error(f"--timeout must be above 0, got {options.timeout}")
    options.py_spy = find_py_spy() if options.profile else None
    if options.profile and options.py_spy is None:
        parser.error("--profile needs py-spy, which was not found: pip install 'flyte-state-processor[bench]'")


def _delete_topics(settings: Settings, prefix: str) -> None:
    admin = _admin(settings)
    names = [name for name in admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS).topics if name.startswith(prefix)]
    if not names:
        return
    for name, future in admin.delete_topics(names, operation_timeout=ADMIN_TIMEOUT_SECONDS).items():
        try:
            future.result()
        except KafkaException as error:
            log.warning("could not delete topic %s: %s", name, error)


def _bootstrap_and_work_dir(options: argparse.Namespace) -> tuple[Optional[str], Path]:
    """Return the brokers to use (None: start one) and the work folder, created and announced on stderr."""
    bootstrap = options.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or None
    work_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="flyte-state-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"logs and results in {work_dir}", file=sys.stderr, flush=True)
    return bootstrap, work_dir


def run(options: argparse.Namespace) -> int:
    bootstrap, work_dir = _bootstrap_and_work_dir(options)

    with benchmark_broker(bootstrap) as bootstrap_servers:
        header = _machine_lines(bootstrap_servers)
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        base = Settings(
            bootstrap_servers=bootstrap_servers,
            partitions=options.partitions,
            state_dir=work_dir / "state",
            fetch_min_bytes=options.fetch_min_bytes,
            fetch_max_wait_seconds=options.fetch_max_wait_seconds,
        )
        settings = base.with_topic_prefix(prefix)
        product_settings = settings.replace(
            app_id=f"{prefix}product",
            store="rocksdb",
            state_dir=work_dir / "product-state",
            metrics_address="127.0.0.1",
            metrics_port=free_ports(1)[0],
            batch_max_events=options.batch_max_events,
            batch_linger_seconds=options.batch_linger_seconds,
            standby_replicas=options.standby_replicas,
        )
        floor_settings = settings.replace(
            app_id=f"{prefix}faust-floor", store="memory", state_dir=work_dir / "floor-state"
        )
        try:
            ensure_topics(product_settings)

            start = datetime.now(timezone.utc).replace(microsecond=0)
            load = build_load(settings, options.events, options.executions, options.seed, start)
            published_seconds = publish_load(settings, load)
            header.append(
                f"load: {options.events} events of {options.executions} executions (seed {options.seed}, "
                f"2 to {load.max_nodes} top-level nodes each), {options.partitions} partitions, "
                f"published in {published_seconds:.1f} s"
            )
            print(header[-1], file=sys.stderr, flush=True)
            header.append(_fetch_line(options, "the workers and the faust floor"))

            latency_events = int(options.latency_rate * options.latency_seconds)
            latency_load = Load(events=[], executions=0, max_nodes=load.max_nodes)
            if latency_events:
                latency_executions = max(1, math.ceil(latency_events * options.executions / options.events))
                # Executions of another seed, so that no latency event repeats one the worker has folded.
                latency_load = build_load(
                    settings, latency_events, latency_executions, options.seed + 1, start + timedelta(hours=12)
                )
            scaled_latency_load = None
            if latency_events and options.latency_workers > 1:
                # A third seed and start, so that no event repeats one of either earlier load.
                scaled_latency_load = build_load(
                    settings, latency_events, latency_executions, options.seed + 2, start + timedelta(hours=24)
                )

            print("bare loop", file=sys.stderr, flush=True)
            bare = measure_bare_loop(settings, options.events, work_dir, options.timeout)
            print("faust floor", file=sys.stderr, flush=True)
            floor = measure_faust_floor(floor_settings, options.events, work_dir, options.timeout)
            print("product", file=sys.stderr, flush=True)
            product = measure_product(product_settings, options.events, work_dir, options, latency_load)
            scaled = None
            if scaled_latency_load is not None:
                # A new app id, so that these workers start with empty tables of their own.
                scaled_settings = product_settings.replace(
                    app_id=f"{prefix}product-{options.latency_workers}w", state_dir=work_dir / "product-workers-state"
                )
                scaled = measure_scaled_latency(
                    scaled_settings, options.latency_workers, work_dir, options, scaled_latency_load
                )
        finally:
            if not options.keep_topics:
                _delete_topics(settings, prefix)
            for folder in ("product-state", "product-workers-state", "floor-state", "state"):
                shutil.rmtree(work_dir / folder, ignore_errors=True)

    for line in format_report(header, bare, floor, product, options, scaled):
        print(line)
    failed = False
    if product.dead_letters:
        log.error(
            "the worker dead-lettered %d events of a valid load, so its figures measure a failing worker; log: %s",
            product.dead_letters,
            product.log_path,
        )
        failed = True
    if scaled is not None and scaled.dead_letters:
        log.error(
            "the %d worker processes dead-lettered %d events of a valid load, so their figures measure failing "
            "workers; logs: %s",
            scaled.workers,
            scaled.dead_letters,
            ", ".join(str(path) for path in scaled.log_paths),
        )
        failed = True
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# Recovery of a large task table

RECOVERY_LINE = re.compile(r"table recovery finished in ([0-9.]+) s; keys per table: (.*)$")


@dataclass
class RecoveryRun:
    """One worker start over existing changelog topics."""

    worker_seconds: float
    wall_seconds: float
    keys: str
    peak_rss_kib: int
    state_dir_bytes: int


def _directory_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _publish_running_tasks(settings: Settings, tasks: int, per_execution: int, seed: int) -> int:
    """Publish ``tasks`` RUNNING task events, one per task execution; return the executions they span."""
    producer = Producer(producer_config(settings))
    errors = _DeliveryErrors()
    executions = math.ceil(tasks / per_execution)
    start = datetime.now(timezone.utc).replace(microsecond=0)
    for sent, event in enumerate(generate_running_tasks(executions, per_execution, seed, start=start)):
        if sent == tasks:
            break
        encoded = LoadEvent(
            topic=settings.topics.input_topic(event.kind),
            key=event.execution_key.encode(),
            value=event.message.SerializeToString(),
            entity_key=event.entity_key,
            occurred_at=(0, 0),
        )
        _produce(producer, encoded, errors)
        producer.poll(0)
    _flush(producer, errors, settings)
    return executions


def _time_recovery(settings: Settings, log_path: Path, timeout_seconds: float) -> RecoveryRun:
    """Start a worker, wait for its table recovery to finish, read its figures and stop it."""
    started = time.monotonic()
    worker = WorkerProcess(settings, log_path).start()
    child = _ChildProcess("recovering worker", worker.process, worker.log_path)
    try:
        deadline = started + timeout_seconds
        while time.monotonic() < deadline:
            if child.exit_code() is not None:
                raise BenchmarkError(f"the worker exited during recovery:\n{child.log_tail()}")
            for line in log_path.read_text(errors="replace").splitlines():
                match = RECOVERY_LINE.search(line)
                if match:
                    return RecoveryRun(
                        worker_seconds=float(match.group(1)),
                        wall_seconds=time.monotonic() - started,
                        keys=match.group(2),
                        peak_rss_kib=_peak_rss_kib(worker.pid),
                        state_dir_bytes=_directory_bytes(settings.state_dir),
                    )
            time.sleep(0.5)
        raise BenchmarkError(f"no finished recovery within {timeout_seconds:.0f} s; log: {log_path}")
    finally:
        worker.stop()


def run_recovery(options: argparse.Namespace) -> int:
    """Build a task table of ``--recovery-tasks`` records with the worker, then time two restarts over it."""
    bootstrap, work_dir = _bootstrap_and_work_dir(options)

    with benchmark_broker(bootstrap) as bootstrap_servers:
        lines = _machine_lines(bootstrap_servers)
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        settings = (
            Settings(
                bootstrap_servers=bootstrap_servers,
                partitions=options.partitions,
                fetch_min_bytes=options.fetch_min_bytes,
                fetch_max_wait_seconds=options.fetch_max_wait_seconds,
            )
            .with_topic_prefix(prefix)
            .replace(
                app_id=f"{prefix}recovery",
                store="rocksdb",
                state_dir=work_dir / "recovery-state",
                metrics_port=0,
                batch_max_events=options.batch_max_events,
                batch_linger_seconds=options.batch_linger_seconds,
            )
        )
        try:
            ensure_topics(settings)
            executions = _publish_running_tasks(
                settings, options.recovery_tasks, RECOVERY_TASKS_PER_EXECUTION, options.seed
            )
            print(f"building the table of {options.recovery_tasks} task executions", file=sys.stderr, flush=True)
            admin = _admin(settings)
            build_started = time.monotonic()
            worker = WorkerProcess(settings, work_dir / "recovery-build.log").start()
            try:
                _wait_for_commits(
                    admin,
                    settings,
                    _consumed_topics(settings),
                    options.timeout,
                    [_ChildProcess("table-building worker", worker.process, worker.log_path)],
                )
                build_seconds = time.monotonic() - build_started
                build_rss = _peak_rss_kib(worker.pid)
            finally:
                worker.stop()
            changelog_records = sum(_end_offsets(admin, _changelog_topics(admin, settings.app_id)).values())

            print("restart on the same state directory", file=sys.stderr, flush=True)
            same = _time_recovery(settings, work_dir / "recovery-same-dir.log", options.timeout)
            print("restart on an empty state directory", file=sys.stderr, flush=True)
            empty_settings = settings.replace(state_dir=work_dir / "recovery-empty-state")
            empty = _time_recovery(empty_settings, work_dir / "recovery-empty-dir.log", options.timeout)
        finally:
            if not options.keep_topics:
                _delete_topics(settings, prefix)
            for folder in ("recovery-state", "recovery-empty-state"):
                shutil.rmtree(work_dir / folder, ignore_errors=True)

    lines += [
        "",
        f"table: {options.recovery_tasks} task executions of {executions} executions "
        f"({RECOVERY_TASKS_PER_EXECUTION} each, one RUNNING event per task), {options.partitions} partitions",
        f"built by the worker in {build_seconds:.0f} s ({options.recovery_tasks / build_seconds:.0f} events/s), "
        f"peak RSS {build_rss / 1024:.0f} MiB",
        f"changelog records after the build: {changelog_records}",
        _fetch_line(options, "the worker"),
    ]
    for name, run_ in (("same state directory", same), ("empty state directory", empty)):
        lines.append(
            f"recovery, {name}: {run_.worker_seconds:.1f} s from assignment, {run_.wall_seconds:.1f} s from start; "
            f"peak RSS {run_.peak_rss_kib / 1024:.0f} MiB; state directory {run_.state_dir_bytes / 2**20:.0f} MiB"
        )
        lines.append(f"  keys after recovery: {run_.keys}")
    for line in lines:
        print(line)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if options.child is not None:
        settings = Settings.from_env()
        if options.child == "bare-loop":
            run_bare_loop(settings, options.events, options.result, options.timeout)
            return 0
        return run_faust_floor(settings, options.events, options.result)

    _validate(parser, options)
    try:
        if options.recovery_tasks:
            return run_recovery(options)
        return run(options)
    except BenchmarkError as error:
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
