"""The CPU-only fold loop runs the worker's route, fold and write steps over a generated load and prints their times."""

from __future__ import annotations

import re

from processor.config import Settings
from processor.fold_loop import load_records, main, run_loop


def test_fold_loop_prints_every_pass(capsys):
    assert main(["--events", "600", "--executions", "20", "--passes", "2", "--batch-events", "100"]) == 0

    lines = capsys.readouterr().out.splitlines()

    assert lines[0] == "load: 600 events of 20 executions (seed 1)"
    assert len(lines) == 3
    for number, line in enumerate(lines[1:], start=1):
        assert re.fullmatch(
            rf"pass {number}: [0-9.]+ us per event: route [0-9.]+, fold [0-9.]+, write [0-9.]+ \([0-9]+ events/s\)",
            line,
        )


def test_fold_loop_times_every_event():
    settings = Settings()
    records = load_records(settings, 300, 10, seed=3)

    times = run_loop(records, settings, batch_events=50, size_check=True)

    assert times.events == 300
    assert times.route_us > 0
    assert times.fold_us > 0
    assert times.write_us > 0
    assert times.total_us == times.route_us + times.fold_us + times.write_us
