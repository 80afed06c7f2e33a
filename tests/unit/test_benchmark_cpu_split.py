"""The benchmark's split of the worker's CPU time per event into the fold and the rest."""

from __future__ import annotations

import math

import pytest

from processor.benchmark import CpuPerEvent, WorkerCounts, cpu_per_event, cpu_per_event_line


def _counts(fold_seconds: float, folded_events: int) -> WorkerCounts:
    return WorkerCounts(
        batches=5, table_writes=3_000, state_records=3_000, fold_seconds=fold_seconds, folded_events=folded_events
    )


def test_cpu_split_same_span():
    # 2,000 events were folded before the CPU baseline. The 1.9 s of CPU and
    # 0.9 s of fold time belong to the 10,000 events folded after it.
    split = cpu_per_event(1.9, at_start=_counts(0.2, 2_000), at_end=_counts(1.1, 12_000))

    assert split.cpu_us == pytest.approx(190.0)
    assert split.fold_us == pytest.approx(90.0)


def test_cpu_split_no_events_in_span():
    split = cpu_per_event(0.5, at_start=_counts(1.1, 12_000), at_end=_counts(1.1, 12_000))

    assert math.isnan(split.cpu_us)
    assert math.isnan(split.fold_us)


def test_cpu_split_line():
    line = cpu_per_event_line(CpuPerEvent(cpu_us=190.0, fold_us=90.0))

    assert line == (
        "product worker CPU per event: 190 us, 90 us of it in the fold (flyte_state_fold_seconds), "
        "100 us in the rest (estimate)"
    )


def test_cpu_split_line_unknown():
    line = cpu_per_event_line(CpuPerEvent(math.nan, math.nan))

    assert line == (
        "product worker CPU per event: nan us, nan us of it in the fold (flyte_state_fold_seconds), "
        "nan us in the rest (estimate)"
    )
