"""A small benchmark run against the real broker: it finishes and prints every figure."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from processor.benchmark import BATCH_SIZES, LatencyResult, ProductResult, format_report
from support import REPO_ROOT

pytestmark = pytest.mark.integration

# The p99 of each part of a latency phase, as "0-5 s 0.123 s, 5-10 s 0.456 s".
WINDOW = r"\d+-\d+ s (\d+\.\d{3}|nan) s"
WINDOWS = rf"{WINDOW}(, {WINDOW})*"

# Lines of the report, by the pattern of their figure. Values are not checked:
# they depend on the machine.
FIGURE_LINES = {
    "fetch settings": r"^faust consumer fetches of the workers and the faust floor: at least 65536 bytes, "
    r"or after 0\.04 s$",
    "bare loop row": r"^bare loop \(confluent-kafka \+ fold\)\s+2000\s+[\d.]+\s+\d+$",
    "faust floor row": r"^faust floor \(stream\.events only\)\s+2000\s+[\d.]+\s+\d+$",
    "product row": r"^product \(worker, rocksdb\)\s+2000\s+[\d.]+\s+\d+$",
    "ratio to bare loop": r"^ratio product/bare: \d+\.\d\d$",
    "ratio to faust floor": r"^ratio product/faust-floor: \d+\.\d\d$",
    "worker CPU": r"^product worker CPU while folding: \d+% of one core \(estimate\)$",
    # A run this short can fold every event before the first state record
    # appears, and then the span has no events (nan).
    "worker CPU per event": r"^product worker CPU per event: (\d+|nan) us, (\d+|nan) us of it in the fold "
    r"\(flyte_state_fold_seconds\), (-?\d+|nan) us in the rest \(estimate\)$",
    "machine CPU": r"^machine CPU busy, all processes: bare loop \d+%, faust floor \d+%, product \d+% of \d+ CPUs$",
    "latency p50": r"^latency p50: \d+\.\d{3} s$",
    "latency p99": r"^latency p99: \d+\.\d{3} s$",
    "latency until produced": r"^latency until the state record was produced: p50 -?\d+\.\d{3} s, p99 -?\d+\.\d{3} s$",
    "latency p99 by window": rf"^latency p99 by part of the phase: {WINDOWS}$",
    "latency CPU": r"^latency CPU while sending, in cores: machine \d+\.\d\d of \d+, workers \d+\.\d\d, "
    r"benchmark \d+\.\d\d, other processes \d+\.\d\d$",
    "latency load with 2 workers": r"^latency with 2 worker processes: 1500 events at \d+ events/s for [\d.]+ s, "
    r"\d+ of them timed by their state record$",
    "standby replicas with 2 workers": r"^latency with 2 worker processes: standby replicas 0$",
    "latency with 2 workers": r"^latency with 2 worker processes: p50 \d+\.\d{3} s, p99 \d+\.\d{3} s$",
    "latency until produced with 2 workers": r"^latency with 2 worker processes: until the state record was produced: "
    r"p50 -?\d+\.\d{3} s, p99 -?\d+\.\d{3} s$",
    "latency p99 by window with 2 workers": rf"^latency with 2 worker processes: p99 by part of the phase: {WINDOWS}$",
    "latency CPU with 2 workers": r"^latency with 2 worker processes: CPU while sending, in cores: machine \d+\.\d\d "
    r"of \d+, workers \d+\.\d\d \+ \d+\.\d\d, benchmark \d+\.\d\d, other processes \d+\.\d\d$",
    "worker peak RSS": r"^peak RSS product worker: \d+ MiB$",
    "worker 1 of 2 peak RSS": r"^peak RSS product worker 1 of 2: \d+ MiB$",
    "worker 2 of 2 peak RSS": r"^peak RSS product worker 2 of 2: \d+ MiB$",
    "bare loop peak RSS": r"^peak RSS bare loop: \d+ MiB$",
    "faust floor peak RSS": r"^peak RSS faust floor: \d+ MiB$",
    "product dead letters": r"^product dead letters: \d+$",
    "dead letters with 2 workers": r"^product dead letters with 2 worker processes: \d+$",
    "changelog records": r"^changelog records per event: \d+\.\d\d$",
    "state records": r"^state records per event: \d+\.\d\d$",
    "product batches": r"^product batches: \d+, \d+ events each on average \(at most \d+ events or [\d.]+ s\)$",
    "p99 target": r"^  p99 < 1 s at 500 events/s: (met|not met)$",
    "p99 target with 2 workers": r"^  p99 < 1 s at 500 events/s with 2 worker processes: (met|not met)$",
}

RECOVERY_LINES = {
    "table": r"^table: 2000 task executions of 20 executions \(100 each, one RUNNING event per task\), \d+ partitions$",
    "build": r"^built by the worker in \d+ s \(\d+ events/s\), peak RSS \d+ MiB$",
    "changelog records": r"^changelog records after the build: \d+$",
    "fetch settings": r"^faust consumer fetches of the worker: at least 65536 bytes, or after 0\.04 s$",
    "same directory": r"^recovery, same state directory: [\d.]+ s from assignment, [\d.]+ s from start; "
    r"peak RSS \d+ MiB; state directory \d+ MiB$",
    "empty directory": r"^recovery, empty state directory: [\d.]+ s from assignment, [\d.]+ s from start; "
    r"peak RSS \d+ MiB; state directory \d+ MiB$",
    "task keys": r"^  keys after recovery: .*task-executions=2000\b",
}


def run_benchmark(kafka_bootstrap: str, work_dir, *arguments: str) -> str:
    """Run ``python -m processor.benchmark`` with ``arguments`` on the test broker; return its report."""
    result = subprocess.run(
        [sys.executable, "-m", "processor.benchmark", *arguments, "--timeout", "180", "--work-dir", str(work_dir)],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"benchmark exited with {result.returncode}:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def report(kafka_bootstrap: str, tmp_path_factory) -> str:
    return run_benchmark(
        kafka_bootstrap,
        tmp_path_factory.mktemp("bench"),
        "--events",
        "2000",
        "--executions",
        "20",
        "--latency-rate",
        "500",
        "--latency-seconds",
        "3",
        "--latency-workers",
        "2",
        # Not the default: the workers keep no copy of each other's tables.
        "--standby-replicas",
        "0",
    )


@pytest.mark.parametrize("name", FIGURE_LINES)
def test_benchmark_prints_figure(report, name):
    pattern = re.compile(FIGURE_LINES[name], re.MULTILINE)

    assert pattern.search(report), f"no {name} line matching {FIGURE_LINES[name]!r} in:\n{report}"


def test_benchmark_prints_targets(report):
    targets = re.findall(r"^  .+: (met|not met)$", report, re.MULTILINE)

    # Five for the single worker, one for the latency phase with 2 worker processes.
    assert len(targets) == 6, report


def test_report_without_latency_workers():
    bare = {
        "events": 2000,
        "seconds": 1.0,
        "machine_busy": 0.5,
        "peak_rss_kib": 102400,
        "table_writes": 4000,
        "state_changes": 3000,
        "batched_table_writes": {str(size): 2000 for size in BATCH_SIZES},
        "batched_state_changes": {str(size): 1500 for size in BATCH_SIZES},
    }
    floor = {"events": 2000, "seconds": 0.5, "machine_busy": 0.5, "peak_rss_kib": 102400}
    product = ProductResult(events=2000, seconds=2.0, state_records=3000, changelog_records=2000, changelog_topics=[])
    product.latency = LatencyResult(sent=1500, seconds=3.0, latencies=[0.1, 0.2, 0.3])

    lines = format_report([], bare, floor, product, argparse.Namespace(latency_rate=500.0))

    targets = [line for line in lines if re.match(r"^  .+: (met|not met)$", line)]
    assert not [line for line in lines if re.search(r"worker processes|worker \d+ of \d+", line)], lines
    assert len(targets) == 5, lines


@pytest.fixture(scope="module")
def recovery_report(kafka_bootstrap: str, tmp_path_factory) -> str:
    return run_benchmark(kafka_bootstrap, tmp_path_factory.mktemp("recovery"), "--recovery-tasks", "2000")


@pytest.mark.parametrize("name", RECOVERY_LINES)
def test_recovery_run_prints_figure(recovery_report, name):
    pattern = re.compile(RECOVERY_LINES[name], re.MULTILINE)

    assert pattern.search(recovery_report), f"no {name} line matching {RECOVERY_LINES[name]!r} in:\n{recovery_report}"
