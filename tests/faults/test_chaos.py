"""Fault scenarios on a broker of their own: nothing lost, nothing applied twice.

Each scenario folds at least 20,000 generated events over 500 executions and
compares every state record with the pure fold of the same events. They take
minutes, so they carry the `fault` marker: `pytest -m "not fault"` skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kafka_broker import kafka_local_unavailable_reason
from processor.chaos import ScenarioReport, ScenarioRunner
from processor.local_broker import LocalBroker

pytestmark = [pytest.mark.integration, pytest.mark.fault]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXECUTIONS = 500
MINIMUM_EVENTS = 20_000


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Iterator[ScenarioRunner]:
    reason = kafka_local_unavailable_reason()
    if reason is not None:
        pytest.skip(f"the fault scenarios restart a broker of their own, which cannot start here: {reason}")
    broker = LocalBroker.on_free_ports(REPO_ROOT / ".local" / "kafka", "test-chaos")
    broker.start()
    try:
        yield ScenarioRunner(
            broker.bootstrap_servers, tmp_path_factory.mktemp("chaos"), executions=EXECUTIONS, broker=broker
        )
    finally:
        broker.reset()


def _check(report: ScenarioReport) -> None:
    print("\n".join(report.lines()))
    assert report.events_published >= MINIMUM_EVENTS
    assert report.executions_compared == EXECUTIONS
    assert report.lag_zero
    assert report.events_lost == 0, report.mismatches[:5]
    assert report.events_applied_twice == 0, report.mismatches[:5]
    assert report.mismatches == []


def test_worker_killed_five_times(runner):
    report = runner.kill_worker(kills=5)

    _check(report)
    assert report.disruptions == 5


def test_broker_restarts(runner):
    report = runner.restart_broker(restarts=2)

    _check(report)
    assert report.disruptions == 3


def test_workers_scale_up_and_down(runner):
    report = runner.scale_workers()

    _check(report)
    assert report.disruptions == 4


def test_changelog_compaction_then_recovery(runner):
    report = runner.compact_changelogs()

    _check(report)
    assert len(report.recovery_seconds) == 1


def test_malformed_records_dead_lettered(runner):
    report = runner.malformed_records(count=1000)

    _check(report)
    assert report.malformed_published == 1000
    assert report.dead_letters == 1000


def test_transactional_input(runner):
    report = runner.transactional_input()

    _check(report)
