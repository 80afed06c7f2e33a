"""The benchmark's latency figures per part of the phase and until the worker produced the state record."""

from __future__ import annotations

import math
import os
import time

from processor.benchmark import (
    LatencyResult,
    LatencyWindow,
    PhaseCpu,
    _CpuMeter,
    latency_detail_lines,
    p99_by_window,
)


def test_p99_by_window_per_window():
    latency = LatencyResult(
        sent=6,
        seconds=10.0,
        latencies=[0.1, 0.2, 0.3, 2.0, 3.0, 4.0],
        sent_after=[0.0, 1.0, 4.9, 5.0, 7.0, 9.9],
        produced_after=[0.05] * 6,
    )

    assert p99_by_window(latency) == [LatencyWindow(0.0, 5.0, 0.3), LatencyWindow(5.0, 10.0, 4.0)]


def test_p99_by_window_last_window_to_phase_end():
    latency = LatencyResult(
        sent=3, seconds=12.0, latencies=[0.5, 0.9, 1.5], sent_after=[1.0, 6.0, 11.5], produced_after=[0.4, 0.8, 1.4]
    )

    assert p99_by_window(latency) == [LatencyWindow(0.0, 5.0, 0.5), LatencyWindow(5.0, 12.0, 1.5)]


def test_p99_by_window_short_phase():
    latency = LatencyResult(sent=2, seconds=3.0, latencies=[0.5, 0.7], sent_after=[0.5, 2.5], produced_after=[0.4, 0.6])

    assert p99_by_window(latency) == [LatencyWindow(0.0, 3.0, 0.7)]


def test_p99_by_window_clock_step_before_start():
    # The send times come from the wall clock, which can step back.
    latency = LatencyResult(sent=1, seconds=10.0, latencies=[0.4], sent_after=[-0.01], produced_after=[0.3])

    assert p99_by_window(latency)[0] == LatencyWindow(0.0, 5.0, 0.4)


def test_p99_by_window_without_timed_events_is_nan():
    latency = LatencyResult(sent=2, seconds=15.002, latencies=[0.5, 0.7], sent_after=[1.0, 11.0], produced_after=[0.4, 0.6])

    first, second, third = p99_by_window(latency)

    assert (first.p99, third.p99) == (0.5, 0.7)
    assert math.isnan(second.p99)


def test_latency_detail_lines_for_a_timed_phase():
    latency = LatencyResult(
        sent=4,
        seconds=10.002,
        latencies=[0.2, 0.4, 0.6, 1.2],
        sent_after=[0.0, 1.0, 2.0, 6.0],
        produced_after=[0.1, 0.3, 0.5, 1.1],
    )

    lines = latency_detail_lines("latency", latency)

    assert lines == [
        "latency until the state record was produced: p50 0.300 s, p99 1.100 s",
        "latency p99 by part of the phase: 0-5 s 0.600 s, 5-10 s 1.200 s",
    ]


def test_latency_detail_lines_without_timings():
    latency = LatencyResult(sent=3, seconds=3.0, latencies=[0.1, 0.2, 0.3])

    assert latency_detail_lines("latency", latency) == []


def test_latency_detail_lines_with_cpu():
    cpu = PhaseCpu(cpus=2, machine_cores=1.8, worker_cores=(0.61, 0.59), benchmark_cores=0.2)
    latency = LatencyResult(
        sent=1, seconds=4.0, latencies=[0.3], sent_after=[1.0], produced_after=[0.2], cpu=cpu
    )

    lines = latency_detail_lines("latency with 2 worker processes:", latency)

    assert lines[-1] == (
        "latency with 2 worker processes: CPU while sending, in cores: machine 1.80 of 2, "
        "workers 0.61 + 0.59, benchmark 0.20, other processes 0.40"
    )


def test_phase_cpu_other_cores_not_negative():
    # The readings of the machine and of the processes are taken moments apart.
    cpu = PhaseCpu(cpus=2, machine_cores=0.9, worker_cores=(0.8,), benchmark_cores=0.15)

    assert cpu.other_cores == 0.0


def test_cpu_meter_counts_this_process():
    # The figures are rates, and a busy machine stretches the wall time, so
    # each is checked as CPU seconds over the whole wall time of the test.
    wall_started = time.perf_counter()
    meter = _CpuMeter([os.getpid()])
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass

    cpu = meter.since_start()
    wall_seconds = time.perf_counter() - wall_started

    assert cpu.cpus == os.cpu_count()
    assert cpu.benchmark_cores * wall_seconds >= 0.19
    # /proc counts in clock ticks of 10 ms.
    assert cpu.worker_cores[0] * wall_seconds >= 0.17
    assert cpu.machine_cores * wall_seconds >= 0.17


def test_cpu_meter_worker_that_exited_is_nan():
    meter = _CpuMeter([os.getpid()])
    # No process has the largest pid; a reaped worker reads the same.
    meter.worker_pids = [2**22 + 1]

    cpu = meter.since_start()

    assert math.isnan(cpu.worker_cores[0])
    assert not math.isnan(cpu.other_cores)
