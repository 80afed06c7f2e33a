"""The ``demo`` command: run a worker, publish sample streams, wait for their final state and print it."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from confluent_kafka import KafkaException

from processor import expectations, render
from processor.config import Settings
from processor.lag import consumer_lag
from processor.publisher import EventPublisher
from processor.state_reader import StateReader
from processor.topics import ensure_topics
from processor.worker_process import WorkerProcess

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_streams_dir() -> Path:
    """Return ../shared/streams beside the repository when present, else the copies under examples/."""
    shared = REPO_ROOT.parent / "shared" / "streams"
    return shared if shared.is_dir() else REPO_ROOT / "examples" / "streams"


def wait_for_worker(settings: Settings, worker: WorkerProcess, deadline: float) -> bool:
    """Wait until the worker's consumer group has committed every input record; False on timeout or exit."""
    while time.monotonic() < deadline:
        if worker.exit_code() is not None:
            return False
        try:
            if consumer_lag(settings) == 0:
                return True
        except KafkaException as error:
            log.info("cannot read the worker's consumer lag yet: %s", error)
        time.sleep(1.0)
    return False


def run_demo(settings: Settings, streams_dir: Path | None, timeout_seconds: float) -> int:
    streams_dir = streams_dir or default_streams_dir()
    stream_files = sorted(streams_dir.glob("*.jsonl"))
    if not stream_files:
        log.error("no *.jsonl stream files in %s; pass --streams DIR", streams_dir)
        return 2

    ensure_topics(settings)
    log_path = Path(tempfile.gettempdir()) / f"flyte-state-demo-worker-{os.getpid()}.log"
    print(f"starting the worker against {settings.bootstrap_servers} (log: {log_path})", flush=True)
    worker = WorkerProcess(settings, log_path).start()
    succeeded = False
    try:
        report = EventPublisher(settings).publish_files([str(path) for path in stream_files])
        print(f"published {report.published} events from {len(stream_files)} files in {streams_dir}", flush=True)

        # The state topics may already hold an earlier run's state, so first
        # wait until the worker has committed every event of this run.
        deadline = time.monotonic() + timeout_seconds
        caught_up = wait_for_worker(settings, worker, deadline)
        if worker.exit_code() is not None:
            report_early_exit(settings, worker)
            return 1
        if not caught_up:
            print(f"the worker did not fold every published event within {timeout_seconds:.0f} s", flush=True)

        expect_files = [expectations.expect_path_of(path) for path in stream_files]
        expected = expectations.load_merged([path for path in expect_files if path.exists()])
        with StateReader(settings) as reader:
            remaining = max(1.0, deadline - time.monotonic())
            settled = reader.wait_until(lambda records: not expectations.check(expected, records), remaining)
            records = reader.records

        print()
        print(render.render_overview(records))
        for key in sorted(records_for(expected)):
            print()
            print(render.render_execution(records, key))

        failures = expectations.check(expected, records)
        print()
        if worker.exit_code() is not None:
            print(f"the worker exited early with code {worker.exit_code()}; see {log_path}", flush=True)
        if failures:
            print(f"{len(failures)} expected facts do not hold after {timeout_seconds:.0f} s:")
            for failure in failures:
                print(f"  {failure}")
            return 1
        print(f"all {expectations.fact_count(expected)} expected facts hold" + ("" if settled else " (late)"))
        succeeded = True
        return 0
    finally:
        exit_code = worker.stop()
        print(f"worker stopped with exit code {exit_code}", flush=True)
        # The log serves only to find out why a run failed.
        if succeeded and exit_code == 0:
            log_path.unlink(missing_ok=True)
        else:
            print(f"the worker's log is kept in {log_path}", flush=True)


def report_early_exit(settings: Settings, worker: WorkerProcess) -> None:
    """Print why the worker stopped before it folded the published events: its exit code, log tail and a hint."""
    tail = worker.log_tail(20)
    print(f"the worker exited early with code {worker.exit_code()}; the end of its log:", flush=True)
    print(tail, flush=True)
    if "ConsistencyError" in tail:
        print(
            f"its state directory {settings.state_dir} records changelog offsets that the broker's topics do not "
            "have, as after `scripts/kafka-local reset` or a new broker: delete the directory (`make clean`) "
            "and run the demo again",
            flush=True,
        )


def records_for(expected: dict) -> set[str]:
    return set(expected.get("workflow", {}))
