"""A small benchmark run against the real broker: it finishes and prints every figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from support import REPO_ROOT

pytestmark = pytest.mark.integration

# Lines of the report, by the pattern of their figure. Values are not checked:
# they depend on the machine.
FIGURE_LINES = {
    "bare loop row": r"^bare loop \(confluent-kafka \+ fold\)\s+2000\s+[\d.]+\s+\d+$",
    "faust floor row": r"^faust floor \(stream\.events only\)\s+2000\s+[\d.]+\s+\d+$",
    "product row": r"^product \(worker, rocksdb\)\s+2000\s+[\d.]+\s+\d+$",
    "ratio to bare loop": r"^ratio product/bare: \d+\.\d\d$",
    "ratio to faust floor": r"^ratio product/faust-floor: \d+\.\d\d$",
    "worker CPU": r"^product worker CPU while folding: \d+% of one core \(estimate\)$",
    "machine CPU": r"^machine CPU busy, all processes: bare loop \d+%, faust floor \d+%, product \d+% of \d+ CPUs$",
    "latency p50": r"^latency p50: \d+\.\d{3} s$",
    "latency p99": r"^latency p99: \d+\.\d{3} s$",
    "worker peak RSS": r"^peak RSS product worker: \d+ MiB$",
    "bare loop peak RSS": r"^peak RSS bare loop: \d+ MiB$",
    "faust floor peak RSS": r"^peak RSS faust floor: \d+ MiB$",
    "product dead letters": r"^product dead letters: \d+$",
    "changelog records": r"^changelog records per event: \d+\.\d\d$",
    "state records": r"^state records per event: \d+\.\d\d$",
    "product batches": r"^product batches: \d+, \d+ events each on average \(at most \d+ events or [\d.]+ s\)$",
}

RECOVERY_LINES = {
    "table": r"^table: 2000 task executions of 20 executions \(100 each, one RUNNING event per task\), \d+ partitions$",
    "build": r"^built by the worker in \d+ s \(\d+ events/s\), peak RSS \d+ MiB$",
    "changelog records": r"^changelog records after the build: \d+$",
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
    )


@pytest.mark.parametrize("name", FIGURE_LINES)
def test_benchmark_prints_figure(report, name):
    pattern = re.compile(FIGURE_LINES[name], re.MULTILINE)

    assert pattern.search(report), f"no {name} line matching {FIGURE_LINES[name]!r} in:\n{report}"


def test_benchmark_prints_targets(report):
    targets = re.findall(r"^  .+: (met|not met)$", report, re.MULTILINE)

    assert len(targets) == 5, report


@pytest.fixture(scope="module")
def recovery_report(kafka_bootstrap: str, tmp_path_factory) -> str:
    return run_benchmark(kafka_bootstrap, tmp_path_factory.mktemp("recovery"), "--recovery-tasks", "2000")


@pytest.mark.parametrize("name", RECOVERY_LINES)
def test_recovery_run_prints_figure(recovery_report, name):
    pattern = re.compile(RECOVERY_LINES[name], re.MULTILINE)

    assert pattern.search(recovery_report), f"no {name} line matching {RECOVERY_LINES[name]!r} in:\n{recovery_report}"
