"""The benchmark's latency figures per part of the phase and until the worker produced the state record."""

from __future__ import annotations

import math

from processor.benchmark import LatencyResult, latency_detail_lines, p99_by_window


def test_p99_by_window_per_window():
    latency = LatencyResult(
        sent=6,
        seconds=10.0,
        latencies=[0.1, 0.2, 0.3, 2.0, 3.0, 4.0],
        sent_after=[0.0, 1.0, 4.9, 5.0, 7.0, 9.9],
        produced_after=[0.05] * 6,
    )

    assert p99_by_window(latency) == [0.3, 4.0]


def test_p99_by_window_last_milliseconds():
    latency = LatencyResult(
        sent=2, seconds=10.001, latencies=[0.5, 0.9], sent_after=[1.0, 10.001], produced_after=[0.4, 0.8]
    )

    assert p99_by_window(latency) == [0.5, 0.9]


def test_p99_by_window_without_timed_events_is_nan():
    latency = LatencyResult(sent=2, seconds=15.002, latencies=[0.5, 0.7], sent_after=[1.0, 11.0], produced_after=[0.4, 0.6])

    first, second, third = p99_by_window(latency)

    assert (first, third) == (0.5, 0.7)
    assert math.isnan(second)


def test_latency_detail_lines_for_a_timed_phase():
    latency = LatencyResult(
        sent=3, seconds=5.0, latencies=[0.2, 0.4, 0.6], sent_after=[0.0, 1.0, 2.0], produced_after=[0.1, 0.3, 0.5]
    )

    lines = latency_detail_lines("latency", latency)

    assert lines == [
        "latency until the state record was produced: p50 0.300 s, p99 0.500 s",
        "latency p99 by 5 s of the phase: 0.600 s",
    ]


def test_latency_detail_lines_without_timings():
    latency = LatencyResult(sent=3, seconds=3.0, latencies=[0.1, 0.2, 0.3])

    assert latency_detail_lines("latency", latency) == []
