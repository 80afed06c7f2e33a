"""The benchmark's split of the worker's CPU time per event into the fold and the rest."""

from __future__ import annotations

from processor.benchmark import ProductResult, WorkerCounts, cpu_per_event_line


def _product(cpu_share: float, fold_seconds: float, folded_events: int) -> ProductResult:
    return ProductResult(
        events=10_000,
        seconds=2.0,
        state_records=3_000,
        changelog_records=3_000,
        changelog_topics=[],
        cpu_share=cpu_share,
        counts=WorkerCounts(batches=5, table_writes=3_000, state_records=3_000, fold_seconds=fold_seconds,
                            folded_events=folded_events),
    )


def test_cpu_split_fold_and_rest():
    # 0.95 cores for 2 s over 10,000 events is 190 us per event; 0.9 s over 10,000 folds is 90 us.
    line = cpu_per_event_line(_product(cpu_share=0.95, fold_seconds=0.9, folded_events=10_000))

    assert line == (
        "product worker CPU per event: 190 us, 90 us of it in the fold (flyte_state_fold_seconds), "
        "100 us in the rest (estimate)"
    )


def test_cpu_split_without_fold_metrics():
    # A worker whose endpoint gave no fold histogram: the fold and the rest are unknown.
    line = cpu_per_event_line(_product(cpu_share=0.95, fold_seconds=0.0, folded_events=0))

    assert line == (
        "product worker CPU per event: 190 us, nan us of it in the fold (flyte_state_fold_seconds), "
        "nan us in the rest (estimate)"
    )
